-- KEYS[10] the owner's event stream. ARGV: channel, job, user, band, then the job's JobQueued
-- event (announce_lib.lua). Adds the job as enqueue does, announces it with its position (0
-- while leased) and only then wakes the dispatchers, all in one step: no dispatcher can take
-- the job before its event is out. Returns the position.
local m = load(ARGV[2])
if not m then
  m = add_new(ARGV[2], ARGV[3], ARGV[4])
elseif m.state == 'p' then
  restore(m)
end
local position = 0
if m.state == 'w' then position = rank(m) end
announce(KEYS[10], 5, ARGV[3], position)
signal()
return position
