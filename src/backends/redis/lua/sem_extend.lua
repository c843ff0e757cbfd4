-- tollgate: fenced semaphore extend (Redis backend; layout in sem_acquire.lua).
--
-- KEYS[1]: the semaphore hash. ARGV: permit_id, ttl_ms.
-- Reply: 1 the permit now expires ttl_ms from now (server TIME); 0 no unexpired permit has this
-- permit_id: an expired permit is never revived (nothing changed).
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or ARGV[1] == 'limit' then return 0 end
local slot, fence, exp, rest = string.match(v, '^(%d+) (%d+) (%d+)(.*)$')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not exp or tonumber(exp) <= now then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1],
           slot .. ' ' .. fence .. ' ' .. string.format('%.0f', now + ttl) .. rest)
-- The hash must live at least until its furthest permit expiry.
local pttl = redis.call('PTTL', KEYS[1])
if pttl < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
