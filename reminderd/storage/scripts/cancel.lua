-- Cancel a reminder: trigger key, record, index entry and lock, together with every
-- pending replay of it (auxiliary members, each with its record and lock).
-- KEYS[9..] record and lock of each auxiliary member, in ARGV order
-- ARGV[3] trigger key, ARGV[4..] the auxiliary members the caller found in the aux set
-- Returns 1 if anything existed, 0 if nothing did, -1 if the aux set holds a member the
-- caller did not declare (a replay in between: read the set again and retry).
local declared = {}
for i = 4, #ARGV do declared[ARGV[i]] = true end
for _, m in ipairs(redis.call('SMEMBERS', ONE.aux)) do
  if not declared[m] then return -1 end
end
local n
if INLINE then
  n = redis.call('DEL', ONE.trigger, ONE.record) + redis.call('ZREM', DUE, ARGV[3])
else
  -- The caller deletes the trigger key; the fired marker is its tombstone, so a late expired
  -- event of it is not taken for a new raw key.
  n = redis.call('DEL', ONE.record) + redis.call('ZREM', DUE, ARGV[3])
  if n > 0 then redis.call('SET', ONE.fired, now_ms(), 'PX', TOMBSTONE_MS) end
end
redis.call('DEL', ONE.lock, ONE.aux)
for i = 4, #ARGV do
  local at = 9 + (i - 4) * 2
  n = n + redis.call('DEL', KEYS[at], KEYS[at + 1]) + redis.call('ZREM', DUE, ARGV[i])
end
if n > 0 then return 1 end
return 0
