-- Cancel raw reminders whose producers deleted their keys (the keys of del events: the
-- checkout pattern, where paying deletes the order's key). A del event is a hint: only a
-- raw record (never an API one, whose key the daemon deletes itself) whose key is really
-- gone and whose occurrence no claim holds is cancelled.
-- ARGV[3..] trigger keys
-- Returns the keys cancelled.
local cancelled = {}
for i = 3, #ARGV do
  local k = ARGV[i]
  local rec = record_key(k)
  local gone = INLINE and redis.call('EXISTS', k, lock_key(k)) == 0
    or not INLINE and not alive(k) and redis.call('EXISTS', lock_key(k)) == 0
  if redis.call('HGET', rec, F.raw) == '1' and gone then
    redis.call('DEL', rec)
    redis.call('ZREM', DUE, k)
    cancelled[#cancelled + 1] = k
  end
end
if #cancelled > 0 then redis.call('HINCRBY', STATS, 'cancelled', #cancelled) end
return cancelled
