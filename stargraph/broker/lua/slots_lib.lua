-- Shared by the slot scripts and the queue's claim into a slot.
-- A backend's slots: a ZSET of job ids scored by when their reservation lapses (ms, server
-- clock); the score is +inf once the backend holds the job.

-- The server clock in ms, and the next version from the counter at `version_key`. The counter
-- starts from the server clock in µs, so that after Redis is flushed or restarted the versions
-- still exceed every one handed out before.
local function slot_clock(version_key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('EXISTS', version_key) == 0 then
    redis.call('SET', version_key, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return now, redis.call('INCR', version_key)
end

-- The slots taken on a backend, after dropping the reservations that lapsed.
local function slots_taken(slots_key, now)
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
  return redis.call('ZCARD', slots_key)
end
