// For server tests over shared backends: throwaway Redis, PostgreSQL and etcd servers, one per
// kind per test program, started on first use and stopped at the end (a gtest environment, so the
// child processes never outlive it); and a command run on its own connection in a thread (for
// blocking commands). Include after defining which backends the test program links
// (TOLLGATE_HAVE_REDIS_BACKEND, _POSTGRES_, _ETCD_).
#ifndef TOLLGATE_TESTS_SUPPORT_BACKEND_SERVERS_H_
#define TOLLGATE_TESTS_SUPPORT_BACKEND_SERVERS_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tests/support/redis_server.h"
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tests/support/postgres_server.h"
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
#include "tests/support/etcd_server.h"
#endif

namespace tollgate::testing {

// hiredis reply timeout for blocked clients.
inline constexpr int kWaiterTimeoutMs = 60'000;

// One throwaway backend server per kind, started on first use and stopped when the test binary
// ends (a gtest environment, so the child processes never outlive it).
class Backends : public ::testing::Environment {
 public:
  // The URL of a running server of `kind`, or "" if it could not start.
  static std::string Url(const std::string& kind) {
    Backends* self = instance;
    auto it = self->urls_.find(kind);
    if (it != self->urls_.end()) return it->second;
    std::string url;
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
    if (kind == "redis") {
      self->redis_ = std::make_unique<RedisServer>();
      if (self->redis_->Start()) url = self->redis_->url();
    }
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
    if (kind == "postgres") {
      self->pg_ = std::make_unique<PostgresServer>();
      if (self->pg_->Start()) {
        if (RunMigrate(self->pg_->conninfo())) url = self->pg_->conninfo();
      }
    }
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
    if (kind == "etcd") {
      self->etcd_ = std::make_unique<EtcdServer>();
      if (self->etcd_->Start()) url = self->etcd_->url();
    }
#endif
    self->urls_[kind] = url;
    return url;
  }

  void TearDown() override {
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
    redis_.reset();
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
    pg_.reset();
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
    etcd_.reset();
#endif
    urls_.clear();
  }

  static Backends* instance;  // defined below

 private:
  std::map<std::string, std::string> urls_;
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
  std::unique_ptr<RedisServer> redis_;
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
  std::unique_ptr<PostgresServer> pg_;
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
  std::unique_ptr<EtcdServer> etcd_;
#endif
};

inline Backends* Backends::instance =
    static_cast<Backends*>(::testing::AddGlobalTestEnvironment(new Backends()));

// Runs `args` on its own connection in a thread; the reply is read once done().
class Async {
 public:
  Async(int port, std::vector<std::string> args) {
    thread_ = std::thread([this, port, args = std::move(args)] {
      Client c(port, kWaiterTimeoutMs);
      if (c.ok()) reply_ = c.Run(args);
      at_ = std::chrono::steady_clock::now();
      done_ = true;
    });
  }
  ~Async() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_.load(); }
  // Joins, then the reply (null on I/O error) and when it arrived.
  Reply& reply() {
    Join();
    return reply_;
  }
  std::chrono::steady_clock::time_point at() {
    Join();
    return at_;
  }

 private:
  std::thread thread_;
  std::atomic<bool> done_{false};
  Reply reply_;
  std::chrono::steady_clock::time_point at_{};
};

// The backends `tollgate serve` can run on in this build, by --backend scheme ("redis",
// "postgres", "etcd"), preceded by "embedded" when `with_embedded`: the parameters of the server
// test suites that run on each.
inline std::vector<std::string> ServerKinds(bool with_embedded) {
  std::vector<std::string> kinds;
  if (with_embedded) kinds.push_back("embedded");
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
  kinds.push_back("redis");
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
  kinds.push_back("postgres");
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
  kinds.push_back("etcd");
#endif
  return kinds;
}

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_BACKEND_SERVERS_H_
