-- tollgate fenced write: SET a key only if the writer's fence is at least the highest fence ever
-- recorded for it. Atomic (one script). Fences are compared as decimal strings, exactly, for any
-- 64-bit value (Lua numbers would lose precision above 2^53).
--
-- KEYS[1]  the key to write (a plain string key)
-- KEYS[2]  its fence record; tollgate uses KEYS[1] .. ':tollgate-fence'. On Redis Cluster give
--          KEYS[1] a hash tag ("{order:42}:state") so both keys share a slot.
-- ARGV[1]  the fence: a positive decimal integer without leading zeros, at most 20 digits
-- ARGV[2]  the value
--
-- Reply: OK when written and recorded; an error reply "STALE fence <ARGV[1]> is older than
-- <recorded>" when stale (nothing changes); "ERR ..." for bad arguments.
if #KEYS ~= 2 or #ARGV ~= 2 then
  return redis.error_reply('ERR fenced_write needs 2 keys (key, fence record) and 2 arguments')
end
local fence = ARGV[1]
if #fence > 20 or not string.match(fence, '^[1-9][0-9]*$') then
  return redis.error_reply('ERR fence must be a positive decimal integer, got ' .. fence)
end
local function older(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local recorded = redis.call('GET', KEYS[2])
if recorded and older(fence, recorded) then
  return redis.error_reply('STALE fence ' .. fence .. ' is older than ' .. recorded)
end
redis.call('SET', KEYS[2], fence)
return redis.call('SET', KEYS[1], ARGV[2])
