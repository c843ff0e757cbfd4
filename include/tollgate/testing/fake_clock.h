// A manually advanced clock for tests. Thread-safe.
#ifndef TOLLGATE_TESTING_FAKE_CLOCK_H_
#define TOLLGATE_TESTING_FAKE_CLOCK_H_

#include <atomic>

#include "tollgate/clock.h"

namespace tollgate {

class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary non-zero steady time and the given wall time.
  explicit FakeClock(WallTime wall_start = WallTime(std::chrono::hours(24 * 365 * 50)))
      : steady_ns_(1'000'000'000'000LL),
        wall_ns_(std::chrono::duration_cast<Duration>(wall_start.time_since_epoch()).count()) {}

  SteadyTime SteadyNow() override { return SteadyTime(Duration(steady_ns_.load())); }
  WallTime WallNow() override {
    return WallTime(std::chrono::duration_cast<WallTime::duration>(Duration(wall_ns_.load())));
  }

  // Moves both clocks forward by d (d >= 0).
  void Advance(Duration d) {
    steady_ns_ += d.count();
    wall_ns_ += d.count();
  }
  // Steps only the wall clock (as NTP might); the steady clock is unaffected. d may be negative.
  void StepWall(Duration d) { wall_ns_ += d.count(); }
  // Steps the "steady" clock by d, which may be negative: simulates a time source that is not
  // actually monotonic, to test that callers survive it.
  void StepSteady(Duration d) { steady_ns_ += d.count(); }

 private:
  std::atomic<int64_t> steady_ns_;
  std::atomic<int64_t> wall_ns_;
};

}  // namespace tollgate

#endif  // TOLLGATE_TESTING_FAKE_CLOCK_H_
