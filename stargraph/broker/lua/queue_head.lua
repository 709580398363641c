-- ARGV: channel, n. The jobs the next n claims would take, in order (read only).
local out = {}
for i, member in ipairs(redis.call('ZRANGE', ORDER, 0, tonumber(ARGV[2]) - 1)) do
  out[i] = job_of(member)
end
return out
