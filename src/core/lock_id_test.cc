#include "core/lock_id.h"

#include <set>

#include "gtest/gtest.h"

namespace tollgate::core {
namespace {

TEST(LockIdTest, Is128BitsOfHex) {
  std::string id = NewLockId();
  ASSERT_EQ(id.size(), 32u);
  for (char c : id) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
}

TEST(LockIdTest, NeverRepeatsAcrossManyDraws) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(seen.insert(NewLockId()).second);
}

TEST(LockIdTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(LockIdTest, ConstantTimeEqualsSecret) {
  EXPECT_TRUE(ConstantTimeEqualsSecret("hunter2", "hunter2"));
  EXPECT_FALSE(ConstantTimeEqualsSecret("hunter", "hunter2"));          // a prefix of the secret
  EXPECT_FALSE(ConstantTimeEqualsSecret("hunter2hunter2", "hunter2"));  // the secret repeated
  EXPECT_FALSE(ConstantTimeEqualsSecret("hunter3", "hunter2"));
  EXPECT_FALSE(ConstantTimeEqualsSecret("", "hunter2"));
  EXPECT_FALSE(ConstantTimeEqualsSecret("x", ""));
  EXPECT_TRUE(ConstantTimeEqualsSecret("", ""));
}

TEST(LockIdTest, IsLockIdFormat) {
  EXPECT_TRUE(IsLockIdFormat("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60"));
  EXPECT_TRUE(IsLockIdFormat(NewLockId()));
  EXPECT_FALSE(IsLockIdFormat(""));
  EXPECT_FALSE(IsLockIdFormat("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f6"));    // 31
  EXPECT_FALSE(IsLockIdFormat("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f600"));  // 33
  EXPECT_FALSE(IsLockIdFormat("9F1C2A7E0B5D4C3E8A6F1B2D3C4E5F60"));   // uppercase
  EXPECT_FALSE(IsLockIdFormat("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f6g"));
  EXPECT_FALSE(IsLockIdFormat(std::string("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f6\0", 32)));
}

TEST(LockIdTest, Base64Url) {
  EXPECT_EQ(LockIdBase64Url("00000000000000000000000000000000"), "AAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(LockIdBase64Url("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60"), "nxwqfgtdTD6KbxstPE5fYA");
  EXPECT_EQ(LockIdBase64Url("ffeffeffeffeffeffeffeffeffeffeff"), "_-_-_-_-_-_-_-_-_-_-_w");
  EXPECT_EQ(LockIdBase64Url("ffffffffffffffffffffffffffffffff"), "_____________________w");
  EXPECT_EQ(LockIdBase64Url("not a lock id"), "");
}

// syncguard's own test vectors (hashKey of the base64url form).
TEST(LockIdTest, HashMatchesSyncguardHashKey) {
  EXPECT_EQ(LockIdHash("00000000000000000000000000000000"), "761621603f31b080201c6800");
  EXPECT_EQ(LockIdHash("9f1c2a7e0b5d4c3e8a6f1b2d3c4e5f60"), "2901aa5f30b86b5d8300f0d9");
  EXPECT_EQ(LockIdHash("ffeffeffeffeffeffeffeffeffeffeff"), "d9bfd0448bac53ec3397aafc");
  const std::string h = LockIdHash(NewLockId());
  ASSERT_EQ(h.size(), 24u);
  for (char c : h) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
  EXPECT_EQ(LockIdHash(""), "");
  EXPECT_EQ(LockIdHash("9F1C2A7E0B5D4C3E8A6F1B2D3C4E5F60"), "");
}

}  // namespace
}  // namespace tollgate::core
