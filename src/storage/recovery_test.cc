#include "storage/recovery.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"
#include "storage/record_codec.h"

namespace tollgate::storage {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

__extension__ typedef unsigned __int128 u128;

const WallTime kNow = WallTime(seconds(1'800'000'000));

WallTime AtNanos(int64_t ns) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(nanoseconds(ns)));
}

// Expects DataLoss whose message names the key (C-escaped) and says `what`, and no state change.
void ExpectCorrupt(std::string_view key, std::string_view value, std::string_view shown_key,
                   std::string_view what) {
  RecoveredState state;
  state.max_fence = 7;
  const absl::Status st = RecoverRecord(key, value, kNow, &state);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  const std::string msg(st.message());
  EXPECT_EQ(msg.rfind("corrupt record at key \"" + std::string(shown_key) + "\": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
  EXPECT_EQ(state.max_fence, 7u);
  EXPECT_TRUE(state.leases.empty());
  EXPECT_TRUE(state.registers.empty());
  EXPECT_TRUE(state.buckets.empty());
  EXPECT_TRUE(state.permits.empty());
}

TEST(RecoveryTest, AppliesEveryKindOfRecord) {
  RecoveredState state;
  ASSERT_TRUE(RecoverRecord(kFenceKey, EncodeU64(40), kNow, &state).ok());
  ASSERT_TRUE(RecoverRecord(LeaseKey("job"),
                            EncodeLease({"0123456789abcdef0123456789abcdef", 41, kNow, "w1"}), kNow,
                            &state)
                  .ok());
  ASSERT_TRUE(RecoverRecord(RegisterKey("acct"), EncodeRegister(39, "v"), kNow, &state).ok());
  ASSERT_TRUE(RecoverRecord("Xnot-ours", "anything", kNow, &state).ok());
  EXPECT_EQ(state.max_fence, 41u);
  ASSERT_EQ(state.leases.size(), 1u);
  EXPECT_EQ(state.leases[0].first, "job");
  EXPECT_EQ(state.leases[0].second.owner, "w1");
  ASSERT_EQ(state.registers.size(), 1u);
  EXPECT_EQ(state.registers[0].resource, "acct");
  EXPECT_EQ(state.registers[0].fence, 39u);
}

// Version 2 lease records carry the acquisition time and the index flag into the state; version 1
// records (an older tollgate's) recover with neither.
TEST(RecoveryTest, LeaseRecordsOfBothVersionsRecover) {
  RecoveredState state;
  const StoredLease v2{
      "0123456789abcdef0123456789abcdef", 41, kNow, std::nullopt, kNow - seconds(5), true};
  ASSERT_TRUE(RecoverRecord(LeaseKey("new"), EncodeLease(v2), kNow, &state).ok());
  const StoredLease v1{"fedcba9876543210fedcba9876543210", 42, kNow, "w"};
  ASSERT_TRUE(RecoverRecord(LeaseKey("old"), EncodeLease(v1), kNow, &state).ok());
  ASSERT_EQ(state.leases.size(), 2u);
  EXPECT_EQ(state.leases[0].second.acquired_at, kNow - seconds(5));
  EXPECT_TRUE(state.leases[0].second.indexed);
  EXPECT_EQ(state.leases[1].second.acquired_at, std::nullopt);
  EXPECT_FALSE(state.leases[1].second.indexed);
  EXPECT_EQ(state.max_fence, 42u);
}

TEST(RecoveryTest, UndecodableRecordsNameTheKey) {
  ExpectCorrupt(std::string("Lk\0\n", 4), "\x01short", "Lk\\x00\\n", "not a valid lease record");
  ExpectCorrupt("Rres", "", "Rres", "not a valid register record");
  ExpectCorrupt("M:fence", "1234567", "M:fence", "not an 8-byte fence counter");
  ExpectCorrupt(std::string("B\x01\x00t", 4), "\x01", "B\\x01\\x00t", "not a valid bucket");
  // Long keys are shown cut to 64 bytes.
  const std::string long_key = "L" + std::string(100, 'k');
  ExpectCorrupt(long_key, "", long_key.substr(0, 64) + "...", "not a valid lease record");
}

TEST(RecoveryTest, RejectsFencesThatWouldWrapTheCounter) {
  const uint64_t too_big = kMaxStoredFence + 1;
  ExpectCorrupt("M:fence", EncodeU64(too_big), "M:fence", "fence counter 9223372036854775808");
  ExpectCorrupt("Lk", EncodeLease({"id", too_big, kNow, std::nullopt}), "Lk", "lease fence");
  ExpectCorrupt("Lk", EncodeLease({"id", 0, kNow, std::nullopt}), "Lk", "lease fence 0");
  ExpectCorrupt("Rr", EncodeRegister(0, "v"), "Rr", "register fence 0");

  RecoveredState state;
  ASSERT_TRUE(RecoverRecord("M:fence", EncodeU64(kMaxStoredFence), kNow, &state).ok());
  ASSERT_TRUE(
      RecoverRecord("Lk", EncodeLease({"id", kMaxStoredFence, kNow, {}}), kNow, &state).ok());
  // Registers take any positive fence (FencedRegisters::Set does).
  ASSERT_TRUE(RecoverRecord("Rr", EncodeRegister(too_big, "v"), kNow, &state).ok());
  EXPECT_EQ(state.max_fence, kMaxStoredFence);
}

TEST(RecoveryTest, RejectsLeaseExpiryBefore1970) {
  ExpectCorrupt("Lk", EncodeLease({"id", 3, AtNanos(-1), std::nullopt}), "Lk", "before 1970");
  ExpectCorrupt("Lk",
                EncodeLease({"id", 3, AtNanos(std::numeric_limits<int64_t>::min()), std::nullopt}),
                "Lk", "before 1970");
  RecoveredState state;
  EXPECT_TRUE(RecoverRecord("Lk", EncodeLease({"id", 3, AtNanos(0), {}}), kNow, &state).ok());
}

BucketSnapshot Bucket(u128 debt, uint64_t rate) {
  return {"t", "k", static_cast<uint64_t>(debt >> 64), static_cast<uint64_t>(debt), rate};
}

u128 RecoveredDebt(const BucketSnapshot& s, WallTime at) {
  RecoveredState state;
  const absl::Status st =
      RecoverRecord(BucketKey(s.table, s.key), EncodeBucket(s, at), kNow, &state);
  EXPECT_TRUE(st.ok()) << st;
  if (state.buckets.size() != 1) return ~u128{0};
  return (static_cast<u128>(state.buckets[0].debt_hi) << 64) | state.buckets[0].debt_lo;
}

TEST(RecoveryTest, BucketDebtRefillsByTheWallTimeElapsed) {
  const u128 ten_tokens = static_cast<u128>(10) * 1'000'000'000'000'000'000u;
  const uint64_t one_per_s = 1'000'000'000;  // nano-tokens per second
  EXPECT_EQ(RecoveredDebt(Bucket(ten_tokens, one_per_s), kNow - seconds(3)),
            ten_tokens - ten_tokens / 10 * 3);
  // From the future: no refill. From long ago, even the earliest representable time: all refilled,
  // with no overflow in the elapsed time.
  EXPECT_EQ(RecoveredDebt(Bucket(ten_tokens, one_per_s), kNow + seconds(3)), ten_tokens);
  EXPECT_EQ(RecoveredDebt(Bucket(ten_tokens, one_per_s), WallTime::min()), 0u);
  EXPECT_EQ(RecoveredDebt(Bucket(ten_tokens, one_per_s), AtNanos(-5)), 0u);
  // The largest valid values recover without overflow.
  const u128 max_debt = static_cast<u128>(kMaxCapacity.nanos) * 1'000'000'000u;
  EXPECT_EQ(RecoveredDebt(Bucket(max_debt, kMaxRate.nanos), kNow), max_debt);
  EXPECT_EQ(RecoveredDebt(Bucket(max_debt, kMaxRate.nanos), WallTime::min()), 0u);
}

TEST(RecoveryTest, RejectsBucketsOutsideTheLimiterRange) {
  const std::string key = BucketKey("t", "k");
  const std::string shown = "B\\x01\\x00tk";
  const u128 max_debt = static_cast<u128>(kMaxCapacity.nanos) * 1'000'000'000u;
  ExpectCorrupt(key, EncodeBucket(Bucket(max_debt + 1, 1), kNow), shown, "out of range");
  ExpectCorrupt(key, EncodeBucket(Bucket(1, kMaxRate.nanos + 1), kNow), shown, "out of range");
  ExpectCorrupt(key, EncodeBucket(Bucket(~u128{0}, ~uint64_t{0}), kNow), shown, "out of range");
}

TEST(RecoveryTest, PermitsAreRecoveredAndRaiseTheFence) {
  RecoveredState state;
  ASSERT_TRUE(RecoverRecord(kFenceKey, EncodeU64(40), kNow, &state).ok());
  const std::string key = PermitKey("jobs", "0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(RecoverRecord(key, EncodePermit({2, 3, 45, kNow, "w"}), kNow, &state).ok());
  // Expired permits are recovered too: the lease core drops them (and their records).
  ASSERT_TRUE(
      RecoverRecord(PermitKey("jobs", "x"), EncodePermit({0, 3, 44, AtNanos(0), {}}), kNow, &state)
          .ok());
  EXPECT_EQ(state.max_fence, 45u);
  ASSERT_EQ(state.permits.size(), 2u);
  EXPECT_EQ(state.permits[0].key, "jobs");
  EXPECT_EQ(state.permits[0].permit_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(state.permits[0].permit.slot, 2);
  EXPECT_EQ(state.permits[0].permit.limit, 3);
  EXPECT_EQ(state.permits[0].permit.fence, 45u);
  EXPECT_EQ(state.permits[0].permit.expiry, kNow);
  EXPECT_EQ(state.permits[0].permit.owner, "w");
  EXPECT_TRUE(state.leases.empty());
}

TEST(RecoveryTest, RejectsPermitsNoTollgateWrites) {
  const std::string key = PermitKey("s", "id");
  const std::string shown = "P\\x01\\x00sid";
  ExpectCorrupt(key, "\x01", shown, "not a valid permit record");
  ExpectCorrupt("P\x05", EncodePermit({0, 1, 1, kNow, {}}), "P\\x05", "not a valid permit key");
  ExpectCorrupt(PermitKey("", "id"), EncodePermit({0, 1, 1, kNow, {}}), "P\\x00\\x00id",
                "not a valid permit key");
  ExpectCorrupt(PermitKey("s", ""), EncodePermit({0, 1, 1, kNow, {}}), "P\\x01\\x00s",
                "not a valid permit key");
  ExpectCorrupt(key, EncodePermit({0, 1, 0, kNow, {}}), shown, "permit fence 0");
  ExpectCorrupt(key, EncodePermit({0, 1, kMaxStoredFence + 1, kNow, {}}), shown, "permit fence");
  ExpectCorrupt(key, EncodePermit({0, 0, 1, kNow, {}}), shown, "slot 0 of limit 0");
  ExpectCorrupt(key, EncodePermit({0, kMaxSemaphoreLimit + 1, 1, kNow, {}}), shown, "limit 1025");
  ExpectCorrupt(key, EncodePermit({3, 3, 1, kNow, {}}), shown, "slot 3 of limit 3");
  ExpectCorrupt(key, EncodePermit({0, 1, 1, AtNanos(-1), {}}), shown, "before 1970");
  RecoveredState state;
  EXPECT_TRUE(
      RecoverRecord(key, EncodePermit({1023, 1024, kMaxStoredFence, AtNanos(0), {}}), kNow, &state)
          .ok());
}

TEST(RecoveryTest, LongLockIdsAreCutConsistently) {
  // The length byte used to be the size mod 256 while 255 bytes were written: a 256-byte lock id
  // made a record that no longer decoded, and the store would not open.
  RecoveredState state;
  const std::string id(256, 'x');
  ASSERT_TRUE(RecoverRecord("Lk", EncodeLease({id, 5, kNow, "o"}), kNow, &state).ok());
  ASSERT_EQ(state.leases.size(), 1u);
  EXPECT_EQ(state.leases[0].second.lock_id, id.substr(0, 255));
  EXPECT_EQ(state.leases[0].second.owner, "o");
}

}  // namespace
}  // namespace tollgate::storage
