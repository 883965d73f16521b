-- Record that one processor finished an occurrence, so a retry or a crash recovery
-- re-runs only the processors that did not.
-- KEYS[1] record
-- ARGV: 1 occurrence, 2 processor name, 3 lock key, 4 lock value
-- Returns 1 when recorded, 0 when the occurrence is no longer ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
local holder = redis.call('GET', ARGV[3])
if holder and holder ~= ARGV[4] then return 0 end
local f = redis.call('HGET', KEYS[1], 'f')
if f and f ~= '' then f = f .. ',' .. ARGV[2] else f = ARGV[2] end
redis.call('HSET', KEYS[1], 'f', f)
return 1
