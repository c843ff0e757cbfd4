// The contract suite's fixture, shared by its test files: one started harness per backend kind for
// the whole program, a fresh client per test, unique key names per test.
#ifndef TOLLGATE_TESTS_CONTRACT_CONTRACT_FIXTURE_H_
#define TOLLGATE_TESTS_CONTRACT_CONTRACT_FIXTURE_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "tests/contract/harness.h"

namespace tollgate::testing {

// The backends built into this test program.
std::vector<std::string> HarnessNames();
// The started harness of backend `name` (null if it did not start).
BackendHarness* GetHarness(const std::string& name);

class ContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    harness_ = GetHarness(GetParam());
    ASSERT_NE(harness_, nullptr) << "backend " << GetParam() << " did not start";
    auto b = harness_->Connect();
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
    // Unique names per test, so tests sharing one backend server never meet.
    prefix_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ":" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
  }
  std::string K(std::string_view s) const { return prefix_ + std::string(s); }
  std::optional<LeaseGrant> Grant(std::string_view key, Duration ttl,
                                  std::optional<std::string> owner = std::nullopt) {
    auto g = b_->Acquire(K(key), ttl, std::move(owner));
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : std::nullopt;
  }

  BackendHarness* harness_ = nullptr;
  std::unique_ptr<Backend> b_;
  std::string prefix_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_CONTRACT_CONTRACT_FIXTURE_H_
