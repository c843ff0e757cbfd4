-- Token bucket(s) on Redis 7, the usual way: one hash per bucket {tokens, ts}, refilled lazily from
-- the server clock. The Redis side of bench/limit_server_bench.sh (the equivalent of tollgate's
-- THROTTLE and RATE.CHECK).
--
--   KEYS[1..n]          the buckets (hashes)
--   ARGV[1..3n]         per bucket: capacity, rate (tokens per second), cost (all > 0, decimals ok)
--   ARGV[3n+1..4n]      optional: a layer name per bucket (selects the RATE.CHECK reply shape)
--
-- All buckets are checked first; the request is charged on all of them or on none (a denied
-- request writes nothing). Replies:
--   without layer names (THROTTLE shape):
--     {allowed (0|1), remaining, retry_after_ms (0 when allowed, -1 = never), reset_after_ms}
--   with layer names (RATE.CHECK shape):
--     {allowed (0|1), denied_layer (name of the first denying bucket, or nil), remaining,
--      retry_after_ms}
-- remaining is the whole tokens left (floor), the least over the buckets; retry_after_ms is the
-- largest wait over the denying buckets (-1 when some cost exceeds its capacity); reset_after_ms
-- (the time until every bucket is full again, rounded up) is also each bucket's PEXPIRE, so an idle
-- bucket disappears exactly when it would be full anyway.
--
-- Time comes from redis.call('TIME') inside the script. Redis 7 replicates scripts by their effects
-- (HSET / PEXPIRE with the computed values), so no redis.replicate_commands() call is needed.
local n = #KEYS
if n == 0 or (#ARGV ~= 3 * n and #ARGV ~= 4 * n) then
  return redis.error_reply('ERR token_bucket: need KEYS[1..n] and 3n (or 4n with layer names) ARGV')
end
local named = #ARGV == 4 * n

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])  -- microseconds, exact in a double

local tokens, stamps, caps, rates, costs = {}, {}, {}, {}, {}
local allowed = true
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  if not (cap and rate and cost and cap > 0 and rate > 0 and cost > 0) then
    return redis.error_reply('ERR token_bucket: capacity, rate and cost must be positive numbers')
  end
  local st = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local have, ts = tonumber(st[1]), tonumber(st[2])
  if have == nil or ts == nil then
    have, ts = cap, now  -- a new (or expired, hence full) bucket
  elseif now > ts then
    have = math.min(cap, have + (now - ts) * rate / 1000000)
    ts = now
  end  -- the clock went back: keep the stored state, refill nothing
  tokens[i], stamps[i], caps[i], rates[i], costs[i] = have, ts, cap, rate, cost
  if have < cost then allowed = false end
end

local remaining, retry, reset, denied_layer = nil, 0, 0, false
for i = 1, n do
  local left = tokens[i]
  if allowed then
    left = left - costs[i]
    local full_ms = math.max(1, math.ceil((caps[i] - left) * 1000 / rates[i]))
    redis.call('HSET', KEYS[i], 'tokens', left, 'ts', stamps[i])
    redis.call('PEXPIRE', KEYS[i], full_ms)
  elseif left < costs[i] then
    if not denied_layer then denied_layer = named and ARGV[3 * n + i] or KEYS[i] end
    if costs[i] > caps[i] then
      retry = -1
    elseif retry ~= -1 then
      retry = math.max(retry, math.ceil((costs[i] - left) * 1000 / rates[i]))
    end
  end
  local whole = math.floor(left)
  if remaining == nil or whole < remaining then remaining = whole end
  reset = math.max(reset, math.ceil((caps[i] - left) * 1000 / rates[i]))
end

if named then
  return {allowed and 1 or 0, denied_layer, remaining, retry}
end
return {allowed and 1 or 0, remaining, retry, reset}
