-- Refill a token bucket and take one token, on Redis's clock (reminderd.storage.ratelimit).
-- KEYS[4] bucket hash (tokens, ts_ms); KEYS[1..3] name it too (Scripts.alone: one slot)
-- ARGV[3] rate per second, ARGV[4] burst, ARGV[5] max wait ms (-1 = any)
-- Returns the ms to wait before using the token; above max wait, nothing was reserved.
local bucket = KEYS[4]
local rate = tonumber(ARGV[3]) / 1000.0
local burst = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local now = now_ms()
local state = redis.call('HMGET', bucket, 'tokens', 'ts_ms')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) / rate)
end
if max_wait >= 0 and wait > max_wait then
  return wait
end
tokens = tokens - 1
redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens), 'ts_ms', now)
redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) / rate) + 1000)
return wait
