// etcd-specific behaviour (the contract suite covers what every backend shares): URL parsing, TTL
// rounding and real expiry, and WaitForRelease's watch. Timing assertions are generous bounds only
// (the test box is small and noisy); the one real wait is a short etcd lease running out.
#include "tollgate/etcd_backend.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/child_process.h"
#include "tests/support/etcd_server.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using Clock = std::chrono::steady_clock;

TEST(EtcdUrlTest, MalformedUrlsAreInvalidArgumentNamingTheUrl) {
  for (const char* url : {"", "etcd:/h:1", "http://h:2379", "etcd://", "etcd://:2379", "etcd://h:",
                          "etcd://h:0", "etcd://h:65536", "etcd://h:12x", "etcd://h:+1",
                          "etcd://u:p@h:1", "etcd://h:1/x", "etcd://h:1?x=1", "etcd://[::1:1",
                          "etcd://[]:1", "etcd://[::1]x", "etcd://[::1]:", "etcd://h h:1"}) {
    auto b = NewEtcdBackend(url);
    ASSERT_FALSE(b.ok()) << url;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << url << ": " << b.status();
    EXPECT_NE(b.status().message().find(std::string("'") + url + "'"), std::string::npos)
        << b.status();
  }
  for (Duration bad : {Duration(0), Duration(-1), Duration(std::chrono::hours(2))}) {
    EXPECT_EQ(NewEtcdBackend("etcd://127.0.0.1:1", bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(EtcdUrlTest, NothingListeningIsUnavailablePromptly) {
  const int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const auto start = Clock::now();
  auto b = NewEtcdBackend("etcd://127.0.0.1:" + std::to_string(port), milliseconds(500));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
  EXPECT_LT(Clock::now() - start, seconds(5));
}

// Issue 10: etcd out of space ("mvcc: database space exceeded", gRPC RESOURCE_EXHAUSTED) is an
// outage to retry (Unavailable), not bad input. Provoked for real: a 1 MiB quota, filled.
TEST(EtcdOutOfSpaceTest, DatabaseSpaceExceededIsUnavailable) {
  EtcdServer etcd;
  etcd.set_extra_args({"--quota-backend-bytes", "1048576"});
  ASSERT_TRUE(etcd.Start());
  auto b = NewEtcdBackend(etcd.url());
  ASSERT_TRUE(b.ok()) << b.status();
  auto g = (*b)->Acquire("k", seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const std::string big(400 * 1024, 'x');
  absl::Status st;
  for (int i = 0; i < 40 && st.ok(); ++i) {
    st = (*b)->FencedSet("r" + std::to_string(i), (*g)->fence, big);
  }
  ASSERT_FALSE(st.ok()) << "1 MiB quota never exceeded";
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(std::string(st.message()).find("database space exceeded"), std::string::npos) << st;
}

class EtcdBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new EtcdServer();
    if (!server_->Start()) {
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "etcd did not start"; }

  static std::unique_ptr<Backend> Connect() {
    auto b = NewEtcdBackend(server_->url(), seconds(5));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  // A key no other test uses.
  static std::string Key(const std::string& name) {
    return name + "-" + std::to_string(Clock::now().time_since_epoch().count());
  }

  static EtcdServer* server_;
};

EtcdServer* EtcdBackendTest::server_ = nullptr;

TEST_F(EtcdBackendTest, TtlIsRoundedUpToWholeSeconds) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  for (Duration asked :
       {Duration(milliseconds(2500)), Duration(seconds(3) + Duration(1)), Duration(seconds(4))}) {
    const std::string key = Key("round");
    auto g = b->Acquire(key, asked, std::nullopt);
    ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
    const Duration ttl = (*g)->ttl;
    EXPECT_EQ(ttl % seconds(1), Duration(0)) << ttl.count();
    EXPECT_GE(ttl, std::chrono::ceil<seconds>(asked));
    auto info = b->Info(key);
    ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
    EXPECT_LE((*info)->ttl_remaining, ttl);
    EXPECT_GT((*info)->ttl_remaining, Duration(0));
    ASSERT_TRUE(b->Release(key, (*g)->lock_id).ok());
  }
}

TEST_F(EtcdBackendTest, ShortLeaseReallyExpires) {
  auto a = Connect(), b = Connect();
  ASSERT_TRUE(a && b);
  const std::string key = Key("expire");
  const auto start = Clock::now();
  auto g = a->Acquire(key, milliseconds(1), std::nullopt);  // etcd's minimum lease (about 2 s)
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const Duration ttl = (*g)->ttl;
  EXPECT_GE(ttl, seconds(1));
  std::optional<LeaseGrant> next;
  while (Clock::now() - start < ttl + seconds(15)) {
    auto n = b->Acquire(key, seconds(5), std::nullopt);
    ASSERT_TRUE(n.ok()) << n.status();
    if (n->has_value()) {
      next = **n;
      break;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(next.has_value()) << "the lease never expired";
  EXPECT_GE(Clock::now() - start, ttl - milliseconds(250));  // not (much) before its ttl
  EXPECT_GT(next->fence, (*g)->fence);
  // The expired holder cannot release or extend the new holder's lease.
  EXPECT_EQ(a->Release(key, (*g)->lock_id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b->Release(key, next->lock_id).ok());
}

TEST_F(EtcdBackendTest, WaitForReleaseOnAFreeKeyReturnsAtOnce) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  const auto start = Clock::now();
  EXPECT_TRUE(b->WaitForRelease(Key("free"), seconds(20)).ok());
  EXPECT_LT(Clock::now() - start, seconds(5));
}

TEST_F(EtcdBackendTest, WaitForReleaseReturnsPromptlyWhenAnotherClientReleases) {
  auto holder = Connect(), waiter = Connect();
  ASSERT_TRUE(holder && waiter);
  const std::string key = Key("released");
  auto g = holder->Acquire(key, seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  std::atomic<bool> released{false};
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(300));
    released = true;
    EXPECT_TRUE(holder->Release(key, (*g)->lock_id).ok());
  });
  const auto start = Clock::now();
  absl::Status st = waiter->WaitForRelease(key, seconds(20));
  const auto took = Clock::now() - start;
  t.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_LT(took, seconds(10)) << "did not notice the release";
  EXPECT_TRUE(released.load());  // it did wait for it
  auto next = waiter->Acquire(key, seconds(5), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_GT((*next)->fence, (*g)->fence);
  EXPECT_TRUE(waiter->Release(key, (*next)->lock_id).ok());
}

TEST_F(EtcdBackendTest, WaitForReleaseNoticesExpiry) {
  auto holder = Connect(), waiter = Connect();
  ASSERT_TRUE(holder && waiter);
  const std::string key = Key("expiring");
  auto g = holder->Acquire(key, milliseconds(1), std::nullopt);  // about 2 s
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const auto start = Clock::now();
  absl::Status st = waiter->WaitForRelease(key, seconds(30));
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_LT(Clock::now() - start, (*g)->ttl + seconds(15));
  auto info = waiter->Info(key);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
}

TEST_F(EtcdBackendTest, WaitForReleaseReturnsAtMaxWaitWhenNobodyReleases) {
  auto holder = Connect(), waiter = Connect();
  ASSERT_TRUE(holder && waiter);
  const std::string key = Key("held");
  auto g = holder->Acquire(key, seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const auto start = Clock::now();
  absl::Status st = waiter->WaitForRelease(key, milliseconds(800));
  const auto took = Clock::now() - start;
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_GE(took, milliseconds(700));
  EXPECT_LT(took, seconds(8));
  auto info = waiter->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value());  // still held
  EXPECT_TRUE(holder->Release(key, (*g)->lock_id).ok());
}

// The watch starts from the revision after the one at which the lock was seen held, so a release
// that lands before the watch is created is replayed, not missed.
TEST_F(EtcdBackendTest, WatchStartedAfterAReleaseDoesNotMissIt) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  const std::string key = Key("missed");
  auto g = b->Acquire(key, seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const int64_t seen_held_at = static_cast<int64_t>((*g)->fence);  // the lock's create revision
  ASSERT_TRUE(b->Release(key, (*g)->lock_id).ok());
  const auto start = Clock::now();
  absl::StatusOr<bool> r = etcd_internal::WatchForRelease(*b, key, seen_held_at, seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
  EXPECT_LT(Clock::now() - start, seconds(10));

  // From a revision after that release nothing happens to the key: the watch runs to max_wait.
  auto later = b->Acquire(Key("other"), seconds(60), std::nullopt);
  ASSERT_TRUE(later.ok() && later->has_value());
  r = etcd_internal::WatchForRelease(*b, key, static_cast<int64_t>((*later)->fence),
                                     milliseconds(500));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(*r);
}

// The watch has its own HTTP handle: requests on the same backend object are not held up by it.
TEST_F(EtcdBackendTest, RequestsOnTheSameObjectProceedDuringAWatch) {
  auto holder = Connect(), b = Connect();
  ASSERT_TRUE(holder && b);
  const std::string key = Key("busy");
  auto g = holder->Acquire(key, seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  std::atomic<bool> watch_done{false};
  std::thread t([&] {
    EXPECT_TRUE(b->WaitForRelease(key, seconds(30)).ok());
    watch_done = true;
  });
  std::this_thread::sleep_for(milliseconds(300));  // let the watch start (not required to pass)
  auto info = b->Info(key);
  EXPECT_TRUE(info.ok() && info->has_value());
  auto other = b->Acquire(Key("meanwhile"), seconds(5), std::nullopt);
  EXPECT_TRUE(other.ok() && other->has_value());
  EXPECT_FALSE(watch_done.load()) << "the requests waited for the watch";
  EXPECT_TRUE(holder->Release(key, (*g)->lock_id).ok());
  t.join();
  EXPECT_TRUE(watch_done.load());
}

TEST_F(EtcdBackendTest, WaitForReleaseRejectsABadKey) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->WaitForRelease("", seconds(1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WaitForRelease(std::string(kMaxKeyBytes + 1, 'k'), seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

// Its own server, since it stops it.
TEST(EtcdWaitTest, WaitForReleaseIsUnavailableWhenTheServerGoesAway) {
  EtcdServer server;
  ASSERT_TRUE(server.Start());
  auto holder = NewEtcdBackend(server.url(), seconds(1));
  auto b = NewEtcdBackend(server.url(), seconds(1));
  ASSERT_TRUE(holder.ok() && b.ok());
  auto g = (*holder)->Acquire("k", seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  absl::Status st;
  const auto start = Clock::now();
  std::thread t([&] { st = (*b)->WaitForRelease("k", seconds(30)); });
  std::this_thread::sleep_for(milliseconds(300));
  server.Stop();
  t.join();
  // Either the stream broke (Unavailable) or the watch saw nothing and returned early: never a hang
  // to max_wait, and never a claim that all is well while etcd is gone for good.
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_LT(Clock::now() - start, seconds(25));
  EXPECT_EQ((*b)->WaitForRelease("k", seconds(5)).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tollgate
