-- Schedule (or atomically replace) one reminder, or replay a dead letter (then deleted).
-- ARGV[3] member, 4 due_ms, 5 nominal_ms ('' = due), 6 payload JSON ('' = {}),
--   7 schedule JSON ('' = once), 8 misfire ('' = rule default), 9 only_if_absent '1'/'0',
--   10 done list ('' none), 11 occurrence ('' = continue numbering), 12 dead-letter id ('' none)
-- Returns {1, occurrence} when written, {0, 0} when only_if_absent found one present.
local earliest = earliest_due()
local o = put(ARGV[3], {due = ARGV[4], nominal = ARGV[5], payload = ARGV[6], schedule = ARGV[7],
  misfire = ARGV[8], only_if_absent = ARGV[9], done = ARGV[10], occurrence = ARGV[11]}, now_ms(), ONE)
if not o then return {0, 0} end
wake_if_earlier(tonumber(ARGV[4]), earliest)
if ARGV[12] ~= '' then redis.call('XDEL', DEAD, ARGV[12]) end
return {1, o}
