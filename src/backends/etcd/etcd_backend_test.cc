// etcd-specific behaviour (the contract suite covers what every backend shares): URL parsing, TTL
// rounding and real expiry, and WaitForRelease's watch. Timing assertions are generous bounds only
// (the test box is small and noisy); the one real wait is a short etcd lease running out.
#include "tollgate/etcd_backend.h"

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/child_process.h"
#include "tests/support/etcd_server.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using Clock = std::chrono::steady_clock;

size_t AppendReply(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One POST to the etcd gateway at `port`; the parsed reply (null on any error).
nlohmann::json Post(int port, const std::string& path, const nlohmann::json& body) {
  CURL* c = curl_easy_init();
  if (c == nullptr) return nullptr;
  const std::string url = absl::StrCat("http://127.0.0.1:", port, path);
  const std::string payload = body.dump();
  std::string reply;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &AppendReply);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) return nullptr;
  return nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
}

// A raw key of etcd: its value and lease, or nullopt when absent.
struct RawKv {
  std::string value;
  std::string lease;
};
std::optional<RawKv> RawGet(int port, const std::string& key) {
  nlohmann::json r = Post(port, "/v3/kv/range", {{"key", absl::Base64Escape(key)}});
  if (!r.is_object() || !r.contains("kvs") || !r["kvs"].is_array() || r["kvs"].empty()) {
    return std::nullopt;
  }
  const nlohmann::json& kv = r["kvs"][0];
  RawKv out;
  if (kv.contains("value")) absl::Base64Unescape(kv["value"].get<std::string>(), &out.value);
  if (kv.contains("lease")) out.lease = kv["lease"].get<std::string>();
  return out;
}

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

// The reverse index tollgate/i/<lock_id>: written with the lock on the lock's etcd lease, moved to
// the new lease by Extend (single- and multi-key), deleted by Release (single- and multi-key).
TEST_F(EtcdBackendTest, IndexKeyFollowsTheLease) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  const std::string key = Key("index");
  auto g = b->Acquire(key, seconds(10), "me");
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const std::string index = "tollgate/i/" + (*g)->lock_id;
  const std::string lock = "tollgate/lock/" + absl::BytesToHexString(key);
  auto raw_index = RawGet(server_->port(), index);
  auto raw_lock = RawGet(server_->port(), lock);
  ASSERT_TRUE(raw_index.has_value() && raw_lock.has_value());
  EXPECT_EQ(raw_index->value, key);
  EXPECT_EQ(raw_index->lease, raw_lock->lease);
  EXPECT_FALSE(raw_lock->lease.empty());

  auto ext = b->Extend(key, (*g)->lock_id, seconds(20));  // a new etcd lease; the old one revoked
  ASSERT_TRUE(ext.ok()) << ext.status();
  raw_index = RawGet(server_->port(), index);
  auto moved = RawGet(server_->port(), lock);
  ASSERT_TRUE(raw_index.has_value() && moved.has_value());
  EXPECT_NE(moved->lease, raw_lock->lease);
  EXPECT_EQ(raw_index->lease, moved->lease);
  auto found = b->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, key);
  EXPECT_EQ((*found)->info.owner, "me");
  EXPECT_EQ((*found)->info.acquired_at, (*g)->acquired_at);

  // LOCK.MEXTEND / LOCK.MRELEASE of a single-key lease keep the index in step too.
  auto mext = b->MultiExtend(std::vector<std::string>{key}, (*g)->lock_id, seconds(30));
  ASSERT_TRUE(mext.ok()) << mext.status();
  raw_index = RawGet(server_->port(), index);
  moved = RawGet(server_->port(), lock);
  ASSERT_TRUE(raw_index.has_value() && moved.has_value());
  EXPECT_EQ(raw_index->lease, moved->lease);
  EXPECT_TRUE(b->LookupById((*g)->lock_id)->has_value());
  auto released = b->MultiRelease(std::vector<std::string>{key}, (*g)->lock_id);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(*released, 1u);
  EXPECT_FALSE(RawGet(server_->port(), index).has_value());
  EXPECT_FALSE(b->LookupById((*g)->lock_id)->has_value());

  auto again = b->Acquire(key, seconds(10), std::nullopt);
  ASSERT_TRUE(again.ok() && again->has_value());
  ASSERT_TRUE(b->Release(key, (*again)->lock_id).ok());
  EXPECT_FALSE(RawGet(server_->port(), "tollgate/i/" + (*again)->lock_id).has_value());

  // A multi-key grant has no index key.
  auto m = b->MultiAcquire({{Key("m1"), Key("m2")}, seconds(10), Duration(0), std::nullopt});
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  EXPECT_FALSE(RawGet(server_->port(), "tollgate/i/" + (*m)->lock_id).has_value());
}

// A lock written by an older tollgate ({"id", "owner_b64"} only) still decodes: no acquired_at, no
// index (so LookupById finds nothing), and Release and Extend work on it.
TEST_F(EtcdBackendTest, LockValueOfTheOldFormat) {
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  const std::string key = Key("oldformat");
  const std::string lock_id = "0123456789abcdef0123456789abcdef";
  nlohmann::json lease = Post(server_->port(), "/v3/lease/grant", {{"TTL", "30"}});
  ASSERT_TRUE(lease.is_object() && lease.contains("ID")) << lease;
  const std::string value =
      nlohmann::json{{"id", lock_id}, {"owner_b64", absl::Base64Escape("old")}}.dump();
  nlohmann::json put =
      Post(server_->port(), "/v3/kv/put",
           {{"key", absl::Base64Escape("tollgate/lock/" + absl::BytesToHexString(key))},
            {"value", absl::Base64Escape(value)},
            {"lease", lease["ID"]}});
  ASSERT_TRUE(put.is_object()) << put;
  auto info = b->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->lock_id, lock_id);
  EXPECT_EQ((*info)->owner, "old");
  EXPECT_EQ((*info)->acquired_at, std::nullopt);
  auto found = b->LookupById(lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  ASSERT_TRUE(b->Extend(key, lock_id, seconds(20)).ok());
  info = b->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->acquired_at, std::nullopt);
  EXPECT_EQ((*info)->owner, "old");
  EXPECT_TRUE(b->Release(key, lock_id).ok());
  EXPECT_FALSE(b->Info(key)->has_value());
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
