-- Re-create trigger keys that the trigger-key rule (prelude) says should exist but have
-- vanished (DEL by a producer, eviction, a restore), so the expired-event fast path works
-- again; drop index entries without a record. The index stays the truth.
-- ARGV[3..] members
-- Returns the number of trigger keys re-created.
local now = now_ms()
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  if not is_aux(m) and redis.call('EXISTS', m) == 0 then
    local d = redis.call('HGET', record_key(m), F.due)
    if not d then
      redis.call('ZREM', DUE, m)
    elseif tonumber(d) > now then
      arm(m, d, now)
      n = n + 1
    end
  end
end
return n
