#include "tollgate/redis_backend.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/redis/cluster_slot.h"
#include "gtest/gtest.h"
#include "hiredis/hiredis.h"
#include "tests/support/raw_redis.h"
#include "tests/support/redis_cluster.h"
#include "tests/support/redis_server.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RedisCluster;
using testing::RedisServer;

Decimal D(const char* s) { return *Decimal::ParsePositive(s, "test", kMaxCapacity); }

TEST(ClusterSlotTest, Crc16AndHashTagsAsRedisDocumentsThem) {
  EXPECT_EQ(redis::Crc16("123456789"), 0x31C3);  // the CRC16-XMODEM check value
  EXPECT_EQ(redis::Crc16(""), 0);
  // Slots Redis' CLUSTER KEYSLOT gives (also checked against a live cluster below).
  EXPECT_EQ(redis::KeySlot("foo"), 12182);
  EXPECT_EQ(redis::KeySlot("somekey"), 11058);
  EXPECT_EQ(redis::KeySlot("{user1000}.following"), redis::KeySlot("user1000"));
  EXPECT_EQ(redis::KeySlot("{user1000}.followers"), redis::KeySlot("user1000"));
  EXPECT_EQ(redis::KeySlot("foo{}{bar}"), redis::Crc16("foo{}{bar}") % 16384);  // empty tag: all
  EXPECT_EQ(redis::KeySlot("foo{{bar}}zap"), redis::KeySlot("{bar"));           // first { to }
  EXPECT_EQ(redis::KeySlot("foo{bar}{zap}"), redis::KeySlot("bar"));            // first tag only
  EXPECT_EQ(redis::KeySlot("foo{bar"), redis::Crc16("foo{bar") % 16384);        // unterminated
  EXPECT_EQ(redis::KeySlot("tollgate:{k}:lock"), redis::KeySlot("tollgate:{k}:fence"));
  for (int i = 0; i < 1000; ++i) {
    const int slot = redis::KeySlot("key" + std::to_string(i));
    EXPECT_GE(slot, 0);
    EXPECT_LT(slot, redis::kClusterSlots);
  }
}

TEST(RedisUrlTest, MalformedUrlsAreInvalidArgumentNamingTheUrl) {
  for (const char* url : {"", "redis:/x:1", "http://h:1", "redis://", "redis://:6379", "redis://h:",
                          "redis://h:0", "redis://h:65536", "redis://h:12x", "redis://u:p@h:1",
                          "redis://h:1/x", "redis://h:1/-1", "redis://[::1:1", "redis://h h:1"}) {
    auto b = NewRedisBackend(url);
    ASSERT_FALSE(b.ok()) << url;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_NE(b.status().message().find(std::string("'") + url + "'"), std::string::npos)
        << b.status();
  }
  EXPECT_EQ(NewRedisBackend("redis://127.0.0.1:1", Duration(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RedisUrlTest, NothingListeningIsUnavailablePromptly) {
  RedisServer s;  // reserve a port by starting and stopping a server
  ASSERT_TRUE(s.Start());
  s.Stop();
  const auto start = std::chrono::steady_clock::now();
  auto b = NewRedisBackend(s.url(), milliseconds(500));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
}

using Raw = testing::RawRedis;

class RedisBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    auto b = NewRedisBackend(server_.url(), seconds(1));
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }
  RedisServer server_;
  std::unique_ptr<Backend> b_;
};

// Issue 10: a Redis that wants a password we lack is an outage (-UNAVAILABLE), not bad input.
TEST_F(RedisBackendTest, NoAuthIsUnavailable) {
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "requirepass", "s3cret"}), "OK");
  auto b = NewRedisBackend(server_.url(), seconds(1));
  absl::Status st = b.ok() ? (*b)->Acquire("k", seconds(1), std::nullopt).status() : b.status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(std::string(st.message()).find("NOAUTH"), std::string::npos) << st;
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "requirepass", ""}), "OK");
}

// Issue 10: a Redis that may evict keys could evict fence counters (fences restart at 1).
TEST_F(RedisBackendTest, EvictingRedisIsRefused) {
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}), "OK");
  auto b = NewRedisBackend(server_.url(), seconds(1));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
  EXPECT_NE(std::string(b.status().message()).find("has maxmemory-policy allkeys-lru"),
            std::string::npos)
      << b.status();
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "OK");
  EXPECT_TRUE(NewRedisBackend(server_.url(), seconds(1)).ok());
}

TEST_F(RedisBackendTest, LeaseOnBinaryKeyAndKeyLayout) {
  const std::string key("k\0{x}\r\n", 7);
  auto g = b_->Acquire(key, seconds(30), "me");
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->fence, 1u);
  auto held = b_->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(held->has_value());
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:{" + key + "}:lock", "owner"}), "me");
  EXPECT_EQ(raw.Cmd({"GET", "tollgate:{" + key + "}:fence"}), "1");
  auto info = b_->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->fence, 1u);
  EXPECT_EQ((*info)->owner, "me");
  EXPECT_EQ((*info)->waiters, 0u);
  ASSERT_TRUE(b_->Release(key, (*g)->lock_id).ok());
  // The fence counter never expires: the next grant continues from it.
  auto g2 = b_->Acquire(key, milliseconds(1), std::nullopt);
  ASSERT_TRUE(g2.ok() && g2->has_value());
  EXPECT_EQ((*g2)->fence, 2u);
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(b_->Extend(key, (*g2)->lock_id, seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);  // expired: never revived
  EXPECT_EQ(raw.Cmd({"PTTL", "tollgate:{" + key + "}:fence"}), "-1");
}

// Issue 13: the lease hash keeps acquired_at ('at', Unix ms of the tollgate process's clock) and
// the index tollgate:i:<lock_id> -> key lives exactly as long as the single-key lease: written with
// its PX by the acquire, given the new ttl by extend, deleted by release.
TEST_F(RedisBackendTest, LookupByIdIndexIsKeptInStepWithTheLease) {
  const std::string key("lk\0{x}\r\n", 8);
  const WallTime before = std::chrono::floor<milliseconds>(RealClock()->WallNow());
  auto g = b_->Acquire(key, seconds(30), "me");
  const WallTime after = RealClock()->WallNow();
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const LeaseGrant grant = **g;
  EXPECT_GE(grant.acquired_at, before);
  EXPECT_LE(grant.acquired_at, after);
  EXPECT_EQ(grant.acquired_at, std::chrono::floor<milliseconds>(grant.acquired_at));  // whole ms
  const std::string at_ms = std::to_string(
      std::chrono::duration_cast<milliseconds>(grant.acquired_at.time_since_epoch()).count());
  Raw raw(server_.port());
  const std::string lock = "tollgate:{" + key + "}:lock";
  const std::string index = "tollgate:i:" + grant.lock_id;
  EXPECT_EQ(raw.Cmd({"HGET", lock, "at"}), at_ms);
  EXPECT_EQ(raw.Cmd({"GET", index}), key);
  const long lease_pttl = std::stol(raw.Cmd({"PTTL", lock}));
  const long index_pttl = std::stol(raw.Cmd({"PTTL", index}));
  EXPECT_GT(index_pttl, 29000);
  EXPECT_LE(index_pttl, lease_pttl);  // set in the same script: expire together

  auto info = b_->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->lock_id, grant.lock_id);
  EXPECT_EQ((*info)->acquired_at, grant.acquired_at);
  EXPECT_EQ((*info)->owner, "me");

  auto found = b_->LookupById(grant.lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, key);
  EXPECT_EQ((*found)->info.fence, grant.fence);
  EXPECT_EQ((*found)->info.owner, "me");
  EXPECT_EQ((*found)->info.lock_id, grant.lock_id);
  EXPECT_EQ((*found)->info.acquired_at, grant.acquired_at);
  EXPECT_EQ((*found)->info.waiters, 0u);
  EXPECT_GT((*found)->info.ttl_remaining, seconds(29));
  EXPECT_LE((*found)->info.ttl_remaining, seconds(30));

  // Extend: the index gets the lease's new ttl; acquired_at is kept.
  ASSERT_TRUE(b_->Extend(key, grant.lock_id, seconds(90)).ok());
  EXPECT_GT(std::stol(raw.Cmd({"PTTL", index})), 89000);
  EXPECT_LE(std::stol(raw.Cmd({"PTTL", index})), std::stol(raw.Cmd({"PTTL", lock})));
  EXPECT_EQ(raw.Cmd({"HGET", lock, "at"}), at_ms);
  found = b_->LookupById(grant.lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->info.acquired_at, grant.acquired_at);
  EXPECT_GT((*found)->info.ttl_remaining, seconds(89));

  // A failed release (another lock_id) changes nothing; the holder's release drops the index.
  EXPECT_EQ(b_->Release(key, std::string(32, 'a')).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(raw.Cmd({"GET", index}), key);
  ASSERT_TRUE(b_->Release(key, grant.lock_id).ok());
  EXPECT_EQ(raw.Cmd({"EXISTS", index}), "0");
  found = b_->LookupById(grant.lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());

  // A lease that expires takes its index with it.
  auto brief = b_->Acquire(key, milliseconds(30), std::nullopt);
  ASSERT_TRUE(brief.ok() && brief->has_value());
  EXPECT_EQ(raw.Cmd({"GET", "tollgate:i:" + (*brief)->lock_id}), key);
  std::this_thread::sleep_for(milliseconds(60));
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:i:" + (*brief)->lock_id}), "0");
  found = b_->LookupById((*brief)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());

  // Groups and permits are not indexed, but a group's leases keep acquired_at.
  const WallTime mbefore = std::chrono::floor<milliseconds>(RealClock()->WallNow());
  auto m = b_->MultiAcquire({{"lm1", "lm2"}, seconds(30), Duration(0), std::nullopt});
  ASSERT_TRUE(m.ok() && m->has_value()) << m.status();
  EXPECT_GE((*m)->acquired_at, mbefore);
  EXPECT_LE((*m)->acquired_at, RealClock()->WallNow());
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:i:" + (*m)->lock_id}), "0");
  found = b_->LookupById((*m)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  auto minfo = b_->Info("lm2");
  ASSERT_TRUE(minfo.ok() && minfo->has_value()) << minfo.status();
  EXPECT_EQ((*minfo)->lock_id, (*m)->lock_id);
  EXPECT_EQ((*minfo)->acquired_at, (*m)->acquired_at);
  ASSERT_TRUE(b_->Extend("lm1", (*m)->lock_id, seconds(40)).ok());  // no index to touch
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:i:" + (*m)->lock_id}), "0");
  auto p = b_->SemAcquire({"ls", 2, seconds(30), Duration(0), std::nullopt});
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  found = b_->LookupById((*p)->permit_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
}

// A single-key lease extended or released through the multi-key calls (as a group of one) keeps
// its index in step too.
TEST_F(RedisBackendTest, LookupByIdIndexFollowsMultiKeyExtendAndRelease) {
  auto g = b_->Acquire("mx", seconds(30), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  const std::string index = "tollgate:i:" + (*g)->lock_id;
  Raw raw(server_.port());
  const std::vector<std::string> keys = {"mx"};
  ASSERT_TRUE(b_->MultiExtend(keys, (*g)->lock_id, seconds(90)).ok());
  EXPECT_GT(std::stol(raw.Cmd({"PTTL", index})), 89000);
  auto found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_GT((*found)->info.ttl_remaining, seconds(89));
  // Not held: nothing changes.
  EXPECT_EQ(*b_->MultiRelease(keys, std::string(32, 'b')), 0u);
  EXPECT_EQ(raw.Cmd({"GET", index}), "mx");
  EXPECT_EQ(*b_->MultiRelease(keys, (*g)->lock_id), 1u);
  EXPECT_EQ(raw.Cmd({"EXISTS", index}), "0");
  found = b_->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
}

// The index only points the way: LookupById answers only for an unexpired lease on that key held
// by that very lock_id. Leases stored by a tollgate that kept no acquired_at (and no index) still
// work; Info reports their acquired_at as unknown.
TEST_F(RedisBackendTest, LookupByIdVerifiesTheLeaseAndOldLeasesStillWork) {
  Raw raw(server_.port());
  // A stale index (say, restored from an old snapshot) naming a key now held by another lock_id.
  auto g = b_->Acquire("v", seconds(30), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  const std::string other = "0123456789abcdef0123456789abcdef";
  ASSERT_EQ(raw.Cmd({"SET", "tollgate:i:" + other, "v"}), "OK");
  auto found = b_->LookupById(other);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  ASSERT_EQ(raw.Cmd({"SET", "tollgate:i:" + other, "nobody-holds-this"}), "OK");
  found = b_->LookupById(other);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());

  // A lease as an older tollgate stored it: no 'at', no index.
  const std::string old_id = "fedcba9876543210fedcba9876543210";
  const std::string lock = "tollgate:{old}:lock";
  ASSERT_EQ(raw.Cmd({"HSET", lock, "id", old_id, "fence", "7", "owner", "o"}), "3");
  ASSERT_EQ(raw.Cmd({"PEXPIRE", lock, "30000"}), "1");
  auto info = b_->Info("old");
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->fence, 7u);
  EXPECT_EQ((*info)->lock_id, old_id);
  EXPECT_FALSE((*info)->acquired_at.has_value());
  found = b_->LookupById(old_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());  // never indexed
  ASSERT_TRUE(b_->Extend("old", old_id, seconds(60)).ok());
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:i:" + old_id}), "0");  // extend creates no index
  // Given an index by hand, it is found, acquired_at unknown.
  ASSERT_EQ(raw.Cmd({"SET", "tollgate:i:" + old_id, "old", "PX", "60000"}), "OK");
  found = b_->LookupById(old_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, "old");
  EXPECT_EQ((*found)->info.fence, 7u);
  EXPECT_EQ((*found)->info.owner, "o");
  EXPECT_FALSE((*found)->info.acquired_at.has_value());
  ASSERT_TRUE(b_->Release("old", old_id).ok());
  EXPECT_EQ(raw.Cmd({"EXISTS", lock}), "0");
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:i:" + old_id}), "0");
}

// A malformed lock_id is refused before any I/O: InvalidArgument even with the server down.
TEST_F(RedisBackendTest, LookupByIdRefusesAMalformedLockIdBeforeAnyIo) {
  server_.Stop();
  for (const std::string& id :
       {std::string(), std::string(31, 'a'), std::string(33, 'a'), std::string(32, 'A'),
        std::string(31, 'a') + "g", std::string(31, 'a') + '\0', std::string(31, 'a') + "*"}) {
    auto r = b_->LookupById(id);
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_EQ(r.status().message(), "lock_id must be 32 lowercase hex characters");
  }
  EXPECT_EQ(b_->LookupById(std::string(32, 'a')).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server_.Restart());
}

// Under lock-delay a lease that expired unreleased keeps its key blocked, but it is gone: neither
// Info nor LookupById finds it.
TEST_F(RedisBackendTest, LookupByIdSeesALeaseGoneAtItsTtlUnderLockDelay) {
  auto b = NewRedisBackend(server_.url(), seconds(1), seconds(5));
  ASSERT_TRUE(b.ok()) << b.status();
  auto g = (*b)->Acquire("ld", milliseconds(200), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  auto found = (*b)->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->key, "ld");
  // Extend under lock-delay keeps the index in step too.
  ASSERT_TRUE((*b)->Extend("ld", (*g)->lock_id, milliseconds(300)).ok());
  Raw raw(server_.port());
  EXPECT_GT(std::stol(raw.Cmd({"PTTL", "tollgate:i:" + (*g)->lock_id})), 200);
  // Keep the index alive past the lease's end, so that only the script's check hides the lease.
  ASSERT_EQ(raw.Cmd({"PEXPIRE", "tollgate:i:" + (*g)->lock_id, "60000"}), "1");
  std::this_thread::sleep_for(milliseconds(400));
  auto again = (*b)->Acquire("ld", seconds(1), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());  // still in lock-delay
  found = (*b)->LookupById((*g)->lock_id);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  auto info = (*b)->Info("ld");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
}

TEST_F(RedisBackendTest, RegisterComparesFullSixtyFourBitFences) {
  // Fences up to the counter's maximum count as issued (the counter is a signed 64-bit integer,
  // so no fence above 2^63 - 1 ever is: FencedSet refuses it).
  Raw raw(server_.port());
  ASSERT_EQ(raw.Cmd({"SET", "tollgate:fence", "9223372036854775807"}), "OK");
  EXPECT_EQ(b_->FencedSet("r", 18446744073709551615u, "max").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(b_->FencedSet("r", 9223372036854775807u, "max").ok());
  absl::Status st = b_->FencedSet("r", 9223372036854775806u, "one less");
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(st.message(), "fence 9223372036854775806 is older than 9223372036854775807");
  EXPECT_TRUE(b_->FencedSet("r2", 9007199254740993u, "a").ok());  // 2^53 + 1
  EXPECT_EQ(b_->FencedSet("r2", 9007199254740992u, "b").code(), absl::StatusCode::kAborted);
  auto got = b_->FencedGet("r2");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->fence, 9007199254740993u);
  EXPECT_EQ((*got)->value, "a");
}

TEST_F(RedisBackendTest, FencedWriteAcceptsEqualAndNewerRejectsOlder) {
  Raw raw(server_.port());
  const std::string key = "{order:42}:state";
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 7, "a").ok());
  EXPECT_EQ(raw.Cmd({"GET", key}), "a");
  EXPECT_EQ(raw.Cmd({"GET", RedisFenceRecordKey(key)}), "7");
  EXPECT_EQ(RedisFenceRecordKey(key), "{order:42}:state:tollgate-fence");
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 7, "b").ok());  // equal
  EXPECT_EQ(raw.Cmd({"GET", key}), "b");
  absl::Status stale = RedisFencedWrite(*b_, key, 6, "stale");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(), "fence 6 is older than 7");
  EXPECT_EQ(raw.Cmd({"GET", key}), "b");                                     // unchanged
  EXPECT_TRUE(RedisFencedWrite(*b_, key, 10, std::string("v\0x", 3)).ok());  // newer
  EXPECT_EQ(raw.Cmd({"GET", key}), std::string("v\0x", 3));
  EXPECT_EQ(raw.Cmd({"GET", RedisFenceRecordKey(key)}), "10");
  EXPECT_EQ(RedisFencedWrite(*b_, key, 0, "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisFencedWrite(*b_, "", 1, "x").code(), absl::StatusCode::kInvalidArgument);
  // The shipped script is usable directly (any client): EVAL with the documented KEYS/ARGV.
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "9", "z"}),
            "STALE fence 9 is older than 10");
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "11", "z"}),
            "OK");
  EXPECT_EQ(raw.Cmd({"EVAL", std::string(RedisFencedWriteScript()), "2", key,
                     RedisFenceRecordKey(key), "011", "z"})
                .substr(0, 4),
            "ERR ");
}

TEST_F(RedisBackendTest, ReloadsScriptsAfterScriptFlush) {
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto g = b_->Acquire("after-flush", seconds(5), std::nullopt);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->has_value());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(RedisFencedWrite(*b_, "user-key", 1, "v").ok());
  EXPECT_EQ(raw.Cmd({"SCRIPT", "FLUSH"}), "OK");
  auto d = b_->Throttle("t", {D("1"), D("1")}, D("1"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed);
}

TEST_F(RedisBackendTest, UnavailablePromptlyWhenStoppedAndRecoversAfterRestart) {
  auto g = b_->Acquire("o", seconds(60), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  server_.Stop();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto down = b_->Info("o");
    EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  }
  EXPECT_EQ(RedisFencedWrite(*b_, "k", 1, "v").code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server_.Restart());
  absl::StatusOr<std::optional<LeaseInfo>> up = absl::UnavailableError("not tried");
  for (int i = 0; i < 50 && !up.ok(); ++i) {
    up = b_->Info("o");
    if (!up.ok()) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE(up->has_value());  // AOF kept the lease and the fence
  EXPECT_EQ((*up)->fence, (*g)->fence);
  EXPECT_TRUE(b_->Release("o", (*g)->lock_id).ok());
  auto next = b_->Acquire("o", seconds(5), std::nullopt);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_GT((*next)->fence, (*g)->fence);
}

TEST_F(RedisBackendTest, HungServerTimesOutAsUnavailable) {
  ASSERT_TRUE(b_->Info("x").ok());  // connected
  // A server that accepts nothing and answers nothing (stopped, not dead): the command timeout.
  ASSERT_EQ(kill(server_.pid(), SIGSTOP), 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = b_->Info("x");
  const auto took = std::chrono::steady_clock::now() - start;
  kill(server_.pid(), SIGCONT);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_GE(took, milliseconds(900));
  EXPECT_LT(took, seconds(3));
  auto again = b_->Info("x");  // reconnects
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(RedisBackendTest, ThrottleIsExactAndBucketsExpireWhenFull) {
  const BucketParams p{D("1"), D("0.001")};  // one token per 1000 s
  auto a = b_->Throttle("slow", p, D("1"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->allowed);
  EXPECT_EQ(a->remaining, 0u);
  EXPECT_EQ(a->reset_after, seconds(1000));
  auto d = b_->Throttle("slow", p, D("0.001"));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->allowed);
  ASSERT_TRUE(d->retry_after.has_value());
  // A thousandth of a token at 1 micro-token per ms: 1000 ms, less the whole milliseconds that
  // passed since the first call (a loaded machine may take a few).
  EXPECT_LE(*d->retry_after, milliseconds(1000));
  EXPECT_GT(*d->retry_after, milliseconds(900));
  Raw raw(server_.port());
  const long pttl = std::stol(raw.Cmd({"PTTL", "tollgate:t:{slow}"}));
  EXPECT_GT(pttl, 999'000);
  EXPECT_LE(pttl, 1'000'000);
  // Cost above capacity: never, whatever its size; nothing consumed.
  auto never = b_->Throttle("big", {D("2"), D("1")}, kMaxCost);
  ASSERT_TRUE(never.ok()) << never.status();
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
  EXPECT_EQ(never->remaining, 2u);
  // Large capacity and a fractional cost stay exact.
  const BucketParams big{D("4000000000"), D("1000000")};
  auto x = b_->Throttle("large", big, D("0.000001"));
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE(x->allowed);
  EXPECT_EQ(x->remaining, 3'999'999'999u);
  EXPECT_EQ(x->reset_after, milliseconds(1));
}

TEST_F(RedisBackendTest, RejectsParametersTheLuaArithmeticCannotRepresent) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto r = b_->Throttle("p", {D("1"), D("0.0001")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("rate"), std::string::npos) << r.status();
  r = b_->Throttle("p", {D("1.0000001"), D("1")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("capacity"), std::string::npos) << r.status();
  r = b_->Throttle("p", {D("4000000001"), D("1")}, D("1"));
  EXPECT_EQ(r.status().code(), kInvalid);
  r = b_->Throttle("p", {D("1"), D("1")}, D("0.0000001"));
  EXPECT_EQ(r.status().code(), kInvalid);
  EXPECT_NE(r.status().message().find("cost"), std::string::npos) << r.status();
  std::vector<LayerCheck> layers = {{"ok", "k", {D("1"), D("1")}, false},
                                    {"bad", "k", {D("1"), D("0.0005")}, false}};
  auto c = b_->CheckLayers(layers, D("1"));
  EXPECT_EQ(c.status().code(), kInvalid);
  EXPECT_NE(c.status().message().find("layer 'bad'"), std::string::npos) << c.status();
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"DBSIZE"}), "0");  // nothing reached Redis
}

TEST_F(RedisBackendTest, CheckLayersChargesAllOrNothing) {
  const BucketParams global{D("3"), D("0.001")}, user{D("1"), D("0.001")};
  auto check = [&](const char* u) {
    std::vector<LayerCheck> layers = {{"global", "g", global, false},
                                      {"user", u, user, false},
                                      {"shadow", u, {D("0.5"), D("0.001")}, true}};
    auto d = b_->CheckLayers(layers, D("1"));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : PolicyDecision{};
  };
  auto a = check("a");
  EXPECT_TRUE(a.allowed);  // the shadow layer (capacity 0.5) denies but does not count
  EXPECT_EQ(a.remaining, 0u);
  for (int i = 0; i < 3; ++i) {
    auto d = check("a");
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.denied_layer, "user");
    ASSERT_TRUE(d.retry_after.has_value());
    EXPECT_GT(*d.retry_after, seconds(990));
  }
  Raw raw(server_.port());
  // Global was charged once; the shadow layer was never charged (it had no room).
  EXPECT_EQ(raw.Cmd({"HGET", "tollgate:l:{tollgate-rl}:6:global:g", "d"}), "1000000");
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:l:{tollgate-rl}:6:shadow:a"}), "0");
  EXPECT_TRUE(check("b").allowed);
  auto c = check("c");
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.remaining, 0u);
  auto d = check("d");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.denied_layer, "global");
  EXPECT_EQ(raw.Cmd({"EXISTS", "tollgate:l:{tollgate-rl}:4:user:d"}), "0");  // not charged
  // Layer names are length-prefixed: layer "a:b" key "c" and layer "a" key "b:c" never meet.
  std::vector<LayerCheck> l1 = {{"a:b", "c", user, false}};
  std::vector<LayerCheck> l2 = {{"a", "b:c", user, false}};
  EXPECT_TRUE(b_->CheckLayers(l1, D("1"))->allowed);
  EXPECT_TRUE(b_->CheckLayers(l2, D("1"))->allowed);
  // A cost above a layer's capacity: never.
  std::vector<LayerCheck> l3 = {{"global", "g2", global, false}};
  auto never = b_->CheckLayers(l3, D("4"));
  ASSERT_TRUE(never.ok());
  EXPECT_FALSE(never->allowed);
  EXPECT_FALSE(never->retry_after.has_value());
}

TEST_F(RedisBackendTest, AStandaloneServerCostsOneEvalshaPerOperation) {
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"CONFIG", "RESETSTAT"}), "OK");
  auto g = b_->Acquire("one-trip", seconds(5), std::nullopt);
  ASSERT_TRUE(g.ok() && g->has_value());
  ASSERT_TRUE(b_->Info("one-trip").ok());
  ASSERT_TRUE(b_->Release("one-trip", (*g)->lock_id).ok());
  ASSERT_TRUE(b_->FencedSet("one-trip", 1, "v").ok());
  ASSERT_TRUE(b_->Throttle("one-trip", {D("1"), D("1")}, D("1")).ok());
  const std::string stats = raw.Cmd({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=5,"), std::string::npos) << stats;
  for (const char* other :
       {"cmdstat_script", "cmdstat_cluster", "cmdstat_asking", "cmdstat_select", "cmdstat_ping"}) {
    EXPECT_EQ(stats.find(other), std::string::npos) << stats;
  }
}

TEST_F(RedisBackendTest, SelectsTheDatabaseFromTheUrl) {
  auto b = NewRedisBackend(server_.url() + "/3");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(RedisFencedWrite(**b, "in-db-3", 1, "v").ok());
  Raw raw(server_.port());
  EXPECT_EQ(raw.Cmd({"EXISTS", "in-db-3"}), "0");
  EXPECT_EQ(raw.Cmd({"SELECT", "3"}), "OK");
  EXPECT_EQ(raw.Cmd({"GET", "in-db-3"}), "v");
  EXPECT_EQ(NewRedisBackend(server_.url() + "/99999").status().code(),
            absl::StatusCode::kInternal);  // the server refuses the db index
}

// ---- Redis Cluster ----

// One 3-master cluster for all cluster tests (they move slots; each test uses fresh keys).
class RedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new RedisCluster;
    const auto start = std::chrono::steady_clock::now();
    if (!cluster_->Start()) {
      delete cluster_;
      cluster_ = nullptr;
      return;
    }
    std::printf("cluster started in %lld ms\n",
                static_cast<long long>(std::chrono::duration_cast<milliseconds>(
                                           std::chrono::steady_clock::now() - start)
                                           .count()));
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr) << "the Redis Cluster did not start";
    prefix_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ":" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
  }
  // A fresh key (prefixed per test) whose lease keys' slot is served by node `owner`.
  std::string KeyOn(int owner, int* slot = nullptr) {
    for (int i = 0;; ++i) {
      std::string k = prefix_ + std::to_string(i);
      const int s = redis::KeySlot(k);
      if (cluster_->OwnerOfSlot(s) == owner) {
        if (slot != nullptr) *slot = s;
        return k;
      }
    }
  }
  // How many error replies starting with `prefix` (e.g. MOVED, ASK) node i has sent.
  static long ErrorCount(int i, const std::string& prefix) {
    Raw raw(cluster_->port(i));
    const std::string info = raw.Cmd({"INFO", "errorstats"});
    const std::string tag = "errorstat_" + prefix + ":count=";
    const size_t at = info.find(tag);
    return at == std::string::npos ? 0 : std::stol(info.substr(at + tag.size()));
  }
  // CLUSTER SETSLOT slot <args...> on every node.
  static void SetSlotEverywhere(int slot, const std::vector<std::string>& args) {
    for (int i = 0; i < RedisCluster::kNodes; ++i) {
      std::vector<std::string> cmd = {"CLUSTER", "SETSLOT", std::to_string(slot)};
      cmd.insert(cmd.end(), args.begin(), args.end());
      EXPECT_EQ(Raw(cluster_->port(i)).Cmd(cmd), "OK") << i;
    }
  }

  static RedisCluster* cluster_;
  std::string prefix_;
};
RedisCluster* RedisClusterTest::cluster_ = nullptr;

TEST_F(RedisClusterTest, OneSeedReachesKeysOnAllThreeNodes) {
  auto b = NewRedisBackend(cluster_->url(0), seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  Raw seed(cluster_->port(0));
  std::set<int> used;
  for (int i = 0; i < 60; ++i) {
    const std::string key = prefix_ + std::to_string(i) + std::string("\0\r\n", 3);
    auto g = (*b)->Acquire(key, seconds(30), "owner-" + std::to_string(i));
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(g->has_value());
    // Our slot is Redis' slot, and the lease lives on the slot's owner (read there directly).
    const std::string lock = "tollgate:{" + key + "}:lock";
    const int slot = redis::KeySlot(lock);
    EXPECT_EQ(seed.Cmd({"CLUSTER", "KEYSLOT", lock}), std::to_string(slot));
    const int owner = cluster_->OwnerOfSlot(slot);
    ASSERT_GE(owner, 0);
    used.insert(owner);
    EXPECT_EQ(Raw(cluster_->port(owner)).Cmd({"HGET", lock, "id"}), (*g)->lock_id);
    auto info = (*b)->Info(key);
    ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
    EXPECT_EQ((*info)->fence, (*g)->fence);
    ASSERT_TRUE((*b)->Release(key, (*g)->lock_id).ok());
    ASSERT_TRUE((*b)->FencedSet(key, 3, "v").ok());
    EXPECT_EQ((*b)->FencedSet(key, 2, "old").code(), absl::StatusCode::kAborted);
    auto d = (*b)->Throttle(key, {D("1"), D("1")}, D("1"));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(d->allowed);
  }
  EXPECT_EQ(used.size(), 3u);
  std::vector<LayerCheck> layers = {{"global", prefix_, {D("2"), D("1")}, false},
                                    {"user", prefix_ + "u", {D("1"), D("1")}, false}};
  auto c = (*b)->CheckLayers(layers, D("1"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->allowed);
  EXPECT_TRUE(RedisFencedWrite(**b, "{" + prefix_ + "order}:state", 1, "v").ok());
  // Keys that cannot share a slot are refused before anything is sent.
  absl::Status untagged = RedisFencedWrite(**b, prefix_ + "plain", 1, "v");
  EXPECT_EQ(untagged.code(), absl::StatusCode::kInvalidArgument) << untagged;
  EXPECT_NE(untagged.message().find("hash tag"), std::string::npos) << untagged;
  EXPECT_EQ((*b)->Acquire("}" + prefix_, seconds(1), std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A cluster has no lock_id index (it would live in another slot than the lease): LookupById is
// Unimplemented (a malformed lock_id is still InvalidArgument), and acquire writes no index key.
TEST_F(RedisClusterTest, LookupByIdIsUnimplementedAndNothingIsIndexed) {
  auto b = NewRedisBackend(cluster_->url(0), seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  const std::string key = KeyOn(1);
  auto g = (*b)->Acquire(key, seconds(30), "me");
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  auto info = (*b)->Info(key);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->lock_id, (*g)->lock_id);
  EXPECT_EQ((*info)->acquired_at, (*g)->acquired_at);
  ASSERT_TRUE((*b)->Extend(key, (*g)->lock_id, seconds(40)).ok());
  const std::string index = "tollgate:i:" + (*g)->lock_id;
  const int index_owner = cluster_->OwnerOfSlot(redis::KeySlot(index));
  ASSERT_GE(index_owner, 0);
  EXPECT_EQ(Raw(cluster_->port(index_owner)).Cmd({"EXISTS", index}), "0");
  auto found = (*b)->LookupById((*g)->lock_id);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kUnimplemented) << found.status();
  EXPECT_NE(found.status().message().find("Redis Cluster"), std::string::npos) << found.status();
  EXPECT_EQ((*b)->LookupById("nope").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*b)->Release(key, (*g)->lock_id).ok());
}

TEST_F(RedisClusterTest, MovedIsFollowedAndRemembered) {
  auto b = NewRedisBackend(cluster_->url(0), seconds(2));  // its slot map is current now
  ASSERT_TRUE(b.ok()) << b.status();
  int slot = 0;
  const std::string key = KeyOn(1, &slot);
  // Move the (empty) slot from node 1 to node 2 behind the backend's back.
  EXPECT_EQ(
      Raw(cluster_->port(2))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", cluster_->node_id(1)}),
      "OK");
  EXPECT_EQ(
      Raw(cluster_->port(1))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", cluster_->node_id(2)}),
      "OK");
  SetSlotEverywhere(slot, {"NODE", cluster_->node_id(2)});
  ASSERT_EQ(cluster_->OwnerOfSlot(slot), 2);
  const long moved_before = ErrorCount(1, "MOVED");
  auto g = (*b)->Acquire(key, seconds(30), std::nullopt);  // node 1 answers MOVED -> node 2
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ(ErrorCount(1, "MOVED"), moved_before + 1);
  EXPECT_EQ(Raw(cluster_->port(2)).Cmd({"HGET", "tollgate:{" + key + "}:lock", "id"}),
            (*g)->lock_id);
  ASSERT_TRUE((*b)->Release(key, (*g)->lock_id).ok());  // straight to node 2 now
  EXPECT_EQ(ErrorCount(1, "MOVED"), moved_before + 1);
}

TEST_F(RedisClusterTest, AskDuringAMigrationIsFollowedOnceAndTryAgainIsUnavailable) {
  auto b = NewRedisBackend(cluster_->url(0), seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  int slot = 0;
  const std::string key = KeyOn(0, &slot);
  const std::string reg = "tollgate:{" + key + "}:reg";
  ASSERT_EQ(redis::KeySlot(reg), slot);
  EXPECT_EQ(
      Raw(cluster_->port(1))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", cluster_->node_id(0)}),
      "OK");
  EXPECT_EQ(
      Raw(cluster_->port(0))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", cluster_->node_id(1)}),
      "OK");
  const long ask_before = ErrorCount(0, "ASK");
  // A key node 0 does not have: ASK -> ASKING + the script on node 1, which now holds it.
  ASSERT_TRUE((*b)->FencedSet(key, 7, "moving").ok());
  EXPECT_EQ(Raw(cluster_->port(1)).Cmd({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "1");
  EXPECT_EQ(Raw(cluster_->port(0)).Cmd({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "0");
  auto got = (*b)->FencedGet(key);  // ASK again: not remembered
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_EQ((*got)->value, "moving");
  EXPECT_EQ(ErrorCount(0, "ASK"), ask_before + 2);
  // Two missing keys on the importing node: TRYAGAIN, i.e. Unavailable until the move is done.
  auto g = (*b)->Acquire(key, seconds(30), std::nullopt);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable) << g.status();
  EXPECT_NE(g.status().message().find("TRYAGAIN"), std::string::npos) << g.status();
  // Finish the move: then MOVED leads to node 1.
  SetSlotEverywhere(slot, {"NODE", cluster_->node_id(1)});
  auto after = (*b)->FencedGet(key);
  ASSERT_TRUE(after.ok() && after->has_value()) << after.status();
  EXPECT_EQ((*after)->fence, 7u);
  auto g2 = (*b)->Acquire(key, seconds(30), std::nullopt);
  ASSERT_TRUE(g2.ok()) << g2.status();
  EXPECT_TRUE(g2->has_value());
}

TEST_F(RedisClusterTest, RedirectLoopsGiveUpAsUnavailable) {
  auto b = NewRedisBackend(cluster_->url(0), seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  int slot = 0;
  const std::string key = KeyOn(2, &slot);
  // Node 2 sends missing keys to node 0, which does not import the slot and sends them back.
  EXPECT_EQ(
      Raw(cluster_->port(2))
          .Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", cluster_->node_id(0)}),
      "OK");
  auto r = (*b)->FencedGet(key);
  EXPECT_EQ(Raw(cluster_->port(2)).Cmd({"CLUSTER", "SETSLOT", std::to_string(slot), "STABLE"}),
            "OK");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("5 redirects"), std::string::npos) << r.status();
  auto ok = (*b)->FencedGet(key);
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(RedisClusterTest, AHungNodeIsUnavailableForItsSlotsOnlyAndRecovers) {
  auto b = NewRedisBackend(cluster_->url(0), milliseconds(300));
  ASSERT_TRUE(b.ok()) << b.status();
  const std::string on1 = KeyOn(1), on2 = KeyOn(2);
  ASSERT_TRUE((*b)->FencedSet(on1, 1, "a").ok());
  ASSERT_TRUE((*b)->FencedSet(on2, 1, "b").ok());
  ASSERT_EQ(kill(cluster_->pid(1), SIGSTOP), 0);
  const auto start = std::chrono::steady_clock::now();
  auto down = (*b)->FencedGet(on1);
  const auto took = std::chrono::steady_clock::now() - start;
  auto up = (*b)->FencedGet(on2);
  kill(cluster_->pid(1), SIGCONT);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_LT(took, seconds(2));
  EXPECT_TRUE(up.ok()) << up.status();
  // Node 1 answers again: the next call reconnects (via a MOVED from another node).
  absl::StatusOr<std::optional<FencedValue>> back = absl::UnavailableError("not tried");
  for (int i = 0; i < 20 && !back.ok(); ++i) {
    back = (*b)->FencedGet(on1);
    if (!back.ok()) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->value, "a");
}

TEST_F(RedisClusterTest, DbMustBeZeroOnACluster) {
  auto b = NewRedisBackend(cluster_->url(1) + "/2");
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
  EXPECT_NE(b.status().message().find("db must be 0"), std::string::npos) << b.status();
  EXPECT_NE(b.status().message().find("'" + cluster_->url(1) + "/2'"), std::string::npos)
      << b.status();
  EXPECT_TRUE(NewRedisBackend(cluster_->url(1) + "/0").ok());
}

}  // namespace
}  // namespace tollgate

namespace tollgate {
namespace {

// Issue 10: a Redis whose fence counters would not survive a restart is named at connect.
TEST(RedisPersistenceTest, WarnsWithoutAofAndNotWithIt) {
  RedisServer server;
  ASSERT_TRUE(server.Start());
  Raw raw(server.port());
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "appendonly", "no"}), "OK");
  auto without = NewRedisBackend(server.url(), std::chrono::seconds(2));
  ASSERT_TRUE(without.ok()) << without.status();
  const std::vector<std::string> w = (*without)->Warnings();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("runs without AOF (appendonly no)"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("reissue fences"), std::string::npos) << w[0];
  ASSERT_EQ(raw.Cmd({"CONFIG", "SET", "appendonly", "yes"}), "OK");
  auto with = NewRedisBackend(server.url(), std::chrono::seconds(2));
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_TRUE((*with)->Warnings().empty());
}

}  // namespace
}  // namespace tollgate
