// The Redis backend (see include/tollgate/redis_backend.h for the key layout, the arithmetic and
// the error mapping).
#include "tollgate/redis_backend.h"

#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "backends/redis/cluster_slot.h"
#include "backends/redis/fenced_write_lua.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"
#include "hiredis/hiredis.h"

namespace tollgate {
namespace {

// ---- Scripts ----

// Lease acquire. KEYS: lock, fence. ARGV: lock_id, ttl_ms, has_owner ("0"/"1"), owner.
// Returns the new fence as a string (GET after INCR keeps all 64 bits), or nil if held.
constexpr std::string_view kAcquireLua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('INCR', KEYS[2])
local f = redis.call('GET', KEYS[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'fence', f, 'owner', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'fence', f)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return f
)lua";

// Release. KEYS: lock. ARGV: lock_id. 1 if released, 0 if not held by lock_id.
constexpr std::string_view kReleaseLua = R"lua(
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
)lua";

// Extend. KEYS: lock. ARGV: lock_id, ttl_ms. 1 if extended, 0 if not held by lock_id (an expired
// lease is gone, so it is never revived).
constexpr std::string_view kExtendLua = R"lua(
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
)lua";

// Info. KEYS: lock. nil if free, else {fence, pttl_ms[, owner]}.
constexpr std::string_view kInfoLua = R"lua(
local v = redis.call('HMGET', KEYS[1], 'fence', 'owner')
if not v[1] then return false end
local ttl = redis.call('PTTL', KEYS[1])
if v[2] then return {v[1], ttl, v[2]} end
return {v[1], ttl}
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

enum Script {
  kAcquire,
  kRelease,
  kExtend,
  kInfo,
  kRegSet,
  kRegGet,
  kBuckets,
  kFencedWrite,
  kCount
};

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
    default:
      return redis::kFencedWriteLua;
  }
}

// ---- Limits of the Lua arithmetic ----

constexpr uint64_t kNanosPerMicro = 1'000;         // Decimal nanos per micro-token
constexpr uint64_t kRateNanosPerUnit = 1'000'000;  // rate nanos per (micro-token per ms)
constexpr uint64_t kMaxRedisAmountMicros = 4'000'000'000'000'000;  // 4e9 tokens

// ---- Helpers ----

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

struct RedisUrl {
  std::string text;  // as given
  std::string host;
  int port = 6379;
  int db = 0;
};

absl::StatusOr<RedisUrl> ParseUrl(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid Redis url '", url, "': ", AV(why),
                                                   " (expected redis://host:port[/db])"));
  };
  constexpr std::string_view kScheme = "redis://";
  std::string_view s = url;
  if (s.substr(0, kScheme.size()) != kScheme) return bad("must start with redis://");
  s.remove_prefix(kScheme.size());
  RedisUrl out;
  out.text = url;
  std::string_view hostport = s.substr(0, s.find('/'));
  std::string_view rest = s.substr(hostport.size());
  if (hostport.find('@') != std::string_view::npos) return bad("credentials are not supported");
  std::string_view port_text;
  if (!hostport.empty() && hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6] host");
    out.host = std::string(hostport.substr(1, close - 1));
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after ]");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = hostport.find(':');
    out.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (out.host.empty()) return bad("empty host");
  for (char c : out.host) {
    if (c <= ' ' || c == '?' || c == '#' || c == '/' || c == '@' || c == '[' || c == ']' ||
        c == 0x7f) {
      return bad("bad character in host");
    }
  }
  auto number = [](std::string_view t, int lo, int hi) -> std::optional<int> {
    if (t.empty() || t.size() > 9) return std::nullopt;
    int v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    if (v < lo || v > hi) return std::nullopt;
    return v;
  };
  if (!port_text.empty()) {
    std::optional<int> p = number(port_text, 1, 65535);
    if (!p) return bad("port must be an integer in [1, 65535]");
    out.port = *p;
  }
  if (!rest.empty()) {
    rest.remove_prefix(1);  // '/'
    if (!rest.empty()) {
      std::optional<int> db = number(rest, 0, 1'000'000);
      if (!db) return bad("db must be a non-negative integer");
      out.db = *db;
    }
  }
  return out;
}

timeval ToTimeval(Duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

std::string_view Str(const redisReply* r) { return {r->str, r->len}; }

// TTLs go to Redis in whole milliseconds, rounded up (a lease never ends before its ttl).
std::string TtlMs(Duration ttl) {
  const int64_t ns = ttl.count();
  return std::to_string((ns + 999'999) / 1'000'000);
}

std::string LockKey(std::string_view key) { return absl::StrCat("tollgate:{", AV(key), "}:lock"); }
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

// What the Lua arithmetic can represent exactly (after the core's validation).
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

// ---- The backend ----

class RedisBackend final : public Backend {
 public:
  RedisBackend(RedisUrl url, Duration timeout) : url_(std::move(url)), timeout_(timeout) {}

  std::string_view kind() const override { return "redis"; }

  // Connects to the seed, learns whether it is a Redis Cluster (and if so its slot map), and loads
  // every script there (other cluster nodes load them on first use, through NOSCRIPT).
  absl::Status Init() {
    absl::MutexLock l(&mu_);
    nodes_.push_back(Node{url_.host, url_.port, nullptr});
    if (absl::Status st = Connect(0, /*select=*/false); !st.ok()) return st;
    if (absl::Status st = CheckNoEviction(); !st.ok()) return st;
    // One round trip per backend, none per call: a cluster answers CLUSTER SLOTS with its map, a
    // standalone server with "ERR This instance has cluster support disabled".
    const char* argv[] = {"CLUSTER", "SLOTS"};
    const size_t lens[] = {7, 5};
    Reply r(static_cast<redisReply*>(redisCommandArgv(nodes_[0].ctx.get(), 2, argv, lens)));
    if (!r) return IoError(0, "CLUSTER SLOTS");
    if (r->type == REDIS_REPLY_ARRAY) {
      if (url_.db != 0) return ClusterDbError();
      cluster_ = true;
      slot_node_.assign(redis::kClusterSlots, -1);
      ApplySlots(r.get(), 0);
    } else if (url_.db != 0) {
      if (absl::Status st = Select(0); !st.ok()) return st;
    }
    for (int s = 0; s < kCount; ++s) {
      if (absl::Status st = Load(s, 0); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    std::string lock_id = core::NewLockId();
    const std::string keys[] = {LockKey(key), FenceKey(key)};
    const std::string args[] = {lock_id, TtlMs(ttl), owner ? "1" : "0", owner.value_or("")};
    absl::StatusOr<Reply> r = Run(kAcquire, keys, args);
    if (!r.ok()) return r.status();
    if ((*r)->type == REDIS_REPLY_NIL) return std::optional<LeaseGrant>();
    uint64_t fence = 0;
    if ((*r)->type != REDIS_REPLY_STRING || !absl::SimpleAtoi(AV(Str(r->get())), &fence)) {
      return Unexpected("acquire");
    }
    return std::optional<LeaseGrant>(LeaseGrant{std::move(lock_id), fence, ttl});
  }

  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    const std::string keys[] = {LockKey(key)};
    const std::string args[] = {std::string(lock_id)};
    absl::StatusOr<Reply> r = Run(kRelease, keys, args);
    if (!r.ok()) return r.status();
    if ((*r)->type != REDIS_REPLY_INTEGER) return Unexpected("release");
    if ((*r)->integer != 1) return NotHeld(key);
    return absl::OkStatus();
  }

  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateTtl(ttl); !st.ok()) return st;
    const std::string keys[] = {LockKey(key)};
    const std::string args[] = {std::string(lock_id), TtlMs(ttl)};
    absl::StatusOr<Reply> r = Run(kExtend, keys, args);
    if (!r.ok()) return r.status();
    if ((*r)->type != REDIS_REPLY_INTEGER) return Unexpected("extend");
    if ((*r)->integer != 1) return NotHeld(key);
    return ttl;
  }

  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    const std::string keys[] = {LockKey(key)};
    absl::StatusOr<Reply> r = Run(kInfo, keys, {});
    if (!r.ok()) return r.status();
    const redisReply* v = r->get();
    if (v->type == REDIS_REPLY_NIL) return std::optional<LeaseInfo>();
    LeaseInfo info;
    if (v->type != REDIS_REPLY_ARRAY || v->elements < 2 ||
        v->element[0]->type != REDIS_REPLY_STRING ||
        !absl::SimpleAtoi(AV(Str(v->element[0])), &info.fence) ||
        v->element[1]->type != REDIS_REPLY_INTEGER) {
      return Unexpected("info");
    }
    info.ttl_remaining = std::chrono::milliseconds(std::max<long long>(v->element[1]->integer, 0));
    if (v->elements >= 3 && v->element[2]->type == REDIS_REPLY_STRING) {
      info.owner = std::string(Str(v->element[2]));
    }
    return std::optional<LeaseInfo>(std::move(info));
  }

  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    if (fence == 0) return absl::InvalidArgumentError("fence must be a positive integer");
    const std::string keys[] = {RegKey(resource)};
    const std::string args[] = {std::to_string(fence), std::string(value)};
    absl::StatusOr<Reply> r = Run(kRegSet, keys, args);
    if (!r.ok()) return r.status();
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return st;
    const std::string keys[] = {RegKey(resource)};
    absl::StatusOr<Reply> r = Run(kRegGet, keys, {});
    if (!r.ok()) return r.status();
    const redisReply* v = r->get();
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

  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (absl::Status st = ValidateBucketParams(params); !st.ok()) return st;
    if (absl::Status st = ValidateCost(cost); !st.ok()) return st;
    if (absl::Status st = ValidateRedisParams(params); !st.ok()) return st;
    if (absl::Status st = ValidateRedisCost(cost); !st.ok()) return st;
    const std::string keys[] = {ThrottleKey(key)};
    const BucketParams* p[] = {&params};
    const bool shadow[] = {false};
    bool allowed = false;
    absl::StatusOr<std::vector<Decision>> d = RunBuckets(keys, p, shadow, cost, &allowed);
    if (!d.ok()) return d.status();
    return (*d)[0];
  }

  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    // The core's validation, in the core's order, then what the Lua arithmetic can represent.
    if (absl::Status st = ValidateLayerChecks(layers, cost); !st.ok()) return st;
    if (absl::Status st = ValidateRedisCost(cost); !st.ok()) return st;
    std::vector<std::string> keys;
    std::vector<const BucketParams*> params;
    std::unique_ptr<bool[]> shadow(new bool[layers.size()]);
    for (size_t i = 0; i < layers.size(); ++i) {
      if (absl::Status st = ValidateRedisParams(layers[i].params); !st.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", layers[i].name, "': ", st.message()));
      }
      keys.push_back(LayerKey(layers[i].name, layers[i].key));
      params.push_back(&layers[i].params);
      shadow[i] = layers[i].shadow;
    }
    bool allowed = false;
    absl::StatusOr<std::vector<Decision>> d = RunBuckets(
        keys, params, std::span<const bool>(shadow.get(), layers.size()), cost, &allowed);
    if (!d.ok()) return d.status();
    PolicyDecision out = CombineLayerDecisions(layers, *d);
    out.allowed = allowed;  // the script's own all-or-nothing verdict
    return out;
  }

  absl::Status FencedWrite(std::string_view key, uint64_t fence, std::string_view value) {
    if (absl::Status st = ValidateKey(key); !st.ok()) return st;
    if (fence == 0) return absl::InvalidArgumentError("fence must be a positive integer");
    const std::string keys[] = {std::string(key), RedisFenceRecordKey(key)};
    const std::string args[] = {std::to_string(fence), std::string(value)};
    absl::StatusOr<Reply> r = Run(kFencedWrite, keys, args);
    if (!r.ok()) return r.status();
    return absl::OkStatus();
  }

 private:
  static absl::Status Unexpected(std::string_view what) {
    return absl::InternalError(absl::StrCat("unexpected reply from Redis to ", AV(what)));
  }
  static absl::Status NotHeld(std::string_view key) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease on '", AV(key), "' is not held by this lock_id"));
  }

  // Runs the bucket script; one Decision per key. *allowed: the all-or-nothing outcome.
  absl::StatusOr<std::vector<Decision>> RunBuckets(std::span<const std::string> keys,
                                                   std::span<const BucketParams* const> params,
                                                   std::span<const bool> shadow, Decimal cost,
                                                   bool* allowed) {
    std::vector<std::string> args;
    args.reserve(1 + 3 * keys.size());
    uint64_t max_cap = 0;
    for (const BucketParams* p : params) max_cap = std::max(max_cap, p->capacity.nanos);
    // A cost above every capacity is "never" whatever its size: send one that stays exact.
    const uint64_t cost_nanos = std::min(cost.nanos, max_cap + kNanosPerMicro);
    args.push_back(std::to_string(cost_nanos / kNanosPerMicro));
    for (size_t i = 0; i < keys.size(); ++i) {
      args.push_back(std::to_string(params[i]->capacity.nanos / kNanosPerMicro));
      args.push_back(std::to_string(params[i]->rate.nanos / kRateNanosPerUnit));
      args.push_back(shadow[i] ? "1" : "0");
    }
    absl::StatusOr<Reply> r = Run(kBuckets, keys, args);
    if (!r.ok()) return r.status();
    const redisReply* v = r->get();
    if (v->type != REDIS_REPLY_ARRAY || v->elements != 1 + 4 * keys.size()) {
      return Unexpected("rate limit check");
    }
    for (size_t i = 0; i < v->elements; ++i) {
      if (v->element[i]->type != REDIS_REPLY_INTEGER) return Unexpected("rate limit check");
    }
    *allowed = v->element[0]->integer == 1;
    std::vector<Decision> out(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      redisReply* const* e = v->element + 1 + 4 * i;
      Decision& d = out[i];
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

  // ---- Connections, cluster routing ----

  // One server: the seed from the URL (nodes_[0]) or a cluster node learned from CLUSTER SLOTS or
  // a redirect, with the backend's connection to it.
  struct Node {
    std::string host;
    int port = 0;
    Context ctx;  // null = (re)connect on next use
  };

  static constexpr int kMaxRedirects = 5;    // per operation
  static constexpr size_t kMaxNodes = 1024;  // Redis Cluster's own recommended maximum

  std::string Where(size_t node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::StrCat("Redis ", nodes_[node].host, ":", nodes_[node].port);
  }

  absl::Status ClusterDbError() const {
    return absl::InvalidArgumentError(absl::StrCat("invalid Redis url '", url_.text,
                                                   "': db must be 0 on a Redis Cluster, got ",
                                                   url_.db, " (a cluster has only database 0)"));
  }

  // Drops the node's connection after an I/O error or timeout; the next call reconnects. On a
  // cluster the node's slots are forgotten, so those calls go to another node, whose MOVED names
  // the slot's owner then (a promoted replica after a failover, or the same node once it is back).
  absl::Status IoError(size_t node, std::string_view during) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Node& n = nodes_[node];
    std::string text = n.ctx && n.ctx->err != 0 ? std::string(n.ctx->errstr) : "no reply";
    n.ctx.reset();
    ForgetSlotsOf(node);
    return absl::UnavailableError(absl::StrCat(Where(node), ": ", AV(during), ": ", text));
  }

  void ForgetSlotsOf(size_t node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (int16_t& owner : slot_node_) {
      if (owner == static_cast<int16_t>(node)) owner = -1;
    }
  }

  // Connects to nodes_[node] with the backend's timeout (and SELECTs the URL's db when `select`;
  // only ever non-zero off a cluster).
  absl::Status Connect(size_t node, bool select) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Node& n = nodes_[node];
    Context c(redisConnectWithTimeout(n.host.c_str(), n.port, ToTimeval(timeout_)));
    if (!c) return absl::UnavailableError("Redis: cannot allocate a connection");
    if (c->err != 0) {
      ForgetSlotsOf(node);
      return absl::UnavailableError(absl::StrCat(Where(node), ": connect: ", c->errstr));
    }
    if (redisSetTimeout(c.get(), ToTimeval(timeout_)) != REDIS_OK) {
      return absl::UnavailableError(
          absl::StrCat(Where(node), ": setting the timeout: ", c->errstr));
    }
    n.ctx = std::move(c);
    if (select && url_.db != 0) return Select(node);
    return absl::OkStatus();
  }

  absl::Status Select(size_t node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Node& n = nodes_[node];
    const std::string db = std::to_string(url_.db);
    const char* argv[] = {"SELECT", db.c_str()};
    const size_t lens[] = {6, db.size()};
    Reply r(static_cast<redisReply*>(redisCommandArgv(n.ctx.get(), 2, argv, lens)));
    if (!r) return IoError(node, "SELECT");
    if (r->type == REDIS_REPLY_ERROR) {
      std::string msg(Str(r.get()));
      n.ctx.reset();
      if (msg.find("cluster mode") != std::string::npos) return ClusterDbError();
      return ErrorReply(msg);
    }
    return absl::OkStatus();
  }

  // The index of the node at host:port, added if new; nullopt beyond kMaxNodes.
  std::optional<size_t> NodeAt(std::string_view host, int port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].port == port && nodes_[i].host == host) return i;
    }
    if (nodes_.size() >= kMaxNodes) return std::nullopt;
    nodes_.push_back(Node{std::string(host), port, nullptr});
    return nodes_.size() - 1;
  }

  // Fills slot_node_ from a CLUSTER SLOTS reply ([start, end, [host, port, id...], replicas...]
  // per range) received from nodes_[from]. An empty host means "the node you asked"; "?" (unknown
  // endpoint) leaves the range unknown. Malformed entries are skipped: routing then falls back to
  // redirects.
  void ApplySlots(const redisReply* r, size_t from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
          e->element[0]->type != REDIS_REPLY_INTEGER ||
          e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
          e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
          e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
        continue;
      }
      const long long lo = e->element[0]->integer, hi = e->element[1]->integer;
      std::string host(Str(e->element[2]->element[0]));
      const long long port = e->element[2]->element[1]->integer;
      if (lo < 0 || hi >= redis::kClusterSlots || lo > hi || port < 1 || port > 65535 ||
          host == "?") {
        continue;
      }
      if (host.empty()) host = nodes_[from].host;
      std::optional<size_t> node = NodeAt(host, static_cast<int>(port));
      if (!node) continue;
      for (long long s = lo; s <= hi; ++s) slot_node_[s] = static_cast<int16_t>(*node);
    }
  }

  // Where a command for `slot` goes: its known owner, else a node we are connected to (the seed
  // first), else the seed. A wrong guess costs one MOVED.
  size_t Route(int slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (slot_node_[slot] >= 0) return static_cast<size_t>(slot_node_[slot]);
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].ctx) return i;
    }
    return 0;
  }

  // Refuses a seed server that may evict keys (maxmemory-policy other than noeviction): evicting a
  // fence counter restarts that key's fences at 1, so a stale holder's write would be accepted.
  // FailedPrecondition naming the policy (or saying INFO is not allowed, so it cannot be checked).
  absl::Status CheckNoEviction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const char* argv[] = {"INFO", "memory"};
    const size_t lens[] = {4, 6};
    Reply r(static_cast<redisReply*>(redisCommandArgv(nodes_[0].ctx.get(), 2, argv, lens)));
    if (!r) return IoError(0, "INFO memory");
    const std::string where = absl::StrCat("Redis at ", url_.host, ":", url_.port);
    if (r->type == REDIS_REPLY_ERROR) {
      absl::Status st = ErrorReply(Str(r.get()));
      if (st.code() == absl::StatusCode::kUnavailable) return st;
      return absl::FailedPreconditionError(
          absl::StrCat(where, " refuses INFO (", AV(Str(r.get())),
                       "), so its maxmemory-policy cannot be checked: allow INFO for this user"));
    }
    const std::string_view info = r->type == REDIS_REPLY_STRING ? Str(r.get()) : std::string_view();
    constexpr std::string_view kField = "maxmemory_policy:";
    const size_t at = info.find(kField);
    if (at == std::string_view::npos) return absl::OkStatus();  // too old to evict by policy
    std::string_view policy = info.substr(at + kField.size());
    policy = policy.substr(0, policy.find_first_of("\r\n"));
    if (policy == "noeviction") return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        where, " has maxmemory-policy ", AV(policy),
        ": it may evict tollgate's fence counters, and a key whose counter was evicted would be "
        "granted fences from 1 again (a stale holder's writes would then be accepted); set "
        "maxmemory-policy noeviction (Redis then refuses writes when full, which tollgate "
        "reports as -UNAVAILABLE)"));
  }

  // SCRIPT LOAD on nodes_[node] (connected). The SHA1 is the same on every node.
  absl::Status Load(int s, size_t node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string_view text = ScriptText(s);
    const char* argv[] = {"SCRIPT", "LOAD", text.data()};
    const size_t lens[] = {6, 4, text.size()};
    Reply r(static_cast<redisReply*>(redisCommandArgv(nodes_[node].ctx.get(), 3, argv, lens)));
    if (!r) return IoError(node, "SCRIPT LOAD");
    if (r->type != REDIS_REPLY_STRING)
      return ErrorReply(r->type == REDIS_REPLY_ERROR ? Str(r.get())
                                                     : "SCRIPT LOAD: unexpected reply");
    sha_[s] = std::string(Str(r.get()));
    return absl::OkStatus();
  }

  // Maps an error reply to a status: Aborted for a stale fence; Unavailable for every state of the
  // server (loading, busy, failing over, out of memory, refusing writes after a failed save
  // (MISCONF), wanting a password or permission we do not have); Internal otherwise.
  static absl::Status ErrorReply(std::string_view msg) {
    if (msg.substr(0, 6) == "STALE ") return absl::AbortedError(AV(msg.substr(6)));
    for (std::string_view p :
         {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "NOREPLICAS",
          "OOM", "MISCONF", "NOAUTH", "WRONGPASS", "NOPERM"}) {
      if (msg.substr(0, p.size()) == p) {
        return absl::UnavailableError(absl::StrCat("Redis: ", AV(msg)));
      }
    }
    return absl::InternalError(absl::StrCat("Redis: ", AV(msg)));
  }

  // A parsed "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" error reply.
  struct Redirect {
    bool ask = false;
    int slot = 0;
    std::string host;  // empty: the host of the node that answered
    int port = 0;
  };
  static std::optional<Redirect> ParseRedirect(std::string_view msg) {
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
        out.slot >= redis::kClusterSlots || out.port < 1 || out.port > 65535) {
      return std::nullopt;
    }
    out.host = std::string(msg.substr(space + 1, colon - space - 1));
    if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
      out.host = out.host.substr(1, out.host.size() - 2);
    }
    return out;
  }

  // EVALSHA script `s` on the node that owns the keys' slot (loading the script there first if
  // needed, and again on NOSCRIPT), following MOVED (remembered) and ASK (ASKING + retry, not
  // remembered) up to kMaxRedirects times. Error replies become statuses; any other reply is
  // returned. Off a cluster this is exactly one EVALSHA round trip to the one server.
  absl::StatusOr<Reply> Run(int s, std::span<const std::string> keys,
                            std::span<const std::string> args) {
    absl::MutexLock l(&mu_);
    size_t node = 0;
    if (cluster_ && !keys.empty()) {
      const int slot = redis::KeySlot(keys[0]);
      for (const std::string& k : keys.subspan(1)) {
        if (redis::KeySlot(k) != slot) {
          return absl::InvalidArgumentError(absl::StrCat(
              "on a Redis Cluster the keys of one operation must share a hash slot, but '",
              AV(keys[0]), "' and '", AV(k),
              "' do not (give your key a hash tag, e.g. {order:42}:state; a lease key must not "
              "start with '}')"));
        }
      }
      node = Route(slot);
    }
    bool asking = false;    // send ASKING first (after an ASK redirect)
    bool reloaded = false;  // NOSCRIPT already handled on this node
    for (int redirects = 0;;) {
      if (!nodes_[node].ctx) {
        if (absl::Status st = Connect(node, /*select=*/true); !st.ok()) return st;
      }
      if (sha_[s].empty()) {
        if (absl::Status st = Load(s, node); !st.ok()) return st;
      }
      redisContext* const c = nodes_[node].ctx.get();
      if (asking) {
        Reply a(static_cast<redisReply*>(redisCommand(c, "ASKING")));
        if (!a) return IoError(node, "ASKING");
        if (a->type == REDIS_REPLY_ERROR) return ErrorReply(Str(a.get()));
      }
      const std::string nkeys = std::to_string(keys.size());
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      argv.reserve(3 + keys.size() + args.size());
      lens.reserve(argv.capacity());
      argv.push_back("EVALSHA");
      lens.push_back(7);
      argv.push_back(sha_[s].data());
      lens.push_back(sha_[s].size());
      argv.push_back(nkeys.data());
      lens.push_back(nkeys.size());
      for (const std::string& k : keys) {
        argv.push_back(k.data());
        lens.push_back(k.size());
      }
      for (const std::string& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      Reply r(static_cast<redisReply*>(
          redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
      if (!r) return IoError(node, "EVALSHA");
      if (r->type != REDIS_REPLY_ERROR) return r;
      const std::string_view msg = Str(r.get());
      if (msg.substr(0, 8) == "NOSCRIPT" && !reloaded) {
        // Flushed, a restarted server, or a cluster node we have not loaded it on: load, retry
        // once.
        reloaded = true;
        if (absl::Status st = Load(s, node); !st.ok()) return st;
        continue;
      }
      std::optional<Redirect> to = ParseRedirect(msg);
      if (!to) return ErrorReply(msg);
      if (++redirects > kMaxRedirects) {
        return absl::UnavailableError(absl::StrCat(
            "Redis Cluster: gave up after ", kMaxRedirects,
            " redirects for one operation (the cluster may be resharding or misconfigured); last: ",
            AV(msg)));
      }
      std::optional<size_t> next =
          NodeAt(to->host.empty() ? nodes_[node].host : to->host, to->port);
      if (!next) {
        return absl::UnavailableError(absl::StrCat("Redis Cluster: more than ", kMaxNodes,
                                                   " nodes; not following ", AV(msg)));
      }
      if (!to->ask) {
        if (!cluster_) {  // a cluster whose CLUSTER SLOTS we did not get at connect
          cluster_ = true;
          slot_node_.assign(redis::kClusterSlots, -1);
        }
        slot_node_[to->slot] = static_cast<int16_t>(*next);
      }
      asking = to->ask;
      reloaded = false;
      node = *next;
    }
  }

  const RedisUrl url_;
  const Duration timeout_;
  absl::Mutex mu_;
  std::vector<Node> nodes_ ABSL_GUARDED_BY(mu_);  // [0] = the seed; grows, never shrinks
  bool cluster_ ABSL_GUARDED_BY(mu_) = false;
  // On a cluster, each slot's owner as an index into nodes_ (-1 = unknown); empty otherwise.
  std::vector<int16_t> slot_node_ ABSL_GUARDED_BY(mu_);
  std::array<std::string, kCount> sha_ ABSL_GUARDED_BY(mu_);  // the same SHA1 on every node
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewRedisBackend(const std::string& url, Duration timeout) {
  absl::StatusOr<RedisUrl> u = ParseUrl(url);
  if (!u.ok()) return u.status();
  if (timeout <= Duration(0) || timeout > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Redis timeout for '", url, "' must be positive and at most 1 hour"));
  }
  auto b = std::make_unique<RedisBackend>(std::move(*u), timeout);
  if (absl::Status st = b->Init(); !st.ok()) return st;
  return std::unique_ptr<Backend>(std::move(b));
}

absl::Status RedisFencedWrite(Backend& redis, std::string_view key, uint64_t fence,
                              std::string_view value) {
  auto* r = dynamic_cast<RedisBackend*>(&redis);
  if (r == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("RedisFencedWrite needs a backend made by NewRedisBackend, got kind '",
                     AV(redis.kind()), "'"));
  }
  return r->FencedWrite(key, fence, value);
}

std::string RedisFenceRecordKey(std::string_view key) {
  return absl::StrCat(AV(key), ":tollgate-fence");
}

std::string_view RedisFencedWriteScript() { return redis::kFencedWriteLua; }

}  // namespace tollgate
