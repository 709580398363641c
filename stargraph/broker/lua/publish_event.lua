-- Append one event to its user's stream and fan it out, in one step, so the order of the
-- cursors (stream ids) is the order in which every listener receives the events.
-- KEYS[1] the user's stream
-- ARGV[1] max length (approximate), ARGV[2] time to live in seconds, ARGV[3] the event's JSON,
-- ARGV[4] the fan-out channel, ARGV[5] the user id, ARGV[6..] (optional) channels to tick
-- afterwards with '1' (the queue-moved channel, the dispatchers' work channel)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. id .. ' ' .. ARGV[3])
for i = 6, #ARGV do
  redis.call('PUBLISH', ARGV[i], '1')
end
return id
