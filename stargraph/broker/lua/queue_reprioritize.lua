-- ARGV: channel, job, band. Moves a waiting job to another band ("0" = the very front), among
-- its user's jobs there by arrival. Returns the new position, false if the job is not waiting.
local m = load(ARGV[2])
if not m or m.state ~= 'w' then return false end
if band_of(m.member) ~= ARGV[3] then
  unseat(m)
  seat(m, ARGV[3], false)
end
return rank(m)
