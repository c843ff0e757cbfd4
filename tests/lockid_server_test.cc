// TIME, LOCK.ACQUIRE ... WITHTIMES, LOCK.INFO's times and lock_id_hash, and LOCKID.INFO /
// LOCKID.RELEASE / LOCKID.EXTEND end to end through real `tollgate serve` processes, on the
// embedded store and on each shared backend (two servers on one backend see one lock_id index):
// reply formats in RESP2 and RESP3, times on the server's clock (checked against TIME), argument
// errors that change nothing, and a Redis Cluster refusing lookups by lock_id with a reason.
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/backend_servers.h"
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tests/support/redis_cluster.h"
#endif

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kBadLockId = "ERR lock_id must be 32 lowercase hex characters";
constexpr std::string_view kNoLookup = "ERR this server's backend cannot look leases up by lock_id";

std::string Str(const redisReply* r) {
  return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : std::string();
}

// The value of `name` in a flat field/value array (RESP2 map), or nullptr.
const redisReply* Field(const redisReply* m, const std::string& name) {
  if (m == nullptr || m->type != REDIS_REPLY_ARRAY) return nullptr;
  for (size_t i = 0; i + 1 < m->elements; i += 2) {
    if (Str(m->element[i]) == name) return m->element[i + 1];
  }
  return nullptr;
}

// The field names of a flat field/value array, in order.
std::vector<std::string> FieldNames(const redisReply* m) {
  std::vector<std::string> names;
  if (m == nullptr || m->type != REDIS_REPLY_ARRAY) return names;
  for (size_t i = 0; i + 1 < m->elements; i += 2) names.push_back(Str(m->element[i]));
  return names;
}

// syncguard's lock id hash, written here from its definition (not from tollgate's code): the
// lock id's 16 bytes in base64url without padding, then three 32-bit rolling hashes of that
// string (multipliers 31, 127, 2047; char weights 1, 3, 7), each as 8 lowercase hex digits.
std::string Base64UrlOfHex(const std::string& hex) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}
std::string SyncguardHashKey(const std::string& s) {
  uint32_t h1 = 0, h2 = 0, h3 = 0;
  for (unsigned char c : s) {
    h1 = h1 * 31u + c;
    h2 = h2 * 127u + c * 3u;
    h3 = h3 * 2047u + c * 7u;
  }
  char buf[25];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x", h1, h2, h3);
  return buf;
}
std::string ExpectedLockIdHash(const std::string& lock_id) {
  return SyncguardHashKey(Base64UrlOfHex(lock_id));
}

TEST(LockIdHashOracle, MatchesSyncguardVectors) {
  EXPECT_EQ(Base64UrlOfHex("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60"), "nxwqfgtdTD6KbxstPE5fYA");
  EXPECT_EQ(SyncguardHashKey("AAAAAAAAAAAAAAAAAAAAAA"), "761621603f31b080201c6800");
  EXPECT_EQ(SyncguardHashKey("nxwqfgtdTD6KbxstPE5fYA"), "2901aa5f30b86b5d8300f0d9");
  EXPECT_EQ(SyncguardHashKey("_-_-_-_-_-_-_-_-_-_-_w"), "d9bfd0448bac53ec3397aafc");
  EXPECT_EQ(ExpectedLockIdHash(std::string(32, '0')), "761621603f31b080201c6800");
}

// TIME as Unix ms (rounded down).
int64_t TimeMs(Client& c) {
  Reply t = c.Run({"TIME"});
  if (!t || t->type != REDIS_REPLY_ARRAY || t->elements != 2) return -1;
  return std::stoll(Str(t->element[0])) * 1000 + std::stoll(Str(t->element[1])) / 1000;
}

// A well-formed lock id that no server ever issued (ids come from a CSPRNG).
std::string UnusedLockId() { return "0123456789abcdef0123456789abcdef"; }

// Reads one RESP3 reply's bytes: at least `first` bytes, then whatever else arrives shortly.
std::string ReadAll(RawConn& c, size_t first = 1) {
  std::string s = c.Read(first);
  std::this_thread::sleep_for(milliseconds(80));
  return s + c.Read(1 << 16, 100);
}

std::vector<std::string> Kinds() { return ServerKinds(/*with_embedded=*/true); }

class LockIdServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "embedded") {
      url_ = Backends::Url(GetParam());
      ASSERT_FALSE(url_.empty()) << "could not start a " << GetParam() << " server";
    }
    server_ = StartServer("s");
    ASSERT_TRUE(server_->ok());
    key_ = "{" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
           "-" + std::to_string(Clock::now().time_since_epoch().count()) + "}";
    for (char& c : key_) {
      if (c == '/') c = '-';
    }
    // A shared backend whose lock_id index is not written yet says so: skip it, by name.
    Client c(port());
    Reply probe = c.Run({"LOCKID.INFO", UnusedLockId()});
    ASSERT_TRUE(probe);
    if (GetParam() != "embedded" && probe->type == REDIS_REPLY_ERROR &&
        Str(probe.get()).rfind(kNoLookup, 0) == 0) {
      GTEST_SKIP() << GetParam() << " backend has no lookup by lock_id yet: " << Str(probe.get());
    }
    ASSERT_EQ(probe->type, REDIS_REPLY_NIL) << Str(probe.get());
  }

  std::unique_ptr<ServerProcess> StartServer(const std::string& name) {
    std::vector<std::string> args;
    if (!url_.empty()) args = {"--backend", url_};
    return std::make_unique<ServerProcess>(dir_.path() + "/" + name, std::move(args));
  }
  std::string K(const std::string& s) const { return key_ + s; }
  int port() const { return server_->port(); }
  // How far LOCK.INFO's expires_at_ms (now + the ttl the backend reports) may be from the expiry
  // a grant or an extend replied: etcd reports a lease's remaining ttl in whole seconds, rounded
  // down, so its expires_at_ms may be up to a second early (never late).
  int64_t ExpirySlackMs() const { return GetParam() == "etcd" ? 1100 : 250; }

  struct Grant {
    std::string lock_id;
    int64_t fence = 0, ttl_ms = 0, acquired_at_ms = 0, expires_at_ms = 0;
  };
  // LOCK.ACQUIRE key ttl_ms WITHTIMES [extra...]; nullopt (with a failure) unless granted.
  static std::optional<Grant> AcquireWithTimes(Client& c, const std::string& key, int64_t ttl_ms,
                                               std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"LOCK.ACQUIRE", key, std::to_string(ttl_ms), "WITHTIMES"};
    args.insert(args.end(), extra.begin(), extra.end());
    Reply g = c.Run(args);
    EXPECT_TRUE(g);
    if (!g) return std::nullopt;
    EXPECT_EQ(g->type, REDIS_REPLY_ARRAY) << Str(g.get());
    if (g->type != REDIS_REPLY_ARRAY) return std::nullopt;
    EXPECT_EQ(g->elements, 5u);
    if (g->elements != 5) return std::nullopt;
    Grant out{Str(g->element[0]), g->element[1]->integer, g->element[2]->integer,
              g->element[3]->integer, g->element[4]->integer};
    EXPECT_EQ(out.lock_id.size(), 32u);
    return out;
  }

  // Waits (up to 10 s) until LOCK.INFO of `key` is nil (expired).
  bool WaitFree(Client& c, const std::string& key) {
    for (const auto until = Clock::now() + seconds(10); Clock::now() < until;) {
      Reply r = c.Run({"LOCK.INFO", key});
      if (r && r->type == REDIS_REPLY_NIL) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<ServerProcess> server_;
  std::string key_;
};

TEST_P(LockIdServerTest, TimeIsTheServersWallClock) {
  Client c(port());
  Reply t = c.Run({"TIME"});
  ASSERT_TRUE(t);
  ASSERT_EQ(t->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(t->elements, 2u);
  ASSERT_EQ(t->element[0]->type, REDIS_REPLY_STRING);
  ASSERT_EQ(t->element[1]->type, REDIS_REPLY_STRING);
  const int64_t secs = std::stoll(Str(t->element[0]));
  const int64_t micros = std::stoll(Str(t->element[1]));
  EXPECT_GE(micros, 0);
  EXPECT_LT(micros, 1'000'000);
  const int64_t here =
      std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_LE(std::abs(secs - here), 2) << "the server runs on this machine";
  // Never goes backwards between two calls (no step expected during a test).
  const int64_t a = TimeMs(c), b = TimeMs(c);
  EXPECT_LE(a, b);
  Reply extra = c.Run({"TIME", "x"});
  ASSERT_TRUE(extra);
  EXPECT_EQ(Str(extra.get()), "ERR wrong number of arguments for 'time' command");
}

TEST_P(LockIdServerTest, AcquireWithTimesRepliesAcquiredAndExpiresOnTheServersClock) {
  Client c(port());
  const int64_t before = TimeMs(c);
  auto g = AcquireWithTimes(c, K("a"), 30000, {"OWNER", "w1"});
  const int64_t after = TimeMs(c);
  ASSERT_TRUE(g);
  EXPECT_GT(g->fence, 0);
  EXPECT_EQ(g->ttl_ms, 30000);
  EXPECT_GE(g->acquired_at_ms, before);
  EXPECT_LE(g->acquired_at_ms, after);
  EXPECT_EQ(g->expires_at_ms, g->acquired_at_ms + 30000);

  // Options in any order, any case; without WITHTIMES the reply keeps its three elements.
  auto g2 = AcquireWithTimes(c, K("b"), 1000, {"WAIT", "0", "OWNER", "withtimes"});
  ASSERT_TRUE(g2);
  Reply plain = c.Run({"LOCK.ACQUIRE", K("c"), "1000", "withTimes", "OWNER", "x"});
  ASSERT_TRUE(plain && plain->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(plain->elements, 5u);
  Reply three = c.Run({"LOCK.ACQUIRE", K("d"), "1000"});
  ASSERT_TRUE(three && three->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(three->elements, 3u);
  Reply owner = c.Run({"LOCK.INFO", K("b")});
  EXPECT_EQ(Str(Field(owner.get(), "owner")), "withtimes");

  // Not granted: nil as before.
  Reply taken = c.Run({"LOCK.ACQUIRE", K("a"), "30000", "WITHTIMES"});
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->type, REDIS_REPLY_NIL);

  // A waiter's grant carries the time it was granted: after the release, not when it queued.
  Async waiter(port(), {"LOCK.ACQUIRE", K("a"), "5000", "WAIT", "20000", "WITHTIMES"});
  for (const auto until = Clock::now() + seconds(20); Clock::now() < until;) {
    Reply info = c.Run({"LOCK.INFO", K("a")});
    const redisReply* w = Field(info.get(), "waiters");
    if (w != nullptr && w->integer == 1) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::this_thread::sleep_for(milliseconds(300));
  const int64_t released = TimeMs(c);
  ASSERT_EQ(c.Run({"LOCK.RELEASE", K("a"), g->lock_id})->integer, 1);
  Reply& w = waiter.reply();
  ASSERT_TRUE(w);
  ASSERT_EQ(w->type, REDIS_REPLY_ARRAY) << Str(w.get());
  ASSERT_EQ(w->elements, 5u);
  EXPECT_GE(w->element[3]->integer, released);
  EXPECT_LE(w->element[3]->integer, TimeMs(c));
  EXPECT_EQ(w->element[4]->integer, w->element[3]->integer + 5000);
}

TEST_P(LockIdServerTest, LockInfoAddsTimesAndLockIdHashAfterTheOldFields) {
  Client c(port());
  auto g = AcquireWithTimes(c, K("k"), 30000, {"OWNER", "worker-1"});
  ASSERT_TRUE(g);
  Reply info = c.Run({"LOCK.INFO", K("k")});
  const int64_t now = TimeMs(c);
  ASSERT_TRUE(info);
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY) << Str(info.get());
  EXPECT_EQ(FieldNames(info.get()),
            (std::vector<std::string>{"fence", "ttl_ms", "owner", "waiters", "acquired_at_ms",
                                      "expires_at_ms", "lock_id_hash"}));
  EXPECT_EQ(Field(info.get(), "fence")->integer, g->fence);
  EXPECT_EQ(Str(Field(info.get(), "owner")), "worker-1");
  EXPECT_EQ(Field(info.get(), "waiters")->integer, 0);
  EXPECT_EQ(Field(info.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  const int64_t ttl = Field(info.get(), "ttl_ms")->integer;
  const int64_t expires = Field(info.get(), "expires_at_ms")->integer;
  // expires_at_ms = now + ttl remaining: the grant's expiry, give or take the clocks' rounding.
  EXPECT_NEAR(expires, g->expires_at_ms, ExpirySlackMs());
  EXPECT_LE(expires, now + ttl + 5);
  EXPECT_EQ(Str(Field(info.get(), "lock_id_hash")), ExpectedLockIdHash(g->lock_id));
  for (size_t i = 0; i < info->elements; ++i) {
    EXPECT_EQ(Str(info->element[i]).find(g->lock_id), std::string::npos) << "lock_id shown";
  }

  // LOCK.EXTEND moves the expiry, never the acquisition time.
  std::this_thread::sleep_for(milliseconds(20));
  const int64_t before_extend = TimeMs(c);
  ASSERT_EQ(c.Run({"LOCK.EXTEND", K("k"), g->lock_id, "60000"})->integer, 60000);
  Reply info2 = c.Run({"LOCK.INFO", K("k")});
  const int64_t after_extend = TimeMs(c);
  ASSERT_TRUE(info2 && info2->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(Field(info2.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  EXPECT_GE(Field(info2.get(), "expires_at_ms")->integer, before_extend + 60000 - ExpirySlackMs());
  EXPECT_LE(Field(info2.get(), "expires_at_ms")->integer, after_extend + 60000 + 250);
  EXPECT_EQ(Str(Field(info2.get(), "lock_id_hash")), ExpectedLockIdHash(g->lock_id));

  // No owner label: owner is nil, the new fields are still there.
  auto bare = AcquireWithTimes(c, K("bare"), 30000);
  ASSERT_TRUE(bare);
  Reply info3 = c.Run({"LOCK.INFO", K("bare")});
  ASSERT_TRUE(info3 && info3->type == REDIS_REPLY_ARRAY);
  ASSERT_NE(Field(info3.get(), "owner"), nullptr);
  EXPECT_EQ(Field(info3.get(), "owner")->type, REDIS_REPLY_NIL);
  EXPECT_EQ(Field(info3.get(), "acquired_at_ms")->integer, bare->acquired_at_ms);
}

TEST_P(LockIdServerTest, LockIdInfoFindsTheLeaseByItsLockIdOnly) {
  Client c(port());
  auto g = AcquireWithTimes(c, K("k"), 30000, {"OWNER", "o"});
  ASSERT_TRUE(g);
  Reply info = c.Run({"LOCKID.INFO", g->lock_id});
  const int64_t now = TimeMs(c);
  ASSERT_TRUE(info);
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY) << Str(info.get());
  EXPECT_EQ(FieldNames(info.get()),
            (std::vector<std::string>{"key", "fence", "ttl_ms", "owner", "waiters",
                                      "acquired_at_ms", "expires_at_ms", "lock_id_hash"}));
  EXPECT_EQ(Str(Field(info.get(), "key")), K("k"));
  EXPECT_EQ(Field(info.get(), "fence")->integer, g->fence);
  EXPECT_GT(Field(info.get(), "ttl_ms")->integer, 25000);
  EXPECT_LE(Field(info.get(), "ttl_ms")->integer, 30000);
  EXPECT_EQ(Str(Field(info.get(), "owner")), "o");
  EXPECT_EQ(Field(info.get(), "waiters")->integer, 0);
  EXPECT_EQ(Field(info.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  EXPECT_NEAR(Field(info.get(), "expires_at_ms")->integer, g->expires_at_ms, ExpirySlackMs());
  EXPECT_LE(Field(info.get(), "expires_at_ms")->integer,
            now + Field(info.get(), "ttl_ms")->integer + 5);
  EXPECT_EQ(Str(Field(info.get(), "lock_id_hash")), ExpectedLockIdHash(g->lock_id));

  // This server's waiters for the key found, as LOCK.INFO counts them.
  Async waiter(port(), {"LOCK.ACQUIRE", K("k"), "1000", "WAIT", "3000"});
  int64_t waiters = 0;
  for (const auto until = Clock::now() + seconds(20); Clock::now() < until && waiters != 1;) {
    Reply r = c.Run({"LOCKID.INFO", g->lock_id});
    if (const redisReply* w = Field(r.get(), "waiters"); w != nullptr) waiters = w->integer;
    if (waiters != 1) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(waiters, 1);
  Reply& w = waiter.reply();
  ASSERT_TRUE(w);
  EXPECT_EQ(w->type, REDIS_REPLY_NIL);  // the wait ran out: still held by g

  // No owner label: owner nil.
  auto bare = AcquireWithTimes(c, K("bare"), 30000);
  ASSERT_TRUE(bare);
  Reply b = c.Run({"LOCKID.INFO", bare->lock_id});
  ASSERT_NE(Field(b.get(), "owner"), nullptr);
  EXPECT_EQ(Field(b.get(), "owner")->type, REDIS_REPLY_NIL);
  EXPECT_EQ(Str(Field(b.get(), "key")), K("bare"));

  // Nothing for: a lock id never issued, a multi-key group's lock id, a permit id, a released
  // lease's lock id.
  EXPECT_EQ(c.Run({"LOCKID.INFO", UnusedLockId()})->type, REDIS_REPLY_NIL);
  Reply group = c.Run({"LOCK.MACQUIRE", "2", K("m1"), K("m2"), "30000"});
  ASSERT_TRUE(group && group->type == REDIS_REPLY_ARRAY) << Str(group.get());
  EXPECT_EQ(c.Run({"LOCKID.INFO", Str(group->element[0])})->type, REDIS_REPLY_NIL);
  Reply permit = c.Run({"SEM.ACQUIRE", K("s"), "2", "30000"});
  ASSERT_TRUE(permit && permit->type == REDIS_REPLY_ARRAY) << Str(permit.get());
  EXPECT_EQ(c.Run({"LOCKID.INFO", Str(permit->element[0])})->type, REDIS_REPLY_NIL);
  ASSERT_EQ(c.Run({"LOCK.RELEASE", K("k"), g->lock_id})->integer, 1);
  EXPECT_EQ(c.Run({"LOCKID.INFO", g->lock_id})->type, REDIS_REPLY_NIL);
}

TEST_P(LockIdServerTest, LockIdReleaseReleasesOnlyThatLease) {
  Client c(port());
  auto g = AcquireWithTimes(c, K("k"), 30000);
  ASSERT_TRUE(g);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", UnusedLockId()})->integer, 0);
  Reply rel = c.Run({"LOCKID.RELEASE", g->lock_id});
  ASSERT_TRUE(rel);
  ASSERT_EQ(rel->type, REDIS_REPLY_INTEGER) << Str(rel.get());
  EXPECT_EQ(rel->integer, 1);
  EXPECT_EQ(c.Run({"LOCK.INFO", K("k")})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", g->lock_id})->integer, 0);
  EXPECT_EQ(c.Run({"LOCK.RELEASE", K("k"), g->lock_id})->integer, 0);

  // The next holder of the key is out of reach of the old lock id.
  auto next = AcquireWithTimes(c, K("k"), 30000);
  ASSERT_TRUE(next);
  EXPECT_GT(next->fence, g->fence);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", g->lock_id})->integer, 0);
  EXPECT_EQ(c.Run({"LOCKID.EXTEND", g->lock_id, "60000"})->integer, 0);
  Reply info = c.Run({"LOCK.INFO", K("k")});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(Field(info.get(), "fence")->integer, next->fence);

  // A group's lock id releases nothing (groups are not indexed); LOCK.MRELEASE still does.
  Reply group = c.Run({"LOCK.MACQUIRE", "2", K("m1"), K("m2"), "30000"});
  ASSERT_TRUE(group && group->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", Str(group->element[0])})->integer, 0);
  EXPECT_EQ(c.Run({"LOCK.INFO", K("m1")})->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(c.Run({"LOCK.MRELEASE", "2", K("m1"), K("m2"), Str(group->element[0])})->integer, 2);

  // A waiter is handed the key the moment LOCKID.RELEASE frees it.
  Async waiter(port(), {"LOCK.ACQUIRE", K("k"), "30000", "WAIT", "20000"});
  for (const auto until = Clock::now() + seconds(20); Clock::now() < until;) {
    Reply r = c.Run({"LOCK.INFO", K("k")});
    const redisReply* w = Field(r.get(), "waiters");
    if (w != nullptr && w->integer == 1) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", next->lock_id})->integer, 1);
  Reply& w = waiter.reply();
  ASSERT_TRUE(w);
  ASSERT_EQ(w->type, REDIS_REPLY_ARRAY) << Str(w.get());
  EXPECT_GT(w->element[1]->integer, next->fence);
}

TEST_P(LockIdServerTest, LockIdExtendMovesExpiryAndKeepsAcquiredAt) {
  Client c(port());
  auto g = AcquireWithTimes(c, K("k"), 30000);
  ASSERT_TRUE(g);
  std::this_thread::sleep_for(milliseconds(20));
  const int64_t before = TimeMs(c);
  Reply ext = c.Run({"LOCKID.EXTEND", g->lock_id, "60000"});
  const int64_t after = TimeMs(c);
  ASSERT_TRUE(ext);
  ASSERT_EQ(ext->type, REDIS_REPLY_INTEGER) << Str(ext.get());
  EXPECT_GE(ext->integer, before + 60000);
  EXPECT_LE(ext->integer, after + 60000);
  Reply info = c.Run({"LOCKID.INFO", g->lock_id});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY);
  EXPECT_GT(Field(info.get(), "ttl_ms")->integer, 55000);
  EXPECT_EQ(Field(info.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  EXPECT_NEAR(Field(info.get(), "expires_at_ms")->integer, ext->integer, ExpirySlackMs());
  // Shorter works too (EXTEND sets now + ttl).
  Reply shorter = c.Run({"LOCKID.EXTEND", g->lock_id, "20000"});
  ASSERT_TRUE(shorter && shorter->type == REDIS_REPLY_INTEGER);
  EXPECT_LT(shorter->integer, ext->integer);
  EXPECT_EQ(c.Run({"LOCKID.EXTEND", UnusedLockId(), "60000"})->integer, 0);

  // Never revives: after expiry the lock id finds nothing and extends nothing.
  auto brief = AcquireWithTimes(c, K("brief"), 300);
  ASSERT_TRUE(brief);
  ASSERT_TRUE(WaitFree(c, K("brief")));
  EXPECT_EQ(c.Run({"LOCKID.INFO", brief->lock_id})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(c.Run({"LOCKID.EXTEND", brief->lock_id, "60000"})->integer, 0);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", brief->lock_id})->integer, 0);
  EXPECT_EQ(c.Run({"LOCK.INFO", K("brief")})->type, REDIS_REPLY_NIL);

  // Released: 0.
  ASSERT_EQ(c.Run({"LOCKID.RELEASE", g->lock_id})->integer, 1);
  EXPECT_EQ(c.Run({"LOCKID.EXTEND", g->lock_id, "60000"})->integer, 0);
}

TEST_P(LockIdServerTest, BadArgumentsAreRefusedAndChangeNothing) {
  Client c(port());
  auto g = AcquireWithTimes(c, K("k"), 30000);
  ASSERT_TRUE(g);
  std::string upper = g->lock_id;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (upper == g->lock_id) upper[0] = 'G';  // all digits: make it bad another way
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"LOCKID.INFO", "nope"}, std::string(kBadLockId)},
      {{"LOCKID.INFO", upper}, std::string(kBadLockId)},
      {{"LOCKID.INFO", g->lock_id.substr(1)}, std::string(kBadLockId)},
      {{"LOCKID.INFO", g->lock_id + "0"}, std::string(kBadLockId)},
      {{"LOCKID.INFO", ""}, std::string(kBadLockId)},
      {{"LOCKID.RELEASE", upper}, std::string(kBadLockId)},
      {{"LOCKID.RELEASE", g->lock_id.substr(0, 31) + "g"}, std::string(kBadLockId)},
      {{"LOCKID.EXTEND", upper, "60000"}, std::string(kBadLockId)},
      {{"LOCKID.EXTEND", "x", "0"}, std::string(kBadLockId)},
      {{"LOCKID.EXTEND", g->lock_id, "0"}, "ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCKID.EXTEND", g->lock_id, "86400001"}, "ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCKID.EXTEND", g->lock_id, "1e3"}, "ERR ttl_ms must be an integer in [1, 86400000]"},
      {{"LOCKID.INFO"}, "ERR wrong number of arguments for 'lockid.info' command"},
      {{"LOCKID.RELEASE", g->lock_id, "x"},
       "ERR wrong number of arguments for 'lockid.release' command"},
      {{"LOCKID.EXTEND", g->lock_id}, "ERR wrong number of arguments for 'lockid.extend' command"},
      {{"LOCK.ACQUIRE", K("k2"), "1000", "WITHTIMES", "withtimes"},
       "ERR option WITHTIMES given more than once"},
      {{"LOCK.ACQUIRE", K("k2"), "1000", "WITHTIMES", "OWNER"},
       "ERR OWNER needs a value: a label of 1 to 512 bytes"},
      {{"LOCK.ACQUIRE", K("k2"), "1000", "WITHTIME"},
       "ERR unknown option 'WITHTIME' for 'lock.acquire'; accepted: WAIT ms, OWNER label, "
       "WITHTIMES"},
      {{"LOCK.MACQUIRE", "1", K("k2"), "1000", "WITHTIMES"},
       "ERR unknown option 'WITHTIMES' for 'lock.macquire'; accepted: WAIT ms, OWNER label"},
      {{"SEM.ACQUIRE", K("k2"), "2", "1000", "WITHTIMES"},
       "ERR unknown option 'WITHTIMES' for 'sem.acquire'; accepted: WAIT ms, OWNER label"},
  };
  for (const auto& [args, want] : bad) {
    Reply r = c.Run(args);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << args[0] << " " << args.back();
    EXPECT_EQ(Str(r.get()), want) << args[0] << " " << args.back();
  }
  // Nothing changed: the lease is held with its fence and its ttl not moved; k2 was never taken.
  Reply info = c.Run({"LOCKID.INFO", g->lock_id});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(Field(info.get(), "fence")->integer, g->fence);
  EXPECT_LE(Field(info.get(), "ttl_ms")->integer, 30000);
  EXPECT_EQ(c.Run({"LOCK.INFO", K("k2")})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(c.Run({"SEM.INFO", K("k2")})->type, REDIS_REPLY_NIL);
}

TEST_P(LockIdServerTest, Resp3Replies) {
  Client c(port());
  RawConn r(port());
  ASSERT_TRUE(r.ok());
  r.Send("HELLO 3\r\n");
  ASSERT_EQ(ReadAll(r, 4).substr(0, 1), "%");
  r.Send("TIME\r\n");
  std::string t = ReadAll(r, 4);
  EXPECT_EQ(t.substr(0, 5), "*2\r\n$") << t;
  r.Send("LOCK.ACQUIRE " + K("k") + " 30000 WITHTIMES OWNER o\r\n");
  std::string grant = ReadAll(r, 43);
  ASSERT_EQ(grant.substr(0, 9), "*5\r\n$32\r\n") << grant;
  const std::string lock_id = grant.substr(9, 32);
  r.Send("LOCK.INFO " + K("k") + "\r\n");
  std::string info = ReadAll(r, 4);
  EXPECT_EQ(info.substr(0, 4), "%7\r\n") << info;
  EXPECT_NE(
      info.find("$5\r\nowner\r\n$1\r\no\r\n$7\r\nwaiters\r\n:0\r\n$14\r\nacquired_at_ms\r\n:"),
      std::string::npos)
      << info;
  EXPECT_NE(info.find("$13\r\nexpires_at_ms\r\n:"), std::string::npos) << info;
  EXPECT_NE(info.find("$12\r\nlock_id_hash\r\n$24\r\n" + ExpectedLockIdHash(lock_id) + "\r\n"),
            std::string::npos)
      << info;
  r.Send("LOCKID.INFO " + lock_id + "\r\n");
  std::string by_id = ReadAll(r, 4);
  const std::string key_field = "%8\r\n$3\r\nkey\r\n$" + std::to_string(K("k").size()) + "\r\n" +
                                K("k") + "\r\n$5\r\nfence\r\n:";
  EXPECT_EQ(by_id.substr(0, key_field.size()), key_field) << by_id;
  r.Send("LOCKID.INFO " + UnusedLockId() + "\r\n");
  EXPECT_EQ(ReadAll(r, 3), "_\r\n");
  r.Send("LOCKID.EXTEND " + lock_id + " 60000\r\n");
  std::string ext = ReadAll(r, 4);
  EXPECT_EQ(ext.substr(0, 1), ":") << ext;
  EXPECT_GT(std::stoll(ext.substr(1)), TimeMs(c) + 50000) << ext;
  r.Send("LOCKID.INFO NOPE\r\n");
  EXPECT_EQ(ReadAll(r, 4), "-" + std::string(kBadLockId) + "\r\n");
  r.Send("LOCKID.RELEASE " + lock_id + "\r\n");
  EXPECT_EQ(ReadAll(r, 4), ":1\r\n");
  r.Send("LOCKID.RELEASE " + lock_id + "\r\n");
  EXPECT_EQ(ReadAll(r, 4), ":0\r\n");
  r.Send("LOCK.ACQUIRE " + K("k") + " 30000 WITHTIMES\r\nLOCK.ACQUIRE " + K("k") +
         " 30000 WITHTIMES\r\n");
  std::string two = ReadAll(r, 60);
  EXPECT_EQ(two.substr(0, 9), "*5\r\n$32\r\n") << two;
  EXPECT_EQ(two.substr(two.size() - 3), "_\r\n") << two;  // not granted: RESP3 null
}

// Two servers on one shared backend share the lock_id index: a lease taken through one is found,
// extended and released through the other.
TEST_P(LockIdServerTest, AnotherServerOnTheBackendFindsTheLease) {
  if (GetParam() == "embedded") GTEST_SKIP() << "one server per data directory";
  auto other = StartServer("other");
  ASSERT_TRUE(other->ok());
  Client a(port()), b(other->port());
  auto g = AcquireWithTimes(a, K("k"), 30000, {"OWNER", "on-a"});
  ASSERT_TRUE(g);
  Reply info = b.Run({"LOCKID.INFO", g->lock_id});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY) << Str(info.get());
  EXPECT_EQ(Str(Field(info.get(), "key")), K("k"));
  EXPECT_EQ(Str(Field(info.get(), "owner")), "on-a");
  EXPECT_EQ(Field(info.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  Reply ext = b.Run({"LOCKID.EXTEND", g->lock_id, "60000"});
  ASSERT_TRUE(ext && ext->type == REDIS_REPLY_INTEGER);
  EXPECT_GT(ext->integer, g->expires_at_ms);
  Reply on_a = a.Run({"LOCK.INFO", K("k")});
  EXPECT_GT(Field(on_a.get(), "ttl_ms")->integer, 55000);
  EXPECT_EQ(Field(on_a.get(), "acquired_at_ms")->integer, g->acquired_at_ms);
  EXPECT_EQ(b.Run({"LOCKID.RELEASE", g->lock_id})->integer, 1);
  EXPECT_EQ(a.Run({"LOCK.INFO", K("k")})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(a.Run({"LOCKID.INFO", g->lock_id})->type, REDIS_REPLY_NIL);
}

INSTANTIATE_TEST_SUITE_P(Backends, LockIdServerTest, ::testing::ValuesIn(Kinds()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// The embedded store keeps acquired_at across a restart (the lease record carries it).
TEST(LockIdEmbeddedTest, AcquiredAtSurvivesARestart) {
  TempDir dir;
  std::optional<int64_t> acquired;
  std::string lock_id;
  {
    ServerProcess s(dir.path() + "/s");
    ASSERT_TRUE(s.ok());
    Client c(s.port());
    Reply g = c.Run({"LOCK.ACQUIRE", "keep", "60000", "WITHTIMES", "OWNER", "me"});
    ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY && g->elements == 5u) << Str(g.get());
    lock_id = Str(g->element[0]);
    acquired = g->element[3]->integer;
    EXPECT_EQ(s.Terminate(), 0);
  }
  ServerProcess s(dir.path() + "/s");
  ASSERT_TRUE(s.ok());
  Client c(s.port());
  Reply info = c.Run({"LOCKID.INFO", lock_id});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY) << Str(info.get());
  EXPECT_EQ(Str(Field(info.get(), "key")), "keep");
  ASSERT_NE(Field(info.get(), "acquired_at_ms"), nullptr);
  EXPECT_EQ(Field(info.get(), "acquired_at_ms")->integer, *acquired);
  EXPECT_NEAR(Field(info.get(), "expires_at_ms")->integer, *acquired + 60000, 250);
  EXPECT_EQ(c.Run({"LOCKID.RELEASE", lock_id})->integer, 1);
}

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
// A Redis Cluster keeps the index and the lease in different slots: no lookup by lock_id, said so,
// while WITHTIMES and LOCK.INFO's new fields work.
TEST(LockIdClusterTest, ClusterRefusesLookupByLockIdWithAReason) {
  RedisCluster cluster;
  ASSERT_TRUE(cluster.Start());
  TempDir dir;
  ServerProcess s(dir.path() + "/s", {"--backend", cluster.url()});
  ASSERT_TRUE(s.ok());
  Client c(s.port());
  Reply g = c.Run({"LOCK.ACQUIRE", "{c}k", "30000", "WITHTIMES"});
  ASSERT_TRUE(g && g->type == REDIS_REPLY_ARRAY && g->elements == 5u) << Str(g.get());
  const std::string lock_id = Str(g->element[0]);
  EXPECT_EQ(g->element[4]->integer, g->element[3]->integer + 30000);
  Reply info = c.Run({"LOCK.INFO", "{c}k"});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_ARRAY);
  EXPECT_NE(Field(info.get(), "expires_at_ms"), nullptr);
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{{"LOCKID.INFO", lock_id},
                                             {"LOCKID.RELEASE", lock_id},
                                             {"LOCKID.EXTEND", lock_id, "60000"}}) {
    Reply r = c.Run(cmd);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR) << cmd[0];
    EXPECT_EQ(Str(r.get()).rfind(kNoLookup, 0), 0u) << Str(r.get());
    EXPECT_GT(r->len, kNoLookup.size() + 10) << "with the backend's reason: " << Str(r.get());
  }
  // Refused lookups changed nothing; the malformed id is refused before any I/O.
  EXPECT_EQ(Str(c.Run({"LOCKID.INFO", "x"}).get()), kBadLockId);
  EXPECT_EQ(c.Run({"LOCK.RELEASE", "{c}k", lock_id})->integer, 1);
}
#endif

}  // namespace
}  // namespace tollgate::testing
