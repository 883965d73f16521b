-- Schedule (or atomically replace) many reminders in one call: schedule.lua's put() for
-- each item, with one clock read and at most one wake-up.
-- ARGV[3] the items, packed (records.pack_items): each ends with ITEM_END, its fields
--   separated by FIELD_SEP: trigger key, due_ms, then for all but a plain one-shot
--   payload JSON ('' = {}), schedule JSON ('' = once), misfire ('' = rule default),
--   only_if_absent '1'/'0'. One argument, not six per item: the client packs 20,000 items
--   a call, and Redis parses one string. Neither separator can occur in a field: they are
--   control characters, which a trigger key refuses and JSON always escapes.
-- Returns the number of reminders written.
local now, earliest = now_ms(), earliest_due()
local lowest, written = nil, 0
for item in string.gmatch(ARGV[3], '([^' .. ITEM_END .. ']*)' .. ITEM_END) do
  local key, due, payload, schedule, misfire, absent = unpack(split(item, FIELD_SEP))
  local ok = payload == nil and put_fresh(key, due, now)
  if not ok then
    ok = put(key, {due = due, nominal = '', payload = payload or '', schedule = schedule or '',
      misfire = misfire or '', only_if_absent = absent or '0', done = '', occurrence = ''}, now)
  end
  if ok then
    local at = tonumber(due)
    if lowest == nil or at < lowest then lowest = at end
    written = written + 1
  end
end
wake_if_earlier(lowest, earliest)
return written
