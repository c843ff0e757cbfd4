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

}  // namespace
}  // namespace tollgate::core
