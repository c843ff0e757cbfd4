#include "tollgate/clock.h"

namespace tollgate {

Clock* RealClock() {
  static SystemClock* clock = new SystemClock();  // never destroyed: usable during static teardown
  return clock;
}

}  // namespace tollgate
