-- Apply a batch of verdicts, each only while the occurrence is still ours (prelude's owned()).
-- ARGV[3] fired-marker window ms, ARGV[4] dead-letter stream maxlen, ARGV[5] one kind letter
-- per verdict, ARGV[6] the counter of kind C, then each verdict's group:
--   C member occurrence next_due ('' = done)                     completion: finish step
--   K member occurrence next_due stat                            completion with its own counter
--   R member occurrence retry_at error done                      retry: attempt counted
--   W member occurrence until                                    deferral: no attempt used
--   D member occurrence next_due error done reason pending       dead letter, then finish
-- Returns per verdict 1 (applied), RESET (applied; the raw key was written again meanwhile:
-- adopt it) or 0 (not ours any more).
local window, maxlen, kinds = ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local counts = {}
local function count(stat)
  if stat ~= '' then counts[stat] = (counts[stat] or 0) + 1 end
end

-- Each kind: how many values follow member and occurrence, and what to do with them at `i`
-- (`lock` is the claim's, still held; `flags` its lock flags, prelude's owned()).
local KIND = {
  C = {1, function(m, occ, rec, lock, flags, i)
    count(ARGV[6])
    return finish(m, rec, lock, occ, ARGV[i], now, window, flags)
  end},
  K = {2, function(m, occ, rec, lock, flags, i)
    count(ARGV[i + 1])
    return finish(m, rec, lock, occ, ARGV[i], now, window, flags)
  end},
  R = {3, function(m, occ, rec, lock, flags, i)
    redis.call('DEL', lock)
    redis.call('HINCRBY', rec, F.attempts, 1)
    redis.call('HSET', rec, F.error, ARGV[i + 1])
    add_done(rec, ARGV[i + 2])
    postpone(m, rec, ARGV[i], now)
    count('retried')
  end},
  W = {1, function(m, occ, rec, lock, flags, i)
    redis.call('DEL', lock)
    postpone(m, rec, ARGV[i], now)
  end},
  D = {5, function(m, occ, rec, lock, flags, i)
    local attempts = redis.call('HINCRBY', rec, F.attempts, 1)
    add_done(rec, ARGV[i + 2])
    local r = redis.call('HMGET', rec, F.due, F.nominal, F.payload, F.done)
    dead_letter({key = key_of(m), occurrence = occ, reason = ARGV[i + 3], error = ARGV[i + 1],
      attempts = attempts, pending = ARGV[i + 4], done = r[4] or '', payload = r[3] or '{}',
      due = r[2] or r[1]}, now, maxlen)
    return finish(m, rec, lock, occ, ARGV[i], now, window, flags)
  end},
}

local results = {}
local i = 7
for n = 1, #kinds do
  local kind = KIND[string.sub(kinds, n, n)]
  local m, occ = ARGV[i], ARGV[i + 1]
  local rec, lock = record_key(m), lock_key(m)
  local result = 0
  local flags = owned(rec, lock, occ)
  if flags then result = kind[2](m, occ, rec, lock, flags, i + 2) or 1 end
  results[n] = result
  i = i + 2 + kind[1]
end
for stat, n in pairs(counts) do redis.call('HINCRBY', STATS, stat, n) end
return results
