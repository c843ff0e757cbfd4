#include "tests/support/resp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

namespace tollgate::testing {

Client::Client(int port, int timeout_ms) {
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ctx_.reset(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (ctx_ && ctx_->err == 0) redisSetTimeout(ctx_.get(), tv);
}

namespace {
void Argv(const std::vector<std::string>& args, std::vector<const char*>* ptrs,
          std::vector<size_t>* lens) {
  for (const auto& a : args) {
    ptrs->push_back(a.data());
    lens->push_back(a.size());
  }
}
}  // namespace

Reply Client::Run(const std::vector<std::string>& args) {
  if (!ok()) return nullptr;
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  Argv(args, &ptrs, &lens);
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(args.size()), ptrs.data(), lens.data())));
}

void Client::Append(const std::vector<std::string>& args) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  Argv(args, &ptrs, &lens);
  redisAppendCommandArgv(ctx_.get(), static_cast<int>(args.size()), ptrs.data(), lens.data());
}

Reply Client::Next() {
  void* r = nullptr;
  if (redisGetReply(ctx_.get(), &r) != REDIS_OK) return nullptr;
  return Reply(static_cast<redisReply*>(r));
}

RawConn::RawConn(int port) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

RawConn::~RawConn() {
  if (fd_ >= 0) close(fd_);
}

bool RawConn::Send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string RawConn::Read(size_t n, int timeout_ms) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[65536];
    ssize_t r = recv(fd_, buf, sizeof buf, 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  return got;
}

bool RawConn::WaitClosed(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    ssize_t r = recv(fd_, buf, sizeof buf, 0);
    if (r == 0) return true;
    if (r < 0) return true;  // reset by the server
  }
}

}  // namespace tollgate::testing
