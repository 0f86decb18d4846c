-- The bench's Lua policy (check_lua_policy); policyd.py is the same logic
-- as a Postfix policy daemon: block list, CIDR test, per-client counter.
local blocked = { ["spammer@example.net"] = true }
local office = { "192.0.2.0/24", "2001:db8::/32" }
return function(a)
  if blocked[a.sender:lower()] then return "REJECT blocked" end
  if postern.cidr_match(a.client_address, office) then return "OK" end
  local n = postern.counter_incr("rcpt:" .. a.client_address, 60)
  if n > 100000000 then return "DEFER slow down" end
  return "DUNNO"
end
