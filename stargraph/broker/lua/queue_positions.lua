-- ARGV: channel (unused), then job ids. Returns each one's 1-based position, false if not waiting.
local out = {}
for i = 2, #ARGV do
  local m = load(ARGV[i])
  out[#out + 1] = place_or(m, false)
end
return out
