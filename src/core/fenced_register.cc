#include "tollgate/fenced_register.h"

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/absl_compat.h"
#include "tollgate/lease_manager.h"

namespace tollgate {
namespace {
constexpr size_t kShards = 16;
}  // namespace

class FencedRegisters::Impl {
 public:
  explicit Impl(Options o) : opt_(o) {}

  void Restore(std::string_view resource, uint64_t fence, std::string_view value) {
    Shard& s = ShardFor(resource);
    absl::MutexLock l(&s.mu);
    s.values[AV(resource)] = FencedValue{std::string(value), fence};
  }

  absl::Status Set(std::string_view resource, uint64_t fence, std::string_view value) {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    if (fence == 0) return absl::InvalidArgumentError("fence must be a positive integer");
    if (opt_.highest_issued) {
      // Read before taking the shard lock: the counter only grows, so a fence issued before this
      // call started is never refused.
      const uint64_t highest = opt_.highest_issued();
      if (fence > highest) {
        return absl::InvalidArgumentError(
            absl::StrCat("fence ", fence, " was never issued; the highest fence issued so far is ",
                         highest, " (use the fence of a lease you hold)"));
      }
    }
    {
      Shard& s = ShardFor(resource);
      absl::MutexLock l(&s.mu);
      auto it = s.values.find(AV(resource));
      if (it != s.values.end() && fence < it->second.fence) {
        return absl::AbortedError(
            absl::StrCat("fence ", fence, " is older than ", it->second.fence));
      }
      if (it == s.values.end()) it = s.values.try_emplace(AV(resource)).first;
      it->second.fence = fence;
      it->second.value.assign(value);
      if (opt_.journal != nullptr) opt_.journal->AppendRegisterPut(resource, fence, value);
    }
    if (opt_.journal != nullptr && opt_.wait_durable) {
      return opt_.journal->WaitDurable(opt_.journal->LastAppended());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<FencedValue>> Get(std::string_view resource) {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    Shard& s = ShardFor(resource);
    absl::MutexLock l(&s.mu);
    auto it = s.values.find(AV(resource));
    if (it == s.values.end()) return std::optional<FencedValue>();
    return std::optional<FencedValue>(it->second);
  }

  size_t size() {
    size_t n = 0;
    for (Shard& s : shards_) {
      absl::MutexLock l(&s.mu);
      n += s.values.size();
    }
    return n;
  }

 private:
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, FencedValue> values ABSL_GUARDED_BY(mu);
  };
  // High bits pick the shard: the hash map inside uses the low ones.
  Shard& ShardFor(std::string_view key) { return shards_[(absl::HashOf(AV(key)) >> 48) % kShards]; }

  Options opt_;
  Shard shards_[kShards];
};

FencedRegisters::FencedRegisters(Options options) : impl_(std::make_unique<Impl>(options)) {}
FencedRegisters::~FencedRegisters() = default;
void FencedRegisters::Restore(std::string_view resource, uint64_t fence, std::string_view value) {
  impl_->Restore(resource, fence, value);
}
absl::Status FencedRegisters::Set(std::string_view resource, uint64_t fence,
                                  std::string_view value) {
  return impl_->Set(resource, fence, value);
}
absl::StatusOr<std::optional<FencedValue>> FencedRegisters::Get(std::string_view resource) {
  return impl_->Get(resource);
}
size_t FencedRegisters::size() { return impl_->size(); }

}  // namespace tollgate
