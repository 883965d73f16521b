-- Re-create trigger keys that the trigger-key rule (prelude) says should exist but have
-- vanished (DEL by a producer, eviction, a restore), so the expired-event fast path works
-- again. A record-less entry is a plain one-shot due at its score. The index stays the truth.
-- ARGV[3..] members
-- Returns the number of trigger keys re-created.
local now = now_ms()
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  if not is_aux(m) and not alive(m) then
    local d = redis.call('HGET', record_key(m), F.due) or redis.call('ZSCORE', DUE, m)
    if d and tonumber(d) > now then
      arm(m, d, now)
      n = n + 1
    end
  end
end
return n
