#include "client/resp_backend.h"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/resp_pool.h"
#include "core/absl_compat.h"

namespace tollgate::client {
namespace {

using std::chrono::milliseconds;

// Whole milliseconds, rounded up (a ttl never shrinks to 0 on the way).
int64_t CeilMs(Duration d) {
  int64_t ms = std::chrono::ceil<milliseconds>(d).count();
  return ms < 0 ? 0 : ms;
}
std::string MsArg(Duration d) { return std::to_string(CeilMs(d)); }

absl::Status Unexpected(std::string_view command) {
  return absl::UnknownError(absl::StrCat("unexpected reply to ", AV(command)));
}

std::optional<int64_t> Int(const redisReply* r) {
  if (r == nullptr || r->type != REDIS_REPLY_INTEGER) return std::nullopt;
  return r->integer;
}
std::optional<std::string> Str(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) {
    return std::nullopt;
  }
  return std::string(r->str, r->len);
}
bool IsNil(const redisReply* r) { return r->type == REDIS_REPLY_NIL; }
// The i-th element of an array reply of exactly n elements, or null.
const redisReply* At(const redisReply* r, size_t n, size_t i) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != n) return nullptr;
  return r->element[i];
}
// The value of `field` in a map reply sent as RESP2 (a flat array of field, value pairs), or null.
const redisReply* Field(const redisReply* r, std::string_view field) {
  if (r->type != REDIS_REPLY_ARRAY) return nullptr;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    std::optional<std::string> name = Str(r->element[i]);
    if (name && *name == field) return r->element[i + 1];
  }
  return nullptr;
}

// [id, fence, ttl_ms] of LOCK.ACQUIRE / LOCK.MACQUIRE.
absl::StatusOr<std::optional<LeaseGrant>> ParseGrant(std::string_view command,
                                                     const redisReply* r) {
  if (IsNil(r)) return std::optional<LeaseGrant>();
  std::optional<std::string> id = Str(At(r, 3, 0));
  std::optional<int64_t> fence = Int(At(r, 3, 1));
  std::optional<int64_t> ttl = Int(At(r, 3, 2));
  if (!id || !fence || !ttl || *fence <= 0) return Unexpected(command);
  return std::optional<LeaseGrant>(
      LeaseGrant{*id, static_cast<uint64_t>(*fence), milliseconds(*ttl)});
}

// ttl | 0 of LOCK.EXTEND, SEM.EXTEND, LOCK.MEXTEND.
absl::StatusOr<Duration> ParseExtend(std::string_view command, const redisReply* r,
                                     std::string_view what) {
  std::optional<int64_t> ttl = Int(r);
  if (!ttl) return Unexpected(command);
  if (*ttl == 0) {
    return absl::FailedPreconditionError(absl::StrCat(AV(what), " is not held by this id"));
  }
  return Duration(milliseconds(*ttl));
}

void AddWaitOwner(std::vector<std::string>& args, Duration wait,
                  const std::optional<std::string>& owner) {
  if (wait > Duration(0)) {
    args.push_back("WAIT");
    args.push_back(MsArg(wait));
  }
  if (owner.has_value()) {
    args.push_back("OWNER");
    args.push_back(*owner);
  }
}

void AddKeys(std::vector<std::string>& args, std::span<const std::string> keys) {
  args.push_back(std::to_string(keys.size()));
  args.insert(args.end(), keys.begin(), keys.end());
}

std::string Quoted(std::string_view key) { return absl::StrCat("\"", AV(key.substr(0, 64)), "\""); }

class RespBackend final : public Backend {
 public:
  explicit RespBackend(const ClientOptions& o) : pool_(o), io_(o.io_timeout) {}

  absl::Status Check() { return pool_.Check(); }

  std::string_view kind() const override { return "tollgate"; }
  bool queues_waiters() const override { return true; }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    return AcquireQueued({std::string(key), ttl, Duration(0), std::move(owner)});
  }
  absl::StatusOr<std::optional<LeaseGrant>> AcquireQueued(const AcquireRequest& req) override {
    std::vector<std::string> args = {"LOCK.ACQUIRE", req.key, MsArg(req.ttl)};
    AddWaitOwner(args, req.wait, req.owner);
    auto r = pool_.Call(args, req.wait + io_, Retry::kNever, req.wait > Duration(0));
    if (!r.ok()) return r.status();
    return ParseGrant("LOCK.ACQUIRE", r->get());
  }
  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    auto r =
        pool_.Call({"LOCK.RELEASE", std::string(key), std::string(lock_id)}, io_, Retry::kNever);
    if (!r.ok()) return r.status();
    return ReleaseResult("LOCK.RELEASE", r->get(), absl::StrCat("lease on ", Quoted(key)));
  }
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    auto r = pool_.Call({"LOCK.EXTEND", std::string(key), std::string(lock_id), MsArg(ttl)}, io_,
                        Retry::kNever);
    if (!r.ok()) return r.status();
    return ParseExtend("LOCK.EXTEND", r->get(), absl::StrCat("lease on ", Quoted(key)));
  }
  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    auto r = pool_.Call({"LOCK.INFO", std::string(key)}, io_, Retry::kSafe);
    if (!r.ok()) return r.status();
    const redisReply* m = r->get();
    if (IsNil(m)) return std::optional<LeaseInfo>();
    std::optional<int64_t> fence = Int(Field(m, "fence"));
    std::optional<int64_t> ttl = Int(Field(m, "ttl_ms"));
    std::optional<int64_t> waiters = Int(Field(m, "waiters"));
    const redisReply* owner = Field(m, "owner");
    if (!fence || !ttl || !waiters || owner == nullptr) return Unexpected("LOCK.INFO");
    LeaseInfo info{static_cast<uint64_t>(*fence), milliseconds(*ttl), Str(owner),
                   static_cast<size_t>(*waiters)};
    return std::optional<LeaseInfo>(std::move(info));
  }

  absl::StatusOr<std::optional<PermitGrant>> SemAcquire(const SemAcquireRequest& req) override {
    std::vector<std::string> args = {"SEM.ACQUIRE", req.key, std::to_string(req.limit),
                                     MsArg(req.ttl)};
    AddWaitOwner(args, req.wait, req.owner);
    auto r = pool_.Call(args, req.wait + io_, Retry::kNever, req.wait > Duration(0));
    if (!r.ok()) return r.status();
    const redisReply* g = r->get();
    if (IsNil(g)) return std::optional<PermitGrant>();
    std::optional<std::string> id = Str(At(g, 4, 0));
    std::optional<int64_t> slot = Int(At(g, 4, 1));
    std::optional<int64_t> fence = Int(At(g, 4, 2));
    std::optional<int64_t> ttl = Int(At(g, 4, 3));
    if (!id || !slot || !fence || !ttl || *fence <= 0) return Unexpected("SEM.ACQUIRE");
    return std::optional<PermitGrant>(
        PermitGrant{*id, *slot, static_cast<uint64_t>(*fence), milliseconds(*ttl)});
  }
  absl::Status SemRelease(std::string_view key, std::string_view permit_id) override {
    auto r =
        pool_.Call({"SEM.RELEASE", std::string(key), std::string(permit_id)}, io_, Retry::kNever);
    if (!r.ok()) return r.status();
    return ReleaseResult("SEM.RELEASE", r->get(),
                         absl::StrCat("permit of semaphore ", Quoted(key)));
  }
  absl::StatusOr<Duration> SemExtend(std::string_view key, std::string_view permit_id,
                                     Duration ttl) override {
    auto r = pool_.Call({"SEM.EXTEND", std::string(key), std::string(permit_id), MsArg(ttl)}, io_,
                        Retry::kNever);
    if (!r.ok()) return r.status();
    return ParseExtend("SEM.EXTEND", r->get(), absl::StrCat("permit of semaphore ", Quoted(key)));
  }
  absl::StatusOr<std::optional<SemaphoreInfo>> SemInfo(std::string_view key) override {
    auto r = pool_.Call({"SEM.INFO", std::string(key)}, io_, Retry::kSafe);
    if (!r.ok()) return r.status();
    const redisReply* m = r->get();
    if (IsNil(m)) return std::optional<SemaphoreInfo>();
    std::optional<int64_t> limit = Int(Field(m, "limit"));
    std::optional<int64_t> holders = Int(Field(m, "holders"));
    std::optional<int64_t> waiters = Int(Field(m, "waiters"));
    std::optional<int64_t> fence = Int(Field(m, "fence"));
    if (!limit || !holders || !waiters || !fence) return Unexpected("SEM.INFO");
    return std::optional<SemaphoreInfo>(SemaphoreInfo{
        *limit, *holders, static_cast<size_t>(*waiters), static_cast<uint64_t>(*fence)});
  }

  absl::StatusOr<std::optional<LeaseGrant>> MultiAcquire(const MultiAcquireRequest& req) override {
    std::vector<std::string> args = {"LOCK.MACQUIRE"};
    AddKeys(args, req.keys);
    args.push_back(MsArg(req.ttl));
    AddWaitOwner(args, req.wait, req.owner);
    auto r = pool_.Call(args, req.wait + io_, Retry::kNever, req.wait > Duration(0));
    if (!r.ok()) return r.status();
    return ParseGrant("LOCK.MACQUIRE", r->get());
  }
  absl::StatusOr<size_t> MultiRelease(std::span<const std::string> keys,
                                      std::string_view lock_id) override {
    std::vector<std::string> args = {"LOCK.MRELEASE"};
    AddKeys(args, keys);
    args.emplace_back(lock_id);
    auto r = pool_.Call(args, io_, Retry::kNever);
    if (!r.ok()) return r.status();
    std::optional<int64_t> n = Int(r->get());
    if (!n || *n < 0) return Unexpected("LOCK.MRELEASE");
    return static_cast<size_t>(*n);
  }
  absl::StatusOr<Duration> MultiExtend(std::span<const std::string> keys, std::string_view lock_id,
                                       Duration ttl) override {
    std::vector<std::string> args = {"LOCK.MEXTEND"};
    AddKeys(args, keys);
    args.emplace_back(lock_id);
    args.push_back(MsArg(ttl));
    auto r = pool_.Call(args, io_, Retry::kNever);
    if (!r.ok()) return r.status();
    return ParseExtend("LOCK.MEXTEND", r->get(), "some of the keys");
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    auto r =
        pool_.Call({"FENCE.SET", std::string(resource), std::to_string(fence), std::string(value)},
                   io_, Retry::kNever);
    if (!r.ok()) return r.status();
    if (Str(r->get()) != "OK") return Unexpected("FENCE.SET");
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    auto r = pool_.Call({"FENCE.GET", std::string(resource)}, io_, Retry::kSafe);
    if (!r.ok()) return r.status();
    if (IsNil(r->get())) return std::optional<FencedValue>();
    std::optional<std::string> value = Str(At(r->get(), 2, 0));
    std::optional<int64_t> fence = Int(At(r->get(), 2, 1));
    if (!value || !fence) return Unexpected("FENCE.GET");
    FencedValue v;
    v.value = std::move(*value);
    v.fence = static_cast<uint64_t>(*fence);
    return std::optional<FencedValue>(std::move(v));
  }

  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    auto r = pool_.Call({"THROTTLE", std::string(key), params.capacity.ToString(),
                         params.rate.ToString(), "COST", cost.ToString()},
                        io_, Retry::kNever);
    if (!r.ok()) return r.status();
    std::optional<int64_t> allowed = Int(At(r->get(), 4, 0));
    std::optional<int64_t> remaining = Int(At(r->get(), 4, 1));
    std::optional<int64_t> retry = Int(At(r->get(), 4, 2));
    std::optional<int64_t> reset = Int(At(r->get(), 4, 3));
    if (!allowed || !remaining || !retry || !reset) return Unexpected("THROTTLE");
    Decision d;
    d.allowed = *allowed == 1;
    d.remaining = static_cast<uint64_t>(*remaining);
    if (d.allowed) {
      d.retry_after = Duration(0);
    } else if (*retry >= 0) {
      d.retry_after = milliseconds(*retry);
    }
    d.reset_after = milliseconds(*reset);
    return d;
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck>, Decimal) override {
    return absl::UnimplementedError(
        "a tollgate server keeps its own rate-limit policies: use RATE.CHECK, not CheckLayers");
  }

 private:
  static absl::Status ReleaseResult(std::string_view command, const redisReply* r,
                                    std::string_view what) {
    std::optional<int64_t> n = Int(r);
    if (!n) return Unexpected(command);
    if (*n == 0) {
      return absl::FailedPreconditionError(absl::StrCat(AV(what), " is not held by this id"));
    }
    return absl::OkStatus();
  }

  RespPool pool_;
  const Duration io_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewRespBackend(const ClientOptions& o) {
  if (o.host.empty()) return absl::InvalidArgumentError("host must not be empty");
  if (o.port < 1 || o.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port must be in [1, 65535], got ", o.port));
  }
  if (o.pool_size < 1 || o.pool_size > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool_size must be in [1, 1024], got ", o.pool_size));
  }
  if (o.connect_timeout <= Duration(0) || o.io_timeout <= Duration(0)) {
    return absl::InvalidArgumentError("connect_timeout and io_timeout must be > 0");
  }
  auto backend = std::make_unique<RespBackend>(o);
  if (absl::Status s = backend->Check(); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tollgate::client
