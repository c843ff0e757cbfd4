-- tollgate: fenced semaphore acquire (Redis backend; see src/backends/redis/sem_scripts.h).
--
-- KEYS[1]: the semaphore hash tollgate:s:{key}. Field 'limit' = the holders' limit; one field per
--          permit: permit_id -> "<slot> <fence> <expiry ms of server TIME>[ <owner>]".
-- KEYS[2]: the semaphore's own fence counter tollgate:s:{key}:fence (never expires).
-- KEYS[3]: standalone Redis only: the global fence counter tollgate:fence.
-- ARGV: permit_id, limit, ttl_ms, has_owner ('0'/'1'), owner.
--
-- Expired permits are not counted (and are purged on the next grant). Reply:
--   {1, slot, fence}  granted: the lowest free slot in [0, limit); fence as a decimal string
--   {2, limit}        unexpired permits hold the semaphore with another limit; nothing changed
--   nil               all `limit` slots are held by unexpired permits; nothing changed
-- The hash lives until its furthest permit expiry (PEXPIRE), so an idle semaphore disappears.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local used, stale = {}, {}
local holders, furthest, held_limit = 0, 0, nil
for i = 1, #all, 2 do
  if all[i] == 'limit' then
    held_limit = tonumber(all[i + 1])
  else
    local slot, exp = string.match(all[i + 1], '^(%d+) %d+ (%d+)')
    exp = tonumber(exp)
    if not exp or exp <= now then
      stale[#stale + 1] = all[i]
    else
      used[tonumber(slot)] = true
      holders = holders + 1
      if exp > furthest then furthest = exp end
    end
  end
end
if holders > 0 and held_limit ~= limit then return {2, held_limit or 0} end
if holders >= limit then return false end
local slot = 0
while used[slot] do slot = slot + 1 end
-- The fence, as the lease acquire draws it: the semaphore's counter, and on standalone Redis the
-- global one, which the semaphore's counter then follows. Decimal strings compare by length, then
-- bytes: no Lua double ever holds a fence.
redis.call('INCR', KEYS[2])
local f = redis.call('GET', KEYS[2])
if KEYS[3] then
  redis.call('INCR', KEYS[3])
  local g = redis.call('GET', KEYS[3])
  if #g < #f or (#g == #f and g < f) then
    redis.call('SET', KEYS[3], f)
  else
    f = g
    redis.call('SET', KEYS[2], f)
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
local exp = now + tonumber(ARGV[3])
local v = string.format('%d %s %.0f', slot, f, exp)
if ARGV[4] == '1' then v = v .. ' ' .. ARGV[5] end
redis.call('HSET', KEYS[1], ARGV[1], v, 'limit', ARGV[2])
if exp > furthest then furthest = exp end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', furthest - now))
return {1, slot, f}
