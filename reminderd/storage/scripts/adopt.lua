-- Adopt raw trigger keys (written with a plain SET ... EX) into the index while they are
-- still alive: the keys of expire events (a key written with a TTL) and of adoption scans.
-- A key neither indexed nor with a record is adopted at its expiry (prelude's adopt_key). A raw record not
-- being claimed follows its key: an expiry moved by the producer (SET ... EX, EXPIRE again)
-- moves the due time. Records written by the API (no F.raw) are never touched.
-- ARGV[3] payload_max_bytes, ARGV[4] dead-letter stream maxlen, ARGV[5..] trigger keys
-- Returns {adopted, already_known, not_reminders, {oversized keys}, moved}.
local now, max_bytes, maxlen = now_ms(), tonumber(ARGV[3]), ARGV[4]
local earliest, lowest = earliest_due(), nil
local adopted, known, other, oversized, moved = 0, 0, 0, {}, 0
local function lower(at)
  if lowest == nil or at < lowest then lowest = at end
end
for i = 5, #ARGV do
  local k = ARGV[i]
  local rec = record_key(k)
  local f = redis.call('HMGET', rec, F.due, F.raw)
  if f[1] then
    local at = f[2] == '1' and redis.call('EXISTS', lock_key(k)) == 0 and expiry_ms(k, now)
    if at and at > 0 and at ~= tonumber(f[1]) then
      reindex(k, rec, at)
      lower(at)
      moved = moved + 1
    else
      known = known + 1
    end
  elseif redis.call('ZSCORE', DUE, k) then
    known = known + 1  -- a record-less plain one-shot of the API
  else
    local got = adopt_key(k, rec, now, max_bytes, maxlen)
    if got == NOTE.oversized then
      oversized[#oversized + 1] = k
    elseif got then
      lower(got)
      adopted = adopted + 1
    else
      other = other + 1
    end
  end
end
wake_if_earlier(lowest, earliest)
return {adopted, known, other, oversized, moved}
