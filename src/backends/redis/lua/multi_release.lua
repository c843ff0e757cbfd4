-- tollgate: multi-key lock release (Redis backend; lease layout in multi_acquire.lua).
--
-- KEYS[1..n]: the lock hashes; KEYS[n+1]: standalone Redis only: the index tollgate:i:<lock_id>
-- (see the single-key acquire in scripts.cc). ARGV: lock_id, n.
-- Releases each key whose lease lock_id holds (unexpired: a key in lock-delay stays blocked), the
-- others are untouched. Reply: how many keys were released. A lock_id that released anything and
-- has an index is a single-key lease's (groups have none): its one key is released, so the index
-- goes too.
local n = tonumber(ARGV[2])
local now
local released = 0
for i = 1, n do
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
if released > 0 and KEYS[n + 1] then redis.call('DEL', KEYS[n + 1]) end
return released
