-- ARGV: channel, token, lease ms. Leases the first waiting job; returns its id or false.
local top = redis.call('ZRANGE', ORDER, 0, 0)[1]
if not top then return false end
local m = load(job_of(top))
drop(m)
local band = band_of(top)
if band ~= FRONT then
  local place = place_in(top)
  advance(band, place)
  local field = chain_prefix(band, m.user)
  local served = redis.call('HGET', SERVED, field)
  if not served or place > served then redis.call('HSET', SERVED, field, place) end
end
m.state = 'l'
save(m)
redis.call('ZADD', LEASES, now_ms() + tonumber(ARGV[3]), m.job)
redis.call('HSET', TOKENS, m.job, ARGV[2])
return m.job
