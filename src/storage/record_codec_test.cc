#include "storage/record_codec.h"

#include "gtest/gtest.h"

namespace tollgate::storage {
namespace {

TEST(RecordCodecTest, LeaseRoundTripsWithAndWithoutOwner) {
  StoredLease a{"0123456789abcdef0123456789abcdef", 77,
                WallTime(std::chrono::seconds(1'800'000'000)), std::string("own\0er", 6)};
  auto back = DecodeLease(EncodeLease(a));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->lock_id, a.lock_id);
  EXPECT_EQ(back->fence, 77u);
  EXPECT_EQ(back->expiry, a.expiry);
  EXPECT_EQ(back->owner, a.owner);
  a.owner.reset();
  back = DecodeLease(EncodeLease(a));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->owner.has_value());
}

TEST(RecordCodecTest, RejectsTruncatedOrTrailingBytes) {
  StoredLease a{"id", 1, WallTime(std::chrono::seconds(5)), std::string("o")};
  std::string bytes = EncodeLease(a);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeLease(bytes.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(DecodeLease(bytes + "x").has_value());
  EXPECT_FALSE(DecodeRegister("").has_value());
  EXPECT_FALSE(DecodeU64("1234567").has_value());
}

TEST(RecordCodecTest, LeaseVersion2KeepsAcquiredAtAndIndexed) {
  StoredLease a{"0123456789abcdef0123456789abcdef",
                77,
                WallTime(std::chrono::seconds(1'800'000'000)),
                std::string("o"),
                WallTime(std::chrono::nanoseconds(1'799'999'990'123'456'789)),
                true};
  std::string bytes = EncodeLease(a);
  EXPECT_EQ(bytes[0], 2);
  auto back = DecodeLease(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->lock_id, a.lock_id);
  EXPECT_EQ(back->fence, 77u);
  EXPECT_EQ(back->expiry, a.expiry);
  EXPECT_EQ(back->owner, a.owner);
  EXPECT_EQ(back->acquired_at, a.acquired_at);
  EXPECT_TRUE(back->indexed);
  a.indexed = false;
  a.owner.reset();
  a.acquired_at = WallTime(std::chrono::nanoseconds(-5));  // any wall time is kept as it is
  back = DecodeLease(EncodeLease(a));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->indexed);
  EXPECT_EQ(back->acquired_at, a.acquired_at);
  // Truncated, trailing bytes, unknown flag bits, unknown versions.
  bytes = EncodeLease(a);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeLease(bytes.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(DecodeLease(bytes + "x").has_value());
  std::string flags = bytes;
  flags[1 + 8 + 8 + 8] = 2;
  EXPECT_FALSE(DecodeLease(flags).has_value());
  for (char v : {0, 3, 255}) {
    std::string other = bytes;
    other[0] = v;
    EXPECT_FALSE(DecodeLease(other).has_value()) << int{v};
  }
}

// Version 1 records (written before acquired_at was kept) still decode, as not indexed and with
// no acquisition time, and such a lease is written back in the same bytes.
TEST(RecordCodecTest, LeaseVersion1StillDecodes) {
  std::string v1;
  v1.push_back(1);                                   // version
  v1.append("\x4d\0\0\0\0\0\0\0", 8);                // fence 77
  v1.append("\x00\x01\x02\x03\x04\x05\x06\x07", 8);  // expiry ns
  v1.push_back(2);                                   // id length
  v1.append("id");
  v1.push_back(1);  // has owner
  v1.append("\x03\0\0\0", 4);
  v1.append("own");
  auto lease = DecodeLease(v1);
  ASSERT_TRUE(lease.has_value());
  EXPECT_EQ(lease->fence, 77u);
  EXPECT_EQ(lease->expiry, WallTime(std::chrono::nanoseconds(0x0706050403020100)));
  EXPECT_EQ(lease->lock_id, "id");
  EXPECT_EQ(lease->owner, "own");
  EXPECT_EQ(lease->acquired_at, std::nullopt);
  EXPECT_FALSE(lease->indexed);
  EXPECT_EQ(EncodeLease(*lease), v1);
  // Without acquired_at there is nothing to write but version 1 (indexed is dropped).
  lease->indexed = true;
  EXPECT_EQ(EncodeLease(*lease), v1);
}

TEST(RecordCodecTest, RegisterAndCounterRoundTrip) {
  auto r = DecodeRegister(EncodeRegister(1ull << 63, std::string("v\0\r\n", 4)));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->first, 1ull << 63);
  EXPECT_EQ(r->second, std::string("v\0\r\n", 4));
  EXPECT_EQ(DecodeU64(EncodeU64(0xfedcba9876543210ull)), 0xfedcba9876543210ull);
}

TEST(RecordCodecTest, PermitRoundTripsWithAndWithoutOwner) {
  StoredPermit p{1023, 1024, 99, WallTime(std::chrono::seconds(1'800'000'000)),
                 std::string("own\0er", 6)};
  auto back = DecodePermit(EncodePermit(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->slot, 1023);
  EXPECT_EQ(back->limit, 1024);
  EXPECT_EQ(back->fence, 99u);
  EXPECT_EQ(back->expiry, p.expiry);
  EXPECT_EQ(back->owner, p.owner);
  p.owner.reset();
  back = DecodePermit(EncodePermit(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->owner.has_value());
  const std::string bytes = EncodePermit(p);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodePermit(bytes.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(DecodePermit(bytes + "x").has_value());
}

TEST(RecordCodecTest, PermitKeySeparatesBinarySemaphoreKeyAndPermitId) {
  const std::string sem("a\0b", 3);
  const std::string key = PermitKey(sem, "0123456789abcdef0123456789abcdef");
  ASSERT_EQ(key[0], kPermitPrefix);
  auto names = DecodePermitKey(std::string_view(key).substr(1));
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(names->first, sem);
  EXPECT_EQ(names->second, "0123456789abcdef0123456789abcdef");
  EXPECT_FALSE(DecodePermitKey(std::string("\x05\x00"
                                           "abc",
                                           5))
                   .has_value());  // 5 bytes? 3
  EXPECT_FALSE(DecodePermitKey("\x01").has_value());
  // Permits sort apart from leases of the same name.
  EXPECT_NE(key, LeaseKey(sem));
}

}  // namespace
}  // namespace tollgate::storage
