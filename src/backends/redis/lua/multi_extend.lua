-- tollgate: multi-key lock extend, all or none (Redis backend; lease layout in multi_acquire.lua).
--
-- KEYS[1..n]: the lock hashes; KEYS[n+1]: standalone Redis only: the index tollgate:i:<lock_id>
-- (see the single-key acquire in scripts.cc). ARGV: lock_id, ttl_ms, n.
-- Reply: 0 when lock_id held every key (unexpired) and each now expires ttl_ms from now; else the
-- 1-based index of the first key it does not hold, and nothing changed (never revives). A lock_id
-- of a group has no index; one of a single-key lease (extended here as a group of one) has, and it
-- gets the lease's new ttl.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local delays = {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'id', 'exp', 'd')
  if v[1] ~= ARGV[1] then return i end
  if v[2] then
    if now >= tonumber(v[2]) then return i end  -- expired (in lock-delay)
    delays[i] = tonumber(v[3])
  else
    delays[i] = false
  end
end
for i = 1, n do
  if delays[i] then
    redis.call('HSET', KEYS[i], 'exp', now + ttl)
    redis.call('PEXPIRE', KEYS[i], ttl + delays[i])
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
if KEYS[n + 1] then redis.call('PEXPIRE', KEYS[n + 1], ARGV[2]) end
return 0
