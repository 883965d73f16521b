-- Delete the trigger keys of indexed reminders that come due within a short horizon,
-- before Redis expires them. The timer fires those from the index; deleting the keys
-- first means Redis emits no expired event for them (a DEL of a live key is not an
-- expiry), so a burst does not also flood every daemon's subscriber with events that
-- would only repeat what the index already said. Raw keys not yet in the index are
-- untouched: for them the expired event is the way in.
-- KEYS[1] due index
-- ARGV: 1 from_ms (exclusive), 2 until_ms (inclusive), 3 offset, 4 limit
-- Returns the number of index entries looked at (page through with offset).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local from = math.max(tonumber(ARGV[1]), now)
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', from), ARGV[2], 'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
for _, m in ipairs(rows) do
  if string.find(m, '\031', 1, true) == nil then redis.call('DEL', m) end
end
return #rows
