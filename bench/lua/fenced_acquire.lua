-- The usual fenced-lock acquire on Redis, as server_bench.sh compares against tollgate's LOCK.ACQUIRE.
--
--   EVALSHA <sha> 1 <lock key> <ttl_ms> <lock_id>
--   EVALSHA <sha> 2 <lock key> <fence key> <ttl_ms> <lock_id>
--
-- KEYS[1]  lock key
-- KEYS[2]  optional: the per-key fence counter. Default: KEYS[1] .. ':fence'. Pass it explicitly in
--          Redis Cluster (with a hash tag so both keys share a slot, e.g. {k} and {k}:fence).
--          server_bench.sh uses the 1-key form: redis-benchmark replaces every __rand_int__ in a
--          command with its own random number, so it cannot pass a matching pair of keys.
-- ARGV[1]  ttl in milliseconds
-- ARGV[2]  lock id: a random token chosen by the caller; only its holder may release/extend
--
-- Returns nil while the lock is held, else {lock_id, fence, ttl_ms} (the shape of LOCK.ACQUIRE).
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  -- Check before INCR: a script is not rolled back, so a failing SET would still burn a fence.
  return redis.error_reply('ERR ttl_ms must be a positive integer')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local fence_key = KEYS[2] or (KEYS[1] .. ':fence')
local fence = redis.call('INCR', fence_key)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return {ARGV[2], fence, ttl}
