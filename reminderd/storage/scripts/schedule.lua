-- Schedule (or atomically replace) one reminder: record, index entry and trigger key.
-- KEYS[1] trigger key ('' member for auxiliary records), KEYS[2] record, KEYS[3] due index
-- ARGV: 1 member, 2 due_ms, 3 nominal_ms ('' = due), 4 payload JSON ('' = {}), 5 schedule JSON ('' = once),
--       6 misfire ('' = rule default), 7 only_if_absent '1'/'0', 8 wake channel, 9 namespace,
--       10 done list ('' none), 11 occurrence ('' = continue numbering), 12 dead-letter id to delete ('' none)
-- Returns {1, occurrence} when written, {0, 0} when only_if_absent found one present.
local member, due = ARGV[1], tonumber(ARGV[2])
local ns = ARGV[9]
local aux = string.find(member, '\031', 1, true) ~= nil
local old_o = redis.call('HGET', KEYS[2], 'o')
if ARGV[7] == '1' and (old_o or (not aux and redis.call('EXISTS', KEYS[1]) == 1)) then
  return {0, 0}
end
local o = 1
if old_o then
  o = tonumber(old_o) + 1
  redis.call('DEL', ns .. ':lock:' .. old_o .. ':' .. member)
  redis.call('DEL', KEYS[2])
end
if ARGV[11] ~= '' then o = tonumber(ARGV[11]) end
local fields = {'d', ARGV[2], 'o', o}
if ARGV[3] ~= '' and ARGV[3] ~= ARGV[2] then table.insert(fields, 'n'); table.insert(fields, ARGV[3]) end
if ARGV[4] ~= '' and ARGV[4] ~= '{}' then table.insert(fields, 'p'); table.insert(fields, ARGV[4]) end
if ARGV[5] ~= '' then table.insert(fields, 's'); table.insert(fields, ARGV[5]) end
if ARGV[6] ~= '' then table.insert(fields, 'm'); table.insert(fields, ARGV[6]) end
if ARGV[10] ~= '' then table.insert(fields, 'f'); table.insert(fields, ARGV[10]) end
redis.call('HSET', KEYS[2], unpack(fields))
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[3], due, member)
if first[2] == nil or due < tonumber(first[2]) then
  redis.call('PUBLISH', ARGV[8], ARGV[2])
end
if not aux then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('DEL', ns .. ':fired:' .. member)
  if due > now then
    redis.call('SET', KEYS[1], '1', 'PXAT', due)
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[12] ~= '' then redis.call('XDEL', ns .. ':dead', ARGV[12]) end
return {1, o}
