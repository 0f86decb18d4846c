-- Greylisting: the first delivery attempt of an unknown (client network,
-- sender, recipient) triplet is deferred; a retry after `delay` seconds
-- passes, and the triplet is then remembered for `keep` seconds.
-- Use: smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination,
--      check_lua_policy /etc/postern/greylisting.lua
local delay = 300          -- seconds a new triplet must wait
local keep = 36 * 86400    -- seconds a passed triplet is remembered

local function network(addr)
  -- IPv4 clients retry from neighbouring addresses of one /24.
  local a, b, c = addr:match("^(%d+)%.(%d+)%.(%d+)%.%d+$")
  if a then return a .. "." .. b .. "." .. c end
  return addr
end

local function policy(a)
  if a.protocol_state ~= "RCPT" then return "DUNNO" end
  local key = "grey:" .. network(a.client_address) .. "/" .. a.sender:lower() .. "/" .. a.recipient:lower()
  local seen, age = postern.counter_get(key)
  if seen == nil then
    postern.counter_set(key, 0, keep)
    return "DEFER_IF_PERMIT Greylisted, please try again in " .. delay .. " seconds"
  end
  if seen == 0 and age < delay then
    return "DEFER_IF_PERMIT Greylisted, please try again in " .. (delay - age) .. " seconds"
  end
  if seen == 0 then
    postern.counter_set(key, 1, keep)   -- passed: refresh for `keep`
  end
  return "DUNNO"
end

local base = { client_address = "192.0.2.10", sender = "a@example.net", recipient = "b@example.com" }
local retry = { client_address = "192.0.2.77", sender = "A@example.net", recipient = "b@example.com" }
return policy, {
  { name = "first attempt is deferred", request = base, now = 1000, expect = "DEFER_IF_PERMIT" },
  { name = "too early retry is deferred", request = base, now = 1100, expect = "DEFER_IF_PERMIT Greylisted, please try again in 200 seconds" },
  { name = "retry from the same /24 after the delay passes", request = retry, now = 1400, expect = "DUNNO" },
  { name = "later mail passes at once", request = base, now = 90000, expect = "DUNNO" },
  { name = "other stages are not greylisted", request = { protocol_state = "DATA" }, expect = "DUNNO" },
}
