-- ARGV: channel. Forgets every waiting job and the fairness history of the users (the rebuild
-- then replays the waiting jobs); leases, parked jobs, cursors and the counter stay.
for _, member in ipairs(redis.call('ZRANGE', ORDER, 0, -1)) do
  redis.call('HDEL', JOBS, job_of(member))
end
redis.call('DEL', ORDER, CHAINS, SERVED)
return 1
