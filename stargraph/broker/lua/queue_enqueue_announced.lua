-- KEYS[10] the owner's event stream (events_lib.lua). ARGV: channel, job, user, band, then the
-- job's JobQueued event: max length, time to live, its JSON with "position":null, the fan-out
-- channel, then channels to tick. Adds the job as enqueue does, appends its event with the
-- job's position (0 while leased), ticks the channels and only then wakes the dispatchers, all
-- in one step: no dispatcher can take the job before its event is out. Returns the position.
local m = load(ARGV[2])
if not m then
  m = add_new(ARGV[2], ARGV[3], ARGV[4])
elseif m.state == 'p' then
  restore(m)
end
local position = 0
if m.state == 'w' then position = rank(m) end
local payload = string.gsub(ARGV[7], '"position":null', '"position":' .. position, 1)
publish_event(KEYS[10], ARGV[5], ARGV[6], payload, ARGV[8], ARGV[3])
for i = 9, #ARGV do
  redis.call('PUBLISH', ARGV[i], '1')
end
signal()
return position
