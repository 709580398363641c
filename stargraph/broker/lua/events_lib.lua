-- Shared by the scripts that publish an event (publish_event.lua, the queue's announcing
-- scripts) or tick the queue-moved channel (tick.lua).
-- Appends the event to its user's stream and fans it out, in one step, so the order of the
-- cursors (stream ids) is the order in which every listener receives the events; returns the
-- event's stream id.
local function publish_event(stream, maxlen, ttl, payload, channel, user)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', payload)
  redis.call('EXPIRE', stream, ttl)
  redis.call('PUBLISH', channel, user .. ' ' .. id .. ' ' .. payload)
  return id
end

-- Tells every process that waiting positions may have moved: at most one tick per `window_ms`
-- (the first move of a window goes at once), so the channel carries a few messages a second
-- however many jobs move. The tick carries the window: a process that hears it looks at the
-- positions at once and again `window_ms` later, which covers the moves the gate kept quiet.
local function tick(gate, channel, window_ms)
  if redis.call('SET', gate, '1', 'NX', 'PX', window_ms) then
    redis.call('PUBLISH', channel, window_ms)
  end
end
