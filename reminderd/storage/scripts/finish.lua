-- Apply a batch of verdicts, each only while the occurrence is still ours (prelude's owned()):
--   C member occurrence next_due ('' = done) stat ('' = none)        completion: finish step
--   R member occurrence retry_at error done                          retry: attempt counted
--   W member occurrence until                                        deferral: no attempt used
--   D member occurrence next_due error done reason pending           dead letter, then finish
-- ARGV[3] fired-marker window ms, ARGV[4] dead-letter stream maxlen, then the groups above.
-- Returns one 1 (applied) or 0 (not ours any more) per verdict.
local window, maxlen = ARGV[3], ARGV[4]
local now = now_ms()
local counts = {}
local function count(stat)
  if stat ~= '' then counts[stat] = (counts[stat] or 0) + 1 end
end

local APPLY = {
  C = function(m, occ, rec, a)
    finish(m, occ, a[1], now, window)
    count(a[2])
  end,
  R = function(m, occ, rec, a)
    redis.call('HINCRBY', rec, F.attempts, 1)
    redis.call('HSET', rec, F.error, a[2])
    add_done(rec, a[3])
    postpone(m, rec, a[1], now)
    count('retried')
  end,
  W = function(m, occ, rec, a)
    postpone(m, rec, a[1], now)
  end,
  D = function(m, occ, rec, a)
    local attempts = redis.call('HINCRBY', rec, F.attempts, 1)
    add_done(rec, a[3])
    local r = redis.call('HMGET', rec, F.due, F.nominal, F.payload, F.done)
    dead_letter({key = key_of(m), occurrence = occ, reason = a[4], error = a[2], attempts = attempts,
      pending = a[5], done = r[4] or '', payload = r[3] or '{}', due = r[2] or r[1]}, now, maxlen)
    finish(m, occ, a[1], now, window)
  end,
}
local WIDTH = {C = 2, R = 3, W = 1, D = 5}

local results = {}
local i = 5
while i <= #ARGV do
  local kind, m, occ = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rec, lock = record_key(m), lock_key(m)
  local ok = owned(rec, lock, occ)
  if ok then
    redis.call('DEL', lock)
    APPLY[kind](m, occ, rec, {unpack(ARGV, i + 3, i + 2 + WIDTH[kind])})
  end
  results[#results + 1] = ok and 1 or 0
  i = i + 3 + WIDTH[kind]
end
for stat, n in pairs(counts) do redis.call('HINCRBY', STATS, stat, n) end
return results
