-- tollgate: the lease a lock_id holds, found by lock_id alone (Redis backend, standalone Redis
-- only; see LookupByIdCall in src/backends/redis/scripts.h). Read-only.
--
-- KEYS[1]: the index tollgate:i:<lock_id> (the caller's key, written by the single-key acquire
-- with the lease's PX, kept in step by extend, deleted by release).
-- ARGV: lock_id, then the prefix and suffix of a lease hash's name (tollgate:{ and }:lock), so the
-- lease of key k is ARGV[2] .. k .. ARGV[3]. That key is not in KEYS: it is known only once the
-- index is read, which is why a Redis Cluster (one slot per script) has no lookup by lock_id.
--
-- Reply: nil unless the index names a key whose lease is unexpired and held by ARGV[1] (verified
-- here: an index that outlived its lease, or a key granted since to another lock_id, finds
-- nothing); else {key, fence, pttl_ms, owner or nil, lock_id, acquired_at_ms or nil}, the fields
-- after the key as the info script returns them (scripts.cc).
local k = redis.call('GET', KEYS[1])
if not k then return false end
local lock = ARGV[2] .. k .. ARGV[3]
local v = redis.call('HMGET', lock, 'id', 'fence', 'owner', 'exp', 'at')
if v[1] ~= ARGV[1] or not v[2] then return false end
local ttl
if v[4] then
  -- Lock-delay (see the single-key acquire): the lease ends at 'exp' (ms of server TIME).
  local t = redis.call('TIME')
  ttl = tonumber(v[4]) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  if ttl <= 0 then return false end
else
  ttl = redis.call('PTTL', lock)
  if ttl <= 0 then return false end
end
return {k, v[2], ttl, v[3], v[1], v[5]}
