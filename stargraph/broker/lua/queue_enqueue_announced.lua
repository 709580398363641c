-- KEYS[10] the owner's event stream, KEYS[11] the queue-moved gate. ARGV: channel, job, user,
-- band, then the job's JobQueued event (announce_lib.lua). Adds the job as enqueue does,
-- announces it with its position and only then wakes the dispatchers, all in one step: no
-- dispatcher can take the job before its event is out. Returns the position (0: leased or
-- sent). A job the queue already knows, waiting, leased or sent (parked), is left alone and not
-- announced again: the same call sent twice (a pipeline resent after a lost connection) must
-- not publish a second JobQueued, and a job the sweeper queued between its submitter's commit
-- and this call may have been sent already; neither may wait in the queue again.
local m = load(ARGV[2])
local entered = not m
if entered then
  m = add_new(ARGV[2], ARGV[3], ARGV[4])
end
local position = place_or(m, 0)
if entered then
  announce(KEYS[10], KEYS[11], 5, ARGV[3], position)
  signal()
end
return position
