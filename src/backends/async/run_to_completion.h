// The synchronous wrappers over asynchronous backends (Redis, etcd): submit one operation on a
// private EpollEventLoop and run the loop until it completes.
#ifndef TOLLGATE_BACKENDS_ASYNC_RUN_TO_COMPLETION_H_
#define TOLLGATE_BACKENDS_ASYNC_RUN_TO_COMPLETION_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tollgate/async_backend.h"
#include "tollgate/event_loop.h"

namespace tollgate {

// Calls `submit` with a completion, then runs `loop` until that completion ran or `limit` passed
// (a safety net: the backend answers every operation within its own timeout). Unavailable
// "<who>: no answer within the backend's timeout" if it did not. Call on the loop's only thread.
template <class T>
absl::StatusOr<T> RunToCompletion(EpollEventLoop& loop, Duration limit, std::string_view who,
                                  absl::FunctionRef<void(Completion<T>)> submit) {
  // Shared with the completion, which a safety-net timeout would leave pending.
  auto result = std::make_shared<std::optional<absl::StatusOr<T>>>();
  submit([result](absl::StatusOr<T> r) { *result = std::move(r); });
  loop.RunUntil([&] { return result->has_value(); }, RealClock()->SteadyNow() + limit);
  if (!result->has_value()) {
    return absl::UnavailableError(
        absl::StrCat(std::string(who), ": no answer within the backend's timeout"));
  }
  return std::move(**result);
}

// RunToCompletion for an operation that completes with a Status.
inline absl::Status RunStatusToCompletion(EpollEventLoop& loop, Duration limit,
                                          std::string_view who,
                                          absl::FunctionRef<void(StatusCompletion)> submit) {
  absl::StatusOr<bool> r = RunToCompletion<bool>(loop, limit, who, [&](Completion<bool> done) {
    submit([done = std::move(done)](absl::Status st) mutable {
      if (st.ok()) {
        done(true);
      } else {
        done(std::move(st));
      }
    });
  });
  return r.status();
}

}  // namespace tollgate

#endif  // TOLLGATE_BACKENDS_ASYNC_RUN_TO_COMPLETION_H_
