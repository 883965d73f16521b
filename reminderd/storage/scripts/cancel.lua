-- Cancel a reminder: trigger key, record, index entry and any lock, together.
-- KEYS[1] trigger key, KEYS[2] record, KEYS[3] due index
-- ARGV: 1 member, 2 namespace
-- Returns 1 if anything existed.
local o = redis.call('HGET', KEYS[2], 'o')
local n = redis.call('DEL', KEYS[1], KEYS[2]) + redis.call('ZREM', KEYS[3], ARGV[1])
if o then redis.call('DEL', ARGV[2] .. ':lock:' .. o .. ':' .. ARGV[1]) end
if n > 0 then return 1 end
return 0
