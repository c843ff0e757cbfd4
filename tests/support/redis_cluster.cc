#include "tests/support/redis_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "hiredis/hiredis.h"
#include "tests/support/child_process.h"

namespace tollgate::testing {
namespace {

// Whether 127.0.0.1:port can be bound right now.
bool PortFree(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// A port P with P and P + 10000 (the cluster bus) free now, both below the usual ephemeral range
// start for P (so outgoing connections rarely take it) and below 65536 for the bus. 0 if none.
int FreeClusterPort(std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(15000, 29999);
  for (int i = 0; i < 100; ++i) {
    const int p = pick(rng);
    if (PortFree(p) && PortFree(p + 10000)) return p;
  }
  return 0;
}

// One command on a short-lived connection. True if it got a non-error reply; *out = the reply's
// text (status, string or error).
bool Command(int port, const std::vector<std::string>& args, std::string* out) {
  timeval tv{0, 500'000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return false;
  bool ok = false;
  if (c->err == 0) {
    redisSetTimeout(c, tv);
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r != nullptr) {
      ok = r->type != REDIS_REPLY_ERROR;
      if (r->str != nullptr) out->assign(r->str, r->len);
      freeReplyObject(r);
    }
  }
  redisFree(c);
  return ok;
}

// Runs a command to completion (up to `timeout`); true if it exited with status 0.
bool RunToCompletion(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  pid_t pid = SpawnQuiet(std::move(args));
  if (pid < 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopChild(&pid, std::chrono::milliseconds(100));
  return false;
}

}  // namespace

RedisCluster::~RedisCluster() {
  Kill();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

void RedisCluster::Kill() {
  for (pid_t& pid : pids_) {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
}

void RedisCluster::Stop() {
  for (pid_t& pid : pids_) {
    if (pid > 0) kill(pid, SIGTERM);  // all at once: no persistence, so they exit quickly
  }
  for (pid_t& pid : pids_) StopChild(&pid);
}

std::string RedisCluster::url(int i) const {
  return "redis://127.0.0.1:" + std::to_string(ports_[i]);
}

bool RedisCluster::Start() {
  if (pids_[0] > 0) return true;
  if (dir_.empty()) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tollgate_redis_cluster_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return false;
    dir_ = tmpl;
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (StartOnce()) return true;
  }
  return false;
}

bool RedisCluster::StartOnce() {
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < kNodes; ++i) {
    auto clashes = [&](int p) {  // with an earlier node's port or bus port
      for (int j = 0; j < i; ++j) {
        if (p == ports_[j] || p + 10000 == ports_[j] || p == ports_[j] + 10000) return true;
      }
      return false;
    };
    int p = 0;
    for (int tries = 0; tries < 10 && (p == 0 || clashes(p)); ++tries) p = FreeClusterPort(rng);
    if (p == 0 || clashes(p)) return false;
    ports_[i] = p;
  }
  for (int i = 0; i < kNodes; ++i) {
    const std::string port = std::to_string(ports_[i]);
    const std::string dir = dir_ + "/" + port;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    pids_[i] = SpawnQuiet({"redis-server",
                           "--port",
                           port,
                           "--bind",
                           "127.0.0.1",
                           "--cluster-enabled",
                           "yes",
                           "--cluster-config-file",
                           dir + "/nodes.conf",
                           "--appendonly",
                           "no",
                           "--save",
                           "",
                           "--dir",
                           dir,
                           "--logfile",
                           dir + "/redis.log",
                           "--daemonize",
                           "no",
                           "--protected-mode",
                           "no"});
  }
  auto fail = [this] {
    Kill();
    ids_ = {};
    return false;
  };
  for (int i = 0; i < kNodes; ++i) {
    if (pids_[i] < 0) return fail();
    const int port = ports_[i];
    std::string reply;
    if (!WaitUntilReady(&pids_[i], std::chrono::seconds(10), std::chrono::milliseconds(10),
                        [&] { return Command(port, {"PING"}, &reply); })) {
      return fail();
    }
    if (!Command(port, {"CLUSTER", "MYID"}, &ids_[i])) return fail();
  }
  std::vector<std::string> create = {"redis-cli", "--cluster", "create"};
  for (int p : ports_) create.push_back("127.0.0.1:" + std::to_string(p));
  for (const char* a : {"--cluster-replicas", "0", "--cluster-yes"}) create.push_back(a);
  if (!RunToCompletion(std::move(create), std::chrono::seconds(30))) return fail();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int i = 0; i < kNodes; ++i) {
    std::string info;
    while (!Command(ports_[i], {"CLUSTER", "INFO"}, &info) ||
           info.find("cluster_state:ok") == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return fail();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return true;
}

int RedisCluster::OwnerOfSlot(int slot) const {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", ports_[0], tv);
  if (c == nullptr) return -1;
  int owner = -1;
  auto* r = c->err == 0 ? static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS")) : nullptr;
  if (r != nullptr && r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[2]->elements < 2) continue;
      if (slot < e->element[0]->integer || slot > e->element[1]->integer) continue;
      for (int n = 0; n < kNodes; ++n) {
        if (e->element[2]->element[1]->integer == ports_[n]) owner = n;
      }
    }
  }
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return owner;
}

}  // namespace tollgate::testing
