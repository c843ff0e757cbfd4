// LOCK.ACQUIRE ... WAIT on a shared backend, end to end: real `tollgate serve --backend` processes
// on a throwaway Redis, PostgreSQL and etcd. A waiter is granted once the holder releases (also
// through another server) or its lease expires, with a higher fence; it gets the null reply when
// its wait runs out; two waiters on one server are served in arrival order; a waiter whose client
// went away never ends up holding the lock; SIGTERM with waiters pending answers them and exits
// promptly. Timing checks are generous upper bounds only (the test box is small and noisy):
// ordering is established through LOCK.INFO's waiters count, never through sleeps.
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
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

class SharedWaitTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = Backends::Url(GetParam());
    ASSERT_FALSE(url_.empty()) << "could not start a " << GetParam() << " server";
    key_ = "wait-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : key_) {
      if (c == '/') c = '-';
    }
    key_ += "-" + std::to_string(Clock::now().time_since_epoch().count());
  }

  std::unique_ptr<ServerProcess> Serve(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--backend", url_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto s = std::make_unique<ServerProcess>(dir_.path() + "/s" + std::to_string(servers_++),
                                             std::move(args));
    EXPECT_TRUE(s->ok()) << "tollgate did not start on " << url_;
    return s;
  }

  // Waits (up to 20 s) until the server on `port` reports `n` waiters for key_.
  static bool WaitForWaiters(int port, const std::string& key, int64_t n) {
    Client c(port);
    const auto until = Clock::now() + seconds(20);
    while (Clock::now() < until) {
      Reply r = c.Run({"LOCK.INFO", key});
      // waiters is element 7; the times and lock_id_hash follow it.
      if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 8 && r->element[7]->integer == n) {
        return true;
      }
      if (r && r->type == REDIS_REPLY_NIL && n == 0) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  static void ExpectGrant(const Reply& r, const char* who) {
    ASSERT_TRUE(r) << who << ": no reply";
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << who << ": " << r->type << " " << Str(r.get());
    ASSERT_EQ(r->elements, 3u);
  }

  TempDir dir_;
  int servers_ = 0;
  std::string url_;
  std::string key_;
};

TEST_P(SharedWaitTest, WaiterIsGrantedAfterTheHolderReleasesThroughAnotherServer) {
  auto s1 = Serve(), s2 = Serve();
  ASSERT_TRUE(s1->ok() && s2->ok());
  Client a(s1->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "30000"});
  ExpectGrant(held, "holder");
  const long long held_fence = held->element[1]->integer;

  Async b(s2->port(), {"LOCK.ACQUIRE", key_, "30000", "WAIT", "10000"});
  ASSERT_TRUE(WaitForWaiters(s2->port(), key_, 1));
  EXPECT_FALSE(b.done()) << "granted while the lock was held: " << Str(b.reply().get());
  const auto released = Clock::now();
  Reply rel = a.Run({"LOCK.RELEASE", key_, Str(held->element[0])});
  ASSERT_TRUE(rel);
  EXPECT_EQ(rel->integer, 1);
  ExpectGrant(b.reply(), "waiter");
  EXPECT_GT(b.reply()->element[1]->integer, held_fence);
  EXPECT_LT(b.at() - released, seconds(8));  // well within its 10 s wait

  Client c(s2->port());
  Reply rel2 = c.Run({"LOCK.RELEASE", key_, Str(b.reply()->element[0])});
  ASSERT_TRUE(rel2);
  EXPECT_EQ(rel2->integer, 1);
}

TEST_P(SharedWaitTest, WaiterIsGrantedWhenTheHoldersLeaseExpires) {
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "500"});  // etcd rounds this up to its minimum, ~2 s
  ExpectGrant(held, "holder");
  const auto start = Clock::now();
  Client b(s->port(), kWaiterTimeoutMs);
  Reply r = b.Run({"LOCK.ACQUIRE", key_, "30000", "WAIT", "20000"});
  ExpectGrant(r, "waiter");
  EXPECT_GT(r->element[1]->integer, held->element[1]->integer);
  EXPECT_LT(Clock::now() - start, milliseconds(held->element[2]->integer) + seconds(15));
}

TEST_P(SharedWaitTest, WaiterGetsNullWhenNobodyReleases) {
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "60000"});
  ExpectGrant(held, "holder");
  Client b(s->port(), kWaiterTimeoutMs);
  const auto start = Clock::now();
  Reply r = b.Run({"LOCK.ACQUIRE", key_, "30000", "WAIT", "400"});
  const auto took = Clock::now() - start;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, REDIS_REPLY_NIL) << Str(r.get());
  EXPECT_GE(took, milliseconds(350));
  EXPECT_LT(took, seconds(10));
  // The holder still holds it, and the connection serves further commands.
  Reply info = b.Run({"LOCK.INFO", key_});
  ASSERT_TRUE(info);
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(info->element[1]->integer, held->element[1]->integer);
  EXPECT_EQ(a.Run({"LOCK.RELEASE", key_, Str(held->element[0])})->integer, 1);
}

TEST_P(SharedWaitTest, TwoWaitersOnOneServerAreServedInArrivalOrder) {
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "30000"});
  ExpectGrant(held, "holder");
  Async first(s->port(), {"LOCK.ACQUIRE", key_, "30000", "WAIT", "30000"});
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 1));
  Async second(s->port(), {"LOCK.ACQUIRE", key_, "30000", "WAIT", "30000"});
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 2));

  ASSERT_EQ(a.Run({"LOCK.RELEASE", key_, Str(held->element[0])})->integer, 1);
  ExpectGrant(first.reply(), "first waiter");
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 1));
  EXPECT_FALSE(second.done()) << "both waiters were granted: " << Str(second.reply().get());
  const auto first_released = Clock::now();
  ASSERT_EQ(a.Run({"LOCK.RELEASE", key_, Str(first.reply()->element[0])})->integer, 1);
  ExpectGrant(second.reply(), "second waiter");
  EXPECT_GE(second.at(), first_released);
  EXPECT_GT(second.reply()->element[1]->integer, first.reply()->element[1]->integer);
  EXPECT_GT(first.reply()->element[1]->integer, held->element[1]->integer);
  EXPECT_EQ(a.Run({"LOCK.RELEASE", key_, Str(second.reply()->element[0])})->integer, 1);
}

// The same with several I/O threads, whose waiters sit in different wait queues: one arrival order
// per key across the server (the connections spread over the threads by SO_REUSEPORT).
TEST_P(SharedWaitTest, WaitersOnSeveralIoThreadsAreServedInArrivalOrder) {
  auto s = Serve({"--io-threads", "4"});
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "30000"});
  ExpectGrant(held, "holder");
  constexpr int kWaiters = 4;
  std::vector<std::unique_ptr<Async>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::make_unique<Async>(
        s->port(), std::vector<std::string>{"LOCK.ACQUIRE", key_, "30000", "WAIT", "30000"}));
    ASSERT_TRUE(WaitForWaiters(s->port(), key_, i + 1)) << "waiter " << i << " not queued";
    std::this_thread::sleep_for(milliseconds(100));  // queued before the next one arrives
  }
  std::string lock_id = Str(held->element[0]);
  long long fence = held->element[1]->integer;
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_EQ(a.Run({"LOCK.RELEASE", key_, lock_id})->integer, 1) << i;
    ExpectGrant(waiters[i]->reply(), "waiter in arrival order");
    EXPECT_GT(waiters[i]->reply()->element[1]->integer, fence);
    for (int j = i + 1; j < kWaiters; ++j) EXPECT_FALSE(waiters[j]->done()) << j << " before " << i;
    lock_id = Str(waiters[i]->reply()->element[0]);
    fence = waiters[i]->reply()->element[1]->integer;
  }
  ASSERT_EQ(a.Run({"LOCK.RELEASE", key_, lock_id})->integer, 1);
}

// Sends LOCK.ACQUIRE key_ 60000 WAIT 60000 on a raw connection (closed by its destructor).
std::unique_ptr<RawConn> RawWaiter(int port, const std::string& key) {
  auto c = std::make_unique<RawConn>(port);
  EXPECT_TRUE(c->ok());
  EXPECT_TRUE(c->Send("*5\r\n$12\r\nLOCK.ACQUIRE\r\n$" + std::to_string(key.size()) + "\r\n" + key +
                      "\r\n$5\r\n60000\r\n$4\r\nWAIT\r\n$5\r\n60000\r\n"));
  return c;
}

TEST_P(SharedWaitTest, WaiterWhoseConnectionClosedNeverHoldsTheLock) {
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "30000"});
  ExpectGrant(held, "holder");
  // A waiter that leaves while the lock is still held is dropped from the queue.
  auto gone = RawWaiter(s->port(), key_);
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 1));
  gone.reset();
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 0));
  // One that leaves just before the release races with it: either way the key must end up free,
  // not held for the departed client's 60 s ttl.
  gone = RawWaiter(s->port(), key_);
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 1));
  gone.reset();
  ASSERT_EQ(a.Run({"LOCK.RELEASE", key_, Str(held->element[0])})->integer, 1);
  Client c(s->port());
  Reply got;
  const auto until = Clock::now() + seconds(15);
  while (Clock::now() < until) {
    got = c.Run({"LOCK.ACQUIRE", key_, "30000"});
    ASSERT_TRUE(got);
    ASSERT_NE(got->type, REDIS_REPLY_ERROR) << Str(got.get());
    if (got->type == REDIS_REPLY_ARRAY) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ExpectGrant(got, "later client");
  EXPECT_EQ(c.Run({"LOCK.RELEASE", key_, Str(got->element[0])})->integer, 1);
}

TEST_P(SharedWaitTest, SigtermWithWaitersPendingAnswersThemAndExitsPromptly) {
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  Reply held = a.Run({"LOCK.ACQUIRE", key_, "60000"});
  ExpectGrant(held, "holder");
  Client h2(s->port());
  ExpectGrant(h2.Run({"LOCK.ACQUIRE", key_ + "-other", "60000"}), "second holder");
  Async w1(s->port(), {"LOCK.ACQUIRE", key_, "30000", "WAIT", "60000"});
  Async w2(s->port(), {"LOCK.ACQUIRE", key_ + "-other", "30000", "WAIT", "60000"});
  ASSERT_TRUE(WaitForWaiters(s->port(), key_, 1));
  ASSERT_TRUE(WaitForWaiters(s->port(), key_ + "-other", 1));
  const auto start = Clock::now();
  EXPECT_EQ(s->Terminate(), 0);
  EXPECT_LT(Clock::now() - start, seconds(10));
  // Each waiter was answered "not acquired" (or, at worst, saw its connection close): never left
  // hanging, never granted.
  for (Async* w : {&w1, &w2}) {
    Reply& r = w->reply();
    if (r) {
      EXPECT_EQ(r->type, REDIS_REPLY_NIL) << Str(r.get());
    }
    EXPECT_LT(w->at() - start, seconds(10));
  }
}

// More keys waiting at once than the old one-thread-per-key design allowed (32): each waiter is
// granted once its key is released, none starves.
TEST_P(SharedWaitTest, ManyKeysWaitingAtOnceAreAllServed) {
  constexpr int kKeys = 48;
  auto s = Serve();
  ASSERT_TRUE(s->ok());
  Client a(s->port());
  std::vector<Reply> held;
  for (int i = 0; i < kKeys; ++i) {
    held.push_back(a.Run({"LOCK.ACQUIRE", key_ + "-" + std::to_string(i), "60000"}));
    ExpectGrant(held.back(), "holder");
  }
  std::vector<std::unique_ptr<Async>> waiters;
  for (int i = 0; i < kKeys; ++i) {
    waiters.push_back(std::make_unique<Async>(
        s->port(), std::vector<std::string>{"LOCK.ACQUIRE", key_ + "-" + std::to_string(i), "30000",
                                            "WAIT", "50000"}));
  }
  // Every key has its waiter queued (one pass over all keys per check, one deadline for all: a
  // sanitizer build is slow).
  Client info(s->port());
  int queued = 0;
  for (const auto until = Clock::now() + seconds(40); Clock::now() < until && queued < kKeys;) {
    queued = 0;
    for (int i = 0; i < kKeys; ++i) {
      Reply r = info.Run({"LOCK.INFO", key_ + "-" + std::to_string(i)});
      if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 8 && r->element[7]->integer == 1) {
        ++queued;
      }
    }
    if (queued < kKeys) std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(queued, kKeys);
  const auto released = Clock::now();
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(
        a.Run({"LOCK.RELEASE", key_ + "-" + std::to_string(i), Str(held[i]->element[0])})->integer,
        1);
  }
  for (int i = 0; i < kKeys; ++i) {
    ExpectGrant(waiters[i]->reply(), "waiter");
    EXPECT_GT(waiters[i]->reply()->element[1]->integer, held[i]->element[1]->integer);
    EXPECT_LT(waiters[i]->at() - released, seconds(15)) << "key " << i;
  }
}

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
// The backend goes away while a client waits: at its deadline the waiter gets -UNAVAILABLE (not the
// null "not acquired", so clients can tell an outage from contention), the server keeps running,
// and once the backend is back waiting works again.
TEST(SharedWaitOutageTest, BackendOutageWhileWaitingEndsInUnavailableAndWaitingRecovers) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", redis.url()});
  ASSERT_TRUE(s.ok());
  Client a(s.port());
  Reply held = a.Run({"LOCK.ACQUIRE", "k", "60000"});
  ASSERT_TRUE(held && held->type == REDIS_REPLY_ARRAY);
  {
    Async b(s.port(), {"LOCK.ACQUIRE", "k", "30000", "WAIT", "3000"});
    const auto until = Clock::now() + seconds(20);
    while (Clock::now() < until) {
      Reply info = a.Run({"LOCK.INFO", "k"});
      if (info && info->type == REDIS_REPLY_ARRAY && info->element[7]->integer == 1) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    redis.Stop();
    // The backend stayed down until the deadline: an error naming the outage, not "not acquired".
    Reply& r = b.reply();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << Str(r.get());
    EXPECT_EQ(std::string(r->str).rfind("UNAVAILABLE", 0), 0u) << r->str;
  }
  ASSERT_TRUE(redis.Restart());  // persistent: A still holds k
  Async c(s.port(), {"LOCK.ACQUIRE", "k", "30000", "WAIT", "20000"});
  Reply rel;
  const auto until = Clock::now() + seconds(20);
  while (Clock::now() < until) {  // A's own connection to the server's backend reconnects
    rel = a.Run({"LOCK.RELEASE", "k", Str(held->element[0])});
    if (rel && rel->type == REDIS_REPLY_INTEGER) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(rel && rel->type == REDIS_REPLY_INTEGER) << Str(rel.get());
  EXPECT_EQ(rel->integer, 1);
  Reply& got = c.reply();
  ASSERT_TRUE(got);
  ASSERT_EQ(got->type, REDIS_REPLY_ARRAY) << Str(got.get());
  EXPECT_GT(got->element[1]->integer, held->element[1]->integer);
  EXPECT_EQ(s.Terminate(), 0);
}

// Issue 10: the server's connection to the backend is killed while a client's pipelined requests
// are in flight on it. Each request is answered -UNAVAILABLE, none is sent again behind the
// client's back (so none is applied twice: Redis ran none of them), and the next request
// reconnects.
TEST(SharedOutageTest, BackendConnectionDroppedWithRequestsInFlight) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", redis.url()});
  ASSERT_TRUE(s.ok());
  Client c(s.port(), kWaiterTimeoutMs);
  Reply first = c.Run({"THROTTLE", "k", "1000", "1"});
  ASSERT_TRUE(first && first->type == REDIS_REPLY_ARRAY) << Str(first.get());
  EXPECT_EQ(first->element[1]->integer, 999);
  Client admin(redis.port());
  Reply paused = admin.Run({"CLIENT", "PAUSE", "5000", "WRITE"});  // scripts wait, unexecuted
  ASSERT_TRUE(paused && paused->type == REDIS_REPLY_STATUS) << Str(paused.get());
  constexpr int kInFlight = 50;
  for (int i = 0; i < kInFlight; ++i) c.Append({"THROTTLE", "k", "1000", "1"});
  ASSERT_EQ(redisBufferWrite(c.raw(), nullptr), REDIS_OK);
  int done = 0;
  while (redisBufferWrite(c.raw(), &done) == REDIS_OK && !done) {
  }
  std::this_thread::sleep_for(milliseconds(300));  // the server wrote them to Redis
  Reply killed = admin.Run({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  ASSERT_TRUE(killed && killed->type == REDIS_REPLY_INTEGER) << Str(killed.get());
  EXPECT_GE(killed->integer, 1);
  for (int i = 0; i < kInFlight; ++i) {
    Reply r = c.Next();
    ASSERT_TRUE(r) << "reply " << i;
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << i << ": " << Str(r.get());
    EXPECT_EQ(std::string(r->str).rfind("UNAVAILABLE", 0), 0u) << r->str;
  }
  Reply unpaused = admin.Run({"CLIENT", "UNPAUSE"});
  ASSERT_TRUE(unpaused);
  // None of the 50 ran (and none was retried): the next decision leaves 998, not 948.
  Reply next;
  const auto until = Clock::now() + seconds(10);
  while (Clock::now() < until) {
    next = c.Run({"THROTTLE", "k", "1000", "1"});
    if (next && next->type == REDIS_REPLY_ARRAY) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_TRUE(next && next->type == REDIS_REPLY_ARRAY) << Str(next.get());
  EXPECT_EQ(next->element[1]->integer, 998);
  EXPECT_EQ(s.Terminate(), 0);
}

// A reply answered later by the backend keeps the encoding of its request's time: a HELLO 3
// pipelined behind it switches only the replies after it.
TEST(SharedOutageTest, DeferredReplyKeepsTheProtocolOfItsRequest) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", redis.url()});
  ASSERT_TRUE(s.ok());
  RawConn c(s.port());
  ASSERT_TRUE(c.Send("FENCE.GET nothing-here\r\nHELLO 3\r\nFENCE.GET nothing-here\r\n"));
  const std::string all = c.Read(1 << 16, 1500);
  ASSERT_GE(all.size(), 8u) << all;
  EXPECT_EQ(all.substr(0, 5), "*-1\r\n") << all;          // RESP2's null array, as when it was sent
  EXPECT_EQ(all.substr(all.size() - 3), "_\r\n") << all;  // after HELLO 3: RESP3's null
  EXPECT_EQ(s.Terminate(), 0);
}

// Issue 10: --lock-delay-ms is honoured through the server on Redis: a key whose lease expired
// unreleased is not granted again, to a plain acquire or a waiter, until the delay has passed.
TEST(SharedLockDelayTest, RedisBackendHonoursLockDelay) {
  RedisServer redis;
  ASSERT_TRUE(redis.Start());
  TempDir dir;
  ServerProcess s(dir.path(), {"--backend", redis.url(), "--lock-delay-ms", "800"});
  ASSERT_TRUE(s.ok());
  Client a(s.port());
  Reply held = a.Run({"LOCK.ACQUIRE", "k", "150"});
  ASSERT_TRUE(held && held->type == REDIS_REPLY_ARRAY) << Str(held.get());
  const auto granted = Clock::now();
  std::this_thread::sleep_for(milliseconds(350));
  Reply during = a.Run({"LOCK.ACQUIRE", "k", "30000"});
  ASSERT_TRUE(during);
  EXPECT_EQ(during->type, REDIS_REPLY_NIL)
      << "granted during the lock-delay: " << Str(during.get());
  Client b(s.port(), kWaiterTimeoutMs);
  Reply waited = b.Run({"LOCK.ACQUIRE", "k", "30000", "WAIT", "5000"});
  ASSERT_TRUE(waited && waited->type == REDIS_REPLY_ARRAY) << Str(waited.get());
  EXPECT_GE(Clock::now() - granted, milliseconds(150 + 800));
  EXPECT_GT(waited->element[1]->integer, held->element[1]->integer);
  EXPECT_EQ(s.Terminate(), 0);
}
#endif

std::vector<std::string> Kinds() { return ServerKinds(/*with_embedded=*/false); }

INSTANTIATE_TEST_SUITE_P(Backends, SharedWaitTest, ::testing::ValuesIn(Kinds()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SharedWaitTest);

}  // namespace
}  // namespace tollgate::testing
