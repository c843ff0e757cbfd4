// Multi-key locks on Redis: calls and replies (see multi_scripts.h).
#include "backends/redis/multi_scripts.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/redis/cluster_slot.h"
#include "core/absl_compat.h"

namespace tollgate::redis {
namespace {

std::vector<std::string> LockKeys(std::span<const std::string> keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const std::string& k : keys) out.push_back(LockKey(k));
  return out;
}

}  // namespace

absl::Status CheckOneSlot(std::string_view command, std::span<const std::string> keys) {
  if (keys.empty()) return absl::OkStatus();
  const int first = KeySlot(LockKey(keys[0]));
  for (size_t i = 1; i < keys.size(); ++i) {
    const int slot = KeySlot(LockKey(keys[i]));
    if (slot != first) {
      return absl::InvalidArgumentError(absl::StrCat(
          AV(command), " keys must hash to one Redis Cluster slot (use a {hash tag}): \"",
          AV(keys[0]), "\" is in slot ", first, ", \"", AV(keys[i]), "\" in slot ", slot));
    }
  }
  return absl::OkStatus();
}

ScriptCall MultiAcquireCall(const MultiAcquireRequest& req, const std::string& lock_id,
                            bool global_fences, Duration lock_delay, WallTime acquired_at) {
  ScriptCall call{kMultiAcquire,
                  LockKeys(req.keys),
                  {lock_id, TtlMs(req.ttl), req.owner ? "1" : "0", req.owner.value_or(""),
                   lock_delay > Duration(0) ? TtlMs(lock_delay) : "0",
                   std::to_string(req.keys.size()), std::to_string(AcquiredAtMs(acquired_at))}};
  for (const std::string& k : req.keys) call.keys.push_back(FenceKey(k));
  if (global_fences) call.keys.push_back(std::string(kGlobalFenceKey));
  return call;
}

ScriptCall MultiReleaseCall(std::span<const std::string> keys, std::string_view lock_id,
                            bool index) {
  ScriptCall call{
      kMultiRelease, LockKeys(keys), {std::string(lock_id), std::to_string(keys.size())}};
  if (index) call.keys.push_back(IndexKey(lock_id));
  return call;
}

ScriptCall MultiExtendCall(std::span<const std::string> keys, std::string_view lock_id,
                           Duration ttl, bool index) {
  ScriptCall call{kMultiExtend,
                  LockKeys(keys),
                  {std::string(lock_id), TtlMs(ttl), std::to_string(keys.size())}};
  if (index) call.keys.push_back(IndexKey(lock_id));
  return call;
}

absl::StatusOr<std::optional<LeaseGrant>> DecodeMultiAcquire(const redisReply* r,
                                                             std::string lock_id, Duration ttl,
                                                             WallTime acquired_at) {
  // The same reply as the single-key acquire: nil or the fence.
  absl::StatusOr<std::optional<LeaseGrant>> g =
      DecodeAcquire(r, std::move(lock_id), ttl, acquired_at);
  if (!g.ok()) return Unexpected("multi-key acquire");
  return g;
}

absl::StatusOr<size_t> DecodeMultiRelease(const redisReply* r, size_t nkeys) {
  if (r->type != REDIS_REPLY_INTEGER || r->integer < 0 || static_cast<size_t>(r->integer) > nkeys) {
    return Unexpected("multi-key release");
  }
  return static_cast<size_t>(r->integer);
}

absl::StatusOr<Duration> DecodeMultiExtend(const redisReply* r, std::span<const std::string> keys,
                                           Duration ttl) {
  if (r->type != REDIS_REPLY_INTEGER || r->integer < 0 ||
      static_cast<size_t>(r->integer) > keys.size()) {
    return Unexpected("multi-key extend");
  }
  if (r->integer == 0) return ttl;
  return absl::FailedPreconditionError(absl::StrCat("lease on '",
                                                    AV(keys[static_cast<size_t>(r->integer) - 1]),
                                                    "' is not held by this lock_id"));
}

}  // namespace tollgate::redis
