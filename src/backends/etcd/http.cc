// HttpClient (see http.h): curl_multi_socket_action on an EventLoop.
#include "backends/etcd/http.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace tollgate::etcd {
namespace {

long Millis(Duration d) {
  return std::max(
      static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()), 1L);
}

// After a request's own deadline: the safety net for a transfer curl has not ended by then (one
// waiting for a free connection, say).
constexpr Duration kDeadlineSlack = std::chrono::milliseconds(20);

// After work done in a timer callback: a loop may run due timers at the start of a pass and then
// wait for fds, so a completion made by a timer would not be seen by the loop's caller (a
// RunUntil's done()) until something else happens. Queuing end-of-pass work makes that pass end
// without waiting.
void EndPassSoon(EventLoop& loop) {
  loop.AtEndOfPass([] {});
}

}  // namespace

struct HttpClient::Transfer {
  uint64_t id = 0;
  std::string payload;
  std::string body;
  Sink sink;
  Done done;
  uint64_t deadline_timer = 0;
  bool sink_stopped = false;
};

HttpClient::HttpClient(EventLoop& loop, std::string base, Duration connect_timeout,
                       long max_connections)
    : loop_(loop), base_(std::move(base)), connect_timeout_(connect_timeout) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  // No "Expect: 100-continue" round trip before a larger body.
  headers_ = curl_slist_append(nullptr, "Expect:");
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return;  // every Post then fails (CURLE_OUT_OF_MEMORY)
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &HttpClient::OnSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &HttpClient::OnTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  if (max_connections > 0) {
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, max_connections);
  }
}

HttpClient::~HttpClient() {
  destroying_ = true;
  *alive_ = false;
  if (curl_timer_ != 0) loop_.CancelTimer(curl_timer_);
  curl_timer_ = 0;
  for (auto& [easy, t] : transfers_) {
    if (t->deadline_timer != 0) loop_.CancelTimer(t->deadline_timer);
    if (multi_ != nullptr) curl_multi_remove_handle(multi_, easy);
    curl_easy_cleanup(easy);
  }
  transfers_.clear();
  for (CURL* easy : idle_) curl_easy_cleanup(easy);
  if (multi_ != nullptr) curl_multi_cleanup(multi_);  // closes connections (Unwatch first)
  if (headers_ != nullptr) curl_slist_free_all(headers_);
}

int HttpClient::OnSocket(CURL*, curl_socket_t fd, int what, void* user, void*) {
  auto* self = static_cast<HttpClient*>(user);
  if (what == CURL_POLL_REMOVE) {
    self->loop_.Unwatch(fd);
    return 0;
  }
  if (self->destroying_) return 0;
  uint32_t interest = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) interest |= EventLoop::kReadable;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) interest |= EventLoop::kWritable;
  self->loop_.Watch(fd, interest, [self, alive = self->alive_, fd](uint32_t events) {
    if (!*alive) return;
    int ev = 0;
    if (events & EventLoop::kReadable) ev |= CURL_CSELECT_IN;
    if (events & EventLoop::kWritable) ev |= CURL_CSELECT_OUT;
    if (events & EventLoop::kError) ev |= CURL_CSELECT_ERR;
    self->Act(fd, ev);
  });
  return 0;
}

int HttpClient::OnTimer(CURLM*, long timeout_ms, void* user) {
  auto* self = static_cast<HttpClient*>(user);
  if (self->curl_timer_ != 0) self->loop_.CancelTimer(self->curl_timer_);
  self->curl_timer_ = 0;
  if (timeout_ms < 0 || self->destroying_) return 0;
  self->curl_timer_ =
      self->loop_.RunAt(self->loop_.clock()->SteadyNow() + std::chrono::milliseconds(timeout_ms),
                        [self, alive = self->alive_, loop = &self->loop_] {
                          if (!*alive) return;
                          self->curl_timer_ = 0;
                          self->Act(CURL_SOCKET_TIMEOUT, 0);
                          EndPassSoon(*loop);
                        });
  return 0;
}

size_t HttpClient::OnData(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->sink) {
    t->body.append(data, size * n);
    return size * n;
  }
  if (t->sink_stopped || !t->sink(std::string_view(data, size * n))) {
    t->sink_stopped = true;
    return 0;  // CURLE_WRITE_ERROR ends the transfer
  }
  return size * n;
}

uint64_t HttpClient::Post(std::string_view path, std::string payload, Duration timeout, Done done,
                          Sink sink) {
  const uint64_t id = next_id_++;
  ++requests_;
  CURL* easy = nullptr;
  if (!idle_.empty()) {
    easy = idle_.back();
    idle_.pop_back();
  } else {
    easy = curl_easy_init();
  }
  auto fail_soon = [&](CURLcode code) {
    if (easy != nullptr) idle_.push_back(easy);
    // Never before Post returns: the caller may still be setting up.
    loop_.RunAt(loop_.clock()->SteadyNow(),
                [alive = alive_, loop = &loop_, done = std::move(done), code]() mutable {
                  if (!*alive) return;
                  done(Response{code, 0, ""});
                  EndPassSoon(*loop);
                });
    return id;
  };
  if (easy == nullptr || multi_ == nullptr) return fail_soon(CURLE_OUT_OF_MEMORY);
  auto t = std::make_unique<Transfer>();
  t->id = id;
  t->payload = std::move(payload);
  t->sink = std::move(sink);
  const std::string url = absl::StrCat(base_, AV(path));
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->payload.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->payload.size()));
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &HttpClient::OnData);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  if (headers_ != nullptr) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Millis(connect_timeout_));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, Millis(timeout));
  if (curl_multi_add_handle(multi_, easy) != CURLM_OK) {
    curl_easy_reset(easy);
    return fail_soon(CURLE_FAILED_INIT);
  }
  t->done = std::move(done);
  t->deadline_timer = loop_.RunAt(loop_.clock()->SteadyNow() + timeout + kDeadlineSlack,
                                  [this, alive = alive_, loop = &loop_, easy] {
                                    if (!*alive) return;
                                    auto it = transfers_.find(easy);
                                    if (it == transfers_.end()) return;
                                    it->second->deadline_timer = 0;
                                    Finish(easy, CURLE_OPERATION_TIMEDOUT);
                                    EndPassSoon(*loop);
                                  });
  transfers_.emplace(easy, std::move(t));
  ids_.emplace(id, easy);
  max_in_flight_ = std::max(max_in_flight_, transfers_.size());
  return id;
}

void HttpClient::Abort(uint64_t id) {
  auto it = ids_.find(id);
  if (it == ids_.end()) return;
  Remove(it->second);
}

void HttpClient::Act(curl_socket_t fd, int events) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, events, &running);
  std::vector<std::pair<CURL*, CURLcode>> ended;
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
    if (m->msg == CURLMSG_DONE) ended.emplace_back(m->easy_handle, m->data.result);
  }
  std::shared_ptr<bool> alive = alive_;
  for (auto [easy, code] : ended) {
    Finish(easy, code);  // no effect for one aborted by an earlier completion
    if (!*alive) return;
  }
}

void HttpClient::Finish(CURL* easy, CURLcode code) {
  auto it = transfers_.find(easy);
  if (it == transfers_.end()) return;
  Response r;
  r.code = code;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  r.body = std::move(it->second->body);
  Done done = std::move(it->second->done);
  Remove(easy);
  done(std::move(r));
}

void HttpClient::Remove(CURL* easy) {
  auto it = transfers_.find(easy);
  if (it == transfers_.end()) return;
  std::unique_ptr<Transfer> t = std::move(it->second);
  transfers_.erase(it);
  ids_.erase(t->id);
  if (t->deadline_timer != 0) loop_.CancelTimer(t->deadline_timer);
  curl_multi_remove_handle(multi_, easy);
  curl_easy_reset(easy);
  idle_.push_back(easy);
}

}  // namespace tollgate::etcd
