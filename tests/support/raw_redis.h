// A raw hiredis connection for poking at a Redis server behind a backend's back (tests).
#ifndef TOLLGATE_TESTS_SUPPORT_RAW_REDIS_H_
#define TOLLGATE_TESTS_SUPPORT_RAW_REDIS_H_

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

namespace tollgate::testing {

class RawRedis {
 public:
  explicit RawRedis(int port) {
    timeval tv{2, 0};
    c_ = redisConnectWithTimeout("127.0.0.1", port, tv);
  }
  ~RawRedis() {
    if (c_ != nullptr) redisFree(c_);
  }
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;

  bool ok() const { return c_ != nullptr && c_->err == 0; }
  // The reply as text (string, status, error or integer); "(nil)" for nil; "(io error)".
  std::string Cmd(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return "(io error)";
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    } else if (r->type == REDIS_REPLY_NIL) {
      out = "(nil)";
    } else if (r->str != nullptr) {
      out = std::string(r->str, r->len);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  redisContext* c_ = nullptr;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_RAW_REDIS_H_
