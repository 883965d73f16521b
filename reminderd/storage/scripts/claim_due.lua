-- Claim due occurrences from the index: due by Redis's clock and the dedupe lock won
-- (the claim step is the prelude's take(), which also applies a raw key's own TTL). An index entry without a record is dropped.
-- ARGV[3] limit, ARGV[4] lease_ms
-- Returns {now_ms, notes, member, CLAIMED fields..., member, ...}; notes: pairs of
-- member and NOTE (a raw reminder withdrawn).
local now, lease = now_ms(), tonumber(ARGV[4])
local notes = {}
local out = {now, notes}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  local f = redis.call('HMGET', record_key(m), unpack(CLAIMED))
  if f[CLAIMED_AT[F.due]] then
    take(m, f, now, lease, out, notes)
  else
    redis.call('ZREM', DUE, m)
  end
end
return out
