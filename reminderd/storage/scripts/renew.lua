-- Extend the leases of occurrences still being processed (long processors), lock and
-- index score together.
-- KEYS[1] due index
-- ARGV: 1 namespace, 2 instance id, 3 lease_ms, then pairs: member, occurrence
-- Returns the number of leases extended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 4, #ARGV, 2 do
  local m, occ = ARGV[i], ARGV[i + 1]
  local lock = ARGV[1] .. ':lock:' .. occ .. ':' .. m
  if redis.call('GET', lock) == ARGV[2] .. '|' .. occ then
    redis.call('PEXPIRE', lock, ARGV[3])
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), m)
    n = n + 1
  end
end
return n
