#include "metrics/metrics.h"

#include <chrono>
#include <string>

#include "gtest/gtest.h"

namespace tollgate::metrics {
namespace {

using std::chrono::milliseconds;

Metrics Make() { return Metrics({.version = "1.2.3", .commands = {"ping", "lock.acquire"}}); }

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(MetricsTest, RendersBuildInfoAndCommands) {
  Metrics m = Make();
  m.command(0).calls->Increment();
  m.command(0).duration->Observe(1e-6);
  m.command(99).calls->Increment();  // unknown
  EXPECT_EQ(m.TotalCommands(), 2u);
  const std::string t = m.RenderText();
  EXPECT_TRUE(Has(t, "tollgate_build_info{version=\"1.2.3\"} 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_commands_total{command=\"ping\"} 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_commands_total{command=\"unknown\"} 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_command_duration_seconds_count{command=\"ping\"} 1")) << t;
  EXPECT_TRUE(Has(t, "# TYPE tollgate_command_duration_seconds histogram")) << t;
  EXPECT_EQ(m.command_count(), 2u);
}

TEST(MetricsTest, LocksFencesAndHoldTime) {
  Metrics m = Make();
  m.CountLockAcquisition(LockResult::kGranted);
  m.CountLockAcquisition(LockResult::kContended);
  m.CountLockAcquisition(LockResult::kContended);
  m.CountFenceWrite(false);
  const SteadyTime t0{};
  m.NoteGrant("a", t0, milliseconds(1000));
  m.NoteExtend("a", t0 + milliseconds(500), milliseconds(1000));
  m.NoteRelease("a", t0 + milliseconds(700));
  m.NoteRelease("a", t0 + milliseconds(800));  // not held any more: not observed
  m.NoteRelease("b", t0 + milliseconds(800));  // never granted here
  const std::string t = m.RenderText();
  EXPECT_TRUE(Has(t, "tollgate_lock_acquisitions_total{result=\"contended\"} 2")) << t;
  EXPECT_TRUE(Has(t, "tollgate_lock_acquisitions_total{result=\"timeout\"} 0")) << t;
  EXPECT_TRUE(Has(t, "tollgate_fence_writes_total{result=\"stale\"} 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_lock_hold_seconds_count 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_lock_hold_seconds_sum 0.7")) << t;
  EXPECT_EQ(t.find("tollgate_backend_requests_total"), std::string::npos);
}

TEST(MetricsTest, ExpiredGrantsAreSwept) {
  Metrics m = Make();
  const SteadyTime t0{};
  for (int i = 0; i < 3000; ++i) m.NoteGrant(std::to_string(i), t0, milliseconds(1));
  for (int i = 0; i < 5000; ++i) {
    m.NoteGrant("late" + std::to_string(i), t0 + std::chrono::seconds(5), milliseconds(1));
  }
  m.NoteRelease("0", t0 + std::chrono::seconds(5));  // swept: expired long ago
  EXPECT_EQ(m.RenderText().find("tollgate_lock_hold_seconds_count 1"), std::string::npos);
}

TEST(MetricsTest, BackendRequests) {
  Metrics m({.version = "v", .commands = {}, .backend = "redis"});
  m.ObserveBackendRequest(true, milliseconds(2));
  m.ObserveBackendRequest(false, milliseconds(3));
  const std::string t = m.RenderText();
  EXPECT_TRUE(Has(t, "tollgate_backend_requests_total{backend=\"redis\",result=\"error\"} 1")) << t;
  EXPECT_TRUE(Has(t, "tollgate_backend_request_duration_seconds_count{backend=\"redis\"} 2")) << t;
}

TEST(MetricsTest, CollectorsAndPow2Histogram) {
  Metrics m = Make();
  m.AddCollector([](std::vector<prometheus::MetricFamily>& out) {
    auto f = Family("tollgate_x", "x", prometheus::MetricType::Histogram);
    const uint64_t counts[] = {1, 2, 0, 4};  // values 0, 1, -, 4..7 and beyond
    f.metric.push_back(Pow2Histogram(counts, 1.0, 20, {{"p", "q"}}, 1));
    out.push_back(std::move(f));
  });
  const std::string t = m.RenderText();
  EXPECT_TRUE(Has(t, "tollgate_x_bucket{p=\"q\",le=\"1\"} 3")) << t;
  EXPECT_TRUE(Has(t, "tollgate_x_bucket{p=\"q\",le=\"3\"} 3")) << t;
  EXPECT_TRUE(Has(t, "tollgate_x_bucket{p=\"q\",le=\"+Inf\"} 7")) << t;
  EXPECT_TRUE(Has(t, "tollgate_x_count{p=\"q\"} 7")) << t;
}

}  // namespace
}  // namespace tollgate::metrics
