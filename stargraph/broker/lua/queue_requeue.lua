-- ARGV: channel, job. A leased or parked job goes back to its old place.
-- Returns 1 when the job is waiting afterwards, 0 when the queue does not know it.
local m = load(ARGV[2])
if not m then return 0 end
if m.state ~= 'w' then
  restore(m)
  signal()
end
return 1
