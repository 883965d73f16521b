-- Claim the given members if due: the keys of expired events. An event is a hint, never an
-- order: an indexed reminder is claimed only if due (and a raw one only once its key is
-- gone, prelude's take(); a record-less one is a plain one-shot due at its score). A key
-- neither indexed nor with a record that exists is alive (re-set, or the event
-- was forged): it is adopted with its real expiry, never fired, never deleted. One that is
-- gone and proven fired by the ledger is dropped. Otherwise, with ARGV[4] '1' (the rule fires
-- raw keys never seen alive, and the event is fresh) it becomes a raw one-shot due now and is
-- claimed; with '0' it is noted lost.
-- ARGV[3] lease_ms, ARGV[4] fire unseen raw keys '1'/'0', ARGV[5] payload_max_bytes,
-- ARGV[6] dead-letter stream maxlen, ARGV[7..] members
-- Returns {now_ms, notes, then per claim: member, the full-row mark, CLAIMED fields... or, for a plain
-- one-shot, member, an empty mark, due}; notes: pairs of member and
-- NOTE (withdrawn, alive, oversized, proven, lost).
local now, lease, max_bytes, maxlen = now_ms(), tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[6]
local notes = {}
local out = {now, notes}
for i = 7, #ARGV do
  local m = ARGV[i]
  local rec = record_key(m)
  local f = redis.call('HMGET', rec, unpack(CLAIMED))
  local score = not f[CLAIMED_AT[F.due]] and redis.call('ZSCORE', DUE, m)
  if f[CLAIMED_AT[F.due]] then
    take(m, f, now, lease, out, notes)
  elseif score then
    take(m, plain_fields(score), now, lease, out, notes)
  elseif alive(m) then
    local got = adopt_key(m, rec, now, max_bytes, maxlen)
    if got == NOTE.oversized then note(notes, m, got) elseif got then note(notes, m, NOTE.alive) end
  elseif redis.call('EXISTS', fired_key(m)) == 1 then
    note(notes, m, NOTE.proven)
  elseif ARGV[4] == '1' then
    redis.call('HSET', rec, F.due, now, F.occurrence, 1, F.raw, 1)
    redis.call('ZADD', DUE, now, m)
    f = {}
    f[CLAIMED_AT[F.due]], f[CLAIMED_AT[F.occurrence]], f[CLAIMED_AT[F.raw]] = tostring(now), '1', '1'
    take(m, f, now, lease, out, notes)
  else
    note(notes, m, NOTE.lost)
  end
end
return out
