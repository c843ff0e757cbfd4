#include "tollgate/fenced_register.h"

#include <atomic>

#include "gtest/gtest.h"
#include "tests/support/memory_journal.h"

namespace tollgate {
namespace {

TEST(FencedRegistersTest, AcceptsEqualOrNewerFencesAndRejectsOlder) {
  testing::MemoryJournal journal;
  FencedRegisters regs({.journal = &journal});
  EXPECT_TRUE(regs.Set("acct", 5, "a").ok());
  EXPECT_TRUE(regs.Set("acct", 5, "b").ok());  // same holder writes again
  absl::Status stale = regs.Set("acct", 4, "stale");
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(), "fence 4 is older than 5");
  EXPECT_TRUE(regs.Set("acct", 9, "c").ok());
  auto got = regs.Get("acct");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "c");
  EXPECT_EQ((*got)->fence, 9u);
  EXPECT_EQ(journal.registers().at("acct").fence, 9u);
  EXPECT_EQ(journal.registers().at("acct").value, "c");
}

TEST(FencedRegistersTest, RejectedWriteChangesNothing) {
  testing::MemoryJournal journal;
  FencedRegisters regs({.journal = &journal});
  ASSERT_TRUE(regs.Set("r", 7, "keep").ok());
  uint64_t seq = journal.LastAppended();
  EXPECT_FALSE(regs.Set("r", 6, "lose").ok());
  EXPECT_EQ(journal.LastAppended(), seq);
  EXPECT_EQ((*regs.Get("r"))->value, "keep");
}

TEST(FencedRegistersTest, UnknownResourceIsEmpty) {
  FencedRegisters regs({});
  auto got = regs.Get("nothing");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

TEST(FencedRegistersTest, BadInput) {
  FencedRegisters regs({});
  EXPECT_EQ(regs.Set("", 1, "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(regs.Set(std::string(513, 'x'), 1, "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(regs.Set(std::string(512, 'x'), 1, "v").ok());
  EXPECT_EQ(regs.Set("r", 0, "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(regs.Get("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(regs.size(), 1u);
}

// Issue 9, item 6: with the issuing counter known, a fence no lease carried is refused and
// changes nothing; fences up to the counter are accepted as before.
TEST(FencedRegistersTest, RefusesFencesNeverIssued) {
  testing::MemoryJournal journal;
  std::atomic<uint64_t> issued{3};
  FencedRegisters regs({.journal = &journal, .highest_issued = [&] { return issued.load(); }});
  EXPECT_TRUE(regs.Set("r", 3, "a").ok());
  const uint64_t seq = journal.LastAppended();
  absl::Status st = regs.Set("r", 9223372036854775807u, "poison");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "fence 9223372036854775807 was never issued; the highest fence issued so far is 3 "
            "(use the fence of a lease you hold)");
  EXPECT_EQ(regs.Set("new", 4, "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(journal.LastAppended(), seq);
  EXPECT_EQ((*regs.Get("r"))->value, "a");
  EXPECT_FALSE(regs.Get("new")->has_value());
  issued = 4;
  EXPECT_TRUE(regs.Set("r", 4, "b").ok());
}

TEST(FencedRegistersTest, BinarySafeValuesAndRestore) {
  FencedRegisters regs({});
  std::string v("a\0b\r\n", 5);
  regs.Restore("r", 3, v);
  EXPECT_EQ((*regs.Get("r"))->value, v);
  EXPECT_EQ(regs.Set("r", 2, "x").code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace tollgate
