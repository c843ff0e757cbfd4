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

}  // namespace
}  // namespace tollgate::core
