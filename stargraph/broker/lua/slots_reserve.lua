-- KEYS[1] the version counter, KEYS[2] the backend's slots; ARGV[1] job id, ARGV[2] limit,
-- ARGV[3] ttl in ms. Returns {taken (0/1), count, version}.
local now, version = slot_clock(KEYS[1])
local n = slots_taken(KEYS[2], now)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return {1, n, version}
end
if n >= tonumber(ARGV[2]) then
  return {0, n, version}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return {1, n + 1, version}
