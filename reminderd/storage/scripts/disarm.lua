-- Take the expiry off the trigger keys of indexed reminders that come due within a short
-- horizon, before Redis expires them. The timer fires those from the index; a plain SET
-- (no TTL) means Redis neither expires them nor emits any event (not even a del), so a
-- burst does not also flood every daemon's subscriber with events that would only repeat
-- what the index already said, and the claim's DEL finds the key alive: proof that no
-- expired event of it exists, so its finish needs no fired marker (prelude's take()).
-- A key already gone is left gone. Raw keys are untouched, indexed or not:
-- they are their producers' (whose TTL stays the truth), and not yet indexed, their
-- expired event is the way in.
-- Pages continue after the last entry seen (its score and member), by rank: O(log N) a
-- page however deep into a burst, where an offset would walk every entry before it. If
-- that entry moved meanwhile (claimed, re-armed), the page restarts at its old score.
-- ARGV[3] until_ms (inclusive), 4 limit, 5 score of the last entry seen (at first: the
--   window's exclusive start), 6 its member ('' = none yet)
-- Returns {entries looked at, last score, last member, 1 if the window may hold more}.
if not INLINE then return {0, ARGV[5], ARGV[6], 0} end  -- an optimisation of one Redis only
local until_ms, limit, score, member = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local seen = member ~= '' and redis.call('ZSCORE', DUE, member)
local start
if member == '' then
  start = redis.call('ZCOUNT', DUE, '-inf', math.max(tonumber(score), now_ms()))
elseif seen and tonumber(seen) == tonumber(score) then
  start = redis.call('ZRANK', DUE, member) + 1
else
  start = redis.call('ZCOUNT', DUE, '-inf', '(' .. score)
end
local rows = redis.call('ZRANGE', DUE, start, start + limit - 1, 'WITHSCORES')
local n = 0
for j = 1, #rows, 2 do
  if tonumber(rows[j + 1]) > until_ms then return {n, score, member, 0} end
  local m = rows[j]
  if not is_aux(m) and redis.call('HGET', record_key(m), F.raw) ~= '1' then redis.call('SET', m, '1', 'XX') end
  n, score, member = n + 1, rows[j + 1], rows[j]
end
return {n, score, member, (#rows == 2 * limit) and 1 or 0}
