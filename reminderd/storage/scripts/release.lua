-- Not INLINE only (a Cluster layout): give back raw claims of claim_due whose trigger keys
-- the caller found alive after the claim (storage/claims.py), as prelude's raw_gone does
-- inside the claim on one Redis: a key alive with an expiry moves the reminder there, one
-- without (PERSIST, SET without EX) withdraws it. Each only while our lock holds it.
-- ARGV[3..] pairs: member, occurrence; OUTSIDE the keys' state
-- Returns notes: pairs of member and NOTE (withdrawn).
local now = now_ms()
local notes = {}
for i = 3, #ARGV, 2 do
  local m, lock = ARGV[i], lock_key(ARGV[i])
  if holds(lock, ARGV[i + 1]) then
    raw_gone(m, record_key(m), now, notes)
    redis.call('DEL', lock)
  end
end
return notes
