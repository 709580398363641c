-- Shared by the queue scripts that announce a job's JobQueued event. From ARGV[first] on:
-- max length, time to live, the event's JSON with "position":null, the fan-out channel, the
-- queue-moved channel and its window in ms. Appends the event with the job's `position` to
-- `stream`, then ticks the queue-moved channel through `gate` (events_lib.lua): whoever hears
-- a tick or reads the stream sees the job in its place.
local function tick_from(gate, first)
  tick(gate, ARGV[first + 4], ARGV[first + 5])
end

-- Whether this announcement (the call's event, its `at` included) is made for the first time:
-- `key` keeps the last one for a minute. A call resent after a lost connection (redis-py
-- retries) carries the same event, and must change nothing and announce nothing.
local function first_sending(key, first)
  local event = ARGV[first + 2]
  if redis.call('GET', key) == event then return false end
  redis.call('SET', key, event, 'PX', 60000)
  return true
end

local function announce(stream, gate, first, user, position)
  local payload = string.gsub(ARGV[first + 2], '"position":null', '"position":' .. position, 1)
  publish_event(stream, ARGV[first], ARGV[first + 1], payload, ARGV[first + 3], user)
  tick_from(gate, first)
end
