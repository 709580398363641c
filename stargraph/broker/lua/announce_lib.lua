-- Shared by the queue scripts that announce a job's JobQueued event. From ARGV[first] on:
-- max length, time to live, the event's JSON with "position":null, the fan-out channel, then
-- channels to tick. Appends the event with the job's `position` to `stream` (events_lib.lua),
-- then ticks the channels: whoever hears a tick or reads the stream sees the job in its place.
local function tick_from(first)
  for i = first, #ARGV do
    redis.call('PUBLISH', ARGV[i], '1')
  end
end

local function announce(stream, first, user, position)
  local payload = string.gsub(ARGV[first + 2], '"position":null', '"position":' .. position, 1)
  publish_event(stream, ARGV[first], ARGV[first + 1], payload, ARGV[first + 3], user)
  tick_from(first + 4)
end
