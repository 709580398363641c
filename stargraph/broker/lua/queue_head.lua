-- ARGV: channel. The job the next claim would take (read only); its id or false.
local top = redis.call('ZRANGE', ORDER, 0, 0)[1]
if not top then return false end
return job_of(top)
