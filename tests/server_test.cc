// End-to-end tests of `tollgate serve` over real sockets: the command contract, bad input, AUTH,
// RESP3, pipelining, waiting, lock-delay, restart, and protocol abuse.
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;

std::string Str(const Reply& r) {
  if (!r) return "<io error>";
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(r->str, r->len);
    case REDIS_REPLY_ERROR:
      return "-" + std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return ":" + std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "<nil>";
    case REDIS_REPLY_ARRAY: {
      std::string s = "[";
      for (size_t i = 0; i < r->elements; ++i) {
        Reply child(nullptr);
        redisReply* e = r->element[i];
        if (i) s += ", ";
        if (e->type == REDIS_REPLY_INTEGER) {
          s += ":" + std::to_string(e->integer);
        } else if (e->type == REDIS_REPLY_NIL) {
          s += "<nil>";
        } else {
          s += std::string(e->str, e->len);
        }
      }
      return s + "]";
    }
  }
  return "<?>";
}

struct Grant {
  std::string lock_id;
  long long fence = 0;
  long long ttl_ms = 0;
};

// Parses a LOCK.ACQUIRE grant; fails the test if the reply has another shape.
std::optional<Grant> AsGrant(const Reply& r) {
  EXPECT_TRUE(r) << "no reply";
  if (!r || r->type == REDIS_REPLY_NIL) return std::nullopt;
  EXPECT_EQ(r->type, REDIS_REPLY_ARRAY) << Str(r);
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return std::nullopt;
  EXPECT_EQ(r->element[0]->type, REDIS_REPLY_STRING);
  EXPECT_EQ(r->element[1]->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(r->element[2]->type, REDIS_REPLY_INTEGER);
  return Grant{std::string(r->element[0]->str, r->element[0]->len), r->element[1]->integer,
               r->element[2]->integer};
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    // Two I/O threads even on small machines, so cross-thread paths (a release on one thread
    // granting a waiter on another, shared group commits) are always exercised.
    extra.insert(extra.end(), {"--io-threads", "2"});
    server_ = std::make_unique<ServerProcess>(dir_.path(), std::move(extra));
    ASSERT_TRUE(server_->ok()) << "server did not start";
  }
  void SetUp() override {
    if (!::testing::Test::HasFatalFailure() && !custom_start_) Start();
  }
  int port() const { return server_->port(); }
  long long LastFence() {
    Client c(port());
    Reply r = c.Run({"INFO", "leases"});
    std::string s = Str(r);
    auto pos = s.find("last_fence:");
    return pos == std::string::npos ? -1 : std::atoll(s.c_str() + pos + 11);
  }

  // Acquires and releases a scratch key until the server has issued at least `n` fences, so tests
  // may write registers with fences up to n (FENCE.SET refuses fences never issued).
  void IssueFences(long long n) {
    Client c(port());
    while (LastFence() < n) {
      auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "fence-source", "30000"}));
      ASSERT_TRUE(g);
      ASSERT_EQ(Str(c.Run({"LOCK.RELEASE", "fence-source", g->lock_id})), ":1");
    }
  }

  bool custom_start_ = false;
  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

class CustomServerTest : public ServerTest {
 protected:
  CustomServerTest() { custom_start_ = true; }
};

TEST_F(ServerTest, PingEchoAndUnknownCommand) {
  Client c(port());
  EXPECT_EQ(Str(c.Run({"PING"})), "PONG");
  EXPECT_EQ(Str(c.Run({"PING", "hi"})), "hi");
  EXPECT_EQ(Str(c.Run({"ECHO", "x"})), "x");
  EXPECT_EQ(Str(c.Run({"NOPE", "a", "b"})),
            "-ERR unknown command 'NOPE', with args beginning with: 'a' 'b'");
}

TEST_F(ServerTest, AcquireReleaseExtendInfoLifecycle) {
  Client c(port());
  auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "k", "30000", "OWNER", "worker-1"}));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->lock_id.size(), 32u);
  EXPECT_GT(g->fence, 0);
  EXPECT_EQ(g->ttl_ms, 30000);
  // Held: a second acquire gets nil.
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "k", "30000"})), "<nil>");
  // INFO: flat field/value array in RESP2, never the lock_id (the new fields after the old ones:
  // acquired_at_ms, expires_at_ms, lock_id_hash; see lockid_server_test.cc).
  Reply info = c.Run({"LOCK.INFO", "k"});
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(info->elements, 14u);
  EXPECT_EQ(std::string(info->element[0]->str), "fence");
  EXPECT_EQ(info->element[1]->integer, g->fence);
  EXPECT_EQ(std::string(info->element[2]->str), "ttl_ms");
  EXPECT_GT(info->element[3]->integer, 29000);
  EXPECT_LE(info->element[3]->integer, 30000);
  EXPECT_EQ(std::string(info->element[4]->str), "owner");
  EXPECT_EQ(std::string(info->element[5]->str), "worker-1");
  EXPECT_EQ(std::string(info->element[6]->str), "waiters");
  EXPECT_EQ(info->element[7]->integer, 0);
  EXPECT_EQ(std::string(info->element[8]->str), "acquired_at_ms");
  EXPECT_EQ(std::string(info->element[10]->str), "expires_at_ms");
  EXPECT_EQ(std::string(info->element[12]->str), "lock_id_hash");
  EXPECT_EQ(info->element[13]->len, 24u);
  EXPECT_EQ(Str(info).find(g->lock_id), std::string::npos);
  // EXTEND by a stranger: 0; by the holder: the new ttl.
  EXPECT_EQ(Str(c.Run({"LOCK.EXTEND", "k", "not-the-id", "5000"})), ":0");
  EXPECT_EQ(Str(c.Run({"LOCK.EXTEND", "k", g->lock_id, "60000"})), ":60000");
  // RELEASE by a stranger: 0; by the holder: 1; again: 0.
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "k", "not-the-id"})), ":0");
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "k", g->lock_id})), ":1");
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "k", g->lock_id})), ":0");
  EXPECT_EQ(Str(c.Run({"LOCK.INFO", "k"})), "<nil>");
  EXPECT_EQ(Str(c.Run({"LOCK.EXTEND", "k", g->lock_id, "5000"})), ":0");  // no revival
  auto g2 = AsGrant(c.Run({"LOCK.ACQUIRE", "k", "30000"}));
  ASSERT_TRUE(g2);
  EXPECT_GT(g2->fence, g->fence);
  EXPECT_NE(g2->lock_id, g->lock_id);
  Reply info2 = c.Run({"LOCK.INFO", "k"});
  EXPECT_EQ(info2->element[5]->type, REDIS_REPLY_NIL);  // no owner label
}

TEST_F(ServerTest, ExpiryFreesKeyAndNewFenceIsHigher) {
  Client c(port());
  auto a = AsGrant(c.Run({"LOCK.ACQUIRE", "exp", "400"}));
  ASSERT_TRUE(a);
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "exp", "100"})), "<nil>");
  std::this_thread::sleep_for(milliseconds(450));
  auto b = AsGrant(c.Run({"LOCK.ACQUIRE", "exp", "100"}));
  ASSERT_TRUE(b);
  EXPECT_GT(b->fence, a->fence);
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "exp", a->lock_id})), ":0");
}

TEST_F(ServerTest, FencedRegisterRejectsStaleWrites) {
  IssueFences(9);
  Client c(port());
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "acct"})), "<nil>");
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "acct", "7", "charged"})), "OK");
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "acct", "7", "again"})), "OK");
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "acct", "6", "stale"})), "-STALE fence 6 is older than 7");
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "acct"})), "[again, :7]");
  std::string bin("v\0\r\nx", 5);
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "acct", "9", bin})), "OK");
  Reply r = c.Run({"FENCE.GET", "acct"});
  EXPECT_EQ(std::string(r->element[0]->str, r->element[0]->len), bin);
}

// Issue 9, item 6: a fence no lease carried is refused, so it cannot make every real holder's
// write STALE forever; the register and the fence counter are unchanged.
TEST_F(ServerTest, FenceNeverIssuedIsRefused) {
  Client c(port());
  auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "k", "30000"}));
  ASSERT_TRUE(g);
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "r", std::to_string(g->fence), "real"})), "OK");
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "r", "9223372036854775807", "poison"})),
            "-ERR fence 9223372036854775807 was never issued; the highest fence issued so far is " +
                std::to_string(g->fence) + " (use the fence of a lease you hold)");
  const std::string next = std::to_string(g->fence + 1);
  EXPECT_EQ(
      Str(c.Run({"FENCE.SET", "fresh", next, "x"})).rfind("-ERR fence " + next + " was never", 0),
      0u);
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "fresh"})), "<nil>");
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "r"})), "[real, :" + std::to_string(g->fence) + "]");
  EXPECT_EQ(LastFence(), g->fence);
  // The next real holder writes as usual.
  ASSERT_EQ(Str(c.Run({"LOCK.RELEASE", "k", g->lock_id})), ":1");
  auto g2 = AsGrant(c.Run({"LOCK.ACQUIRE", "k", "30000"}));
  ASSERT_TRUE(g2);
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "r", std::to_string(g2->fence), "next"})), "OK");
}

// The payment story: a paused worker's lease expires, another worker acquires; the first worker's
// late write is refused.
TEST_F(ServerTest, StaleWorkerCannotWriteAfterExpiry) {
  Client w1(port()), w2(port());
  auto g1 = AsGrant(w1.Run({"LOCK.ACQUIRE", "payment:42", "100"}));
  ASSERT_TRUE(g1);
  std::this_thread::sleep_for(milliseconds(150));  // w1 "pauses" past its TTL
  auto g2 = AsGrant(w2.Run({"LOCK.ACQUIRE", "payment:42", "30000"}));
  ASSERT_TRUE(g2);
  EXPECT_EQ(Str(w2.Run({"FENCE.SET", "charge:42", std::to_string(g2->fence), "by-w2"})), "OK");
  EXPECT_EQ(
      Str(w1.Run({"FENCE.SET", "charge:42", std::to_string(g1->fence), "by-w1"})),
      "-STALE fence " + std::to_string(g1->fence) + " is older than " + std::to_string(g2->fence));
  EXPECT_EQ(Str(w1.Run({"FENCE.GET", "charge:42"})), "[by-w2, :" + std::to_string(g2->fence) + "]");
}

TEST_F(ServerTest, EveryClassOfBadInputGetsAClearErrorAndChangesNothing) {
  Client c(port());
  const long long before = LastFence();
  const std::string k513(513, 'k');
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"LOCK.ACQUIRE", "k"}, "-ERR wrong number of arguments for 'lock.acquire' command"},
      {{"LOCK.RELEASE", "k"}, "-ERR wrong number of arguments for 'lock.release' command"},
      {{"LOCK.EXTEND", "k", "id"}, "-ERR wrong number of arguments for 'lock.extend' command"},
      {{"LOCK.INFO"}, "-ERR wrong number of arguments for 'lock.info' command"},
      {{"FENCE.SET", "r", "1"}, "-ERR wrong number of arguments for 'fence.set' command"},
      {{"FENCE.GET"}, "-ERR wrong number of arguments for 'fence.get' command"},
      {{"LOCK.ACQUIRE", "", "1000"}, "-ERR key must be 1 to 512 bytes long, got 0 bytes"},
      {{"LOCK.ACQUIRE", k513, "1000"}, "-ERR key must be 1 to 512 bytes long, got 513 bytes"},
      {{"LOCK.INFO", ""}, "-ERR key must be 1 to 512 bytes long, got 0 bytes"},
      {{"LOCK.RELEASE", k513, "x"}, "-ERR key must be 1 to 512 bytes long, got 513 bytes"},
      {{"LOCK.ACQUIRE", "k", "abc"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "0"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "-5"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "86400001"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "1.5"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.EXTEND", "k", "id", "0"}, "-ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "1000", "WAIT", "-1"},
       "-ERR WAIT must be an integer in [0, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "1000", "WAIT", "86400001"},
       "-ERR WAIT must be an integer in [0, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "1000", "WAIT"},
       "-ERR WAIT needs a value: an integer in [0, 86400000]"},
      {{"LOCK.ACQUIRE", "k", "1000", "OWNER"},
       "-ERR OWNER needs a value: a label of 1 to 512 bytes"},
      {{"LOCK.ACQUIRE", "k", "1000", "WAIT", "5", "WAIT", "6"},
       "-ERR option WAIT given more than once"},
      {{"LOCK.ACQUIRE", "k", "1000", "NX", "1"},
       "-ERR unknown option 'NX' for 'lock.acquire'; accepted: WAIT ms, OWNER label, WITHTIMES"},
      {{"FENCE.SET", "r", "0", "v"}, "-ERR fence must be an integer in [1, 9223372036854775807]"},
      {{"FENCE.SET", "r", "-3", "v"}, "-ERR fence must be an integer in [1, 9223372036854775807]"},
      {{"FENCE.SET", "r", "x", "v"}, "-ERR fence must be an integer in [1, 9223372036854775807]"},
      {{"FENCE.SET", "", "1", "v"}, "-ERR resource must be 1 to 512 bytes long, got 0 bytes"},
  };
  for (const auto& [args, want] : cases) {
    EXPECT_EQ(Str(c.Run(args)), want) << args[0] << " " << (args.size() > 1 ? args[1] : "");
  }
  // Nothing changed: no fence issued, key free, register unwritten.
  EXPECT_EQ(LastFence(), before);
  EXPECT_EQ(Str(c.Run({"LOCK.INFO", "k"})), "<nil>");
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "r"})), "<nil>");
  // Keys are binary-safe and 512 bytes is accepted.
  EXPECT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", std::string(512, 'k'), "1000"})));
  EXPECT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", std::string("a\0b", 3), "1000"})));
  EXPECT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", std::string("a\0c", 3), "1000"})));
  // Options are case-insensitive.
  EXPECT_TRUE(AsGrant(c.Run({"lock.acquire", "k2", "1000", "wait", "0", "owner", "me"})));
}

TEST_F(ServerTest, WaitersAreGrantedInFifoOrderWithoutPolling) {
  Client holder(port());
  auto h = AsGrant(holder.Run({"LOCK.ACQUIRE", "q", "30000"}));
  ASSERT_TRUE(h);
  constexpr int kWaiters = 4;
  std::vector<std::unique_ptr<Client>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::make_unique<Client>(port()));
    waiters.back()->Append(
        {"LOCK.ACQUIRE", "q", "30000", "WAIT", "20000", "OWNER", "w" + std::to_string(i)});
    redisBufferWrite(waiters.back()->raw(), nullptr);  // hiredis: flush without reading
    int done = 0;
    while (!done) redisBufferWrite(waiters.back()->raw(), &done);
    // Make the queue order deterministic: wait until this waiter is queued.
    for (int tries = 0; tries < 200; ++tries) {
      Reply info = holder.Run({"LOCK.INFO", "q"});
      if (info->type == REDIS_REPLY_ARRAY && info->element[7]->integer == i + 1) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  EXPECT_EQ(holder.Run({"LOCK.INFO", "q"})->element[7]->integer, kWaiters);
  long long last_fence = h->fence;
  std::string release_id = h->lock_id;
  for (int i = 0; i < kWaiters; ++i) {
    EXPECT_EQ(Str(holder.Run({"LOCK.RELEASE", "q", release_id})), ":1");
    auto g = AsGrant(waiters[i]->Next());
    ASSERT_TRUE(g) << "waiter " << i;
    EXPECT_GT(g->fence, last_fence);
    last_fence = g->fence;
    release_id = g->lock_id;
    Reply info = holder.Run({"LOCK.INFO", "q"});
    EXPECT_EQ(std::string(info->element[5]->str), "w" + std::to_string(i));
  }
}

TEST_F(ServerTest, WaiterIsGrantedWhenLeaseExpires) {
  Client a(port()), b(port());
  auto ga = AsGrant(a.Run({"LOCK.ACQUIRE", "e", "200"}));
  ASSERT_TRUE(ga);
  auto start = std::chrono::steady_clock::now();
  auto gb = AsGrant(b.Run({"LOCK.ACQUIRE", "e", "1000", "WAIT", "5000"}));
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(gb);
  EXPECT_GT(gb->fence, ga->fence);
  EXPECT_GE(waited, milliseconds(100));
  EXPECT_LT(waited, milliseconds(4000));
}

TEST_F(ServerTest, WaitRunsOutWithNil) {
  Client a(port()), b(port());
  ASSERT_TRUE(AsGrant(a.Run({"LOCK.ACQUIRE", "w", "30000"})));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Str(b.Run({"LOCK.ACQUIRE", "w", "1000", "WAIT", "150"})), "<nil>");
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(140));
  // The connection works normally afterwards, and pipelined commands after a WAIT keep order.
  b.Append({"LOCK.ACQUIRE", "w", "1000", "WAIT", "50"});
  b.Append({"PING"});
  EXPECT_EQ(Str(b.Next()), "<nil>");
  EXPECT_EQ(Str(b.Next()), "PONG");
}

TEST_F(ServerTest, DisconnectedWaiterDoesNotLeakTheLease) {
  Client a(port());
  auto ga = AsGrant(a.Run({"LOCK.ACQUIRE", "d", "30000"}));
  {
    RawConn gone(port());
    gone.Send("LOCK.ACQUIRE d 30000 WAIT 20000 OWNER gone\r\n");
    for (int i = 0; i < 200; ++i) {
      if (a.Run({"LOCK.INFO", "d"})->element[7]->integer == 1) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
    EXPECT_EQ(a.Run({"LOCK.INFO", "d"})->element[7]->integer, 1);
  }  // the waiter's connection closes
  for (int i = 0; i < 200; ++i) {
    if (a.Run({"LOCK.INFO", "d"})->element[7]->integer == 0) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(a.Run({"LOCK.INFO", "d"})->element[7]->integer, 0);
  EXPECT_EQ(Str(a.Run({"LOCK.RELEASE", "d", ga->lock_id})), ":1");
  EXPECT_TRUE(AsGrant(a.Run({"LOCK.ACQUIRE", "d", "1000"})));
}

TEST_F(ServerTest, PipelinedRepliesComeBackInOrder) {
  Client c(port());
  constexpr int kN = 2000;
  for (int i = 0; i < kN; ++i) {
    if (i % 2 == 0) {
      c.Append({"LOCK.ACQUIRE", "p" + std::to_string(i), "30000"});
    } else {
      c.Append({"ECHO", std::to_string(i)});
    }
  }
  long long last = 0;
  for (int i = 0; i < kN; ++i) {
    Reply r = c.Next();
    ASSERT_TRUE(r) << i;
    if (i % 2 == 0) {
      auto g = AsGrant(r);
      ASSERT_TRUE(g) << i;
      EXPECT_GT(g->fence, last);
      last = g->fence;
    } else {
      EXPECT_EQ(Str(r), std::to_string(i));
    }
  }
}

TEST_F(ServerTest, Resp3AfterHello3) {
  IssueFences(4);
  RawConn c(port());
  ASSERT_TRUE(c.ok());
  c.Send("HELLO 3\r\n");
  std::string hello = c.Read(1);
  std::this_thread::sleep_for(milliseconds(50));
  hello += c.Read(4096, 100);
  EXPECT_EQ(hello.substr(0, 4), "%8\r\n") << hello;
  EXPECT_NE(hello.find("$5\r\nproto\r\n:3\r\n"), std::string::npos) << hello;
  c.Send("LOCK.INFO nothing\r\n");
  EXPECT_EQ(c.Read(3), "_\r\n");
  c.Send("FENCE.GET nothing\r\n");
  EXPECT_EQ(c.Read(3), "_\r\n");
  c.Send("FENCE.SET r3 4 val\r\nFENCE.GET r3\r\n");
  const std::string want = "+OK\r\n*2\r\n$3\r\nval\r\n:4\r\n";
  EXPECT_EQ(c.Read(want.size()), want);
  c.Send("LOCK.ACQUIRE m 30000 OWNER o\r\n");
  std::string grant = c.Read(43);  // "*3", "$32", the id; then the two integers
  std::this_thread::sleep_for(milliseconds(50));
  grant += c.Read(4096, 100);
  EXPECT_EQ(grant.substr(0, 9), "*3\r\n$32\r\n") << grant;
  EXPECT_EQ(grant.substr(grant.size() - 8), ":30000\r\n") << grant;
  c.Send("LOCK.INFO m\r\n");
  std::string info = c.Read(4);
  std::this_thread::sleep_for(milliseconds(50));
  info += c.Read(4096, 100);
  EXPECT_EQ(info.substr(0, 4), "%7\r\n") << info;
  EXPECT_NE(info.find("$5\r\nowner\r\n$1\r\no\r\n$7\r\nwaiters\r\n:0\r\n"), std::string::npos);
  // Back to RESP2.
  c.Send("HELLO 2\r\n");
  std::string h2 = c.Read(4);
  std::this_thread::sleep_for(milliseconds(50));
  h2 += c.Read(4096, 100);
  EXPECT_EQ(h2.substr(0, 5), "*16\r\n");
  c.Send("LOCK.INFO nothing\r\n");
  EXPECT_EQ(c.Read(5), "*-1\r\n");
  c.Send("HELLO 4\r\n");
  EXPECT_EQ(c.Read(39), "-NOPROTO unsupported protocol version\r\n");
}

TEST_F(ServerTest, MalformedInputGetsAnErrorAndTheConnectionIsClosed) {
  {
    RawConn c(port());
    c.Send("*1\r\n$abc\r\n");
    EXPECT_EQ(c.Read(100, 1000), "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    RawConn c(port());
    c.Send("*99999999\r\n");
    EXPECT_EQ(c.Read(100, 1000), "-ERR Protocol error: invalid multibulk length\r\n");
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    RawConn c(port());
    c.Send("*1\r\n$999999999\r\n");  // a bulk far over the limit: refused before any allocation
    EXPECT_EQ(c.Read(100, 1000), "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    RawConn c(port());
    c.Send(std::string(70 * 1024, 'a'));  // an inline request with no end
    EXPECT_EQ(c.Read(100, 1000), "-ERR Protocol error: too big inline request\r\n");
    EXPECT_TRUE(c.WaitClosed());
  }
  // The server is fine afterwards.
  Client ok(port());
  EXPECT_EQ(Str(ok.Run({"PING"})), "PONG");
}

TEST_F(ServerTest, QuitClosesAfterReplying) {
  RawConn c(port());
  c.Send("PING\r\nQUIT\r\nPING\r\n");
  EXPECT_EQ(c.Read(12), "+PONG\r\n+OK\r\n");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ServerTest, ClientCommandInfoAndConfig) {
  Client c(port());
  EXPECT_EQ(Str(c.Run({"CLIENT", "SETNAME", "svc-a"})), "OK");
  EXPECT_EQ(Str(c.Run({"CLIENT", "GETNAME"})), "svc-a");
  EXPECT_EQ(c.Run({"CLIENT", "SETNAME", "has space"})->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(c.Run({"CLIENT", "ID"})->type, REDIS_REPLY_INTEGER);
  Reply count = c.Run({"COMMAND", "COUNT"});
  ASSERT_EQ(count->type, REDIS_REPLY_INTEGER);
  Reply all = c.Run({"COMMAND"});
  ASSERT_EQ(all->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(static_cast<long long>(all->elements), count->integer);
  Reply info = c.Run({"COMMAND", "INFO", "lock.acquire", "nope"});
  ASSERT_EQ(info->elements, 2u);
  EXPECT_EQ(std::string(info->element[0]->element[0]->str), "lock.acquire");
  EXPECT_EQ(info->element[0]->element[1]->integer, -3);
  EXPECT_EQ(info->element[1]->type, REDIS_REPLY_NIL);
  std::string inf = Str(c.Run({"INFO"}));
  EXPECT_NE(inf.find("redis_version:"), std::string::npos);
  EXPECT_NE(inf.find("connected_clients:"), std::string::npos);
  EXPECT_NE(inf.find("group_commits:"), std::string::npos);
  EXPECT_EQ(Str(c.Run({"CONFIG", "GET", "appendonly"})), "[appendonly, yes]");
  EXPECT_EQ(Str(c.Run({"SELECT", "0"})), "OK");
  EXPECT_EQ(c.Run({"SELECT", "1"})->type, REDIS_REPLY_ERROR);
}

TEST_F(CustomServerTest, RequirePass) {
  Start({"--requirepass", "s3cret"});
  Client c(port());
  EXPECT_EQ(Str(c.Run({"PING"})), "-NOAUTH Authentication required.");
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "k", "1000"})), "-NOAUTH Authentication required.");
  EXPECT_EQ(Str(c.Run({"NOPE"})), "-NOAUTH Authentication required.");
  EXPECT_EQ(Str(c.Run({"AUTH", "wrong"})),
            "-WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(Str(c.Run({"AUTH", "someone", "s3cret"})),
            "-WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(c.Run({"HELLO", "3"})->type, REDIS_REPLY_ERROR);  // HELLO without AUTH
  EXPECT_EQ(Str(c.Run({"PING"})), "-NOAUTH Authentication required.");
  EXPECT_EQ(Str(c.Run({"AUTH", "s3cret"})), "OK");
  EXPECT_EQ(Str(c.Run({"PING"})), "PONG");
  EXPECT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", "k", "1000"})));

  Client d(port());
  EXPECT_EQ(Str(d.Run({"AUTH", "default", "s3cret"})), "OK");
  EXPECT_EQ(Str(d.Run({"PING"})), "PONG");

  RawConn h(port());
  h.Send("HELLO 3 AUTH default s3cret\r\n");
  std::string hello = h.Read(4);
  EXPECT_EQ(hello.substr(0, 4), "%8\r\n");
  h.Read(4096, 100);
  h.Send("PING\r\n");
  EXPECT_EQ(h.Read(7), "+PONG\r\n");

  RawConn q(port());
  q.Send("QUIT\r\n");
  EXPECT_EQ(q.Read(5), "+OK\r\n");
  EXPECT_TRUE(q.WaitClosed());
}

TEST_F(ServerTest, AuthWithoutPasswordConfigured) {
  Client c(port());
  EXPECT_EQ(c.Run({"AUTH", "x"})->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(Str(c.Run({"PING"})), "PONG");
}

TEST_F(CustomServerTest, LockDelayAfterUnreleasedExpiry) {
  Start({"--lock-delay-ms", "1000"});
  Client c(port());
  ASSERT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", "ld", "100"})));
  std::this_thread::sleep_for(milliseconds(300));  // expired ~200 ms ago: still in lock-delay
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "ld", "100"})), "<nil>");
  EXPECT_EQ(Str(c.Run({"LOCK.INFO", "ld"})), "<nil>");  // nobody holds it meanwhile
  std::this_thread::sleep_for(milliseconds(1000));
  auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "ld", "1000"}));
  ASSERT_TRUE(g);
  // A released lease carries no delay.
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "ld", g->lock_id})), ":1");
  EXPECT_TRUE(AsGrant(c.Run({"LOCK.ACQUIRE", "ld", "1000"})));
}

TEST_F(ServerTest, GracefulRestartKeepsLeasesFencesAndRegisters) {
  Grant held;
  {
    Client c(port());
    for (int i = 0; i < 20; ++i) {
      auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "tmp" + std::to_string(i), "30000"}));
      ASSERT_TRUE(g);
      ASSERT_EQ(Str(c.Run({"LOCK.RELEASE", "tmp" + std::to_string(i), g->lock_id})), ":1");
    }
    auto g = AsGrant(c.Run({"LOCK.ACQUIRE", "keep", "60000", "OWNER", "me"}));
    ASSERT_TRUE(g);
    held = *g;
    EXPECT_EQ(Str(c.Run({"FENCE.SET", "res", std::to_string(held.fence), "v1"})), "OK");
  }
  EXPECT_EQ(server_->Terminate(), 0);
  Start();
  Client c(port());
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "keep", "1000"})), "<nil>");
  Reply info = c.Run({"LOCK.INFO", "keep"});
  EXPECT_EQ(info->element[1]->integer, held.fence);
  EXPECT_EQ(std::string(info->element[5]->str), "me");
  Reply ext = c.Run({"LOCK.EXTEND", "keep", held.lock_id, "5000"});
  EXPECT_EQ(Str(ext), ":5000");
  auto fresh = AsGrant(c.Run({"LOCK.ACQUIRE", "fresh", "1000"}));
  ASSERT_TRUE(fresh);
  EXPECT_GT(fresh->fence, held.fence);
  EXPECT_EQ(Str(c.Run({"FENCE.GET", "res"})), "[v1, :" + std::to_string(held.fence) + "]");
  EXPECT_EQ(Str(c.Run({"LOCK.RELEASE", "keep", held.lock_id})), ":1");
}

TEST_F(ServerTest, SigtermAnswersWhatWasAlreadySent) {
  Client c(port());
  for (int i = 0; i < 500; ++i) c.Append({"LOCK.ACQUIRE", "t" + std::to_string(i), "30000"});
  redisBufferWrite(c.raw(), nullptr);
  int done = 0;
  while (!done) redisBufferWrite(c.raw(), &done);
  std::this_thread::sleep_for(milliseconds(50));
  std::thread term([&] { EXPECT_EQ(server_->Terminate(), 0); });
  int answered = 0;
  for (int i = 0; i < 500; ++i) {
    Reply r = c.Next();
    if (!r) break;
    ASSERT_TRUE(AsGrant(r));
    ++answered;
  }
  term.join();
  EXPECT_EQ(answered, 500);
}

TEST_F(ServerTest, ThousandsOfConcurrentConnections) {
  constexpr int kConns = 3000;
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kConns; ++i) {
    conns.push_back(std::make_unique<RawConn>(port()));
    ASSERT_TRUE(conns.back()->ok()) << i;
  }
  for (int i = 0; i < kConns; ++i) {
    ASSERT_TRUE(conns[i]->Send("LOCK.ACQUIRE c" + std::to_string(i) + " 30000\r\n"));
  }
  for (int i = 0; i < kConns; ++i) {
    EXPECT_EQ(conns[i]->Read(9).substr(0, 9), "*3\r\n$32\r\n") << i;
  }
  Client c(port());
  std::string info = Str(c.Run({"INFO", "clients"}));
  EXPECT_NE(info.find("connected_clients:" + std::to_string(kConns + 1)), std::string::npos)
      << info;
}

TEST_F(ServerTest, RedisBenchmarkRunsAgainstTheServer) {
  std::string cmd = "redis-benchmark -p " + std::to_string(port()) +
                    " -c 10 -n 2000 -r 1000 -q LOCK.ACQUIRE k:__rand_int__ 30000 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("requests per second"), std::string::npos) << out;
  EXPECT_GT(LastFence(), 0);
}

}  // namespace
}  // namespace tollgate::testing
