// Two tollgate servers on one shared backend (Redis, PostgreSQL, etcd), clients spread over both:
// at most one holder per key at any moment (also across an expiry), fences strictly increasing per
// key, fenced registers refusing stale writes from either server, and (not on etcd, which has no
// rate limiting) rate-limit admissions within capacity + rate x elapsed across both servers
// together.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tests/support/redis_server.h"
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tests/support/postgres_server.h"
#include "tollgate/postgres_backend.h"
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
#include "tests/support/etcd_server.h"
#endif

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct SharedCheck {
  // TTL of the lease left to expire: short, but one the backend can represent (etcd leases are
  // whole seconds, at least about 2 s).
  int expiry_ttl_ms = 300;
  bool rate_limits = true;  // the backend offers THROTTLE
};

void CheckTwoServers(const std::string& backend_url, const SharedCheck& opt = {}) {
  TempDir dir;
  ServerProcess a(dir.path() + "/a", {"--backend", backend_url});
  ServerProcess b(dir.path() + "/b", {"--backend", backend_url});
  ASSERT_TRUE(a.ok() && b.ok()) << "servers did not start on " << backend_url;

  // Leases: 6 clients, alternating servers, each wins the shared lock 3 times.
  constexpr int kClients = 6, kWins = 3;
  std::atomic<int> inside{0}, violations{0}, grants{0};
  std::mutex mu;
  long long last_fence = 0;
  int regressions = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client c(i % 2 == 0 ? a.port() : b.port());
      ASSERT_TRUE(c.ok());
      int wins = 0;
      const auto deadline = std::chrono::steady_clock::now() + seconds(30);
      while (wins < kWins && std::chrono::steady_clock::now() < deadline) {
        Reply r = c.Run({"LOCK.ACQUIRE", "shared", "30000"});
        ASSERT_TRUE(r);
        ASSERT_NE(r->type, REDIS_REPLY_ERROR) << std::string(r->str, r->len);
        if (r->type != REDIS_REPLY_ARRAY) continue;
        if (inside.fetch_add(1) != 0) violations++;
        {
          std::lock_guard<std::mutex> l(mu);
          if (r->element[1]->integer <= last_fence) ++regressions;
          last_fence = r->element[1]->integer;
        }
        ++wins;
        grants++;
        inside.fetch_sub(1);
        std::string id(r->element[0]->str, r->element[0]->len);
        Reply rel = c.Run({"LOCK.RELEASE", "shared", id});
        ASSERT_TRUE(rel);
        ASSERT_EQ(rel->integer, 1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(regressions, 0);
  EXPECT_EQ(grants.load(), kClients * kWins);

  // A lease taken through one server is seen, and held, through the other.
  Client ca(a.port()), cb(b.port());
  Reply g = ca.Run({"LOCK.ACQUIRE", "seen", "30000"});
  ASSERT_EQ(g->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(cb.Run({"LOCK.ACQUIRE", "seen", "30000"})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(cb.Run({"LOCK.RELEASE", "seen", std::string(g->element[0]->str)})->integer, 1);

  // The next holder, through the other server, gets a higher fence, and its write through one
  // server makes the old holder's write through the other stale.
  Reply g2 = cb.Run({"LOCK.ACQUIRE", "seen", "30000"});
  ASSERT_EQ(g2->type, REDIS_REPLY_ARRAY);
  const long long old_fence = g->element[1]->integer, new_fence = g2->element[1]->integer;
  EXPECT_GT(new_fence, old_fence);
  Reply set = cb.Run({"FENCE.SET", "reg", std::to_string(new_fence), "from-b"});
  ASSERT_EQ(set->type, REDIS_REPLY_STATUS) << (set->str != nullptr ? set->str : "");
  Reply stale = ca.Run({"FENCE.SET", "reg", std::to_string(old_fence), "late"});
  ASSERT_EQ(stale->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(std::string(stale->str, stale->len).rfind("STALE", 0), 0u) << stale->str;
  Reply got = ca.Run({"FENCE.GET", "reg"});
  ASSERT_EQ(got->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(std::string(got->element[0]->str, got->element[0]->len), "from-b");
  EXPECT_EQ(got->element[1]->integer, new_fence);

  // A lease taken through one server and never released: the other server gets it only once the
  // granted ttl has passed, with a higher fence.
  const auto sent = std::chrono::steady_clock::now();
  Reply e = ca.Run({"LOCK.ACQUIRE", "expiring", std::to_string(opt.expiry_ttl_ms)});
  ASSERT_EQ(e->type, REDIS_REPLY_ARRAY);
  const long long granted_ttl_ms = e->element[2]->integer;
  EXPECT_GE(granted_ttl_ms, opt.expiry_ttl_ms);
  Reply next;
  while (std::chrono::steady_clock::now() - sent < milliseconds(granted_ttl_ms) + seconds(10)) {
    next = cb.Run({"LOCK.ACQUIRE", "expiring", "30000"});
    ASSERT_TRUE(next);
    ASSERT_NE(next->type, REDIS_REPLY_ERROR) << std::string(next->str, next->len);
    if (next->type == REDIS_REPLY_ARRAY) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  const auto taken = std::chrono::steady_clock::now();
  ASSERT_EQ(next->type, REDIS_REPLY_ARRAY) << "the expired lease was never granted again";
  EXPECT_GE(taken - sent, milliseconds(granted_ttl_ms));
  EXPECT_GT(next->element[1]->integer, e->element[1]->integer);

  if (!opt.rate_limits) {
    EXPECT_EQ(ca.Run({"THROTTLE", "both", "10", "1"})->type, REDIS_REPLY_ERROR);
    EXPECT_EQ(a.Terminate(), 0);
    EXPECT_EQ(b.Terminate(), 0);
    return;
  }

  // Rate limits: capacity 10, 1 token/s, hammered through both servers for ~1.5 s.
  std::atomic<int> admitted{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> hammer;
  for (int i = 0; i < 4; ++i) {
    hammer.emplace_back([&, i] {
      Client c(i % 2 == 0 ? a.port() : b.port());
      while (std::chrono::steady_clock::now() - start < milliseconds(1500)) {
        Reply r = c.Run({"THROTTLE", "both", "10", "1"});
        ASSERT_TRUE(r);
        ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << (r->str ? r->str : "");
        admitted += static_cast<int>(r->element[0]->integer);
      }
    });
  }
  for (auto& t : hammer) t.join();
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(admitted.load(), 10);
  EXPECT_LE(admitted.load(), 10 + static_cast<int>(elapsed_s) + 1);
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_EQ(b.Terminate(), 0);
}

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
TEST(SharedBackendTest, TwoServersOnOneRedis) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  CheckTwoServers(redis.url());
}
#endif

#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
TEST(SharedBackendTest, TwoServersOnOnePostgres) {
  PostgresServer pg;
  ASSERT_TRUE(pg.Start()) << pg.error();
  // The schema comes from `tollgate migrate` (twice: it is idempotent).
  ASSERT_TRUE(RunMigrate(pg.conninfo()));
  ASSERT_TRUE(RunMigrate(pg.conninfo()));
  CheckTwoServers(pg.conninfo());
}
#endif

#ifdef TOLLGATE_HAVE_ETCD_BACKEND
TEST(SharedBackendTest, TwoServersOnOneEtcd) {
  EtcdServer etcd;
  ASSERT_TRUE(etcd.Start());
  CheckTwoServers(etcd.url(), {.expiry_ttl_ms = 2000, .rate_limits = false});
}
#endif

TEST(SharedBackendTest, BadBackendUrlIsAClearStartupError) {
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", "mongodb://localhost"});
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace tollgate::testing
