-- Claim the given members if due: the keys of expired events. A key without a record is,
-- when allowed and no fired marker says it just fired, a raw one-shot due now.
-- ARGV[3] lease_ms, ARGV[4] adopt raw keys '1'/'0', ARGV[5..] members
-- Returns {now_ms, member, CLAIMED fields..., member, ...}.
local now, lease = now_ms(), tonumber(ARGV[3])
local out = {now}
for i = 5, #ARGV do
  local m = ARGV[i]
  local rec = record_key(m)
  local f = redis.call('HMGET', rec, unpack(CLAIMED))
  if not f[CLAIMED_AT[F.due]] and ARGV[4] == '1' and redis.call('EXISTS', fired_key(m)) == 0 then
    redis.call('HSET', rec, F.due, now, F.occurrence, 1, F.raw, 1)
    redis.call('ZADD', DUE, now, m)
    f = {}
    f[CLAIMED_AT[F.due]], f[CLAIMED_AT[F.occurrence]], f[CLAIMED_AT[F.raw]] = tostring(now), '1', '1'
  end
  take(m, f, now, lease, out)
end
return out
