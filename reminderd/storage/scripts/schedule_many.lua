-- Schedule (or atomically replace) many reminders in one call: schedule.lua's put() for
-- each group of ARGV, with one clock read and at most one wake-up.
-- ARGV[3..] groups of 6: trigger key, due_ms, payload JSON ('' = {}), schedule JSON
--   ('' = once), misfire ('' = rule default), only_if_absent '1'/'0'
-- Returns the number of reminders written.
local now, earliest = now_ms(), earliest_due()
local lowest, written = nil, 0
for i = 3, #ARGV, 6 do
  local key, due = ARGV[i], tonumber(ARGV[i + 1])
  local r = {due = ARGV[i + 1], nominal = '', payload = ARGV[i + 2], schedule = ARGV[i + 3],
    misfire = ARGV[i + 4], only_if_absent = ARGV[i + 5], done = '', occurrence = ''}
  if put(key, r, now) then
    if lowest == nil or due < lowest then lowest = due end
    written = written + 1
  end
end
wake_if_earlier(lowest, earliest)
return written
