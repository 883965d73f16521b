-- Adopt raw trigger keys (written with a plain SET ... EX) into the index while they are
-- still alive, so they survive daemon downtime. A value that is a JSON object becomes the
-- payload; one longer than the payload limit is dead-lettered (reason payload_too_large)
-- and its key deleted, so it neither fires without its payload nor comes back each scan.
-- Keys without an expiry, of another type, or already known are left alone.
-- ARGV[3] payload_max_bytes, ARGV[4] dead-letter stream maxlen, ARGV[5..] trigger keys
-- Returns {adopted, already_known, not_reminders, {oversized keys}}.
local now, max_bytes = now_ms(), tonumber(ARGV[3])
local adopted, known, other, oversized = 0, 0, 0, {}
for i = 5, #ARGV do
  local k = ARGV[i]
  local rec = record_key(k)
  local ttl = redis.call('EXISTS', rec) == 0 and redis.call('PTTL', k)
  if not ttl then
    known = known + 1
  elseif ttl <= 0 or redis.call('TYPE', k)['ok'] ~= 'string' then
    other = other + 1
  else
    local v = redis.call('GET', k)
    local object = string.sub(v, 1, 1) == '{'
    if object and #v > max_bytes then
      dead_letter({key = k, occurrence = 1, reason = 'payload_too_large', attempts = 0, pending = '', done = '',
        error = string.format('payload is %d bytes, above the limit of %d bytes', #v, max_bytes),
        payload = '{}', due = now + ttl}, now, ARGV[4])
      redis.call('DEL', k)
      oversized[#oversized + 1] = k
    else
      local fields = {F.due, now + ttl, F.occurrence, 1, F.raw, 1}
      local ok, decoded = false, nil
      if object then ok, decoded = pcall(cjson.decode, v) end
      if ok and type(decoded) == 'table' then
        fields[#fields + 1] = F.payload
        fields[#fields + 1] = v
      end
      redis.call('HSET', rec, unpack(fields))
      redis.call('ZADD', DUE, now + ttl, k)
      adopted = adopted + 1
    end
  end
end
return {adopted, known, other, oversized}
