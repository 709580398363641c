-- Shared by the scripts that publish an event (publish_event.lua, queue_enqueue_announced.lua).
-- Appends the event to its user's stream and fans it out, in one step, so the order of the
-- cursors (stream ids) is the order in which every listener receives the events; returns the
-- event's stream id.
local function publish_event(stream, maxlen, ttl, payload, channel, user)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', payload)
  redis.call('EXPIRE', stream, ttl)
  redis.call('PUBLISH', channel, user .. ' ' .. id .. ' ' .. payload)
  return id
end
