-- ARGV: channel, token, lease ms. Leases the first waiting job; returns its id or false.
return claim_first(ARGV[2], ARGV[3]) or false
