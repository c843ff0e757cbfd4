// SEM.* and LOCK.M* end to end through real `tollgate serve` processes, on the embedded store and
// on each shared backend: reply formats, argument errors that name the argument and change
// nothing, FIFO waiting for semaphore slots, a multi-key waiter that single-key acquirers arriving
// later cannot starve, and a waiter whose client went away never ending up holding anything.
// Ordering is established through the INFO commands' waiters counts, never through sleeps.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/backend_servers.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::string Str(const redisReply* r) {
  return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : std::string();
}

std::vector<std::string> Kinds() { return ServerKinds(/*with_embedded=*/true); }

class SemMultiServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::vector<std::string> args;
    if (GetParam() != "embedded") {
      const std::string url = Backends::Url(GetParam());
      ASSERT_FALSE(url.empty()) << "could not start a " << GetParam() << " server";
      args = {"--backend", url};
    }
    server_ = std::make_unique<ServerProcess>(dir_.path() + "/s", std::move(args));
    ASSERT_TRUE(server_->ok());
    key_ = "{" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
           "-" + std::to_string(Clock::now().time_since_epoch().count()) + "}";
    for (char& c : key_) {
      if (c == '/') c = '-';
    }
  }
  std::string K(const std::string& s) const { return key_ + s; }
  int port() const { return server_->port(); }

  // Waits (up to 20 s) until `info` (SEM.INFO or LOCK.INFO of a key) reports `n` waiters.
  bool WaitForWaiters(const std::vector<std::string>& info, int64_t n) {
    Client c(port());
    const auto until = Clock::now() + seconds(20);
    while (Clock::now() < until) {
      Reply r = c.Run(info);
      if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
          if (Str(r->element[i]) == "waiters" && r->element[i + 1]->integer == n) return true;
        }
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::string key_;
};

TEST_P(SemMultiServerTest, SemaphoreRepliesAndErrors) {
  Client c(port());
  Reply p = c.Run({"SEM.ACQUIRE", K("s"), "2", "30000", "OWNER", "w1"});
  ASSERT_TRUE(p);
  ASSERT_EQ(p->type, REDIS_REPLY_ARRAY) << Str(p.get());
  ASSERT_EQ(p->elements, 4u);
  EXPECT_EQ(p->element[0]->len, 32u);
  EXPECT_EQ(p->element[1]->integer, 0);  // slot
  EXPECT_GT(p->element[2]->integer, 0);  // fence
  EXPECT_EQ(p->element[3]->integer, 30000);
  const std::string permit = Str(p->element[0]);

  Reply info = c.Run({"SEM.INFO", K("s")});
  ASSERT_TRUE(info);
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY) << Str(info.get());
  ASSERT_EQ(info->elements, 8u);
  EXPECT_EQ(Str(info->element[0]), "limit");
  EXPECT_EQ(info->element[1]->integer, 2);
  EXPECT_EQ(Str(info->element[2]), "holders");
  EXPECT_EQ(info->element[3]->integer, 1);
  EXPECT_EQ(Str(info->element[4]), "waiters");
  EXPECT_EQ(info->element[5]->integer, 0);
  EXPECT_EQ(Str(info->element[6]), "fence");
  EXPECT_EQ(info->element[7]->integer, p->element[2]->integer);

  Reply mismatch = c.Run({"SEM.ACQUIRE", K("s"), "3", "30000"});
  ASSERT_TRUE(mismatch);
  ASSERT_EQ(mismatch->type, REDIS_REPLY_ERROR);
  EXPECT_NE(Str(mismatch.get()).find("limit 3"), std::string::npos) << Str(mismatch.get());
  EXPECT_NE(Str(mismatch.get()).find("limit 2"), std::string::npos) << Str(mismatch.get());

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"SEM.ACQUIRE", K("s"), "0", "30000"}, "ERR limit must be an integer in [1, 1024]"},
      {{"SEM.ACQUIRE", K("s"), "1025", "30000"}, "ERR limit must be an integer in [1, 1024]"},
      {{"SEM.ACQUIRE", K("s"), "2", "0"}, "ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"SEM.ACQUIRE", K("s"), "2", "100", "WAIT"}, "ERR WAIT needs a value"},
      {{"SEM.ACQUIRE", K("s"), "2", "100", "BOGUS", "1"}, "ERR unknown option 'BOGUS'"},
      {{"SEM.EXTEND", K("s"), permit, "-5"}, "ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"SEM.ACQUIRE", K("s"), "2"}, "ERR wrong number of arguments"},
  };
  for (const auto& [args, want] : bad) {
    Reply r = c.Run(args);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << args[0] << " " << args.back();
    EXPECT_EQ(Str(r.get()).rfind(want, 0), 0u) << Str(r.get());
  }
  // Nothing changed: still one holder.
  Reply same = c.Run({"SEM.INFO", K("s")});
  ASSERT_TRUE(same && same->elements == 8u);
  EXPECT_EQ(same->element[3]->integer, 1);

  Reply ext = c.Run({"SEM.EXTEND", K("s"), permit, "60000"});
  ASSERT_TRUE(ext);
  EXPECT_EQ(ext->integer, 60000);
  EXPECT_EQ(c.Run({"SEM.EXTEND", K("s"), "nope", "60000"})->integer, 0);
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("s"), permit})->integer, 1);
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("s"), permit})->integer, 0);
  Reply gone = c.Run({"SEM.INFO", K("s")});
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->type, REDIS_REPLY_NIL);
}

TEST_P(SemMultiServerTest, MultiKeyRepliesAndErrors) {
  Client c(port());
  Reply g = c.Run({"LOCK.MACQUIRE", "2", K("a"), K("b"), "30000", "OWNER", "batch"});
  ASSERT_TRUE(g);
  ASSERT_EQ(g->type, REDIS_REPLY_ARRAY) << Str(g.get());
  ASSERT_EQ(g->elements, 3u);
  const std::string id = Str(g->element[0]);
  const long long fence = g->element[1]->integer;
  EXPECT_EQ(g->element[2]->integer, 30000);
  for (const char* k : {"a", "b"}) {
    Reply info = c.Run({"LOCK.INFO", K(k)});
    // fence, ttl_ms, owner, waiters, then the times and lock_id_hash (lockid_server_test.cc).
    ASSERT_TRUE(info && info->elements >= 8u) << k;
    EXPECT_EQ(info->element[1]->integer, fence) << k;
    EXPECT_EQ(Str(info->element[5]), "batch") << k;
  }
  Reply taken = c.Run({"LOCK.MACQUIRE", "2", K("b"), K("c"), "30000"});
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->type, REDIS_REPLY_NIL);
  EXPECT_EQ(c.Run({"LOCK.INFO", K("c")})->type, REDIS_REPLY_NIL) << "all or nothing";

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"LOCK.MACQUIRE", "0", K("a"), "100"}, "ERR numkeys must be an integer in [1, 64]"},
      {{"LOCK.MACQUIRE", "65", K("a"), "100"}, "ERR numkeys must be an integer in [1, 64]"},
      {{"LOCK.MACQUIRE", "3", K("x"), K("y"), "100"}, "ERR wrong number of arguments"},
      {{"LOCK.MACQUIRE", "2", K("x"), K("x"), "100"}, "ERR key \""},
      {{"LOCK.MACQUIRE", "2", K("x"), K("y"), "0"}, "ERR ttl_ms must be an integer"},
      {{"LOCK.MACQUIRE", "2", K("x"), K("y"), "100", "WAIT", "-1"}, "ERR WAIT must be"},
      {{"LOCK.MEXTEND", "2", K("a"), K("b"), id}, "ERR wrong number of arguments"},
      {{"LOCK.MRELEASE", "2", K("a"), K("b"), id, "extra"}, "ERR wrong number of arguments"},
  };
  for (const auto& [args, want] : bad) {
    Reply r = c.Run(args);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << args[0] << " " << args[1];
    EXPECT_EQ(Str(r.get()).rfind(want, 0), 0u) << Str(r.get());
  }
  EXPECT_EQ(c.Run({"LOCK.INFO", K("x")})->type, REDIS_REPLY_NIL);

  EXPECT_EQ(c.Run({"LOCK.MEXTEND", "2", K("a"), K("b"), id, "60000"})->integer, 60000);
  EXPECT_EQ(c.Run({"LOCK.MEXTEND", "2", K("a"), K("c"), id, "60000"})->integer, 0);
  EXPECT_EQ(c.Run({"LOCK.RELEASE", K("a"), id})->integer, 1);
  EXPECT_EQ(c.Run({"LOCK.MRELEASE", "2", K("a"), K("b"), id})->integer, 1);
}

TEST_P(SemMultiServerTest, SemaphoreWaitersAreServedInArrivalOrderAsSlotsFree) {
  Client c(port());
  Reply held = c.Run({"SEM.ACQUIRE", K("q"), "1", "30000"});
  ASSERT_TRUE(held && held->type == REDIS_REPLY_ARRAY);
  Async first(port(), {"SEM.ACQUIRE", K("q"), "1", "30000", "WAIT", "20000"});
  ASSERT_TRUE(WaitForWaiters({"SEM.INFO", K("q")}, 1));
  Async second(port(), {"SEM.ACQUIRE", K("q"), "1", "30000", "WAIT", "20000"});
  ASSERT_TRUE(WaitForWaiters({"SEM.INFO", K("q")}, 2));
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("q"), Str(held->element[0])})->integer, 1);
  Reply& r1 = first.reply();
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->type, REDIS_REPLY_ARRAY) << Str(r1.get());
  EXPECT_GT(r1->element[2]->integer, held->element[2]->integer);
  EXPECT_FALSE(second.done());
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("q"), Str(r1->element[0])})->integer, 1);
  Reply& r2 = second.reply();
  ASSERT_TRUE(r2);
  ASSERT_EQ(r2->type, REDIS_REPLY_ARRAY) << Str(r2.get());
  EXPECT_GT(r2->element[2]->integer, r1->element[2]->integer);
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("q"), Str(r2->element[0])})->integer, 1);
}

TEST_P(SemMultiServerTest, MultiKeyWaiterIsNotStarvedBySingleKeyAcquirers) {
  Client c(port());
  Reply a = c.Run({"LOCK.ACQUIRE", K("a"), "30000"});
  ASSERT_TRUE(a && a->type == REDIS_REPLY_ARRAY);
  Async multi(port(), {"LOCK.MACQUIRE", "2", K("a"), K("b"), "30000", "WAIT", "20000"});
  ASSERT_TRUE(WaitForWaiters({"LOCK.INFO", K("a")}, 1));
  // b is free, but the group waiter is queued on it: a newcomer without WAIT is refused, one
  // with WAIT queues behind it; meanwhile nobody holds b.
  Reply nowait = c.Run({"LOCK.ACQUIRE", K("b"), "30000"});
  ASSERT_TRUE(nowait);
  EXPECT_EQ(nowait->type, REDIS_REPLY_NIL);
  Async single(port(), {"LOCK.ACQUIRE", K("b"), "30000", "WAIT", "20000"});
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(c.Run({"LOCK.INFO", K("b")})->type, REDIS_REPLY_NIL) << "b held while waiting";
  EXPECT_EQ(c.Run({"LOCK.RELEASE", K("a"), Str(a->element[0])})->integer, 1);
  Reply& m = multi.reply();
  ASSERT_TRUE(m);
  ASSERT_EQ(m->type, REDIS_REPLY_ARRAY) << Str(m.get());
  EXPECT_FALSE(single.done());
  EXPECT_EQ(c.Run({"LOCK.MRELEASE", "2", K("a"), K("b"), Str(m->element[0])})->integer, 2);
  Reply& s = single.reply();
  ASSERT_TRUE(s);
  ASSERT_EQ(s->type, REDIS_REPLY_ARRAY) << Str(s.get());
  EXPECT_GT(s->element[1]->integer, m->element[1]->integer);
}

TEST_P(SemMultiServerTest, AWaiterWhoseClientLeftNeverHoldsAPermit) {
  Client c(port());
  Reply held = c.Run({"SEM.ACQUIRE", K("w"), "1", "30000"});
  ASSERT_TRUE(held && held->type == REDIS_REPLY_ARRAY);
  {
    RawConn gone(port());
    ASSERT_TRUE(gone.ok());
    const std::string key = K("w");
    ASSERT_TRUE(gone.Send("*6\r\n$11\r\nSEM.ACQUIRE\r\n$" + std::to_string(key.size()) + "\r\n" +
                          key + "\r\n$1\r\n1\r\n$5\r\n30000\r\n$4\r\nWAIT\r\n$5\r\n20000\r\n"));
    ASSERT_TRUE(WaitForWaiters({"SEM.INFO", K("w")}, 1));
  }  // closed while waiting
  ASSERT_TRUE(WaitForWaiters({"SEM.INFO", K("w")}, 0));
  EXPECT_EQ(c.Run({"SEM.RELEASE", K("w"), Str(held->element[0])})->integer, 1);
  std::this_thread::sleep_for(milliseconds(300));
  Reply info = c.Run({"SEM.INFO", K("w")});
  ASSERT_TRUE(info);
  EXPECT_EQ(info->type, REDIS_REPLY_NIL) << "the departed waiter holds a permit";
}

INSTANTIATE_TEST_SUITE_P(Backends, SemMultiServerTest, ::testing::ValuesIn(Kinds()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tollgate::testing
