-- Per-client rate limit: at most `limit` recipients per client address in
-- any `window` seconds; beyond that, a temporary refusal. Clients in
-- `exempt` (CIDR) are never limited.
local limit = 3
local window = 60
local exempt = { "127.0.0.0/8", "::1/128" }

local function policy(a)
  if a.protocol_state ~= "RCPT" then return "DUNNO" end
  if postern.cidr_match(a.client_address, exempt) then return "DUNNO" end
  local n = postern.counter_incr("rate:" .. a.client_address, window)
  if n > limit then
    postern.log("warning", "rate limit: " .. a.client_address .. " sent " .. n .. " recipients")
    return "DEFER 4.7.1 Rate limit exceeded, try again later"
  end
  return "DUNNO"
end

local c = { client_address = "198.51.100.9" }
return policy, {
  { request = c, now = 100, expect = "DUNNO" },
  { request = c, now = 101, expect = "DUNNO" },
  { request = c, now = 102, expect = "DUNNO" },
  { name = "fourth in the window", request = c, now = 103, expect = "DEFER 4.7.1 Rate limit exceeded, try again later" },
  { name = "another client is not affected", request = { client_address = "198.51.100.10" }, now = 103, expect = "DUNNO" },
  { name = "window over", request = c, now = 200, expect = "DUNNO" },
  { name = "loopback is exempt", request = { client_address = "127.0.0.1" }, now = 200, expect = "DUNNO" },
}
