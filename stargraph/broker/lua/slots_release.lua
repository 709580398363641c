-- KEYS[1] the version counter, KEYS[2] the backend's slots; ARGV[1] job id, ARGV[2] channel,
-- ARGV[3] backend. Returns {count, version}; a release that freed a slot is published.
local now, version = slot_clock(KEYS[1])
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
local n = slots_taken(KEYS[2], now)
if removed == 1 then
  redis.call('PUBLISH', ARGV[2], string.format('%d %d %s', n, version, ARGV[3]))
end
return {n, version}
