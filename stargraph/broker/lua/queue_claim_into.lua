-- KEYS[10] the slots' version counter, KEYS[11] the backend's slots (slots_lib.lua).
-- ARGV: channel, token, lease ms, slot limit. If the backend has a free slot, leases the
-- first waiting job and reserves the slot for it until the lease ends, in one step.
-- Returns {job or false, count, version, full (0/1)}; nothing changes when the backend is
-- full or nothing waits.
local now, version = slot_clock(KEYS[10])
local n = slots_taken(KEYS[11], now)
if n >= tonumber(ARGV[4]) then
  return {false, n, version, 1}
end
local job = claim_first(ARGV[2], ARGV[3])
if not job then
  return {false, n, version, 0}
end
redis.call('ZADD', KEYS[11], now + tonumber(ARGV[3]), job)
return {job, n + 1, version, 0}
