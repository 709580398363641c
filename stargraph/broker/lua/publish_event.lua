-- KEYS[1] the user's stream, KEYS[2] (with ARGV[6]) the queue-moved gate
-- ARGV[1] max length (approximate), ARGV[2] time to live in seconds, ARGV[3] the event's JSON,
-- ARGV[4] the fan-out channel, ARGV[5] the user id, then optionally ARGV[6] the queue-moved
-- channel and ARGV[7] its window in ms, to tick afterwards (events_lib.lua)
local id = publish_event(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] then tick(KEYS[2], ARGV[6], ARGV[7]) end
return id
