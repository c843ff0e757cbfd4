// Test clients for a running server: Redis (hiredis, RESP2) for typed replies, and a raw socket for
// exact-byte checks (RESP3, protocol errors).
#ifndef TOLLGATE_TESTS_SUPPORT_RESP_CLIENT_H_
#define TOLLGATE_TESTS_SUPPORT_RESP_CLIENT_H_

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

namespace tollgate::testing {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};

class Client {
 public:
  // Connects to 127.0.0.1:port with a 5 s timeout on connect and on each reply.
  explicit Client(int port, int timeout_ms = 5000);
  bool ok() const { return ctx_ != nullptr && ctx_->err == 0; }
  // Sends one command (binary-safe arguments) and returns its reply; null on I/O error.
  Reply Run(const std::vector<std::string>& args);
  // Pipelining: queue commands, then read their replies in order.
  void Append(const std::vector<std::string>& args);
  Reply Next();
  redisContext* raw() { return ctx_.get(); }

 private:
  std::unique_ptr<redisContext, ContextDeleter> ctx_;
};

// A plain TCP connection to 127.0.0.1:port.
class RawConn {
 public:
  explicit RawConn(int port);
  ~RawConn();
  bool ok() const { return fd_ >= 0; }
  bool Send(const std::string& bytes);
  // Reads until at least n bytes arrived in total since the last call, the peer closed, or
  // timeout_ms passed; returns what arrived.
  std::string Read(size_t n, int timeout_ms = 3000);
  // True if the server closed the connection within timeout_ms (reads and discards data).
  bool WaitClosed(int timeout_ms = 3000);

 private:
  int fd_ = -1;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_RESP_CLIENT_H_
