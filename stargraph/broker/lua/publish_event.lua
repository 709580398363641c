-- KEYS[1] the user's stream
-- ARGV[1] max length (approximate), ARGV[2] time to live in seconds, ARGV[3] the event's JSON,
-- ARGV[4] the fan-out channel, ARGV[5] the user id, ARGV[6..] (optional) channels to tick
-- afterwards with '1' (the queue-moved channel)
local id = publish_event(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
for i = 6, #ARGV do
  redis.call('PUBLISH', ARGV[i], '1')
end
return id
