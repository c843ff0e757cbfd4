// Harnesses for the in-process backends. The embedded one opens a store in a temporary directory;
// a second Connect() shares that one store (RocksDB allows one opener per directory).
#include <cstdlib>
#include <filesystem>

#include "tests/contract/harness.h"

namespace tollgate::testing {
namespace {

// A backend shared by every Connect(): clients of one in-process backend see the same state.
class SharedBackend final : public Backend {
 public:
  explicit SharedBackend(std::shared_ptr<Backend> b) : b_(std::move(b)) {}
  std::string_view kind() const override { return b_->kind(); }
  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    return b_->Acquire(key, ttl, std::move(owner));
  }
  absl::Status Release(std::string_view key, std::string_view id) override {
    return b_->Release(key, id);
  }
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view id,
                                  Duration ttl) override {
    return b_->Extend(key, id, ttl);
  }
  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return b_->Info(key);
  }
  absl::StatusOr<std::optional<LeaseById>> LookupById(std::string_view lock_id) override {
    return b_->LookupById(lock_id);
  }
  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    return b_->SemAcquire(req);
  }
  absl::Status SemRelease(std::string_view key, std::string_view id) override {
    return b_->SemRelease(key, id);
  }
  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view id,
                                     Duration ttl) override {
    return b_->SemExtend(key, id, ttl);
  }
  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    return b_->SemInfo(key);
  }
  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    return b_->MultiAcquire(req);
  }
  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view id) override {
    return b_->MultiRelease(keys, id);
  }
  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view id,
                                       Duration ttl) override {
    return b_->MultiExtend(keys, id, ttl);
  }
  absl::Status FencedSet(std::string_view r, uint64_t f, std::string_view v) override {
    return b_->FencedSet(r, f, v);
  }
  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view r) override {
    return b_->FencedGet(r);
  }
  absl::StatusOr<Decision> Throttle(std::string_view k, const BucketParams& p, Decimal c) override {
    return b_->Throttle(k, p, c);
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> l, Decimal c) override {
    return b_->CheckLayers(l, c);
  }

 private:
  std::shared_ptr<Backend> b_;
};

class LocalHarness final : public BackendHarness {
 public:
  explicit LocalHarness(bool embedded) : embedded_(embedded) {}
  ~LocalHarness() override {
    backend_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string name() const override { return embedded_ ? "embedded" : "memory"; }
  bool checks_issued_fences() const override { return true; }
  bool global_fences() const override { return true; }
  bool Start() override {
    if (!embedded_) {
      backend_ = NewMemoryBackend();
      return true;
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "tollgate_contract_XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) return false;
    dir_ = tmpl;
    auto b = NewEmbeddedBackend(dir_);
    if (!b.ok()) return false;
    backend_ = std::move(*b);
    return true;
  }
  absl::StatusOr<std::unique_ptr<Backend>> Connect() override {
    return std::unique_ptr<Backend>(std::make_unique<SharedBackend>(backend_));
  }

 private:
  const bool embedded_;
  std::string dir_;
  std::shared_ptr<Backend> backend_;
};

}  // namespace

std::unique_ptr<BackendHarness> NewMemoryHarness() { return std::make_unique<LocalHarness>(false); }
std::unique_ptr<BackendHarness> NewEmbeddedHarness() {
  return std::make_unique<LocalHarness>(true);
}

}  // namespace tollgate::testing
