-- Claim due occurrences: still due by Redis's clock, and the SET NX PX dedupe lock won.
-- A claimed entry's index score moves to now + lease, so after a crash it comes due again
-- exactly when the lock lapses. The trigger key is deleted now (a DEL, not an expiry) so no
-- late expired event can be mistaken for a new raw key.
-- KEYS[1] due index
-- ARGV: 1 mode ('due' = take from the index, 'keys' = the members in ARGV[7..], from expired events),
--       2 limit, 3 lease_ms, 4 instance id, 5 namespace, 6 adopt raw keys '1'/'0', 7.. members
-- Returns {now_ms, member, d, o, a, p, s, n, m, f, r, ...} (10 values per claimed occurrence).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, ns, inst = tonumber(ARGV[3]), ARGV[5], ARGV[4]
local members
if ARGV[1] == 'due' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
else
  members = {}
  for i = 7, #ARGV do members[#members + 1] = ARGV[i] end
end
local out = {now}
for _, m in ipairs(members) do
  local rec = ns .. ':r:' .. m
  local f = redis.call('HMGET', rec, 'd', 'o', 'a', 'p', 's', 'n', 'm', 'f', 'r')
  if not f[1] then
    if ARGV[1] == 'due' then
      redis.call('ZREM', KEYS[1], m)
    elseif ARGV[6] == '1' and redis.call('EXISTS', ns .. ':fired:' .. m) == 0 then
      redis.call('HSET', rec, 'd', now, 'o', 1, 'r', 1)
      redis.call('ZADD', KEYS[1], now, m)
      f = {tostring(now), '1', false, false, false, false, false, false, '1'}
    end
  end
  if f[1] and tonumber(f[1]) <= now then
    local lock = ns .. ':lock:' .. f[2] .. ':' .. m
    if redis.call('SET', lock, inst .. '|' .. f[2], 'NX', 'PX', lease) then
      redis.call('ZADD', KEYS[1], now + lease, m)
      if string.find(m, '\031', 1, true) == nil then redis.call('DEL', m) end
      out[#out + 1] = m
      for i = 1, 9 do out[#out + 1] = f[i] or '' end
    end
  end
end
return out
