// The kill -9 crash loop: concurrent clients run against the server, the server is SIGKILLed at a
// random moment, restarted on the same data directory, and every invariant is checked against
// what the clients saw acknowledged:
//   - an acknowledged, unreleased, unexpired lease is still held: another acquire gets nil, and its
//     lock_id can extend and release it;
//   - every fence issued after the restart is greater than every fence acknowledged before;
//   - fenced registers keep the highest acknowledged fence (or a later write that was sent), and
//     the value stored is one a client really wrote with that fence;
//   - an acknowledged, unreleased semaphore permit is still held (it extends and releases), and no
//     two such permits of a semaphore share a slot;
//   - an acknowledged, unreleased multi-key group is still held whole (LOCK.MEXTEND extends every
//     key, LOCK.MRELEASE releases them all).
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"

namespace tollgate::testing {
namespace {

constexpr int kClients = 8;
constexpr int kKeys = 16;
constexpr int kResources = 4;
constexpr int kSemaphores = 3;
constexpr int kSemLimit = 3;
constexpr int kGroupKeys = 8;  // multi-key groups are pairs of these (one {hash tag} per iteration)

int Iterations() {
  const char* env = std::getenv("TOLLGATE_CRASH_ITERATIONS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 8;
}

// What the clients know for certain, from acknowledged replies only.
struct Ledger {
  std::mutex mu;
  std::map<std::string, std::string> held;  // key -> lock_id: granted, no release sent since
  long long max_fence = 0;                  // highest fence acknowledged to any client
  struct Resource {
    long long max_acked = 0;
    std::set<std::pair<long long, std::string>> sent;  // every (fence, value) ever sent
  };
  std::map<std::string, Resource> resources;
  struct Permit {
    std::string key, id;
    long long slot;
  };
  std::vector<Permit> permits;  // granted, no release sent since
  struct Group {
    std::vector<std::string> keys;
    std::string id;
  };
  std::vector<Group> groups;  // granted, no release sent since
  long long grants = 0, writes = 0, releases = 0, permit_grants = 0, group_grants = 0;
};

void RunClient(int port, int iteration, int seed, Ledger& ledger, std::atomic<bool>& stop) {
  std::mt19937 rng(seed);
  Client c(port, 3000);
  if (!c.ok()) return;
  const std::string prefix = "it" + std::to_string(iteration) + ":";
  std::vector<std::pair<std::string, std::string>> mine;  // leases this client holds
  long long last_fence = 0;
  int counter = 0;
  std::vector<Ledger::Permit> my_permits;
  std::vector<Ledger::Group> my_groups;
  while (!stop.load()) {
    const int op = static_cast<int>(rng() % 10);
    const int extra = static_cast<int>(rng() % 4);  // 0, 1: semaphores and groups instead
    if (extra == 0) {
      if (my_permits.empty() || rng() % 2 == 0) {
        std::string key = prefix + "s" + std::to_string(rng() % kSemaphores);
        Reply r = c.Run({"SEM.ACQUIRE", key, std::to_string(kSemLimit), "60000"});
        if (!r) return;
        if (r->type == REDIS_REPLY_ARRAY) {
          Ledger::Permit p{key, std::string(r->element[0]->str, r->element[0]->len),
                           r->element[1]->integer};
          std::lock_guard<std::mutex> l(ledger.mu);
          ledger.permits.push_back(p);
          ledger.max_fence = std::max(ledger.max_fence, r->element[2]->integer);
          ++ledger.permit_grants;
          my_permits.push_back(std::move(p));
        }
      } else {
        Ledger::Permit p = my_permits.back();
        my_permits.pop_back();
        {
          std::lock_guard<std::mutex> l(ledger.mu);
          std::erase_if(ledger.permits, [&](const Ledger::Permit& q) { return q.id == p.id; });
        }
        Reply r = c.Run({"SEM.RELEASE", p.key, p.id});
        if (!r) return;
        EXPECT_EQ(r->integer, 1) << "the holder could not release its permit";
      }
      continue;
    }
    if (extra == 1) {
      if (my_groups.empty() || rng() % 2 == 0) {
        const int a = static_cast<int>(rng() % kGroupKeys);
        const int b = (a + 1 + static_cast<int>(rng() % (kGroupKeys - 1))) % kGroupKeys;
        const std::string tag = "{" + prefix + "g}";
        std::vector<std::string> keys = {tag + std::to_string(a), tag + std::to_string(b)};
        Reply r = c.Run({"LOCK.MACQUIRE", "2", keys[0], keys[1], "60000"});
        if (!r) return;
        if (r->type == REDIS_REPLY_ARRAY) {
          Ledger::Group g{keys, std::string(r->element[0]->str, r->element[0]->len)};
          std::lock_guard<std::mutex> l(ledger.mu);
          ledger.groups.push_back(g);
          ledger.max_fence = std::max(ledger.max_fence, r->element[1]->integer);
          ++ledger.group_grants;
          my_groups.push_back(std::move(g));
        }
      } else {
        Ledger::Group g = my_groups.back();
        my_groups.pop_back();
        {
          std::lock_guard<std::mutex> l(ledger.mu);
          std::erase_if(ledger.groups, [&](const Ledger::Group& q) { return q.id == g.id; });
        }
        Reply r = c.Run({"LOCK.MRELEASE", "2", g.keys[0], g.keys[1], g.id});
        if (!r) return;
        EXPECT_EQ(r->integer, 2) << "the holder could not release its group";
      }
      continue;
    }
    if (op < 4 || mine.empty()) {
      std::string key = prefix + "k" + std::to_string(rng() % kKeys);
      Reply r = c.Run({"LOCK.ACQUIRE", key, "60000", "OWNER", "c" + std::to_string(seed)});
      if (!r) return;
      if (r->type == REDIS_REPLY_ARRAY) {
        std::string id(r->element[0]->str, r->element[0]->len);
        last_fence = r->element[1]->integer;
        std::lock_guard<std::mutex> l(ledger.mu);
        ledger.held[key] = id;
        ledger.max_fence = std::max(ledger.max_fence, last_fence);
        ++ledger.grants;
        mine.emplace_back(key, id);
      }
    } else if (op < 7) {
      std::string res = prefix + "r" + std::to_string(rng() % kResources);
      // Mostly the current fence, sometimes an old one (which must be rejected or be equal).
      long long fence = (rng() % 4 == 0 && last_fence > 1) ? last_fence - 1 : last_fence;
      if (fence <= 0) continue;
      std::string value = "c" + std::to_string(seed) + "-" + std::to_string(++counter);
      {
        std::lock_guard<std::mutex> l(ledger.mu);
        ledger.resources[res].sent.insert({fence, value});
      }
      Reply r = c.Run({"FENCE.SET", res, std::to_string(fence), value});
      if (!r) return;
      if (r->type == REDIS_REPLY_STATUS) {
        std::lock_guard<std::mutex> l(ledger.mu);
        auto& rr = ledger.resources[res];
        rr.max_acked = std::max(rr.max_acked, fence);
        ++ledger.writes;
      }
    } else if (op < 8) {
      auto& [key, id] = mine[rng() % mine.size()];
      Reply r = c.Run({"LOCK.EXTEND", key, id, "60000"});
      if (!r) return;
      EXPECT_EQ(r->type, REDIS_REPLY_INTEGER);
      EXPECT_EQ(r->integer, 60000) << "a held lease could not be extended";
    } else {
      size_t i = rng() % mine.size();
      auto [key, id] = mine[i];
      mine.erase(mine.begin() + static_cast<long>(i));
      {
        // From now on the key's state is unknown until the reply: forget it.
        std::lock_guard<std::mutex> l(ledger.mu);
        ledger.held.erase(key);
      }
      Reply r = c.Run({"LOCK.RELEASE", key, id});
      if (!r) return;
      EXPECT_EQ(r->type, REDIS_REPLY_INTEGER);
      EXPECT_EQ(r->integer, 1) << "the holder could not release its lease";
      std::lock_guard<std::mutex> l(ledger.mu);
      ++ledger.releases;
    }
  }
}

TEST(CrashTest, KillNineLoopKeepsEveryAcknowledgedInvariant) {
  TempDir dir;
  std::mt19937 rng(std::random_device{}());
  long long total_grants = 0, total_writes = 0, checked_leases = 0;
  long long max_fence_ever = 0;
  long long total_permits = 0, total_groups = 0, checked_permits = 0, checked_groups = 0;
  const int iterations = Iterations();
  for (int it = 0; it < iterations; ++it) {
    Ledger ledger;
    {
      // Alternate one and three I/O threads: both the single-loop and the shared-commit paths.
      ServerProcess server(dir.path(), {"--io-threads", it % 2 == 0 ? "1" : "3"});
      ASSERT_TRUE(server.ok()) << "server failed to start in iteration " << it;
      std::atomic<bool> stop{false};
      std::vector<std::thread> clients;
      for (int i = 0; i < kClients; ++i) {
        clients.emplace_back(RunClient, server.port(), it, it * 100 + i, std::ref(ledger),
                             std::ref(stop));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 850));
      server.Kill();  // kill -9 while clients are mid-flight
      stop = true;
      for (auto& t : clients) t.join();
    }
    max_fence_ever = std::max(max_fence_ever, ledger.max_fence);
    total_grants += ledger.grants;
    total_writes += ledger.writes;

    ServerProcess server(dir.path());
    ASSERT_TRUE(server.ok()) << "server failed to recover after kill -9 in iteration " << it;
    Client c(server.port());
    for (const auto& [key, id] : ledger.held) {
      Reply steal = c.Run({"LOCK.ACQUIRE", key, "1000"});
      ASSERT_TRUE(steal);
      EXPECT_EQ(steal->type, REDIS_REPLY_NIL) << "acknowledged lease on " << key << " was lost";
      Reply ext = c.Run({"LOCK.EXTEND", key, id, "60000"});
      ASSERT_TRUE(ext);
      EXPECT_EQ(ext->integer, 60000) << "holder of " << key << " cannot extend after restart";
      Reply rel = c.Run({"LOCK.RELEASE", key, id});
      ASSERT_TRUE(rel);
      EXPECT_EQ(rel->integer, 1) << "holder of " << key << " cannot release after restart";
      ++checked_leases;
    }
    std::map<std::string, std::set<long long>> slots;
    for (const auto& p : ledger.permits) {
      EXPECT_TRUE(slots[p.key].insert(p.slot).second)
          << "two acknowledged permits of " << p.key << " share slot " << p.slot;
      Reply ext = c.Run({"SEM.EXTEND", p.key, p.id, "60000"});
      ASSERT_TRUE(ext);
      EXPECT_EQ(ext->integer, 60000) << "acknowledged permit of " << p.key << " was lost";
      Reply rel = c.Run({"SEM.RELEASE", p.key, p.id});
      ASSERT_TRUE(rel);
      EXPECT_EQ(rel->integer, 1);
      ++checked_permits;
    }
    for (const auto& g : ledger.groups) {
      Reply ext = c.Run({"LOCK.MEXTEND", "2", g.keys[0], g.keys[1], g.id, "60000"});
      ASSERT_TRUE(ext);
      EXPECT_EQ(ext->integer, 60000) << "acknowledged group " << g.keys[0] << " was lost";
      Reply rel = c.Run({"LOCK.MRELEASE", "2", g.keys[0], g.keys[1], g.id});
      ASSERT_TRUE(rel);
      EXPECT_EQ(rel->integer, 2);
      ++checked_groups;
    }
    total_permits += ledger.permit_grants;
    total_groups += ledger.group_grants;
    Reply fresh = c.Run({"LOCK.ACQUIRE", "fresh:" + std::to_string(it), "1000"});
    ASSERT_TRUE(fresh);
    ASSERT_EQ(fresh->type, REDIS_REPLY_ARRAY);
    EXPECT_GT(fresh->element[1]->integer, max_fence_ever)
        << "a fence was reissued after kill -9 in iteration " << it;
    max_fence_ever = std::max(max_fence_ever, fresh->element[1]->integer);
    for (const auto& [res, r] : ledger.resources) {
      Reply got = c.Run({"FENCE.GET", res});
      ASSERT_TRUE(got);
      if (got->type == REDIS_REPLY_NIL) {
        EXPECT_EQ(r.max_acked, 0) << "acknowledged write to " << res << " was lost";
        continue;
      }
      ASSERT_EQ(got->type, REDIS_REPLY_ARRAY);
      long long fence = got->element[1]->integer;
      std::string value(got->element[0]->str, got->element[0]->len);
      EXPECT_GE(fence, r.max_acked) << res << " went back to an older fence";
      EXPECT_TRUE(r.sent.count({fence, value})) << res << " holds a value nobody wrote";
    }
    EXPECT_EQ(server.Terminate(), 0);
  }
  // The loop must have exercised something, or it proves nothing.
  EXPECT_GT(total_grants, iterations * 5);
  EXPECT_GT(total_writes, iterations * 5);
  EXPECT_GT(checked_leases, 0);
  EXPECT_GT(total_permits, iterations * 2);
  EXPECT_GT(total_groups, iterations * 2);
  EXPECT_GT(checked_permits, 0);
  EXPECT_GT(checked_groups, 0);
  std::printf(
      "crash loop: %d kills, %lld grants, %lld fenced writes, %lld held leases verified, "
      "%lld permits (%lld verified), %lld groups (%lld verified)\n",
      iterations, total_grants, total_writes, checked_leases, total_permits, checked_permits,
      total_groups, checked_groups);
}

}  // namespace
}  // namespace tollgate::testing
