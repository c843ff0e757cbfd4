-- tollgate: multi-key lock release (Redis backend; lease layout in multi_acquire.lua).
--
-- KEYS: the lock hashes. ARGV: lock_id.
-- Releases each key whose lease lock_id holds (unexpired: a key in lock-delay stays blocked), the
-- others are untouched. Reply: how many keys were released.
local now
local released = 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'id', 'exp')
  if v[1] == ARGV[1] then
    local held = true
    if v[2] then
      if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      held = now < tonumber(v[2])
    end
    if held then
      redis.call('DEL', KEYS[i])
      released = released + 1
    end
  end
end
return released
