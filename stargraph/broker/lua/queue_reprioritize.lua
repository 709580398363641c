-- ARGV: channel, job, band, then optionally the owner's id and the job's JobQueued event
-- (announce_lib.lua), with KEYS[10] the owner's event stream, KEYS[11] the job's last
-- announcement and KEYS[12] the queue-moved gate. Moves a waiting job to another band ("0" =
-- the very front), among its user's jobs there by arrival. With an event, the move and the
-- event with the new position are one step (no dispatcher can take the job in between); a job
-- no longer waiting only ticks the queue-moved channel; the same call resent announces nothing
-- more. Returns the new position, false if the job is not waiting.
local announced = #ARGV > 3
local EVENT = 5  -- where the event's arguments start (announce_lib.lua)
local m = load(ARGV[2])
if announced and not first_sending(KEYS[11], EVENT) then return place_or(m, false) end
if not m or m.state ~= 'w' then
  if announced then tick_from(KEYS[12], EVENT) end
  return false
end
if band_of(m.member) ~= ARGV[3] then
  unseat(m)
  seat(m, ARGV[3], false)
end
local position = rank(m)
if announced then announce(KEYS[10], KEYS[12], EVENT, ARGV[4], position) end
return position
