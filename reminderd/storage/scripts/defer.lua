-- Move an occurrence to a later instant (quiet hours) without changing its occurrence
-- number or its nominal due time, so the schedule keeps its cadence.
-- KEYS[1] record, KEYS[2] due index, KEYS[3] lock
-- ARGV: 1 member, 2 occurrence, 3 until_ms, 4 lock value
-- Returns 1 when deferred, 0 when the occurrence is no longer ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[2] then return 0 end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[4] then return 0 end
local r = redis.call('HMGET', KEYS[1], 'd', 'n')
if not r[2] then redis.call('HSET', KEYS[1], 'n', r[1]) end
redis.call('HSET', KEYS[1], 'd', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('DEL', KEYS[3])
if string.find(ARGV[1], '\031', 1, true) == nil then
  redis.call('SET', ARGV[1], '1', 'PXAT', ARGV[3])
end
return 1
