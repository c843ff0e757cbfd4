// A pool of synchronous hiredis connections to one `tollgate serve`, for tollgate::Client.
#ifndef TOLLGATE_CLIENT_RESP_POOL_H_
#define TOLLGATE_CLIENT_RESP_POOL_H_

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/client.h"

namespace tollgate::client {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

// Whether a request may be sent a second time after it failed on the wire.
enum class Retry {
  kNever,  // a write that may have been applied
  kSafe,   // a read
};

// The status for an error reply: "UNAVAILABLE m" → Unavailable(m), "STALE m" → Aborted(m),
// "ERR m" → InvalidArgument(m), NOAUTH / WRONGPASS → Unauthenticated, anything else → Unknown.
absl::Status StatusOfErrorReply(std::string_view error);

// Thread-safe. Up to options.pool_size connections, opened on demand, each authenticated
// (AUTH [username] password) when opened.
class RespPool {
 public:
  explicit RespPool(const ClientOptions& options);
  ~RespPool();
  RespPool(const RespPool&) = delete;
  RespPool& operator=(const RespPool&) = delete;

  // Opens one connection and checks it with PING (so a server that wants a password nobody gave
  // is found now). Unavailable, Unauthenticated.
  [[nodiscard]] absl::Status Check();

  // Sends one command on a free connection (waiting for one if all are busy, unless `waiting`:
  // see Take) and returns its reply
  // within `reply_timeout` after sending; an error reply is returned as a status
  // (StatusOfErrorReply). A pooled connection the server has closed meanwhile (e.g. it restarted)
  // is noticed before sending and replaced. A request that then fails on the wire (I/O error,
  // timeout) closes its connection and is sent once more on a new one only with Retry::kSafe;
  // otherwise Unavailable naming the server and the cause.
  [[nodiscard]] absl::StatusOr<RedisReply> Call(const std::vector<std::string>& args,
                                                Duration reply_timeout, Retry retry,
                                                bool waiting = false);

  const ClientOptions& options() const { return options_; }

 private:
  struct ContextDeleter {
    void operator()(redisContext* c) const {
      if (c != nullptr) redisFree(c);
    }
  };
  using Context = std::unique_ptr<redisContext, ContextDeleter>;

  // Connect + AUTH.
  absl::StatusOr<Context> Open();
  // An idle connection, or null with a slot reserved for a new one (the caller opens it or calls
  // Give(nullptr)). Blocks while pool_size connections are busy, unless `waiting`: a request that
  // waits server-side (WAIT) may hold its connection for the whole wait, and must not keep
  // renewals and releases from getting one, so it opens a connection beyond pool_size instead.
  Context Take(bool waiting);
  // Puts a healthy connection back (closed if pool_size are idle already); null frees the
  // reserved slot. `waiting` as given to Take.
  void Give(Context c, bool waiting);
  std::string Where() const;

  const ClientOptions options_;
  absl::Mutex mu_;
  std::vector<Context> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;     // idle plus busy plus reserved slots
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;  // of them, busy with a WAIT request
};

}  // namespace tollgate::client

#endif  // TOLLGATE_CLIENT_RESP_POOL_H_
