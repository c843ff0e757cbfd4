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
