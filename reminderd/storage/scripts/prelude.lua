-- The prelude of every script (after the names generated from Python above). The one place
-- where Lua writes a key name, reads the clock, builds a lock value or checks ownership.
--
-- Calling convention, the same for every script:
--   KEYS[1] due index, KEYS[2] stats hash, KEYS[3] dead-letter stream; a script about one
--   reminder then declares that reminder's keys: KEYS[4] trigger key, KEYS[5] record,
--   KEYS[6] lock, KEYS[7] fired marker, KEYS[8] auxiliary set, and its own keys follow;
--   any other script's own keys start at KEYS[4].
--   ARGV[1] namespace, ARGV[2] instance id ('' when none); its own arguments follow.
--
-- The trigger-key rule, which every script obeys: an index member that is not auxiliary has
-- a trigger key, expiring at its record's due time (F.due), exactly while that due time is
-- in the future and no claim holds it. Whatever writes a due time (schedule, re-arm, retry,
-- deferral) arms it through arm(); a claim deletes it; repair re-creates only what this
-- rule says should exist. The one exception is the timer's disarm, which takes the expiry
-- off keys a moment before they come due (a plain SET: no event, and Redis never expires
-- them), so the claim's DEL finds them alive. Auxiliary members (replayed dead letters)
-- never have one: their key name belongs to the live reminder.
--
-- Not INLINE (a shard of a Cluster layout: the trigger key is in another slot), no script
-- names a trigger key: arm() appends the key and its due time (0: delete it) to ARMS, which
-- the caller writes after the script (SET ... PXAT, the index first); what a script reads of
-- a trigger key (alive(), expiry_ms(), read_key()) comes from OUTSIDE, the state the caller
-- read on the key's own node just before (a key it did not read counts as gone: a raw claim
-- of claim_due is checked by the caller afterwards); a claim leaves the key (the caller
-- deletes it only if its expiry is still the claimed due time) and is never LOCK_QUIET.
--
-- The lock value is INSTANCE|occurrence, then |flags when the claim learnt something about
-- the trigger key that the finish needs: LOCK_RAW (a raw key: its TTL is the producer's)
-- and LOCK_QUIET (the claim deleted it alive, so no expired event of it exists and a
-- finished one-shot needs no fired marker).

local DUE, STATS, DEAD = KEYS[1], KEYS[2], KEYS[3]
local ONE = {trigger = INLINE and KEYS[4] or nil, record = KEYS[5], lock = KEYS[6], fired = KEYS[7], aux = KEYS[8]}
local INSTANCE = ARGV[2]
local CLAIMED_AT = {}
for i, name in ipairs(CLAIMED) do CLAIMED_AT[name] = i end

-- Redis's clock in epoch ms: every due check uses it, never a host's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function is_aux(m)
  return string.find(m, AUX_SEP, 1, true) ~= nil
end

local function key_of(m)
  local at = string.find(m, AUX_SEP, 1, true)
  if at then return string.sub(m, 1, at - 1) end
  return m
end

local LOCK_RAW, LOCK_QUIET, LOCK_UNKNOWN = 'r', 'q', '?'

local function lock_value(occ, flags)
  if flags == nil or flags == '' then return INSTANCE .. '|' .. occ end
  return INSTANCE .. '|' .. occ .. '|' .. flags
end

-- The flags of lock value `holder` if it is ours for occurrence `occ`, else nil.
local function our_flags(holder, occ)
  local mine = lock_value(occ)
  if holder == mine then return '' end
  if string.sub(holder, 1, #mine + 1) == mine .. '|' then return string.sub(holder, #mine + 2) end
  return nil
end

local function has_flag(flags, flag)
  return string.find(flags, flag, 1, true) ~= nil
end

-- Ownership: our lock still holds occurrence `occ` (a replace or a cancel deletes the lock),
-- or the lock lapsed and the record still holds `occ` (nobody claimed it since). Returns
-- the claim's lock flags (LOCK_UNKNOWN after a lapse), or nil when it is not ours.
local function owned(rec, lock, occ)
  local holder = redis.call('GET', lock)
  if holder then return our_flags(holder, occ) end
  if redis.call('HGET', rec, F.occurrence) == tostring(occ) then return LOCK_UNKNOWN end
  return nil
end

-- The stricter check of a lease renewal: our lock is still there.
local function holds(lock, occ)
  local holder = redis.call('GET', lock)
  return holder and our_flags(holder, occ) ~= nil
end

-- A key's expiry in epoch ms, or -1 (no expiry) or -2 (no key). PEXPIRETIME where Redis
-- has it (7.0: exact, so a re-read does not drift), else TIME + PTTL.
local function expiry_ms(k, now)
  if not INLINE then return OUTSIDE[k] and OUTSIDE[k][1] or -2 end
  local at = redis.pcall('PEXPIRETIME', k)
  if type(at) == 'number' then return at end
  local ttl = redis.call('PTTL', k)
  if ttl < 0 then return ttl end
  return now + ttl
end

-- Whether trigger key `k` exists.
local function alive(k)
  if INLINE then return redis.call('EXISTS', k) == 1 end
  return expiry_ms(k, 0) ~= -2
end

-- A trigger key's expiry (expiry_ms) and its value, nil when it has no expiry, is gone or
-- is not a string (then it is no reminder).
local function read_key(k, now)
  local at = expiry_ms(k, now)
  if not INLINE then return at, at > 0 and OUTSIDE[k][2] or nil end
  if at <= 0 or redis.call('TYPE', k)['ok'] ~= 'string' then return at, nil end
  return at, redis.call('GET', k)
end

-- The trigger-key rule above, for a member whose due time is now `due`. The key is written
-- by RESTORE with an absolute TTL, which raises a `restore` event where `SET ... PXAT` raises
-- `expire`: the daemons' subscribers adopt the keys of `expire` events (a raw key written
-- with a TTL), and this key is indexed already, so the event would cost every daemon a read
-- and Redis an adoption call per reminder for nothing. The serialized value of '1' is taken
-- from the key itself, once per script call (it depends on the server's version). Where
-- RESTORE is refused (an ACL without @dangerous), the key is written by SET ... PXAT.
local one_dumped  -- nil: not tried in this call; false: refused here
local function arm(m, due, now)
  if is_aux(m) then return end
  if not INLINE then
    ARMS[#ARMS + 1] = m
    ARMS[#ARMS + 1] = tonumber(due) <= now and '0' or due
    return
  end
  if tonumber(due) <= now then
    redis.call('DEL', m)
    return
  end
  if one_dumped == nil then
    redis.call('SET', m, '1')
    local dumped = redis.pcall('DUMP', m)
    one_dumped = type(dumped) == 'string' and dumped or false
  end
  if one_dumped and not redis.pcall('RESTORE', m, due, one_dumped, 'ABSTTL', 'REPLACE').err then return end
  one_dumped = false
  redis.call('SET', m, '1', 'PXAT', due)
end

-- The one writer of the done list: adds the DONE_SEP-separated `names`, each name once.
local function add_done(rec, names)
  if names == '' then return end
  local seen, out = {}, {}
  local current = redis.call('HGET', rec, F.done) or ''
  for name in string.gmatch(current .. DONE_SEP .. names, '[^' .. DONE_SEP .. ']+') do
    if not seen[name] then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  redis.call('HSET', rec, F.done, table.concat(out, DONE_SEP))
end

-- The parts of `text` between separator `sep` (one character).
local function split(text, sep)
  local parts, from = {}, 1
  while true do
    local at = string.find(text, sep, from, true)
    if not at then
      parts[#parts + 1] = string.sub(text, from)
      return parts
    end
    parts[#parts + 1] = string.sub(text, from, at - 1)
    from = at + 1
  end
end

local function push_if(fields, name, value)
  if value ~= '' then
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end

-- A plain one-shot: due once, nothing stored but its due time, first of its numbering. It
-- has no record while it waits (its index score is its due time, its occurrence 1); its
-- claim writes one (take()), so everything after a claim reads a record as before.
local function is_plain(m, r)
  return r.occurrence == '' and r.schedule == '' and r.misfire == '' and r.done == ''
    and (r.payload == '' or r.payload == '{}') and (r.nominal == '' or r.nominal == r.due) and not is_aux(m)
end

-- The occurrence a member holds now: its record's, '1' for a record-less one indexed, or nil.
local function current_occurrence(m, rec)
  local old = redis.call('HGET', rec, F.occurrence)
  if old or is_aux(m) then return old end
  return redis.call('ZSCORE', DUE, m) and '1' or nil
end

-- Write (or atomically replace) one reminder: record, index entry, trigger key or aux set.
-- `r` holds the request's strings: due, nominal, payload, schedule, misfire, done,
-- occurrence ('' = continue numbering), only_if_absent ('1'); `k` the keys a single-reminder
-- script declared (nil: built from `m`). The replaced occurrence's lock goes with it. A new
-- plain one-shot writes no record (is_plain), so it costs its index entry and trigger key
-- only. Returns the occurrence number, or nil when only_if_absent found one present.
-- The fast path of a plain one-shot: written (true) unless `m` is indexed already.
local function put_fresh(m, due, now, k)
  if redis.call('ZADD', DUE, 'NX', due, m) == 0 then return false end
  redis.call('DEL', k and k.fired or fired_key(m))
  arm(m, due, now)
  return true
end

local function put(m, r, now, k)
  local aux = is_aux(m)
  local rec = k and k.record or record_key(m)
  local plain = is_plain(m, r)
  if plain and r.only_if_absent ~= '1' and put_fresh(m, r.due, now, k) then return 1 end
  local old = current_occurrence(m, rec)
  if r.only_if_absent == '1' and (old or (not aux and alive(m))) then return nil end
  if old then redis.call('DEL', k and k.lock or lock_key(m), rec) end
  if plain and not old then
    put_fresh(m, r.due, now, k)
    return 1
  end
  local o = (r.occurrence ~= '' and tonumber(r.occurrence)) or (old and tonumber(old) + 1) or 1
  local fields = {F.due, r.due, F.occurrence, o}
  if r.nominal ~= r.due then push_if(fields, F.nominal, r.nominal) end
  if r.payload ~= '{}' then push_if(fields, F.payload, r.payload) end
  push_if(fields, F.schedule, r.schedule)
  push_if(fields, F.misfire, r.misfire)
  redis.call('HSET', rec, unpack(fields))
  add_done(rec, r.done)
  redis.call('ZADD', DUE, r.due, m)
  if aux then
    redis.call('SADD', k and k.aux or aux_key(key_of(m)), m)
  else
    redis.call('DEL', k and k.fired or fired_key(m))
    arm(m, r.due, now)
  end
  return o
end

-- The earliest due time in the index, and the wake-up when a write went below it.
local function earliest_due()
  local first = redis.call('ZRANGE', DUE, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2]) or nil
end

local function wake_if_earlier(lowest, earliest)
  if lowest ~= nil and (earliest == nil or lowest < earliest) then
    redis.call('PUBLISH', WAKE, string.format('%d', lowest))
  end
end

-- Append to a claim reply's notes: what happened to `m` besides a claim (NOTE table above).
local function note(notes, m, what)
  notes[#notes + 1] = m
  notes[#notes + 1] = what
end

-- Move a raw reminder to `due`, its key's expiry (the producer moved it).
local function reindex(m, rec, due)
  redis.call('HSET', rec, F.due, due)
  redis.call('ZADD', DUE, due, m)
end

-- A raw key's TTL stays the truth (the producer owns the key): a raw reminder is due only
-- once its key is gone. A key still alive was moved (SET ... EX, EXPIRE) and the index
-- follows it; one alive without an expiry (PERSIST, SET without EX) withdraws the reminder.
-- Neither is fired nor deleted. Returns true when the reminder may fire.
local function raw_gone(m, rec, now, notes)
  local at = expiry_ms(m, now)
  if at == -2 then return true end
  if at == -1 then
    redis.call('DEL', rec)
    redis.call('ZREM', DUE, m)
    redis.call('HINCRBY', STATS, NOTE.withdrawn, 1)
    note(notes, m, NOTE.withdrawn)
  else
    reindex(m, rec, at)
  end
  return false
end

-- Claim one occurrence whose claimed fields `f` (CLAIMED order) say it is due: win the
-- SET NX PX lock, move the index score to the lease's end (so after a crash it comes due
-- again exactly when the lock lapses) and delete the trigger key (a DEL, not an expiry, so
-- no late expired event is mistaken for a new raw key; one found alive, as disarm leaves
-- it, makes the claim LOCK_QUIET). A raw reminder is claimed only once its key is gone
-- (raw_gone). A record-less plain one-shot (`f` from plain_fields) gets its record here:
-- after a lapsed lease the entry's score is the lease's end, no longer its due time. A raw
-- one-shot as adopted (no payload, first attempt) is a RAW_ROW: its due time alone too.
-- Appends the claim to `out`, anything else to `notes`.
local function take(m, f, now, lease, out, notes)
  local due, occ = f[CLAIMED_AT[F.due]], f[CLAIMED_AT[F.occurrence]]
  if not due or tonumber(due) > now then return end
  local lock = lock_key(m)
  local raw = f[CLAIMED_AT[F.raw]] == '1'
  local mark = f.plain and PLAIN_ROW
  if raw and occ == '1' then
    mark = RAW_ROW
    for _, name in ipairs({F.attempts, F.payload, F.schedule, F.nominal, F.misfire, F.done}) do
      if f[CLAIMED_AT[name]] then mark = nil end
    end
  end
  if is_aux(m) then
    if not redis.call('SET', lock, lock_value(occ), 'NX', 'PX', lease) then return end
  elseif raw then
    if not redis.call('SET', lock, lock_value(occ, LOCK_RAW), 'NX', 'PX', lease) then return end
    if not raw_gone(m, record_key(m), now, notes) then
      redis.call('DEL', lock)
      return
    end
  else
    -- A held lock means its claim deleted the trigger key already: this DEL changes nothing then.
    local flags = INLINE and redis.call('DEL', m) == 1 and LOCK_QUIET or ''
    if not redis.call('SET', lock, lock_value(occ, flags), 'NX', 'PX', lease) then return end
  end
  redis.call('ZADD', DUE, now + lease, m)
  if f.plain then redis.call('HSET', record_key(m), F.due, due, F.occurrence, occ) end
  out[#out + 1] = m
  if mark then  -- a plain row: its due time alone (records.parse_claims knows the rest)
    out[#out + 1] = mark
    out[#out + 1] = due
    return
  end
  out[#out + 1] = FULL_ROW
  for i = 1, #CLAIMED do out[#out + 1] = f[i] or '' end
end

-- The claimed fields of a record-less plain one-shot indexed at `score` (take() writes its record).
local function plain_fields(score)
  local f = {plain = true}
  f[CLAIMED_AT[F.due]], f[CLAIMED_AT[F.occurrence]] = score, '1'
  return f
end

-- Move an occurrence to `at` keeping its number and its nominal due time (retry, deferral).
local function postpone(m, rec, at, now)
  local cur = redis.call('HMGET', rec, F.due, F.nominal)
  if not cur[2] then redis.call('HSET', rec, F.nominal, cur[1]) end
  redis.call('HSET', rec, F.due, at)
  redis.call('ZADD', DUE, at, m)
  arm(m, at, now)
end

-- The finish step of every verdict that ends an occurrence (a completion, a dead letter),
-- with the claim's lock `lock` and its `flags` (owned()): a recurring reminder (record
-- `rec`) moves to its next occurrence at `next_due` ('' = none), a finished one-shot is
-- deleted and, unless auxiliary or LOCK_QUIET, remembered for the fired-marker `window` ms
-- so a late expired event is not taken for a new raw key (the fired ledger). A raw one-shot
-- whose key was written again while it ran is not marked fired: that key is a new
-- reminder, and finish returns RESET so the caller adopts it.
local function finish(m, rec, lock, occ, next_due, now, window, flags)
  if next_due ~= '' then
    redis.call('DEL', lock)
    redis.call('HSET', rec, F.due, next_due, F.occurrence, tonumber(occ) + 1, F.attempts, 0)
    redis.call('HDEL', rec, F.nominal, F.done, F.error)
    redis.call('ZADD', DUE, next_due, m)
    arm(m, next_due, now)
    return
  end
  local raw = has_flag(flags, LOCK_RAW)
  if flags == LOCK_UNKNOWN then raw = redis.call('HGET', rec, F.raw) == '1' end
  redis.call('DEL', rec, lock)
  redis.call('ZREM', DUE, m)
  if is_aux(m) then
    redis.call('SREM', aux_key(key_of(m)), m)
  elseif raw and expiry_ms(m, now) > 0 then
    return RESET
  elseif not has_flag(flags, LOCK_QUIET) then
    redis.call('SET', fired_key(m), now, 'PX', window)
  end
end

-- Append a dead letter (fields of `e`, read back by reminderd.api.deadletters) and count it.
local function dead_letter(e, now, maxlen)
  redis.call('XADD', DEAD, 'MAXLEN', '~', maxlen, '*',
    'key', e.key, 'occurrence', e.occurrence, 'reason', e.reason, 'error', e.error,
    'attempts', e.attempts, 'processors', e.pending, 'done', e.done, 'payload', e.payload,
    'due', e.due, 'dead_at', now)
  redis.call('HINCRBY', STATS, 'dead', 1)
end

-- Adopt the live raw key `k` (no record yet, record key `rec`) at its own expiry, so it is
-- indexed and survives daemon downtime. A value that is a JSON object becomes the payload;
-- one longer than `max_bytes` is dead-lettered (reason payload_too_large) and its key
-- deleted (not INLINE: by the caller), so it neither fires without its payload nor comes
-- back each scan. Returns the due time, NOTE.oversized, or nil (no expiry, gone, not a
-- string: not a reminder).
local function adopt_key(k, rec, now, max_bytes, maxlen)
  local at, v = read_key(k, now)
  if v == nil then return nil end
  local object = string.sub(v, 1, 1) == '{'
  if object and #v > max_bytes then
    dead_letter({key = k, occurrence = 1, reason = 'payload_too_large', attempts = 0, pending = '', done = '',
      error = string.format('payload is %d bytes, above the limit of %d bytes', #v, max_bytes),
      payload = '{}', due = at}, now, maxlen)
    if INLINE then redis.call('DEL', k) end
    return NOTE.oversized
  end
  local fields = {F.due, at, F.occurrence, 1, F.raw, 1}
  local ok, decoded = false, nil
  if object then ok, decoded = pcall(cjson.decode, v) end
  if ok and type(decoded) == 'table' then
    fields[#fields + 1] = F.payload
    fields[#fields + 1] = v
  end
  redis.call('HSET', rec, unpack(fields))
  redis.call('ZADD', DUE, at, k)
  redis.call('DEL', fired_key(k))
  return at
end
