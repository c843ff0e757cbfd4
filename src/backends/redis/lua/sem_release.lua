-- tollgate: fenced semaphore release (Redis backend; layout in sem_acquire.lua).
--
-- KEYS[1]: the semaphore hash. ARGV: permit_id.
-- Reply: 1 released; 0 no unexpired permit has this permit_id (nothing changed).
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or ARGV[1] == 'limit' then return 0 end
local exp = tonumber(string.match(v, '^%d+ %d+ (%d+)'))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not exp or exp <= now then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
-- Only 'limit' left: the semaphore is idle.
if redis.call('HLEN', KEYS[1]) <= 1 then redis.call('DEL', KEYS[1]) end
return 1
