// The abuse suite (issue 9): hostile or buggy clients against the real `tollgate serve`. Every test
// runs a well-behaved client beside the attack and asserts that the server stays up, that its
// memory stays under a stated bound, and that the well-behaved client keeps getting answers with
// bounded latency (printed).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__)
// ASan keeps freed memory in quarantine (256 MiB by default), so resident memory says nothing
// about what the server holds: the bounds are printed but not asserted.
constexpr bool kCheckMemory = false;
#else
constexpr bool kCheckMemory = true;
#endif

// Resident memory of a process, in MiB (VmRSS), or -1.
double RssMiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return -1;
}

std::string Str(const Reply& r) {
  if (!r) return "<io error>";
  if (r->type == REDIS_REPLY_NIL) return "<nil>";
  if (r->type == REDIS_REPLY_INTEGER) return ":" + std::to_string(r->integer);
  if (r->type == REDIS_REPLY_ERROR) return "-" + std::string(r->str, r->len);
  if (r->type == REDIS_REPLY_ARRAY) return "[array of " + std::to_string(r->elements) + "]";
  return std::string(r->str, r->len);
}

std::string Resp(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

// A well-behaved client on its own connection: PING, then a lease taken and released, in a loop,
// timing each round trip. Fails the test if any answer is wrong or missing.
class Probe {
 public:
  explicit Probe(int port, std::string password = "") {
    thread_ = std::thread([this, port, password] {
      Client c(port);
      if (!password.empty()) c.Run({"AUTH", password});
      const std::string key = "probe:" + std::to_string(::getpid());
      while (!stop_.load()) {
        const auto t0 = Clock::now();
        Reply pong = c.Run({"PING"});
        Reply g = c.Run({"LOCK.ACQUIRE", key, "10000"});
        bool ok = pong && Str(pong) == "PONG" && g && g->type == REDIS_REPLY_ARRAY;
        if (ok) {
          Reply rel =
              c.Run({"LOCK.RELEASE", key, std::string(g->element[0]->str, g->element[0]->len)});
          ok = rel && rel->type == REDIS_REPLY_INTEGER && rel->integer == 1;
        }
        const auto us =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
        max_us_.store(std::max<int64_t>(max_us_.load(), us));
        rounds_.fetch_add(1);
        if (!ok) failures_.fetch_add(1);
        std::this_thread::sleep_for(milliseconds(5));
      }
    });
  }
  // Stops the probe and checks it: at least one round, no failure, every round under `bound`.
  void StopAndCheck(const char* attack, milliseconds bound = milliseconds(3000)) {
    // At least a few rounds, even after a quick attack.
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (rounds_.load() < 3 && failures_.load() == 0 && Clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    stop_.store(true);
    thread_.join();
    std::printf(
        "[abuse] %s: well-behaved client: %lld rounds, max round trip %.1f ms, %lld failed\n",
        attack, static_cast<long long>(rounds_.load()), max_us_.load() / 1000.0,
        static_cast<long long>(failures_.load()));
    EXPECT_GT(rounds_.load(), 0) << attack;
    EXPECT_EQ(failures_.load(), 0) << attack;
    EXPECT_LT(max_us_.load(), bound.count() * 1000) << attack;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> max_us_{0}, rounds_{0}, failures_{0};
  std::thread thread_;
};

class AbuseTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"--io-threads", "2"});
    server_ = std::make_unique<ServerProcess>(dir_.path(), std::move(extra));
    ASSERT_TRUE(server_->ok()) << "server did not start";
  }
  int port() const { return server_->port(); }
  double Rss() const { return RssMiB(server_->pid()); }
  void ExpectAlive(const std::string& password = "") {
    Client c(port());
    if (!password.empty()) c.Run({"AUTH", password});
    EXPECT_EQ(Str(c.Run({"PING"})), "PONG");
    EXPECT_EQ(::kill(server_->pid(), 0), 0) << "server died";
  }
  void CheckGrowth(const char* attack, double before, double after, double bound_mib) {
    std::printf("[abuse] %s: server memory %.1f MiB -> %.1f MiB (+%.1f, bound %.0f)\n", attack,
                before, after, after - before, bound_mib);
    if (kCheckMemory) {
      EXPECT_LT(after - before, bound_mib) << attack;
    }
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

// Item 1: one connection pipelines 600 reads of a 1 MiB register and never reads. Before: the
// server buffered every reply (~600 MiB, measured +900 MiB). Now it stops executing that
// connection's input while 4 MiB of its output waits, and resumes as the client reads.
TEST_F(AbuseTest, SlowReaderOfPipelinedBigRepliesStaysBounded) {
  Start();
  Client setup(port());
  Reply g = setup.Run({"LOCK.ACQUIRE", "writer", "60000"});
  ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY);
  const std::string value(1 << 20, 'v');
  ASSERT_EQ(Str(setup.Run({"FENCE.SET", "big", std::to_string(g->element[1]->integer), value})),
            "OK");
  const double before = Rss();
  Probe probe(port());
  constexpr int kReads = 600;
  RawConn slow(port());
  std::string pipeline;
  for (int i = 0; i < kReads; ++i) pipeline += "FENCE.GET big\r\n";
  ASSERT_TRUE(slow.Send(pipeline));
  std::this_thread::sleep_for(milliseconds(1500));  // the server does all it will do unread
  const double during = Rss();
  probe.StopAndCheck("slow reader");
  CheckGrowth("slow reader of 600 x 1 MiB", before, during, 48);
  // The reader catches up and gets every reply, in order, complete.
  const std::string one =
      "*2\r\n$1048576\r\n" + value + "\r\n:" + std::to_string(g->element[1]->integer) + "\r\n";
  size_t got = 0;
  std::string buf;
  while (got < kReads) {
    std::string chunk = slow.Read(one.size(), 5000);
    if (chunk.empty()) break;
    buf += chunk;
    while (buf.size() >= one.size()) {
      ASSERT_EQ(buf.compare(0, one.size(), one), 0) << "reply " << got << " differs";
      buf.erase(0, one.size());
      ++got;
    }
  }
  EXPECT_EQ(got, static_cast<size_t>(kReads));
  ExpectAlive();
}

// Item 2: before AUTH only small requests are read. Six connections announcing 32 MiB
// arguments were held (~210 MiB); now each is refused at its header and closed.
TEST_F(AbuseTest, UnauthenticatedClientsCannotMakeTheServerHoldBigRequests) {
  Start({"--requirepass", "s3cret"});
  const double before = Rss();
  Probe probe(port(), "s3cret");
  {
    RawConn c(port());
    c.Send("*2\r\n$4\r\nAUTH\r\n$33554432\r\n");
    EXPECT_EQ(c.Read(200, 2000),
              "-ERR Protocol error: invalid bulk length (before AUTH: at most 10 arguments, "
              "16384 bytes per argument, 65536 bytes per request)\r\n");
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    // Six connections that each push 24 MiB of a 32 MiB request (four 8 MiB arguments, the most
    // an authenticated client may send) and never finish it. Before the fix the server held all
    // of it (+144 MiB here).
    std::vector<std::unique_ptr<RawConn>> conns;
    const std::string chunk(1 << 20, 'p');
    for (int i = 0; i < 6; ++i) {
      auto c = std::make_unique<RawConn>(port());
      ASSERT_TRUE(c->ok());
      bool open = c->Send("*5\r\n$4\r\nAUTH\r\n");
      for (int arg = 0; open && arg < 3; ++arg) {
        open = c->Send("$8388608\r\n");
        for (int mib = 0; open && mib < 8; ++mib) open = c->Send(chunk);
        if (open) open = c->Send("\r\n");
      }
      conns.push_back(std::move(c));
    }
    const double held = Rss();
    for (auto& c : conns) EXPECT_TRUE(c->WaitClosed());
    CheckGrowth("6 unauthenticated 24 MiB partial requests", before, held, 16);
  }
  {
    RawConn many(port());  // Redis's CVE-2021-32675 shape: a huge multibulk count
    many.Send("*1000000\r\n");
    EXPECT_EQ(many.Read(200, 2000).substr(0, 45), "-ERR Protocol error: invalid multibulk length");
    EXPECT_TRUE(many.WaitClosed());
  }
  probe.StopAndCheck("unauthenticated big requests");
  // After AUTH the normal limits apply: a 1 MiB value is fine.
  Client c(port());
  EXPECT_EQ(Str(c.Run({"AUTH", "s3cret"})), "OK");
  Reply g = c.Run({"LOCK.ACQUIRE", "w", "60000"});
  ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(Str(c.Run({"FENCE.SET", "r", std::to_string(g->element[1]->integer),
                       std::string(1 << 20, 'x')})),
            "OK");
}

// Item 9: AUTH failures are limited per connection; the third closes it.
TEST_F(AbuseTest, RepeatedAuthFailuresCloseTheConnection) {
  Start({"--requirepass", "s3cret"});
  RawConn c(port());
  c.Send(Resp({"AUTH", "guess1"}) + Resp({"AUTH", "guess2"}) + Resp({"AUTH", "guess3"}) +
         Resp({"AUTH", "s3cret"}));
  const std::string wrong = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
  const std::string last =
      "-WRONGPASS invalid username-password pair or user is disabled; closing the connection "
      "after 3 failed attempts.\r\n";
  EXPECT_EQ(c.Read(2 * wrong.size() + last.size()), wrong + wrong + last);
  EXPECT_TRUE(c.WaitClosed());  // the fourth attempt (the right password) is never run
  Client ok(port());
  EXPECT_EQ(Str(ok.Run({"AUTH", "s3cret"})), "OK");
  std::string info = Str(ok.Run({"INFO", "stats"}));
  EXPECT_NE(info.find("auth_failures:3"), std::string::npos) << info;
}

// Item 3: buckets that take decades to refill are refused, and a table full of partly used
// buckets still serves a fresh key.
TEST_F(AbuseTest, ThrottleTableCannotBeWedged) {
  Start({"--throttle-max-buckets", "3000"});
  Client c(port());
  Reply r = c.Run({"THROTTLE", "k", "10", "0.000000001"});
  ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << Str(r);
  EXPECT_NE(Str(r).find("refill horizon"), std::string::npos) << Str(r);
  const double before = Rss();
  Probe probe(port());
  // The slowest refill allowed: 10 tokens per day. Three tokens taken from each of 3,000 keys.
  for (int i = 0; i < 3000; ++i) {
    for (int j = 0; j < 3; ++j) {
      c.Append({"THROTTLE", "wedge:" + std::to_string(i), "10", "0.000115741"});
    }
  }
  for (int i = 0; i < 9000; ++i) {
    Reply a = c.Next();
    ASSERT_TRUE(a && a->type == REDIS_REPLY_ARRAY) << Str(a);
  }
  Reply fresh = c.Run({"THROTTLE", "fresh-key", "10", "1"});
  ASSERT_TRUE(fresh && fresh->type == REDIS_REPLY_ARRAY) << Str(fresh);
  EXPECT_EQ(fresh->element[0]->integer, 1) << "a fresh key was denied: the table is wedged";
  std::string info = Str(c.Run({"INFO", "ratelimit"}));
  EXPECT_NE(info.find("throttle_evicted:1\r\n"), std::string::npos) << info;
  probe.StopAndCheck("throttle wedge");
  CheckGrowth("3,000 slow buckets", before, Rss(), 16);
}

// Item 4: a waiter that hangs up around the hand-off must not leave the key held for its ttl.
// Before: 93 of 150 runs left the key held by nobody for 60 s.
TEST_F(AbuseTest, WaiterThatDisconnectsAtHandOffDoesNotKeepTheKey) {
  Start();
  Client holder(port()), probe(port());
  std::mt19937 rng(42);
  int stuck = 0;
  constexpr int kRuns = 100;
  for (int run = 0; run < kRuns; ++run) {
    const std::string key = "handoff:" + std::to_string(run);
    Reply g = holder.Run({"LOCK.ACQUIRE", key, "30"});
    ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY);
    {
      RawConn waiter(port());
      waiter.Send(Resp({"LOCK.ACQUIRE", key, "60000", "WAIT", "5000"}));
      // Hang up somewhere around the holder's expiry (30 ms after its grant).
      std::this_thread::sleep_for(std::chrono::microseconds(20'000 + rng() % 20'000));
    }
    // The key must be free again at once: a 1 s wait is plenty.
    Reply p = probe.Run({"LOCK.ACQUIRE", key, "100", "WAIT", "1000"});
    if (!p || p->type != REDIS_REPLY_ARRAY) ++stuck;
  }
  EXPECT_EQ(stuck, 0) << stuck << " of " << kRuns << " runs left the key held by nobody";
  Client c(port());
  std::string info = Str(c.Run({"INFO", "stats"}));
  std::printf("[abuse] waiter hand-off: %s\n",
              info.substr(info.find("grants_withdrawn:"), 20).c_str());
}

// Item 5: a shortening EXTEND frees the key at its new expiry, for waiters too.
TEST_F(AbuseTest, ShorteningExtendWakesWaiters) {
  Start();
  Client holder(port());
  Reply g = holder.Run({"LOCK.ACQUIRE", "k", "60000"});
  ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY);
  const std::string id(g->element[0]->str, g->element[0]->len);
  std::atomic<int64_t> waited_ms{-1};
  std::thread waiter([&] {
    Client w(port());
    const auto t0 = Clock::now();
    Reply r = w.Run({"LOCK.ACQUIRE", "k", "1000", "WAIT", "5000"});
    if (r && r->type == REDIS_REPLY_ARRAY) {
      waited_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    }
  });
  std::this_thread::sleep_for(milliseconds(200));  // the waiter is queued
  EXPECT_EQ(Str(holder.Run({"LOCK.EXTEND", "k", id, "100"})), ":100");
  waiter.join();
  std::printf("[abuse] shortening extend: waiter granted after %lld ms\n",
              static_cast<long long>(waited_ms.load()));
  ASSERT_GE(waited_ms.load(), 0) << "the waiter was not granted within its 5 s wait";
  EXPECT_LT(waited_ms.load(), 2500);
}

// Item 6: a made-up fence would make every real holder's write STALE forever; it is refused.
TEST_F(AbuseTest, MadeUpFenceCannotPoisonARegister) {
  Start();
  Client attacker(port()), holder(port());
  EXPECT_EQ(Str(attacker.Run({"FENCE.SET", "acct", "9223372036854775807", "poison"})).substr(0, 49),
            "-ERR fence 9223372036854775807 was never issued; ");
  Reply g = holder.Run({"LOCK.ACQUIRE", "acct-lock", "10000"});
  ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(Str(holder.Run({"FENCE.SET", "acct", std::to_string(g->element[1]->integer), "ok"})),
            "OK");
}

// Item 9: more I/O threads than the per-thread state is built for are refused at start.
TEST_F(AbuseTest, TooManyIoThreadsAreRefusedAtStart) {
  const std::string cmd =
      TollgateBinary() + " serve --port 0 --io-threads 65 --data-dir " + dir_.path() + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("--io-threads: Value 65 not in range 0 to 64"), std::string::npos) << out;
}

// Flood: many connections opened and closed, many held half-open with partial requests, huge
// keys and labels; the server refuses what it must and stays responsive.
TEST_F(AbuseTest, ConnectionFloodHalfOpenRequestsAndHugeArguments) {
  Start({"--max-clients", "600"});
  const double before = Rss();
  Probe probe(port());
  // 400 connections each holding a partial request.
  std::vector<std::unique_ptr<RawConn>> half_open;
  for (int i = 0; i < 400; ++i) {
    auto c = std::make_unique<RawConn>(port());
    c->Send("*3\r\n$12\r\nLOCK.ACQUIRE\r\n$100000\r\n" + std::string(1000, 'k'));
    half_open.push_back(std::move(c));
  }
  // 2,000 connect/send/close cycles, some going over --max-clients.
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    RawConn c(port());
    c.Send("PING\r\n");
    std::string r = c.Read(7, 2000);
    if (r.rfind("-ERR max number of clients reached", 0) == 0) ++refused;
  }
  std::printf("[abuse] flood: %d of 2000 short connections refused at --max-clients\n", refused);
  // Past the limit, new clients are told why (401 open + 300 > 600).
  std::vector<std::unique_ptr<RawConn>> extra;
  for (int i = 0; i < 300; ++i) extra.push_back(std::make_unique<RawConn>(port()));
  std::this_thread::sleep_for(milliseconds(500));  // both I/O threads have accepted them
  int told = 0;
  for (auto& c : extra) {
    if (c->Read(36, 5) == "-ERR max number of clients reached\r\n") ++told;
  }
  std::printf("[abuse] flood: %d of 300 connections over --max-clients 600 refused\n", told);
  EXPECT_GE(told, 50);
  extra.clear();
  // Huge arguments get clear errors naming the argument and range.
  Client c(port());
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", std::string(1 << 20, 'k'), "1000"})),
            "-ERR key must be 1 to 512 bytes long, got 1048576 bytes");
  EXPECT_EQ(Str(c.Run({"LOCK.ACQUIRE", "k", "1000", "OWNER", std::string(513, 'o')})),
            "-ERR OWNER label must be 1 to 512 bytes long, got 513 bytes");
  EXPECT_EQ(Str(c.Run({"THROTTLE", std::string(100000, 't'), "10", "1"})).substr(0, 19),
            "-ERR key must be 1 ");
  EXPECT_EQ(Str(c.Run({"FENCE.GET", std::string(513, 'r')})),
            "-ERR resource must be 1 to 512 bytes long, got 513 bytes");
  probe.StopAndCheck("connection flood");
  half_open.clear();
  CheckGrowth("400 half-open + 2,000 short connections", before, Rss(), 64);
  ExpectAlive();
}

}  // namespace
}  // namespace tollgate::testing
