#include "tests/support/redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "hiredis/hiredis.h"
#include "tests/support/child_process.h"

namespace tollgate::testing {
namespace {

bool Pings(int port) {
  timeval tv{0, 200'000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return false;
  bool ok = false;
  if (c->err == 0) {
    redisSetTimeout(c, tv);
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG";
    if (r != nullptr) freeReplyObject(r);
  }
  redisFree(c);
  return ok;
}

}  // namespace

RedisServer::~RedisServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

bool RedisServer::Start() {
  if (pid_ > 0) return true;
  if (dir_.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tollgate_redis_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return false;
    dir_ = tmpl;
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    port_ = FreeLoopbackPort();
    if (port_ == 0) continue;
    if (Launch()) return true;  // a collision makes redis-server exit: try another port
  }
  port_ = 0;
  return false;
}

bool RedisServer::Launch() {
  const std::string port = std::to_string(port_);
  const std::string log = dir_ + "/redis.log";
  std::vector<std::string> args = {"redis-server", "--port",           port,     "--bind",
                                   "127.0.0.1",    "--save",           "",       "--appendonly",
                                   "yes",          "--appendfsync",    "always", "--dir",
                                   dir_,           "--logfile",        log,      "--daemonize",
                                   "no",           "--protected-mode", "no"};
  pid_ = SpawnQuiet(std::move(args));
  if (pid_ < 0) return false;
  return WaitUntilReady(&pid_, std::chrono::seconds(10), std::chrono::milliseconds(20),
                        [this] { return Pings(port_); });
}

void RedisServer::Stop() { StopChild(&pid_); }

bool RedisServer::Restart() {
  if (pid_ > 0) return true;
  if (port_ == 0 || dir_.empty()) return false;
  // The port may briefly be unbindable (another process grabbed it): retry for a few seconds.
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (Launch()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace tollgate::testing
