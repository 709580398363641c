-- Sliding-window rate limit over a sorted set of hit times (milliseconds, server clock).
-- KEYS[1] the key's hit log
-- ARGV[1] limit, ARGV[2] window in milliseconds, ARGV[3] a unique member for this hit,
-- ARGV[4] '1' to count this hit when allowed, '0' to only check
-- Returns 0 when allowed, else the milliseconds until one more hit would be allowed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[4] == '1' and redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 0  -- this very hit, sent again after a lost connection: counted once, allowed
end
local used = redis.call('ZCARD', KEYS[1])
if used >= limit then
  -- the hit that must leave the window before one more fits
  local oldest = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
return 0
