-- Sender and recipient block lists: whole addresses or domains (and their
-- subdomains). Lists can also live in an access-style map file, looked up
-- with postern.map_lookup("hash:/etc/postern/blocked", key) once the file is
-- listed in lua_policy_maps.
local blocked_senders = { ["spammer@example.net"] = true, ["junk.example"] = true }
local blocked_recipients = { ["former-employee@example.com"] = "This person has left; write to office@example.com" }

local function domain_hit(list, domain)
  while domain and domain ~= "" do
    if list[domain] then return list[domain] end
    domain = domain:match("^[^.]*%.(.+)$")
  end
  return nil
end

local function policy(a)
  local sender = a.sender:lower()
  if sender ~= "" then
    local _, domain = postern.split_address(sender)
    if blocked_senders[sender] or domain_hit(blocked_senders, domain) then
      return "REJECT Sender blocked by local policy"
    end
  end
  local why = blocked_recipients[a.recipient:lower()]
  if why then return "550 5.1.6 " .. why end
  return "DUNNO"
end

return policy, {
  { request = { sender = "Spammer@Example.NET" }, expect = "REJECT Sender blocked by local policy" },
  { request = { sender = "x@mail.junk.example" }, expect = "REJECT" },
  { request = { sender = "x@notjunk.example" }, expect = "DUNNO" },
  { request = { sender = "", recipient = "former-employee@example.com" }, expect = "550 5.1.6 This person has left; write to office@example.com" },
  { request = { sender = "friend@example.org", recipient = "office@example.com" }, expect = "DUNNO" },
}
