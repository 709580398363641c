-- KEYS[10] the owner's event stream, KEYS[11] the job's last announcement, KEYS[12] the
-- queue-moved gate (announce_lib.lua).
-- ARGV as queue_enqueue_announced.lua's. Puts a leased or parked job back at its old place
-- (one the queue does not know is added, as enqueue does), announces it with its position and
-- only then wakes the dispatchers, in one step: no dispatcher can take the job again before
-- its event is out. Returns the position (0 while leased). The same call resent does nothing:
-- above all, it does not take the job back from a dispatcher that claimed it meanwhile.
local m = load(ARGV[2])
if not first_sending(KEYS[11], 5) then return place_or(m, 0) end
if not m then
  m = add_new(ARGV[2], ARGV[3], ARGV[4])
elseif m.state ~= 'w' then
  restore(m)
end
local position = rank(m)
announce(KEYS[10], KEYS[12], 5, ARGV[3], position)
signal()
return position
