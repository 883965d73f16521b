-- Finish occurrences in one batch: re-arm a recurring reminder for its next due time
-- (record, index and trigger key together) or delete a finished one-shot.
-- A completion is applied only while the record still holds that occurrence and no other
-- instance holds its lock (a replaced or re-claimed reminder is left alone).
-- KEYS[1] due index
-- ARGV: 1 namespace, 2 instance id, 3 fired-marker window ms, 4 stats field ('' none),
--       then triples: member, occurrence, next_due_ms ('' = finished)
-- Returns the number of occurrences completed.
local ns, inst, window = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local done = 0
for i = 5, #ARGV, 3 do
  local m, occ, nd = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rec = ns .. ':r:' .. m
  if redis.call('HGET', rec, 'o') == occ then
    local lock = ns .. ':lock:' .. occ .. ':' .. m
    local holder = redis.call('GET', lock)
    if (not holder) or holder == inst .. '|' .. occ then
      redis.call('DEL', lock)
      local aux = string.find(m, '\031', 1, true) ~= nil
      if nd == '' then
        redis.call('DEL', rec)
        redis.call('ZREM', KEYS[1], m)
        if not aux then redis.call('SET', ns .. ':fired:' .. m, now, 'PX', window) end
      else
        redis.call('HSET', rec, 'd', nd, 'o', tonumber(occ) + 1, 'a', 0)
        redis.call('HDEL', rec, 'n', 'f', 'e')
        redis.call('ZADD', KEYS[1], nd, m)
        if not aux and tonumber(nd) > now then redis.call('SET', m, '1', 'PXAT', nd) end
      end
      done = done + 1
    end
  end
end
if done > 0 and ARGV[4] ~= '' then redis.call('HINCRBY', ns .. ':stats', ARGV[4], done) end
return done
