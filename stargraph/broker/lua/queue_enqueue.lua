-- ARGV: channel, then (job, user, band) per job. Returns each job's position; 0 = leased.
-- A job already known keeps its place; a parked (acknowledged) one goes back to its old place.
local out = {}
for i = 2, #ARGV, 3 do
  local m = load(ARGV[i])
  if not m then
    m = add_new(ARGV[i], ARGV[i + 1], ARGV[i + 2])
  elseif m.state == 'p' then
    restore(m)
  end
  out[#out + 1] = place_or(m, 0)
end
signal()
return out
