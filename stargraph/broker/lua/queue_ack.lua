-- ARGV: channel, job, token. Ends the lease if the token still holds it; the job is parked
-- (kept, so that a job the engine forgets can be requeued at its old place). Returns 1 or 0.
if redis.call('HGET', TOKENS, ARGV[2]) ~= ARGV[3] then return 0 end
local m = load(ARGV[2])
redis.call('ZREM', LEASES, m.job)
redis.call('HDEL', TOKENS, m.job)
m.state = 'p'
save(m)
redis.call('ZADD', PARKED, now_ms(), m.job)
return 1
