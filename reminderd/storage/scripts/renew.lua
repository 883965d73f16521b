-- Extend the leases of occurrences still being processed (long processors), lock and
-- index score together.
-- ARGV[3] lease_ms, then pairs: member, occurrence
-- Returns the number of leases extended.
local now, lease = now_ms(), tonumber(ARGV[3])
local n = 0
for i = 4, #ARGV, 2 do
  local m, lock = ARGV[i], lock_key(ARGV[i])
  if holds(lock, ARGV[i + 1]) then
    redis.call('PEXPIRE', lock, lease)
    redis.call('ZADD', DUE, 'XX', now + lease, m)
    n = n + 1
  end
end
return n
