// Fenced semaphores on Redis: keys, calls and replies (see sem_scripts.h).
#include "backends/redis/sem_scripts.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/absl_compat.h"

namespace tollgate::redis {
namespace {

absl::Status PermitNotHeld(std::string_view key) {
  return absl::FailedPreconditionError(
      absl::StrCat("permit of semaphore '", AV(key), "' is not held by this permit_id"));
}

bool IsInteger(const redisReply* r) { return r->type == REDIS_REPLY_INTEGER; }

bool ParseFence(const redisReply* r, uint64_t* fence) {
  return r->type == REDIS_REPLY_STRING && absl::SimpleAtoi(AV(Str(r)), fence) && *fence > 0;
}

}  // namespace

std::string SemKey(std::string_view key) { return absl::StrCat("tollgate:s:{", AV(key), "}"); }
std::string SemFenceKey(std::string_view key) {
  return absl::StrCat("tollgate:s:{", AV(key), "}:fence");
}

ScriptCall SemAcquireCall(const SemAcquireRequest& req, const std::string& permit_id,
                          bool global_fences) {
  ScriptCall call{kSemAcquire,
                  {SemKey(req.key), SemFenceKey(req.key)},
                  {permit_id, std::to_string(req.limit), TtlMs(req.ttl), req.owner ? "1" : "0",
                   req.owner.value_or("")}};
  if (global_fences) call.keys.push_back(std::string(kGlobalFenceKey));
  return call;
}

ScriptCall SemReleaseCall(std::string_view key, std::string_view permit_id) {
  return ScriptCall{kSemRelease, {SemKey(key)}, {std::string(permit_id)}};
}

ScriptCall SemExtendCall(std::string_view key, std::string_view permit_id, Duration ttl) {
  return ScriptCall{kSemExtend, {SemKey(key)}, {std::string(permit_id), TtlMs(ttl)}};
}

ScriptCall SemInfoCall(std::string_view key) { return ScriptCall{kSemInfo, {SemKey(key)}, {}}; }

absl::StatusOr<std::optional<PermitGrant>> DecodeSemAcquire(const redisReply* r,
                                                            std::string_view key, int64_t limit,
                                                            std::string permit_id, Duration ttl) {
  if (r->type == REDIS_REPLY_NIL) return std::optional<PermitGrant>();
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !IsInteger(r->element[0])) {
    return Unexpected("semaphore acquire");
  }
  if (r->element[0]->integer == 2 && r->elements == 2 && IsInteger(r->element[1])) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", limit, " differs from the limit ", r->element[1]->integer,
                     " of the current holders of semaphore \"", AV(key.substr(0, 64)), "\""));
  }
  PermitGrant g{std::move(permit_id), 0, 0, ttl};
  if (r->element[0]->integer != 1 || r->elements != 3 || !IsInteger(r->element[1]) ||
      r->element[1]->integer < 0 || r->element[1]->integer >= limit ||
      !ParseFence(r->element[2], &g.fence)) {
    return Unexpected("semaphore acquire");
  }
  g.slot = r->element[1]->integer;
  return std::optional<PermitGrant>(std::move(g));
}

absl::Status DecodeSemRelease(const redisReply* r, std::string_view key) {
  if (!IsInteger(r)) return Unexpected("semaphore release");
  if (r->integer != 1) return PermitNotHeld(key);
  return absl::OkStatus();
}

absl::StatusOr<Duration> DecodeSemExtend(const redisReply* r, std::string_view key, Duration ttl) {
  if (!IsInteger(r)) return Unexpected("semaphore extend");
  if (r->integer != 1) return PermitNotHeld(key);
  return ttl;
}

absl::StatusOr<std::optional<SemaphoreInfo>> DecodeSemInfo(const redisReply* r) {
  if (r->type == REDIS_REPLY_NIL) return std::optional<SemaphoreInfo>();
  SemaphoreInfo info;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !IsInteger(r->element[0]) ||
      !IsInteger(r->element[1]) || !ParseFence(r->element[2], &info.fence)) {
    return Unexpected("semaphore info");
  }
  info.limit = r->element[0]->integer;
  info.holders = r->element[1]->integer;
  return std::optional<SemaphoreInfo>(info);
}

}  // namespace tollgate::redis
