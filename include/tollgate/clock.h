// Time sources. Everything in tollgate that reads time takes a Clock*, so tests can drive time with
// FakeClock instead of sleeping.
#ifndef TOLLGATE_CLOCK_H_
#define TOLLGATE_CLOCK_H_

#include <chrono>

namespace tollgate {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time: all expiry and waiting decisions use it. Never goes backwards.
  virtual SteadyTime SteadyNow() = 0;
  // Wall-clock time: used only to carry remaining lifetimes across a restart (a steady clock does
  // not survive a reboot). May step.
  virtual WallTime WallNow() = 0;
};

// The process clocks. Thread-safe; RealClock() returns a process-wide instance.
class SystemClock final : public Clock {
 public:
  SteadyTime SteadyNow() override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() override { return std::chrono::system_clock::now(); }
};
Clock* RealClock();

}  // namespace tollgate

#endif  // TOLLGATE_CLOCK_H_
