// Two tollgate servers on one shared backend (Redis, PostgreSQL), clients spread over both: at most
// one holder per key at any moment, fences strictly increasing per key, and rate-limit admissions
// within capacity + rate x elapsed across both servers together.
#include <atomic>
#include <chrono>
#include <cstdlib>
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

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

void CheckTwoServers(const std::string& backend_url) {
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
  const std::string migrate =
      std::string(TOLLGATE_BIN) + " migrate --backend '" + pg.conninfo() + "' >/dev/null";
  ASSERT_EQ(std::system(migrate.c_str()), 0);
  ASSERT_EQ(std::system(migrate.c_str()), 0);
  CheckTwoServers(pg.conninfo());
}
#endif

TEST(SharedBackendTest, BadBackendUrlIsAClearStartupError) {
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", "mongodb://localhost"});
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace tollgate::testing
