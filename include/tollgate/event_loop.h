// A small epoll event loop implementing EventLoop, for applications and tests that drive an
// AsyncBackend without an event loop of their own (the server's I/O threads implement EventLoop
// themselves). The synchronous backends built on asynchronous ones run one privately.
#ifndef TOLLGATE_EVENT_LOOP_H_
#define TOLLGATE_EVENT_LOOP_H_

#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "tollgate/async_backend.h"
#include "tollgate/clock.h"

namespace tollgate {

class EpollEventLoop : public EventLoop {
 public:
  // Internal if epoll or eventfd cannot be created. `clock` is not owned.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EpollEventLoop>> Create(
      Clock* clock = RealClock());
  ~EpollEventLoop() override = default;

  // Runs passes (wait for fds/timers/posts, run their callbacks, then the end-of-pass callbacks)
  // until `done()` is true (checked before each pass) or `deadline` passes. Returns done().
  // Call from one thread at a time: that thread is the loop's thread while it runs.
  virtual bool RunUntil(absl::FunctionRef<bool()> done, SteadyTime deadline) = 0;
  // One pass, waiting at most `max_wait` for something to happen.
  virtual void RunOnce(Duration max_wait) = 0;
};

}  // namespace tollgate

#endif  // TOLLGATE_EVENT_LOOP_H_
