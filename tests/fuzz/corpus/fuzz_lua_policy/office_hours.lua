-- Office-hours relay: clients of the office network may relay to any
-- destination on working days 08:00-18:00 (server local time); outside
-- those hours (and from elsewhere) the next restrictions decide, e.g.
--   smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
--     check_lua_policy /etc/postern/office_hours.lua, reject_unauth_destination
local office = { "192.0.2.0/24", "2001:db8:1::/48" }
local first_hour, last_hour = 8, 18

local function policy(a)
  if not postern.cidr_match(a.client_address, office) then return "DUNNO" end
  local t = os.date("*t", postern.now())
  local weekday = t.wday >= 2 and t.wday <= 6      -- Monday..Friday
  if weekday and t.hour >= first_hour and t.hour < last_hour then
    return "OK"
  end
  return "DUNNO"
end

-- Times as local calendar dates, so the tests hold in every time zone.
local tuesday_10 = os.time({ year = 2024, month = 1, day = 9, hour = 10 })
local tuesday_22 = os.time({ year = 2024, month = 1, day = 9, hour = 22 })
local sunday_10 = os.time({ year = 2024, month = 1, day = 7, hour = 10 })
return policy, {
  { request = { client_address = "192.0.2.5" }, now = tuesday_10, expect = "OK" },
  { request = { client_address = "2001:db8:1::9" }, now = tuesday_10, expect = "OK" },
  { request = { client_address = "192.0.2.5" }, now = tuesday_22, expect = "DUNNO" },
  { request = { client_address = "192.0.2.5" }, now = sunday_10, expect = "DUNNO" },
  { request = { client_address = "203.0.113.1" }, now = tuesday_10, expect = "DUNNO" },
}
