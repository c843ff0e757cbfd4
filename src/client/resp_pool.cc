#include "client/resp_pool.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace tollgate::client {
namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

timeval ToTimeval(Duration d) {
  if (d < std::chrono::milliseconds(1)) d = std::chrono::milliseconds(1);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

// True if the server closed the connection (or sent something unasked) while it sat idle.
bool Stale(const redisContext* c) {
  pollfd p{c->fd, POLLIN, 0};
  if (poll(&p, 1, 0) != 0) return true;  // readable (EOF, reset, stray bytes) or poll failed
  return false;
}

RedisReply Send(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return RedisReply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

std::string WireError(const redisContext* c) {
  // hiredis keeps strerror(errno) of the failed read: EAGAIN is SO_RCVTIMEO running out.
  if (c->err == REDIS_ERR_IO &&
      std::string_view(c->errstr).find("temporarily unavailable") != std::string_view::npos) {
    return "timed out";
  }
  if (c->err == REDIS_ERR_EOF) return "connection closed by the server";
  return c->errstr[0] != '\0' ? std::string(c->errstr) : std::string("I/O error");
}

}  // namespace

absl::Status StatusOfErrorReply(std::string_view e) {
  if (StartsWith(e, "UNAVAILABLE ")) return absl::UnavailableError(AV(e.substr(12)));
  if (StartsWith(e, "STALE ")) return absl::AbortedError(AV(e.substr(6)));
  if (StartsWith(e, "ERR ")) return absl::InvalidArgumentError(AV(e.substr(4)));
  if (StartsWith(e, "NOAUTH") || StartsWith(e, "WRONGPASS")) {
    return absl::UnauthenticatedError(AV(e));
  }
  return absl::UnknownError(AV(e));
}

RespPool::RespPool(const ClientOptions& options) : options_(options) {}
RespPool::~RespPool() = default;

std::string RespPool::Where() const { return absl::StrCat(options_.host, ":", options_.port); }

absl::StatusOr<RespPool::Context> RespPool::Open() {
  timeval tv = ToTimeval(options_.connect_timeout);
  Context c(redisConnectWithTimeout(options_.host.c_str(), options_.port, tv));
  if (c == nullptr) return absl::UnavailableError("tollgate server " + Where() + ": out of memory");
  if (c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to tollgate server ", Where(), ": ", WireError(c.get())));
  }
  if (!options_.password.empty()) {
    redisSetTimeout(c.get(), tv);
    std::vector<std::string> auth = {"AUTH"};
    if (options_.username.has_value()) auth.push_back(*options_.username);
    auth.push_back(options_.password);
    RedisReply r = Send(c.get(), auth);
    if (r == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("tollgate server ", Where(), ": AUTH failed: ", WireError(c.get())));
    }
    if (r->type == REDIS_REPLY_ERROR) {
      return absl::UnauthenticatedError(absl::StrCat(
          "tollgate server ", Where(), " refused AUTH: ", absl::string_view(r->str, r->len)));
    }
  }
  return c;
}

RespPool::Context RespPool::Take(bool waiting) {
  absl::MutexLock l(&mu_);
  auto free = [this, waiting]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return waiting || !idle_.empty() || open_ - waiting_ < options_.pool_size;
  };
  mu_.Await(absl::Condition(&free));
  if (waiting) ++waiting_;
  if (!idle_.empty()) {
    Context c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  ++open_;
  return nullptr;
}

void RespPool::Give(Context c, bool waiting) {
  absl::MutexLock l(&mu_);
  if (waiting) --waiting_;
  if (c == nullptr || idle_.size() >= static_cast<size_t>(options_.pool_size)) {
    --open_;  // a failed slot, or one more than the pool keeps
  } else {
    idle_.push_back(std::move(c));
  }
}

absl::Status RespPool::Check() {
  absl::StatusOr<RedisReply> r = Call({"PING"}, options_.io_timeout, Retry::kSafe);
  return r.status();
}

absl::StatusOr<RedisReply> RespPool::Call(const std::vector<std::string>& args,
                                          Duration reply_timeout, Retry retry, bool waiting) {
  for (int attempt = 0;; ++attempt) {
    Context c = Take(waiting);
    if (c != nullptr && Stale(c.get())) c.reset();  // not sent yet: replacing it is always safe
    if (c == nullptr) {
      absl::StatusOr<Context> opened = Open();
      if (!opened.ok()) {
        Give(nullptr, waiting);
        return opened.status();
      }
      c = std::move(*opened);
    }
    timeval tv = ToTimeval(reply_timeout);
    redisSetTimeout(c.get(), tv);
    RedisReply r = Send(c.get(), args);
    if (r == nullptr) {
      std::string why = WireError(c.get());
      c.reset();
      Give(nullptr, waiting);
      if (retry == Retry::kSafe && attempt == 0) continue;
      return absl::UnavailableError(
          absl::StrCat("tollgate server ", Where(), ": ", args[0], " failed: ", why));
    }
    Give(std::move(c), waiting);
    if (r->type == REDIS_REPLY_ERROR) {
      return StatusOfErrorReply(std::string_view(r->str, r->len));
    }
    return r;
  }
}

}  // namespace tollgate::client
