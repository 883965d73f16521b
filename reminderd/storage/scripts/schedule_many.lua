-- Schedule (or atomically replace) many reminders in one call: what schedule.lua does for
-- one, for each group of ARGV, with one clock read and at most one wake-up.
-- KEYS[1] due index
-- ARGV: 1 namespace, 2 wake channel, then groups of 6:
--       trigger key, due_ms, payload JSON ('' = {}), schedule JSON ('' = once),
--       misfire ('' = rule default), only_if_absent '1'/'0'
-- Returns the number of reminders written.
local ns, due_key = ARGV[1], KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
local earliest = first[2] and tonumber(first[2]) or nil
local lowest = nil
local written = 0
for i = 3, #ARGV, 6 do
  local key, due_s = ARGV[i], ARGV[i + 1]
  local due = tonumber(due_s)
  local rec = ns .. ':r:' .. key
  local old_o = redis.call('HGET', rec, 'o')
  if not (ARGV[i + 5] == '1' and (old_o or redis.call('EXISTS', key) == 1)) then
    local o = 1
    if old_o then
      o = tonumber(old_o) + 1
      redis.call('DEL', ns .. ':lock:' .. old_o .. ':' .. key, rec)
    end
    local fields = {'d', due_s, 'o', o}
    if ARGV[i + 2] ~= '' and ARGV[i + 2] ~= '{}' then fields[#fields + 1] = 'p'; fields[#fields + 1] = ARGV[i + 2] end
    if ARGV[i + 3] ~= '' then fields[#fields + 1] = 's'; fields[#fields + 1] = ARGV[i + 3] end
    if ARGV[i + 4] ~= '' then fields[#fields + 1] = 'm'; fields[#fields + 1] = ARGV[i + 4] end
    redis.call('HSET', rec, unpack(fields))
    redis.call('ZADD', due_key, due, key)
    redis.call('DEL', ns .. ':fired:' .. key)
    if due > now then
      redis.call('SET', key, '1', 'PXAT', due)
    else
      redis.call('DEL', key)
    end
    if lowest == nil or due < lowest then lowest = due end
    written = written + 1
  end
end
if lowest ~= nil and (earliest == nil or lowest < earliest) then
  redis.call('PUBLISH', ARGV[2], string.format('%d', lowest))
end
return written
