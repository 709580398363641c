-- ARGV: channel, parked retention ms, batch limit. Expired leases go back to their old places;
-- parked jobs older than the retention are forgotten. Returns the ids put back.
local now = now_ms()
local limit = tonumber(ARGV[3])
local back = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, limit)) do
  local m = load(job)
  if m then
    restore(m)
    back[#back + 1] = job
  else
    redis.call('ZREM', LEASES, job)
    redis.call('HDEL', TOKENS, job)
  end
end
local stale = redis.call('ZRANGEBYSCORE', PARKED, '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, limit)
for _, job in ipairs(stale) do
  redis.call('ZREM', PARKED, job)
  redis.call('HDEL', JOBS, job)
end
if #back > 0 then signal() end
return back
