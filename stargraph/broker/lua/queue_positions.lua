-- ARGV: channel (unused), then job ids. Returns each one's 1-based position, false if not waiting.
local out = {}
for i = 2, #ARGV do
  local m = load(ARGV[i])
  if m and m.state == 'w' then out[#out + 1] = rank(m) else out[#out + 1] = false end
end
return out
