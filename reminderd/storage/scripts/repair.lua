-- Re-create trigger keys that vanished before their due time (DEL by a producer, eviction,
-- a restore), so the expired-event fast path works again. The index stays the truth.
-- KEYS[1] due index
-- ARGV: 1 namespace, 2.. members
-- Returns the number of trigger keys re-created.
local ns = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 2, #ARGV do
  local m = ARGV[i]
  if string.find(m, '\031', 1, true) == nil and redis.call('EXISTS', m) == 0 then
    local d = redis.call('HGET', ns .. ':r:' .. m, 'd')
    if d and tonumber(d) > now + 5 then
      redis.call('SET', m, '1', 'PXAT', d)
      n = n + 1
    elseif not d then
      redis.call('ZREM', KEYS[1], m)
    end
  end
end
return n
