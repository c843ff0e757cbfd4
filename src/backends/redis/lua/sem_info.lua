-- tollgate: fenced semaphore info (Redis backend; layout in sem_acquire.lua). Changes nothing.
--
-- KEYS[1]: the semaphore hash.
-- Reply: nil when no permit is unexpired; else {limit, holders, fence of the newest unexpired
-- permit (the highest), as a decimal string}. Never a permit id.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local holders, newest, limit = 0, '', 0
for i = 1, #all, 2 do
  if all[i] == 'limit' then
    limit = tonumber(all[i + 1])
  else
    local f, exp = string.match(all[i + 1], '^%d+ (%d+) (%d+)')
    if exp and tonumber(exp) > now then
      holders = holders + 1
      if #newest < #f or (#newest == #f and newest < f) then newest = f end
    end
  end
end
if holders == 0 then return false end
return {limit, holders, newest}
