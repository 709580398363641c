-- KEYS[1] the version counter, KEYS[i + 1] the slots of backend i. Returns the version, then
-- the count of each backend.
local now, version = slot_clock(KEYS[1])
local out = {version}
for i = 2, #KEYS do
  out[i] = slots_taken(KEYS[i], now)
end
return out
