-- tollgate: multi-key lock acquire, all or nothing (Redis backend; see
-- src/backends/redis/multi_scripts.h). Each key becomes an ordinary lease (the layout of the
-- single-key acquire in scripts.cc: hash tollgate:{key}:lock with 'id', 'fence'[, 'owner'], 'at'[,
-- 'exp', 'd'] and counter tollgate:{key}:fence), all with one lock_id and one fence. No index key
-- tollgate:i:<lock_id>: a group is not found by lock_id.
--
-- KEYS[1..n]: the lock hashes; KEYS[n+1..2n]: their fence counters; KEYS[2n+1]: standalone Redis
-- only: the global fence counter tollgate:fence.
-- ARGV: lock_id, ttl_ms, has_owner ('0'/'1'), owner, delay_ms, n, acquired_at_ms (Unix ms of the
-- tollgate process's clock).
--
-- Any lock hash present (held, or in lock-delay: see the single-key acquire) -> nil, nothing
-- changed. Else the fence is one more than the highest of the counters (each key's and the global
-- one), every counter is set to it (so each key's fences, and the global sequence, keep
-- increasing), and the keys are granted. Reply: the fence as a decimal string.
local n = tonumber(ARGV[6])
if redis.call('EXISTS', unpack(KEYS, 1, n)) > 0 then return false end
-- Decimal strings compare by length, then bytes; INCR does the arithmetic: no Lua double ever holds
-- a fence.
local best, hi = n + 1, redis.call('GET', KEYS[n + 1]) or '0'
for i = n + 2, #KEYS do
  local v = redis.call('GET', KEYS[i]) or '0'
  if #hi < #v or (#hi == #v and hi < v) then best, hi = i, v end
end
redis.call('INCR', KEYS[best])
local f = redis.call('GET', KEYS[best])
for i = n + 1, #KEYS do
  if i ~= best then redis.call('SET', KEYS[i], f) end
end
local ttl, d = tonumber(ARGV[2]), tonumber(ARGV[5])
local exp
if d > 0 then
  local t = redis.call('TIME')
  exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
end
for i = 1, n do
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[i], 'id', ARGV[1], 'fence', f, 'owner', ARGV[4], 'at', ARGV[7])
  else
    redis.call('HSET', KEYS[i], 'id', ARGV[1], 'fence', f, 'at', ARGV[7])
  end
  if d > 0 then
    redis.call('HSET', KEYS[i], 'exp', exp, 'd', d)
    redis.call('PEXPIRE', KEYS[i], ttl + d)
  else
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return f
