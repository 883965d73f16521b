-- Adopt raw trigger keys (written with a plain SET ... EX) into the index while they are
-- still alive, so they survive daemon downtime. A value that is a JSON object becomes the
-- payload. Keys without an expiry, of another type, or already known are left alone.
-- KEYS[1] due index
-- ARGV: 1 namespace, 2.. trigger keys
-- Returns {adopted, already_known, not_reminders}.
local ns = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local adopted, known, other = 0, 0, 0
for i = 2, #ARGV do
  local k = ARGV[i]
  local rec = ns .. ':r:' .. k
  if redis.call('EXISTS', rec) == 1 then
    known = known + 1
  else
    local ttl = redis.call('PTTL', k)
    local kind = redis.call('TYPE', k)['ok']
    if ttl > 0 and kind == 'string' then
      local due = now + ttl
      local fields = {'d', due, 'o', 1, 'r', 1}
      local v = redis.call('GET', k)
      if string.sub(v, 1, 1) == '{' then
        local ok, decoded = pcall(cjson.decode, v)
        if ok and type(decoded) == 'table' then
          table.insert(fields, 'p'); table.insert(fields, v)
        end
      end
      redis.call('HSET', rec, unpack(fields))
      redis.call('ZADD', KEYS[1], due, k)
      adopted = adopted + 1
    else
      other = other + 1
    end
  end
end
return {adopted, known, other}
