// Internals of the HTTP server shared by its route files (not a public interface).
#ifndef TOLLGATE_HTTP_API_H_
#define TOLLGATE_HTTP_API_H_

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "http/http_server.h"
#include "http/state_call.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/services.h"

namespace tollgate::http {

struct ApiContext {
  server::Services& services;
  size_t io_threads;
  PostToState post;
  HttpLimits limits;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> next_thread{0};

  size_t PickThread() { return next_thread.fetch_add(1, std::memory_order_relaxed) % io_threads; }

  // Runs op(state, completion) on an I/O thread and waits for the completion, at most `wait` plus
  // the answer slack (or until the server stops): Unavailable then.
  template <class T, class Op>
  absl::StatusOr<T> Call(Op op, std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    auto slot = std::make_shared<ResultSlot<T>>();
    post(PickThread(), [op = std::move(op), c = SlotCompletion<T>(slot)](server::State& s) mutable {
      op(s, std::move(c));
    });
    auto r = slot->Wait(std::chrono::steady_clock::now() + wait + limits.answer_slack, &stopping);
    if (!r) return absl::UnavailableError("no answer from the server in time");
    return std::move(*r);
  }

  // On the embedded store: waits until everything journaled so far is durable (a reply must not
  // promise what a crash could undo; RESP holds its replies the same way).
  absl::Status WaitDurable();
};

// The JSON text of `body` (invalid UTF-8 replaced, never throws).
std::string JsonText(const nlohmann::json& body);
void ReplyJson(httplib::Response& res, int status, const nlohmann::json& body);
// {"error": message}.
void ReplyError(httplib::Response& res, int status, const std::string& message);
// A non-OK status as its HTTP status (InvalidArgument, NotFound: 400; Aborted, FailedPrecondition:
// 409; Unavailable, DeadlineExceeded: 503; ResourceExhausted: 429; others 500) and RESP's error
// text (server::RespErrorText).
void ReplyStatus(httplib::Response& res, const absl::Status& st);

// The /v1 routes (v1_api.cc).
void RegisterV1Routes(httplib::Server& server, ApiContext& ctx);

}  // namespace tollgate::http

#endif  // TOLLGATE_HTTP_API_H_
