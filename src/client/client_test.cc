// tollgate::Client against a real `tollgate serve`: leases, permits and multi-key leases over
// RESP, AUTH, reconnect after a restart, WAIT server-side, concurrent callers, error mapping; and
// the same API over an in-process backend.
#include "tollgate/client.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/server_process.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::ServerProcess;
using testing::TempDir;

class ClientTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    server_ = std::make_unique<ServerProcess>(dir_.path(), std::move(extra));
    ASSERT_TRUE(server_->ok()) << "server did not start";
  }
  ClientOptions Options() const {
    ClientOptions o;
    o.port = server_->port();
    o.io_timeout = milliseconds(500);
    return o;
  }
  Client Connect() {
    absl::StatusOr<Client> c = Client::Connect(Options());
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ClientTest, LeaseOverResp) {
  Start();
  Client client = Connect();
  Backend& b = client.backend();
  EXPECT_TRUE(b.queues_waiters());
  auto lease = client.Acquire("jobs/1", {.ttl = seconds(5), .owner = "me"});
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(lease->has_value());
  Lease& l = **lease;
  EXPECT_EQ(l.kind(), LeaseKind::kLock);
  EXPECT_GT(l.fence(), 0u);
  EXPECT_EQ(l.lock_id().size(), 32u);
  EXPECT_TRUE(l.check().ok());
  auto info = b.Info("jobs/1");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->fence, l.fence());
  EXPECT_EQ((*info)->owner, "me");
  EXPECT_GT((*info)->ttl_remaining, seconds(4));
  // Taken: nullopt at once.
  auto other = client.Acquire("jobs/1", {.ttl = seconds(5)});
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  SteadyTime before = l.safe_until();
  std::this_thread::sleep_for(milliseconds(5));
  EXPECT_TRUE(l.renew().ok());
  EXPECT_GT(l.safe_until(), before);
  EXPECT_TRUE(l.release().ok());
  info = b.Info("jobs/1");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  // Errors: a 0 reply is FailedPrecondition, -ERR is InvalidArgument.
  EXPECT_TRUE(absl::IsFailedPrecondition(b.Release("jobs/1", std::string(32, 'a'))));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(b.Extend("jobs/1", std::string(32, 'a'), seconds(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(b.Acquire("", seconds(1), std::nullopt).status()));
  auto bad = client.Acquire("", {.ttl = seconds(1)});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
}

TEST_F(ClientTest, FencesAndThrottleOverResp) {
  Start();
  Client client = Connect();
  Backend& b = client.backend();
  auto first = client.Acquire("f", {.ttl = seconds(5)});
  ASSERT_TRUE(first.ok() && first->has_value());
  ASSERT_TRUE((*first)->release().ok());
  auto second = client.Acquire("f", {.ttl = seconds(5)});
  ASSERT_TRUE(second.ok() && second->has_value());
  const uint64_t f1 = (*first)->fence(), f2 = (*second)->fence();
  absl::Status set = b.FencedSet("bank", f2, "100");
  ASSERT_TRUE(set.ok()) << set;
  absl::Status stale = b.FencedSet("bank", f1, "90");
  EXPECT_TRUE(absl::IsAborted(stale)) << stale;
  auto v = b.FencedGet("bank");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ((*v)->value, "100");
  EXPECT_EQ((*v)->fence, f2);
  auto none = b.FencedGet("nothing");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  BucketParams p{Decimal::Units(2), Decimal::Units(1)};
  for (int i = 0; i < 2; ++i) {
    auto d = b.Throttle("api", p, Decimal::Units(1));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->allowed);
  }
  auto d = b.Throttle("api", p, Decimal::Units(1));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->allowed);
  ASSERT_TRUE(d->retry_after.has_value());
  EXPECT_GT(*d->retry_after, Duration(0));
}

TEST_F(ClientTest, WithLockOverResp) {
  Start();
  Client client = Connect();
  absl::StatusOr<uint64_t> fence =
      client.WithLock("k", {.ttl = seconds(5)}, [&](const Lease& lease) -> uint64_t {
        EXPECT_TRUE(lease.check().ok());
        return lease.fence();
      });
  ASSERT_TRUE(fence.ok()) << fence.status();
  auto info = client.backend().Info("k");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());  // released
}

TEST_F(ClientTest, WaitsServerSide) {
  Start();
  Client client = Connect();
  auto first = client.Acquire("k", {.ttl = seconds(10)});
  ASSERT_TRUE(first.ok() && first->has_value());
  // Not acquired within the wait: one request, answered nil after ~300 ms.
  auto t0 = std::chrono::steady_clock::now();
  auto none = client.Acquire("k", {.ttl = seconds(2), .wait = milliseconds(300)});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(290));
  // Released while waiting: granted at once, FIFO, by the server. The wait outlives io_timeout
  // (500 ms): the read timeout is wait + io_timeout.
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(800));
    EXPECT_TRUE((*first)->release().ok());
  });
  t0 = std::chrono::steady_clock::now();
  auto second = client.Acquire("k", {.ttl = seconds(2), .wait = seconds(5)});
  auto waited = std::chrono::steady_clock::now() - t0;
  releaser.join();
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(second->has_value());
  EXPECT_GE(waited, milliseconds(700));
  EXPECT_LT(waited, seconds(3));
  EXPECT_GT((*second)->fence(), (*first)->fence());
  // The grant came after a long wait: it was renewed once before being handed out, so safe_until
  // counts from after the wait, not from the send time of the acquire.
  EXPECT_GT((*second)->safe_until(), t0 + milliseconds(700) + seconds(1));
  EXPECT_TRUE((*second)->check().ok());
}

TEST_F(ClientTest, Auth) {
  Start({"--requirepass", "s3cret"});
  ClientOptions o = Options();
  absl::StatusOr<Client> none = Client::Connect(o);
  EXPECT_TRUE(absl::IsUnauthenticated(none.status())) << none.status();
  o.password = "wrong";
  absl::StatusOr<Client> wrong = Client::Connect(o);
  EXPECT_TRUE(absl::IsUnauthenticated(wrong.status())) << wrong.status();
  o.password = "s3cret";
  absl::StatusOr<Client> right = Client::Connect(o);
  ASSERT_TRUE(right.ok()) << right.status();
  auto lease = right->Acquire("k", {.ttl = seconds(2)});
  ASSERT_TRUE(lease.ok() && lease->has_value()) << lease.status();
}

TEST_F(ClientTest, Unreachable) {
  Start();
  ClientOptions o = Options();
  server_->Kill();
  absl::StatusOr<Client> c = Client::Connect(o);
  EXPECT_TRUE(absl::IsUnavailable(c.status())) << c.status();
}

TEST_F(ClientTest, ReconnectsAfterServerRestart) {
  Start();
  Client client = Connect();
  auto lease = client.Acquire("k", {.ttl = seconds(30)});
  ASSERT_TRUE(lease.ok() && lease->has_value());
  const uint64_t fence = (*lease)->fence();
  const int port = server_->port();
  EXPECT_EQ(server_->Terminate(), 0);
  // Down: Unavailable, quickly.
  auto down = client.backend().Info("k");
  EXPECT_TRUE(absl::IsUnavailable(down.status())) << down.status();
  server_ = std::make_unique<ServerProcess>(
      dir_.path(), std::vector<std::string>{"--port", std::to_string(port)});
  ASSERT_TRUE(server_->ok());
  ASSERT_EQ(server_->port(), port);
  // The pooled connections are stale; the client notices before sending and reconnects.
  auto info = client.backend().Info("k");
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());  // durable across the restart
  EXPECT_EQ((*info)->fence, fence);
  EXPECT_TRUE((*lease)->renew().ok());  // a write, on a fresh connection
  auto other = client.Acquire("other", {.ttl = seconds(1)});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(other->has_value());
}

TEST_F(ClientTest, TimeoutIsUnavailableAndAcquireNotRetried) {
  Start();
  Client client = Connect();
  ASSERT_EQ(kill(server_->pid(), SIGSTOP), 0);
  auto t0 = std::chrono::steady_clock::now();
  auto r = client.backend().Acquire("k", seconds(5), std::nullopt);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(kill(server_->pid(), SIGCONT), 0);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("timed out"));
  EXPECT_LT(took, milliseconds(900));  // io_timeout 500 ms, not retried
}

TEST_F(ClientTest, ConcurrentCallers) {
  Start();
  Client client = Connect();
  constexpr int kThreads = 8, kRounds = 25;
  std::atomic<int> holders{0}, max_holders{0}, granted{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<uint64_t> fences;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        absl::Status s = client.WithLock(
            "shared", {.ttl = seconds(5), .wait = seconds(20)}, [&](const Lease& lease) {
              int h = ++holders;
              int m = max_holders.load();
              while (h > m && !max_holders.compare_exchange_weak(m, h)) {
              }
              {
                std::lock_guard<std::mutex> l(mu);
                fences.insert(lease.fence());
              }
              --holders;
            });
        EXPECT_TRUE(s.ok()) << s;
        if (s.ok()) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), kThreads * kRounds);
  EXPECT_EQ(max_holders.load(), 1);
  EXPECT_EQ(fences.size(), static_cast<size_t>(kThreads * kRounds));
}

// Needs the server's SEM.* commands.
TEST_F(ClientTest, PermitsOverResp) {
  Start();
  Client client = Connect();
  std::vector<Lease> permits;
  for (int i = 0; i < 3; ++i) {
    auto p = client.AcquirePermit("pool", 3, {.ttl = seconds(5)});
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(p->has_value());
    EXPECT_EQ((*p)->kind(), LeaseKind::kPermit);
    EXPECT_EQ((*p)->slot(), i);
    permits.push_back(std::move(**p));
  }
  EXPECT_LT(permits[0].fence(), permits[2].fence());
  auto full = client.AcquirePermit("pool", 3, {.ttl = seconds(5)});
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->has_value());
  auto other_limit = client.AcquirePermit("pool", 4, {.ttl = seconds(5)});
  EXPECT_TRUE(absl::IsInvalidArgument(other_limit.status())) << other_limit.status();
  auto info = client.backend().SemInfo("pool");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->limit, 3);
  EXPECT_EQ((*info)->holders, 3);
  EXPECT_EQ((*info)->fence, permits[2].fence());
  EXPECT_TRUE(permits[1].renew().ok());
  // Waiting server-side for a slot: slot 1 comes free.
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(300));
    EXPECT_TRUE(permits[1].release().ok());
  });
  auto waited = client.AcquirePermit("pool", 3, {.ttl = seconds(5), .wait = seconds(5)});
  releaser.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  ASSERT_TRUE(waited->has_value());
  EXPECT_EQ((*waited)->slot(), 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(permits[1].release()) || permits[1].release().ok());
}

// Needs the server's LOCK.M* commands.
TEST_F(ClientTest, MultiKeyOverResp) {
  Start();
  Client client = Connect();
  auto all = client.AcquireAll({"a", "b", "c"}, {.ttl = seconds(5)});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(all->has_value());
  Lease& l = **all;
  EXPECT_EQ(l.kind(), LeaseKind::kMulti);
  EXPECT_THAT(l.keys(), ::testing::ElementsAre("a", "b", "c"));
  for (const char* k : {"a", "b", "c"}) {
    auto info = client.backend().Info(k);
    ASSERT_TRUE(info.ok() && info->has_value());
    EXPECT_EQ((*info)->fence, l.fence());
  }
  auto overlap = client.AcquireAll({"c", "d"}, {.ttl = seconds(5)});
  ASSERT_TRUE(overlap.ok());
  EXPECT_FALSE(overlap->has_value());
  auto d = client.backend().Info("d");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->has_value());  // none taken
  EXPECT_TRUE(l.renew().ok());
  // Losing one key loses all: release "b" behind the lease's back; the next renewal is refused.
  ASSERT_TRUE(client.backend().Release("b", l.lock_id()).ok());
  absl::Status renewed = l.renew();
  EXPECT_TRUE(absl::IsFailedPrecondition(renewed)) << renewed;
  EXPECT_EQ(l.lost(), LossReason::kRenewRejected);
  EXPECT_TRUE(l.stop_token().stop_requested());
  auto a = client.backend().Info("a");
  ASSERT_TRUE(a.ok() && a->has_value());  // MEXTEND changed nothing
  absl::Status released = l.release();
  EXPECT_TRUE(absl::IsFailedPrecondition(released)) << released;  // 2 of 3
  a = client.backend().Info("a");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->has_value());
}

// The same calls on an in-process backend.
TEST(ClientInProcessTest, SameApiOverABackend) {
  std::unique_ptr<Backend> memory = NewMemoryBackend();
  Client client(*memory);
  EXPECT_FALSE(client.backend().queues_waiters());
  auto lease = client.Acquire("k", {.ttl = seconds(5)});
  ASSERT_TRUE(lease.ok() && lease->has_value());
  absl::Status s = client.WithLock("k2", {.ttl = seconds(5)}, [](const Lease&) {});
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace tollgate
