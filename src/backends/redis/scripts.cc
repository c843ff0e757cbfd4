// The Redis backend's scripts, keys, arguments and reply decoding (see scripts.h).
#include "backends/redis/scripts.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "backends/redis/cluster_slot.h"
#include "backends/redis/fenced_write_lua.h"
#include "backends/redis/lua_scripts.h"
#include "core/absl_compat.h"
#include "tollgate/redis_backend.h"

namespace tollgate::redis {
namespace {

// ---- Scripts ----

// Lock-delay (ARGV delay_ms > 0 at acquire): the lock hash also holds 'exp' (server TIME in ms when
// the lease ends) and 'd' (the delay), and the key lives until exp + d, so a lease that expired
// without release blocks the key for d more. Release, Extend and Info treat the lease as gone from
// exp on; Acquire sees the key and refuses until it is deleted (release) or expires (exp + d).
// Without it (no 'exp'), the key's own expiry is the lease's.

// The lease hash: 'id' lock_id, 'fence', 'owner' (if any), 'at' acquired_at (Unix ms of the
// tollgate process's clock, passed in; absent in a lease stored by a tollgate that did not keep
// it), and 'exp', 'd' under lock-delay (above).
//
// Lease acquire. KEYS: lock, fence[, global fence][, index]. ARGV: lock_id, ttl_ms, has_owner
// ("0"/"1"), owner, delay_ms, acquired_at_ms[, key]. With ARGV[7] (standalone Redis), the last KEY
// is the index tollgate:i:<lock_id>, set to ARGV[7] (the caller's key) with the lease's ttl.
// Returns the new fence as a string (GET after INCR keeps all 64 bits), or nil if held (or in
// lock-delay).
constexpr std::string_view kAcquireLua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local idx = ARGV[7] and KEYS[#KEYS]
local gk = KEYS[3]
if gk == idx then gk = nil end  -- KEYS[3] is the index: no global counter
redis.call('INCR', KEYS[2])
local f = redis.call('GET', KEYS[2])
if gk then
  -- One counter for every key (KEYS[3], standalone Redis). The key's own counter (KEYS[2]) follows
  -- it, so the key's fences keep increasing if the data moves to a cluster (per-key counters only)
  -- and back; a global counter behind a key's counter (written before global fences) catches up.
  -- Decimal strings compared by length, then bytes: no Lua double ever holds a fence.
  redis.call('INCR', gk)
  local g = redis.call('GET', gk)
  if #g < #f or (#g == #f and g < f) then
    redis.call('SET', gk, f)
  else
    f = g
    redis.call('SET', KEYS[2], f)
  end
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'fence', f, 'owner', ARGV[4], 'at', ARGV[6])
else
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'fence', f, 'at', ARGV[6])
end
local d = tonumber(ARGV[5])
if d > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'exp', now + tonumber(ARGV[2]), 'd', d)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + d)
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if idx then redis.call('SET', idx, ARGV[7], 'PX', ARGV[2]) end
return f
)lua";

// Release. KEYS: lock[, index] (standalone: tollgate:i:<lock_id>, deleted with the lease). ARGV:
// lock_id. 1 if released, 0 if not held by lock_id (nothing changes).
constexpr std::string_view kReleaseLua = R"lua(
local v = redis.call('HMGET', KEYS[1], 'id', 'exp')
if v[1] ~= ARGV[1] then return 0 end
if v[2] then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= tonumber(v[2]) then
    return 0  -- expired: the key stays in lock-delay
  end
end
redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 1
)lua";

// Extend. KEYS: lock[, index] (standalone: tollgate:i:<lock_id>, given the lease's new ttl; absent
// for a lease of a multi-key group or one granted before the index existed: PEXPIRE does nothing).
// ARGV: lock_id, ttl_ms. 1 if extended, 0 if not held by lock_id (an expired lease is gone, so it
// is never revived). 'at' is kept.
constexpr std::string_view kExtendLua = R"lua(
local v = redis.call('HMGET', KEYS[1], 'id', 'exp', 'd')
if v[1] ~= ARGV[1] then return 0 end
if v[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now >= tonumber(v[2]) then return 0 end  -- expired (in lock-delay): never revived
  redis.call('HSET', KEYS[1], 'exp', now + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(v[3]))
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if KEYS[2] then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
)lua";

// Info. KEYS: lock. nil if free, else {fence, pttl_ms, owner or nil, lock_id, acquired_at_ms or
// nil}.
constexpr std::string_view kInfoLua = R"lua(
local v = redis.call('HMGET', KEYS[1], 'fence', 'owner', 'exp', 'id', 'at')
if not v[1] then return false end
local ttl
if v[3] then
  local t = redis.call('TIME')
  ttl = tonumber(v[3]) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  if ttl <= 0 then return false end  -- expired, in lock-delay: nobody holds it
else
  ttl = redis.call('PTTL', KEYS[1])
end
return {v[1], ttl, v[2], v[4], v[5]}
)lua";

// Fenced register set. KEYS: reg. ARGV: fence (decimal), value. Fences compare as decimal strings
// (exact for 64 bits). Stale: error reply "STALE fence X is older than Y".
constexpr std::string_view kRegSetLua = R"lua(
local function older(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
if KEYS[2] then
  -- Standalone: KEYS[2] is the one fence counter, so a fence above it was never issued.
  local hi = redis.call('GET', KEYS[2]) or '0'
  if older(hi, ARGV[1]) then
    return redis.error_reply('NEVERISSUED fence ' .. ARGV[1] ..
        ' was never issued; the highest fence issued so far is ' .. hi ..
        ' (use the fence of a lease you hold)')
  end
end
local cur = redis.call('HGET', KEYS[1], 'fence')
if cur and older(ARGV[1], cur) then
  return redis.error_reply('STALE fence ' .. ARGV[1] .. ' is older than ' .. cur)
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
return 1
)lua";

// Fenced register get. KEYS: reg. nil or {fence, value}.
constexpr std::string_view kRegGetLua = R"lua(
local v = redis.call('HMGET', KEYS[1], 'fence', 'value')
if not v[1] then return false end
return {v[1], v[2] or ''}
)lua";

// Token buckets, all-or-nothing. KEYS: N bucket keys. ARGV: cost, then per bucket: capacity, rate,
// shadow ("0"/"1"). Amounts in micro-tokens, rate in micro-tokens per ms, time in ms of server
// TIME; every number is an integer below 2^53 (capacity, cost <= 4e15, rate <= 1e12), so double
// arithmetic is exact (debt + cost <= 8e15 < 2^53). A bucket is {d = debt, t = ms of the last
// update, r = rate since then}; a backward step of TIME counts as no time passing. Reply:
// {allowed, then per bucket: allowed, remaining (whole tokens), retry_ms (-1 = never), reset_ms}.
constexpr std::string_view kBucketsLua = R"lua(
local function idiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end
local function cdiv(a, b)
  local q = idiv(a, b)
  if q * b < a then q = q + 1 end
  return q
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local n = #KEYS
local ev = {}
local allowed = 1
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local shadow = ARGV[3 * i + 1] == '1'
  local v = redis.call('HMGET', KEYS[i], 'd', 't', 'r')
  local d = tonumber(v[1]) or 0
  local last = tonumber(v[2]) or now
  local old_rate = tonumber(v[3]) or rate
  if d > 0 and now > last then
    -- time since the last update refills at the rate the bucket had then; the debt carries over
    local el = now - last
    if el >= cdiv(d, old_rate) then d = 0 else d = d - el * old_rate end
  end
  local ok, retry, used
  if cost > cap then
    ok, retry, used = 0, -1, d
  elseif d + cost <= cap then
    ok, retry, used = 1, 0, d + cost
  else
    ok, retry, used = 0, cdiv(d + cost - cap, rate), d
  end
  if ok == 0 and not shadow then allowed = 0 end
  local rem = 0
  if used < cap then rem = idiv(cap - used, 1000000) end
  ev[i] = {ok, rem, retry, cdiv(used, rate), used}
end
if allowed == 1 then
  for i = 1, n do
    if ev[i][1] == 1 then
      redis.call('HSET', KEYS[i], 'd', string.format('%.0f', ev[i][5]), 't',
                 string.format('%.0f', now), 'r', ARGV[3 * i])
      redis.call('PEXPIRE', KEYS[i], string.format('%.0f', ev[i][4]))
    end
  end
end
local out = {allowed}
for i = 1, n do
  out[#out + 1] = ev[i][1]
  out[#out + 1] = ev[i][2]
  out[#out + 1] = ev[i][3]
  out[#out + 1] = ev[i][4]
end
return out
)lua";

// ---- Limits of the Lua arithmetic ----

constexpr uint64_t kNanosPerMicro = 1'000;         // Decimal nanos per micro-token
constexpr uint64_t kRateNanosPerUnit = 1'000'000;  // rate nanos per (micro-token per ms)
constexpr uint64_t kMaxRedisAmountMicros = 4'000'000'000'000'000;  // 4e9 tokens

WallTime MsToWallTime(int64_t ms) { return WallTime(std::chrono::milliseconds(ms)); }

// The fields of a lease as the info and lookup scripts return them: {fence, pttl_ms, owner or nil,
// lock_id, acquired_at_ms or nil}. nullopt for any other shape.
std::optional<LeaseInfo> DecodeLease(redisReply* const* e, size_t n) {
  LeaseInfo info;
  if (n != 5 || e[0]->type != REDIS_REPLY_STRING || !absl::SimpleAtoi(AV(Str(e[0])), &info.fence) ||
      e[1]->type != REDIS_REPLY_INTEGER ||
      (e[2]->type != REDIS_REPLY_STRING && e[2]->type != REDIS_REPLY_NIL) ||
      e[3]->type != REDIS_REPLY_STRING ||
      (e[4]->type != REDIS_REPLY_STRING && e[4]->type != REDIS_REPLY_NIL)) {
    return std::nullopt;
  }
  info.ttl_remaining = std::chrono::milliseconds(std::max<long long>(e[1]->integer, 0));
  if (e[2]->type == REDIS_REPLY_STRING) info.owner = std::string(Str(e[2]));
  info.lock_id = std::string(Str(e[3]));
  if (e[4]->type == REDIS_REPLY_STRING) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(AV(Str(e[4])), &ms)) return std::nullopt;
    info.acquired_at = MsToWallTime(ms);
  }
  return info;
}

absl::Status NotHeld(std::string_view key) {
  return absl::FailedPreconditionError(
      absl::StrCat("lease on '", AV(key), "' is not held by this lock_id"));
}

}  // namespace

int64_t AcquiredAtMs(WallTime t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string TtlMs(Duration ttl) {
  const int64_t ns = ttl.count();
  return std::to_string((ns + 999'999) / 1'000'000);
}

absl::Status Unexpected(std::string_view what) {
  return absl::InternalError(absl::StrCat("unexpected reply from Redis to ", AV(what)));
}

std::string_view ScriptText(int s) {
  switch (s) {
    case kAcquire:
      return kAcquireLua;
    case kRelease:
      return kReleaseLua;
    case kExtend:
      return kExtendLua;
    case kInfo:
      return kInfoLua;
    case kRegSet:
      return kRegSetLua;
    case kRegGet:
      return kRegGetLua;
    case kBuckets:
      return kBucketsLua;
    case kFencedWrite:
      return kFencedWriteLua;
    case kSemAcquire:
      return kSemAcquireLua;
    case kSemRelease:
      return kSemReleaseLua;
    case kSemExtend:
      return kSemExtendLua;
    case kSemInfo:
      return kSemInfoLua;
    case kMultiAcquire:
      return kMultiAcquireLua;
    case kMultiRelease:
      return kMultiReleaseLua;
    case kMultiExtend:
      return kMultiExtendLua;
    case kLookupById:
      return kLookupByIdLua;
    default:
      return {};
  }
}

std::string LockKey(std::string_view key) {
  return absl::StrCat(AV(kLockKeyPrefix), AV(key), AV(kLockKeySuffix));
}
std::string IndexKey(std::string_view lock_id) { return absl::StrCat("tollgate:i:", AV(lock_id)); }
std::string FenceKey(std::string_view key) {
  return absl::StrCat("tollgate:{", AV(key), "}:fence");
}
std::string RegKey(std::string_view r) { return absl::StrCat("tollgate:{", AV(r), "}:reg"); }
std::string ThrottleKey(std::string_view key) { return absl::StrCat("tollgate:t:{", AV(key), "}"); }
std::string LayerKey(std::string_view layer, std::string_view key) {
  return absl::StrCat("tollgate:l:{tollgate-rl}:", layer.size(), ":", AV(layer), ":", AV(key));
}

absl::Status ValidateCost(Decimal cost) {  // as the core's
  if (cost.nanos == 0 || kMaxCost < cost) {
    return absl::InvalidArgumentError(
        absl::StrCat("cost must be a positive decimal number, at most ", kMaxCost.ToString(),
                     ", got ", cost.ToString()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRedisParams(const BucketParams& p) {
  if (p.capacity.nanos % kNanosPerMicro != 0 ||
      p.capacity.nanos / kNanosPerMicro > kMaxRedisAmountMicros) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capacity must have at most 6 decimal places and be at most 4000000000 on the Redis "
        "backend, got ",
        p.capacity.ToString()));
  }
  if (p.rate.nanos % kRateNanosPerUnit != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate must have at most 3 decimal places on the Redis backend, got ", p.rate.ToString()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRedisCost(Decimal cost) {
  if (cost.nanos % kNanosPerMicro != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cost must have at most 6 decimal places on the Redis backend, got ", cost.ToString()));
  }
  return absl::OkStatus();
}

ScriptCall AcquireCall(std::string_view key, Duration ttl, const std::optional<std::string>& owner,
                       const std::string& lock_id, bool global_fences, Duration lock_delay,
                       WallTime acquired_at, bool index) {
  ScriptCall call{kAcquire,
                  {LockKey(key), FenceKey(key)},
                  {lock_id, TtlMs(ttl), owner ? "1" : "0", owner.value_or(""),
                   lock_delay > Duration(0) ? TtlMs(lock_delay) : "0",
                   std::to_string(AcquiredAtMs(acquired_at))}};
  if (global_fences) call.keys.push_back(std::string(kGlobalFenceKey));
  if (index) {
    call.keys.push_back(IndexKey(lock_id));
    call.args.push_back(std::string(key));
  }
  return call;
}

ScriptCall ReleaseCall(std::string_view key, std::string_view lock_id, bool index) {
  ScriptCall call{kRelease, {LockKey(key)}, {std::string(lock_id)}};
  if (index) call.keys.push_back(IndexKey(lock_id));
  return call;
}

ScriptCall ExtendCall(std::string_view key, std::string_view lock_id, Duration ttl, bool index) {
  ScriptCall call{kExtend, {LockKey(key)}, {std::string(lock_id), TtlMs(ttl)}};
  if (index) call.keys.push_back(IndexKey(lock_id));
  return call;
}

ScriptCall InfoCall(std::string_view key) { return ScriptCall{kInfo, {LockKey(key)}, {}}; }

ScriptCall LookupByIdCall(std::string_view lock_id) {
  return ScriptCall{
      kLookupById,
      {IndexKey(lock_id)},
      {std::string(lock_id), std::string(kLockKeyPrefix), std::string(kLockKeySuffix)}};
}

ScriptCall RegSetCall(std::string_view resource, uint64_t fence, std::string_view value,
                      bool global_fences) {
  ScriptCall call{kRegSet, {RegKey(resource)}, {std::to_string(fence), std::string(value)}};
  if (global_fences) call.keys.push_back(std::string(kGlobalFenceKey));
  return call;
}

ScriptCall RegGetCall(std::string_view resource) {
  return ScriptCall{kRegGet, {RegKey(resource)}, {}};
}

ScriptCall FencedWriteCall(std::string_view key, uint64_t fence, std::string_view value) {
  return ScriptCall{kFencedWrite,
                    {std::string(key), RedisFenceRecordKey(key)},
                    {std::to_string(fence), std::string(value)}};
}

ScriptCall BucketsCall(std::vector<std::string> keys, std::span<const BucketParams* const> params,
                       std::span<const bool> shadow, Decimal cost) {
  ScriptCall call{kBuckets, std::move(keys), {}};
  std::vector<std::string>& args = call.args;
  args.reserve(1 + 3 * params.size());
  uint64_t max_cap = 0;
  for (const BucketParams* p : params) max_cap = std::max(max_cap, p->capacity.nanos);
  // A cost above every capacity is "never" whatever its size: send one that stays exact.
  const uint64_t cost_nanos = std::min(cost.nanos, max_cap + kNanosPerMicro);
  args.push_back(std::to_string(cost_nanos / kNanosPerMicro));
  for (size_t i = 0; i < params.size(); ++i) {
    args.push_back(std::to_string(params[i]->capacity.nanos / kNanosPerMicro));
    args.push_back(std::to_string(params[i]->rate.nanos / kRateNanosPerUnit));
    args.push_back(shadow[i] ? "1" : "0");
  }
  return call;
}

absl::StatusOr<std::optional<LeaseGrant>> DecodeAcquire(const redisReply* r, std::string lock_id,
                                                        Duration ttl, WallTime acquired_at) {
  if (r->type == REDIS_REPLY_NIL) return std::optional<LeaseGrant>();
  uint64_t fence = 0;
  if (r->type != REDIS_REPLY_STRING || !absl::SimpleAtoi(AV(Str(r)), &fence)) {
    return Unexpected("acquire");
  }
  return std::optional<LeaseGrant>(
      LeaseGrant{std::move(lock_id), fence, ttl, MsToWallTime(AcquiredAtMs(acquired_at))});
}

absl::Status DecodeRelease(const redisReply* r, std::string_view key) {
  if (r->type != REDIS_REPLY_INTEGER) return Unexpected("release");
  if (r->integer != 1) return NotHeld(key);
  return absl::OkStatus();
}

absl::StatusOr<Duration> DecodeExtend(const redisReply* r, std::string_view key, Duration ttl) {
  if (r->type != REDIS_REPLY_INTEGER) return Unexpected("extend");
  if (r->integer != 1) return NotHeld(key);
  return ttl;
}

absl::StatusOr<std::optional<LeaseInfo>> DecodeInfo(const redisReply* v) {
  if (v->type == REDIS_REPLY_NIL) return std::optional<LeaseInfo>();
  if (v->type != REDIS_REPLY_ARRAY) return Unexpected("info");
  std::optional<LeaseInfo> info = DecodeLease(v->element, v->elements);
  if (!info) return Unexpected("info");
  return info;
}

absl::StatusOr<std::optional<LeaseById>> DecodeLookupById(const redisReply* v) {
  if (v->type == REDIS_REPLY_NIL) return std::optional<LeaseById>();
  if (v->type != REDIS_REPLY_ARRAY || v->elements < 1 ||
      v->element[0]->type != REDIS_REPLY_STRING) {
    return Unexpected("lookup by lock_id");
  }
  std::optional<LeaseInfo> info = DecodeLease(v->element + 1, v->elements - 1);
  if (!info) return Unexpected("lookup by lock_id");
  return std::optional<LeaseById>(LeaseById{std::string(Str(v->element[0])), std::move(*info)});
}

absl::StatusOr<std::optional<FencedValue>> DecodeFencedGet(const redisReply* v) {
  if (v->type == REDIS_REPLY_NIL) return std::optional<FencedValue>();
  FencedValue out;
  if (v->type != REDIS_REPLY_ARRAY || v->elements != 2 ||
      v->element[0]->type != REDIS_REPLY_STRING || v->element[1]->type != REDIS_REPLY_STRING ||
      !absl::SimpleAtoi(AV(Str(v->element[0])), &out.fence)) {
    return Unexpected("fenced get");
  }
  out.value = std::string(Str(v->element[1]));
  return std::optional<FencedValue>(std::move(out));
}

absl::StatusOr<std::pair<bool, std::vector<Decision>>> DecodeBuckets(const redisReply* v,
                                                                     size_t n) {
  if (v->type != REDIS_REPLY_ARRAY || v->elements != 1 + 4 * n) {
    return Unexpected("rate limit check");
  }
  for (size_t i = 0; i < v->elements; ++i) {
    if (v->element[i]->type != REDIS_REPLY_INTEGER) return Unexpected("rate limit check");
  }
  std::pair<bool, std::vector<Decision>> out(v->element[0]->integer == 1, std::vector<Decision>(n));
  for (size_t i = 0; i < n; ++i) {
    redisReply* const* e = v->element + 1 + 4 * i;
    Decision& d = out.second[i];
    d.allowed = e[0]->integer == 1;
    d.remaining = static_cast<uint64_t>(std::max<long long>(e[1]->integer, 0));
    if (e[2]->integer >= 0) {
      d.retry_after = std::chrono::milliseconds(e[2]->integer);
    } else {
      d.retry_after = std::nullopt;
    }
    d.reset_after = std::chrono::milliseconds(std::max<long long>(e[3]->integer, 0));
  }
  return out;
}

absl::Status ErrorReply(std::string_view msg) {
  if (msg.substr(0, 6) == "STALE ") return absl::AbortedError(AV(msg.substr(6)));
  if (msg.substr(0, 12) == "NEVERISSUED ") {
    return absl::InvalidArgumentError(AV(msg.substr(12)));
  }
  for (std::string_view p : {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY",
                             "NOREPLICAS", "OOM", "MISCONF", "NOAUTH", "WRONGPASS", "NOPERM"}) {
    if (msg.substr(0, p.size()) == p) {
      return absl::UnavailableError(absl::StrCat("Redis: ", AV(msg)));
    }
  }
  return absl::InternalError(absl::StrCat("Redis: ", AV(msg)));
}

std::optional<Redirect> ParseRedirect(std::string_view msg) {
  Redirect out;
  if (msg.substr(0, 6) == "MOVED ") {
    msg.remove_prefix(6);
  } else if (msg.substr(0, 4) == "ASK ") {
    out.ask = true;
    msg.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t space = msg.find(' ');
  const size_t colon = msg.rfind(':');  // an IPv6 host has colons too: the port is after the last
  if (space == std::string_view::npos || colon == std::string_view::npos || colon < space ||
      !absl::SimpleAtoi(AV(msg.substr(0, space)), &out.slot) ||
      !absl::SimpleAtoi(AV(msg.substr(colon + 1)), &out.port) || out.slot < 0 ||
      out.slot >= kClusterSlots || out.port < 1 || out.port > 65535) {
    return std::nullopt;
  }
  out.host = std::string(msg.substr(space + 1, colon - space - 1));
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  return out;
}

}  // namespace tollgate::redis
