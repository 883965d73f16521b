-- Record a failed attempt: retry later (keep the processors that finished), or dead-letter
-- the occurrence and then re-arm (recurring) or delete (one-shot), all in one step.
-- KEYS[1] due index
-- ARGV: 1 namespace, 2 instance id, 3 member, 4 occurrence, 5 retry_at_ms ('' = dead-letter),
--       6 error text, 7 done list, 8 next_due_ms after dead-lettering ('' = delete),
--       9 reason, 10 pending processors, 11 dead stream maxlen, 12 fired-marker window ms
-- Returns 0 (not ours any more), 1 (retry scheduled) or 2 (dead-lettered).
local ns, inst, m, occ = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = ns .. ':r:' .. m
if redis.call('HGET', rec, 'o') ~= occ then return 0 end
local lock = ns .. ':lock:' .. occ .. ':' .. m
local holder = redis.call('GET', lock)
if holder and holder ~= inst .. '|' .. occ then return 0 end
redis.call('DEL', lock)
local attempts = redis.call('HINCRBY', rec, 'a', 1)
if ARGV[7] ~= '' then redis.call('HSET', rec, 'f', ARGV[7]) end
local aux = string.find(m, '\031', 1, true) ~= nil
if ARGV[5] ~= '' then
  local cur = redis.call('HMGET', rec, 'd', 'n')
  if not cur[2] then redis.call('HSET', rec, 'n', cur[1]) end  -- keep the nominal due time
  redis.call('HSET', rec, 'd', ARGV[5], 'e', ARGV[6])
  redis.call('ZADD', KEYS[1], ARGV[5], m)
  redis.call('HINCRBY', ns .. ':stats', 'retried', 1)
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', rec, 'd', 'n', 'p', 's')
local key = string.match(m, '^[^\031]*')
redis.call('XADD', ns .. ':dead', 'MAXLEN', '~', ARGV[11], '*',
  'key', key, 'occurrence', occ, 'reason', ARGV[9], 'error', ARGV[6], 'attempts', attempts,
  'processors', ARGV[10], 'done', ARGV[7], 'payload', r[3] or '{}', 'due', r[2] or r[1],
  'dead_at', now)
redis.call('HINCRBY', ns .. ':stats', 'dead', 1)
local nd = ARGV[8]
if nd == '' then
  redis.call('DEL', rec)
  redis.call('ZREM', KEYS[1], m)
  if not aux then redis.call('SET', ns .. ':fired:' .. m, now, 'PX', ARGV[12]) end
else
  redis.call('HSET', rec, 'd', nd, 'o', tonumber(occ) + 1, 'a', 0)
  redis.call('HDEL', rec, 'n', 'f', 'e')
  redis.call('ZADD', KEYS[1], nd, m)
  if not aux and tonumber(nd) > now then redis.call('SET', m, '1', 'PXAT', nd) end
end
return 2
