-- Shared by every queue script: prepended to each one when it is registered.
-- KEYS (always, in this order): order, chains, jobs, leases, tokens, parked, cursor, served, seq.
-- ARGV[1] is always the pub/sub channel that says "there may be work".
--
-- An order member is  band(1) .. lap(16) .. slot(16) .. job  (decimal, zero-padded), so the
-- byte order of members is the dispatch order and ZRANK is an exact position. A "place" is
-- lap .. slot (32 characters). Band "0" is the very front; bands "1".."4" are the priorities.
local ORDER, CHAINS, JOBS, LEASES, TOKENS, PARKED, CURSOR, SERVED, SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local CHANNEL = ARGV[1]
local FRONT = '0'
local ORIGIN = string.rep('0', 32)

local function pad(n) return string.format('%016d', n) end
local function place_of(lap, slot) return pad(lap) .. pad(slot) end
local function band_of(member) return string.sub(member, 1, 1) end
local function place_in(member) return string.sub(member, 2, 33) end
local function job_of(member) return string.sub(member, 34) end
local function lap_of(place) return tonumber(string.sub(place, 1, 16)) end
local function slot_of(place) return tonumber(string.sub(place, 17, 32)) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- job metadata: state w(aiting) | l(eased) | p(arked), user, arrival seq, order member
local function load(job)
  local v = redis.call('HGET', JOBS, job)
  if not v then return nil end
  local state, user, seq, member = string.match(v, '^(%a)|([^|]*)|(%d+)|(.*)$')
  return {job = job, state = state, user = user, seq = seq, member = member}
end

local function save(m)
  redis.call('HSET', JOBS, m.job, m.state .. '|' .. m.user .. '|' .. m.seq .. '|' .. m.member)
end

local function next_seq() return redis.call('INCR', SEQ) end

local function chain_prefix(band, user) return band .. ':' .. user .. ':' end

local function add(m)
  redis.call('ZADD', ORDER, 0, m.member)
  local band = band_of(m.member)
  if band ~= FRONT then redis.call('ZADD', CHAINS, 0, chain_prefix(band, m.user) .. m.member) end
end

local function drop(m)
  redis.call('ZREM', ORDER, m.member)
  local band = band_of(m.member)
  if band ~= FRONT then redis.call('ZREM', CHAINS, chain_prefix(band, m.user) .. m.member) end
end

local function rank(m) return redis.call('ZRANK', ORDER, m.member) + 1 end

-- A job's 1-based place while it waits; `otherwise` when it is unknown, leased or parked.
local function place_or(m, otherwise)
  if m and m.state == 'w' then return rank(m) end
  return otherwise
end

local cursors = {}  -- read once per script run
local function cursor(band)
  if not cursors[band] then cursors[band] = redis.call('HGET', CURSOR, band) or ORIGIN end
  return cursors[band]
end

local function advance(band, place)
  if place > cursor(band) then
    redis.call('HSET', CURSOR, band, place)
    cursors[band] = place
  end
end

-- the lap of `slot`'s first place after the band's cursor
local function first_lap(band, slot)
  local c = cursor(band)
  if slot > slot_of(c) then return lap_of(c) end
  return lap_of(c) + 1
end

-- lexicographic bounds of a user's chain members placed after the cursor
local function chain_bounds(band, user)
  local prefix = chain_prefix(band, user)
  return '(' .. prefix .. band .. cursor(band) .. '\255', '(' .. band .. ':' .. user .. ';', #prefix
end

-- the user's jobs after the cursor (their fair turns), in order, as order members
local function chain(band, user)
  local low, high, skip = chain_bounds(band, user)
  local out = {}
  for _, member in ipairs(redis.call('ZRANGEBYLEX', CHAINS, low, high)) do
    out[#out + 1] = string.sub(member, skip + 1)
  end
  return out
end

local function chain_last(band, user)
  local low, high, skip = chain_bounds(band, user)
  local found = redis.call('ZREVRANGEBYLEX', CHAINS, high, low, 'LIMIT', 0, 1)[1]
  if not found then return nil end
  return string.sub(found, skip + 1)
end

-- a user entering a band: back on the slot of a turn taken in the current lap (no second turn
-- in one lap), else a fresh slot at the end of the current lap
local function join_slot(band, user)
  local field = chain_prefix(band, user)
  local served = redis.call('HGET', SERVED, field)
  if served then
    if lap_of(served) == lap_of(cursor(band)) then return slot_of(served) end
    redis.call('HDEL', SERVED, field)  -- older than the current lap: it can never matter again
  end
  return next_seq()
end

-- give `list` (one user's jobs in one band, in order) consecutive laps on `slot`
local function reseat(band, user, list, slot)
  local lap = first_lap(band, slot)
  for i, m in ipairs(list) do
    local member = band .. place_of(lap + i - 1, slot) .. m.job
    if member ~= m.member then
      if m.member ~= '' then drop(m) end
      m.member = member
      add(m)
      save(m)
    end
  end
end

-- place a waiting job (m.member == '') in `band`, among its user's jobs by arrival
-- (a new job arrived last: it goes after them)
local function seat(m, band, is_new)
  if band == FRONT then
    m.member = FRONT .. place_of(0, tonumber(m.seq)) .. m.job
    add(m)
    save(m)
    return
  end
  local last = chain_last(band, m.user)
  if not last then return reseat(band, m.user, {m}, join_slot(band, m.user)) end
  local slot = slot_of(place_in(last))
  if is_new or tonumber(m.seq) > tonumber(load(job_of(last)).seq) then
    m.member = band .. place_of(lap_of(place_in(last)) + 1, slot) .. m.job
    add(m)
    save(m)
    return
  end
  local list, inserted = {}, false
  for _, member in ipairs(chain(band, m.user)) do
    local other = load(job_of(member))
    if not inserted and tonumber(m.seq) < tonumber(other.seq) then
      list[#list + 1] = m
      inserted = true
    end
    list[#list + 1] = other
  end
  reseat(band, m.user, list, slot)
end

-- take a waiting job out of its band; the user's later jobs move up one turn each
local function unseat(m)
  local band = band_of(m.member)
  drop(m)
  local place = place_in(m.member)
  m.member = ''
  if band == FRONT or place <= cursor(band) then return end
  local list = {}
  for _, member in ipairs(chain(band, m.user)) do list[#list + 1] = load(job_of(member)) end
  reseat(band, m.user, list, slot_of(place))
end

-- a leased or parked job back at its old place
local function restore(m)
  redis.call('ZREM', LEASES, m.job)
  redis.call('HDEL', TOKENS, m.job)
  redis.call('ZREM', PARKED, m.job)
  m.state = 'w'
  add(m)
  save(m)
end

local function add_new(job, user, band)
  local m = {job = job, state = 'w', user = user, seq = string.format('%d', next_seq()), member = ''}
  seat(m, band, true)
  return m
end

-- wakes the dispatchers waiting for work (`RedisJobQueue.wait_for_work`)
local function signal() redis.call('PUBLISH', CHANNEL, '1') end

-- Leases the first waiting job (token, lease ms); its id, or nil when nothing waits.
local function claim_first(token, lease_ms)
  local top = redis.call('ZRANGE', ORDER, 0, 0)[1]
  if not top then return nil end
  local m = load(job_of(top))
  drop(m)
  local band = band_of(top)
  if band ~= FRONT then
    local place = place_in(top)
    advance(band, place)
    local field = chain_prefix(band, m.user)
    local served = redis.call('HGET', SERVED, field)
    if not served or place > served then redis.call('HSET', SERVED, field, place) end
  end
  m.state = 'l'
  save(m)
  redis.call('ZADD', LEASES, now_ms() + tonumber(lease_ms), m.job)
  redis.call('HSET', TOKENS, m.job, token)
  return m.job
end
