-- Claim due occurrences from the index: due by Redis's clock and the dedupe lock won
-- (the claim step is the prelude's take(), which also applies a raw key's own TTL). An entry
-- without a record is a plain one-shot due at its score (an auxiliary one is dropped).
-- ARGV[3] limit, ARGV[4] lease_ms
-- Returns {now_ms, notes, then per claim: member, the full-row mark, CLAIMED fields... or, for a plain
-- one-shot, member, an empty mark, due}; notes: pairs of
-- member and NOTE (a raw reminder withdrawn).
local now, lease = now_ms(), tonumber(ARGV[4])
local notes = {}
local out = {now, notes}
local rows = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for j = 1, #rows, 2 do
  local m = rows[j]
  local f = redis.call('HMGET', record_key(m), unpack(CLAIMED))
  if f[CLAIMED_AT[F.due]] then
    take(m, f, now, lease, out, notes)
  elseif is_aux(m) then
    redis.call('ZREM', DUE, m)
  else
    take(m, plain_fields(rows[j + 1]), now, lease, out, notes)
  end
end
return out
