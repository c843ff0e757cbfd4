// Uses an installed tollgate through find_package(tollgate): a fenced lease on the in-process
// memory backend, then a THROTTLE-style token bucket, in process. Prints what it saw; exits 1 if
// tollgate did not behave as documented.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tollgate/backend.h"
#include "tollgate/lease_holder.h"
#include "tollgate/limiter.h"
#include "tollgate/version.h"

namespace {

int Fail(const std::string& what) {
  std::cerr << "consumer: " << what << "\n";
  return 1;
}

}  // namespace

int main() {
  using std::chrono::milliseconds;
  std::cout << "tollgate " << TOLLGATE_VERSION << "\n";
  std::unique_ptr<tollgate::Backend> backend = tollgate::NewMemoryBackend();

  // A lease: granted with a fence; a second holder finds the key taken; after release it is free
  // again, with a greater fence.
  tollgate::LeaseOptions options;
  options.ttl = milliseconds(2000);
  options.owner = "consumer";
  absl::StatusOr<std::optional<tollgate::Lease>> first =
      tollgate::AcquireLease(*backend, "jobs/42", options);
  if (!first.ok() || !first->has_value()) return Fail("first acquire was not granted");
  const uint64_t first_fence = (*first)->fence();
  if (!(*first)->check().ok()) return Fail("a fresh lease is not safe to act on");
  std::cout << "lease jobs/42 fence " << first_fence << "\n";

  absl::StatusOr<std::optional<tollgate::Lease>> second =
      tollgate::AcquireLease(*backend, "jobs/42", options);
  if (!second.ok()) return Fail("second acquire failed: " + second.status().ToString());
  if (second->has_value()) return Fail("a held key was granted twice");
  std::cout << "second holder: locked\n";

  if (!(*first)->release().ok()) return Fail("release failed");
  absl::StatusOr<std::optional<tollgate::Lease>> third =
      tollgate::AcquireLease(*backend, "jobs/42", options);
  if (!third.ok() || !third->has_value()) return Fail("acquire after release was not granted");
  if ((*third)->fence() <= first_fence) return Fail("fence did not increase");
  std::cout << "after release: fence " << (*third)->fence() << "\n";

  // THROTTLE user:7 3 1 1: a bucket of 3 tokens refilled at 1 token/s, cost 1: three requests in
  // a row are allowed, the fourth is denied with a retry-after of at most 1 s.
  const tollgate::BucketParams bucket{tollgate::Decimal::Units(3), tollgate::Decimal::Units(1)};
  for (int i = 1; i <= 4; ++i) {
    absl::StatusOr<tollgate::Decision> d =
        backend->Throttle("user:7", bucket, tollgate::Decimal::Units(1));
    if (!d.ok()) return Fail("throttle failed: " + d.status().ToString());
    const bool want = i <= 3;
    std::cout << "throttle " << i << ": " << (d->allowed ? "allowed" : "denied") << ", remaining "
              << d->remaining;
    if (!d->allowed && d->retry_after.has_value()) {
      std::cout << ", retry after "
                << std::chrono::duration_cast<milliseconds>(*d->retry_after).count() << " ms";
    }
    std::cout << "\n";
    if (d->allowed != want) return Fail("unexpected throttle decision");
    if (!d->allowed && (!d->retry_after.has_value() || *d->retry_after > milliseconds(1000) ||
                        *d->retry_after <= milliseconds(0))) {
      return Fail("denied without a retry-after in (0, 1 s]");
    }
  }
  std::cout << "consumer: ok\n";
  return EXIT_SUCCESS;
}
