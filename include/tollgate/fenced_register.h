// Fenced registers: the resource side of fencing. A write carries the fence of the lease its writer
// holds; the register accepts it only if that fence is at least the highest fence it has accepted,
// so a writer whose lease expired (and was re-granted with a higher fence) can no longer write.
#ifndef TOLLGATE_FENCED_REGISTER_H_
#define TOLLGATE_FENCED_REGISTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tollgate/journal.h"

namespace tollgate {

struct FencedValue {
  std::string value;
  uint64_t fence = 0;  // the fence that wrote `value`
};

class FencedRegisters {
 public:
  struct Options {
    Journal* journal = nullptr;  // not owned; null = memory only
    bool wait_durable = true;    // Set returns only once the write is durable
    // The highest fence issued so far by the lease manager whose fences these registers check
    // (e.g. LeaseManager::last_fence). When set, Set refuses a fence above it: a made-up fence
    // (say 2^63-1) would otherwise be accepted and make every real holder's later write stale,
    // forever. Must be thread-safe and never decrease. Unset = any positive fence is accepted.
    std::function<uint64_t()> highest_issued;
  };
  explicit FencedRegisters(Options options);
  ~FencedRegisters();
  FencedRegisters(const FencedRegisters&) = delete;
  FencedRegisters& operator=(const FencedRegisters&) = delete;

  // Recovery, before serving: reinstates a stored register.
  void Restore(std::string_view resource, uint64_t fence, std::string_view value);

  // Stores value iff fence >= the highest fence accepted for resource so far (a register never
  // written accepts any fence >= 1). Aborted when the fence is stale, with both fences in the
  // message ("fence 5 is older than 7"); InvalidArgument for an empty or over-long resource name,
  // fence 0, or (with Options::highest_issued) a fence that was never issued ("fence N was never
  // issued; the highest fence issued so far is M"). A rejected write changes nothing.
  [[nodiscard]] absl::Status Set(std::string_view resource, uint64_t fence, std::string_view value);
  // The latest accepted value and its fence, or nullopt if never written.
  [[nodiscard]] absl::StatusOr<std::optional<FencedValue>> Get(std::string_view resource);

  size_t size();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate

#endif  // TOLLGATE_FENCED_REGISTER_H_
