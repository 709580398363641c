-- ARGV: channel, job. Forgets the job whatever its state; returns 1 if the queue knew it.
local m = load(ARGV[2])
if not m then return 0 end
if m.state == 'w' then
  unseat(m)
else
  redis.call('ZREM', LEASES, m.job)
  redis.call('HDEL', TOKENS, m.job)
  redis.call('ZREM', PARKED, m.job)
end
redis.call('HDEL', JOBS, m.job)
return 1
