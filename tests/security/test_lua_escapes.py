"""Issue #11 item 2: a Lua policy never escapes its budget, its sandbox or
its maps, in the running server and in `postern check` / `policy test` /
reload.

One hostile policy sits first in smtpd_recipient_restrictions; the
envelope sender's local part picks what it does at RCPT TO. Every budget
attack (xpcall's message handler, backtracking patterns, C loops over
huge ranges, ...) must answer 451 4.3.5, and a second connection must get
its banner right after (the worker is not stuck: before the fix the first
one hung the whole worker). The ~50 escape attempts that already failed
(io, os, require, debug, bytecode, string metatable tricks, ...) are kept
as regression cases: each must fail safely (451 or "contained", never
"escaped"). Globals must not carry state from one session to the next,
and postern.map_lookup must reach only maps the configuration names.
The master runs no policy code: its config check runs the policy's tests
in a child process.
"""
import os
import pwd
import socket
import unittest

from harness import Server, wait_for

HOST = "mail.example.com.ar"
CLI_TIMEOUT = 20

# name -> Lua statements run by the policy; each must end in an error.
BUDGET = {
    "xpcall_handler": "xpcall(function() error('boom') end, function(e) while true do end end)",
    "xpcall_both": "xpcall(function() while true do end end, function(e) while true do end end)",
    "xpcall_pcall": "xpcall(error, function(e) return pcall(function() while true do end end) end)"
                    " while true do end",
    "xpcall_recursive": "local function h(e) return xpcall(error, h, e) end xpcall(error, h, 'x')"
                        " while true do end",
    "pcall_loop": "while true do pcall(function() while true do end end) end",
    "pattern_find": "string.find(('a'):rep(22), ('a*'):rep(22) .. 'b')",
    "pattern_match": "local s = ('a'):rep(30000) return s:match('.-.-.-.-b')",
    "pattern_gmatch": "for w in ('a'):rep(3000):gmatch('a*a*a*a*b') do end",
    "pattern_gsub": "return (('a'):rep(3000):gsub('(a-)(a-)(a-)b', '%1'))",
    "plain_find": "local s = ('a'):rep(1e6) local p = ('a'):rep(5e5) .. 'b'"
                  " for i = 1, 1e9 do s:find(p, 1, true) end",
    "table_move": "table.move(setmetatable({}, {__index = type}), 1, 2^50, 1,"
                  " setmetatable({}, {__newindex = type}))",
    "table_concat": "return table.concat(setmetatable({}, {__index = type}), '', 1, 2^50)",
    "table_insert": "local t = {} for i = 0, 50 do t[2^i] = i end for i = 1, 1e9 do table.insert(t, 1, 'x') end",
    "table_sort": "local t = {} for i = 1, 1000 do t[i] = i end table.sort(t, function() while true do end end)",
    "utf8_len": "local s = ('a'):rep(4e6) for i = 1, 1e9 do utf8.len(s) end",
    "string_rep": "return string.rep('x', 2^40)",
    "concat_copies": "local s = ('x'):rep(1e6) for i = 1, 1e9 do local t = s .. i end",
    "memory": "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(64) .. i end",
    "format_width": "return string.format('%99999d', 1)",
    "recursion": "local function f() return 1 + f() end return f()",
    "c_stack": "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x",
    "close_loop": "local x <close> = setmetatable({}, {__close = function() while true do end end})",
    "tostring_loop": "print(setmetatable({}, {__tostring = function() while true do end end}))",
    "error_object": "error(setmetatable({}, {__tostring = function() while true do end end}))",
    "gc_finalizer": "setmetatable({}, {__gc = function() while true do end end})",
    "log_flood": "for i = 1, 1e9 do print('flood', i) end",
    "map_etc_hosts": "return postern.map_lookup('hash:/etc/hosts', 'localhost')",
    "map_etc_passwd": "return postern.map_lookup('/etc/passwd', 'root')",
}

# Escape attempts from the audit: each returns something truthy
# only if it got out; an error (451) or a falsy result is safe.
ESCAPES = {
    "io_open": "return io.open('/etc/passwd')",
    "io_popen": "return io.popen('id')",
    "os_execute": "return os.execute('touch /tmp/postern-lua-pwned')",
    "os_getenv": "return os.getenv('PATH')",
    "os_remove": "return os.remove('/tmp/x')",
    "os_rename": "return os.rename('/tmp/a', '/tmp/b')",
    "os_exit": "return os.exit(1)",
    "os_tmpname": "return os.tmpname()",
    "require_io": "return require('io')",
    "require_ffi": "return require('ffi')",
    "package_loadlib": "return package.loadlib('/lib/x86_64-linux-gnu/libc.so.6', 'system')",
    "package_loaded": "return package.loaded.io",
    "debug_lib": "return debug.getregistry()",
    "debug_sethook": "return debug.sethook()",
    "load_text": "return load('return io')()",
    "load_bytecode": "return load('\\27Lua')",
    "loadstring": "return loadstring('return 1')",
    "loadfile": "return loadfile('/etc/passwd')",
    "dofile": "return dofile('/etc/passwd')",
    "string_dump": "return string.dump(function() end)",
    "method_dump": "return ('').dump(print)",
    "string_meta": "return getmetatable('').__index",
    "string_meta_set": "getmetatable('').__index = {} return getmetatable('') ~= 'protected'",
    "string_meta_rawset": "rawset(getmetatable(''), '__index', {}) return true",
    "setmetatable_string": "return setmetatable('', {})",
    "collectgarbage": "return collectgarbage('stop')",
    "coroutine": "return coroutine.create(print)",
    "setmetatable_G": "setmetatable(_G, {__index = function() return io end}) return true",
    "getmetatable_G": "return getmetatable(_G).__index",
    "rawset_string_lib": "rawset(string, 'find', print) return true",
    "assign_string_lib": "string.find = print return true",
    "assign_postern_lib": "postern.map_lookup = print return true",
    "rawget_G_io": "return rawget(_G, 'io')",
    "ENV_io": "return _ENV.io",
    "G_io": "return _G.io",
    "G_package": "return _G.package",
    "getfenv": "return getfenv(1)",
    "setfenv": "return setfenv(1, {})",
    "newproxy": "return newproxy(true)",
    "module": "return module('x')",
    "unpack_global": "return unpack({io})",
    "next_hidden": "for k, v in next, _G do if k == 'io' then return v end end return nil",
    "pairs_string_lib": "for k, v in pairs(string) do if k == 'dump' then return v end end return nil",
    "gc_meta_true": "setmetatable({}, {__gc = true}) return true",
    "gc_after": "local mt = {} setmetatable({}, mt) mt.__gc = function() os.exit() end return nil",
    "mode_weak": "return setmetatable({}, {__mode = 'k'}) == nil",
    "tostring_addr_io": "return tostring(print):find('io')",
    "select_negative": "return select(-1e9, 1)",
    "string_char_nul": "return ('\\0'):rep(10):find('io')",
    "error_level": "error('x', 1e9)",
    "xpcall_non_function": "return xpcall(print, 42)",
    "pcall_yield": "return pcall(coroutine.yield)",
    "os_date_huge": "return os.date(('%c'):rep(1e6))",
    "os_time_bad": "return os.time({year = 1e18})",
    "math_random_huge": "return math.random(1, 2) > 2",
}

POLICY_HEAD = """
local budget, escapes = {}, {}
"""

POLICY_TAIL = """
local function policy(a)
  local name = a.sender:match('^([^@]+)@') or ''
  if name == 'count' then
    counted = (counted or 0) + 1
    _G.seen = (_G.seen or '') .. 'x'
    return 'REJECT counted=' .. counted .. ' seen=' .. seen
  end
  if name == 'logme' then
    postern.log('policy-selftest-ran')
    return 'DUNNO'
  end
  if name == 'mapok' then
    return postern.map_lookup('hash:' .. MAPFILE, 'listed@example.net') or 'DUNNO'
  end
  local f = budget[name]
  if f then f() return 'OK budget not enforced ' .. name end
  f = escapes[name]
  if f then
    local r = f()
    if r then return 'OK escaped ' .. name .. ' ' .. tostring(r) end
    return 'REJECT contained ' .. name
  end
  return 'DUNNO'
end

-- Its own tests run every budget attack: `postern check`, reload and
-- every load must finish them, each an error.
local tests = { { request = { sender = 'logme@example.net' }, expect = 'DUNNO' } }
for name in pairs(budget) do
  tests[#tests + 1] = { name = name, request = { sender = name .. '@example.net' }, expect = 'error' }
end
return policy, tests
"""


def lua_function(body):
    return "function()\n  %s\nend" % body


def build_policy(mapfile):
    parts = [POLICY_HEAD, "MAPFILE = %r\n" % mapfile]
    for name, body in BUDGET.items():
        parts.append("budget[%r] = %s\n" % (name, lua_function(body)))
    for name, body in ESCAPES.items():
        parts.append("escapes[%r] = %s\n" % (name, lua_function(body)))
    parts.append(POLICY_TAIL)
    return "".join(parts)


class Conn:
    """A bare SMTP client with a timeout on every read."""

    def __init__(self, port, source="127.0.0.2", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode(errors="replace")

    def reply(self):
        while True:
            line = self.line()
            if line[3:4] != "-":
                return line

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class LuaEscapes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=("mbox", "alias", "restrict", "smtp"), conf="")
        cls.mapfile = cls.server.path("listed")
        cls.write(cls.mapfile, "listed@example.net REJECT listed in lua_policy_maps\n")
        cls.write(cls.server.path("unlisted"), "secret@example.net leaked\n")
        cls.policy = cls.server.path("hostile.lua")
        cls.write(cls.policy, build_policy(cls.mapfile))
        cls.server.write_conf("\n".join([
            "smtpd_relay_restrictions =",
            "smtpd_recipient_restrictions = check_lua_policy %s, permit_mynetworks, "
            "reject_unauth_destination" % cls.policy,
            "lua_policy_maps = hash:%s" % cls.mapfile,
            "lua_policy_time_limit = 1s",
        ]))
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("LUA_ESCAPES_LOG"):
            print(cls.server.log()[-6000:])
        cls.server.cleanup()

    @classmethod
    def write(cls, path, text):
        with open(path, "w") as f:
            f.write(text)
        if cls.server.run_user:
            pw = pwd.getpwnam(cls.server.run_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def rcpt(self, sender):
        """The reply to RCPT TO in a session of its own (closed at once:
        client_connection_limit counts open ones)."""
        c = Conn(self.port)
        try:
            self.assertTrue(c.reply().startswith("220"))
            self.assertTrue(c.cmd("EHLO client.example.net").startswith("250"))
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), "250 2.1.0 Ok")
            reply = c.cmd("RCPT TO:<alice@example.com.ar>")
            c.cmd("QUIT")
            return reply
        finally:
            c.close()

    def assert_worker_answers(self, after):
        """A new connection gets its banner promptly (generous bound)."""
        c = Conn(self.port, timeout=10)
        try:
            banner = c.reply()
        except (socket.timeout, OSError) as e:
            self.fail("no banner after %s: %s (worker stuck)" % (after, e))
        finally:
            c.close()
        self.assertTrue(banner.startswith("220"), banner)

    def test_budget_attacks_answer_451(self):
        for name in BUDGET:
            with self.subTest(name=name):
                reply = self.rcpt("%s@example.net" % name)
                self.assertEqual(reply, "451 4.3.5 Server configuration problem", name)
                self.assert_worker_answers(name)
        self.assertFalse(os.path.exists("/tmp/postern-lua-pwned"))

    def test_escape_attempts_fail_safely(self):
        for name in ESCAPES:
            with self.subTest(name=name):
                reply = self.rcpt("%s@example.net" % name)
                self.assertNotIn("escaped", reply, name)
                self.assertTrue(reply.startswith("451 4.3.5") or "contained %s" % name in reply,
                                "%s: %s" % (name, reply))
        self.assert_worker_answers("escape attempts")
        self.assertFalse(os.path.exists("/tmp/postern-lua-pwned"))

    def test_no_state_between_sessions(self):
        for _ in range(3):
            self.assertIn("counted=1 seen=x", self.rcpt("count@example.net"))

    def test_map_lookup_only_configured_maps(self):
        self.assertIn("listed in lua_policy_maps", self.rcpt("mapok@example.net"))
        reply = self.rcpt("map_etc_hosts@example.net")
        self.assertEqual(reply, "451 4.3.5 Server configuration problem")
        wait_for(lambda: "is not a map of the configuration" in self.server.log(), timeout=10,
                 what="map_lookup refusal logged")

    def test_check_policy_test_and_reload_finish(self):
        # postern check runs the policy's tests: every budget attack.
        r = self.server.cmd("check", "-c", self.server.conf_file, timeout=CLI_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.2",
                            "--helo", "client.example.net", "--sender", "xpcall_handler@example.net",
                            "--recipient", "alice@example.com.ar", timeout=CLI_TIMEOUT)
        self.assertEqual(r.returncode, 2, r.stdout.decode() + r.stderr.decode())
        self.assertIn("451 4.3.5", r.stdout.decode())
        # a policy whose chunk itself attacks is refused by check, promptly
        bad = self.server.path("hostile_chunk.lua")
        self.write(bad, "xpcall(function() error('boom') end, function(e) while true do end end)\n"
                        "return function(a) return 'DUNNO' end\n")
        conf = self.server.path("bad.conf")
        with open(self.server.conf_file) as f:
            text = f.read().replace(self.policy, bad)
        self.write(conf, text)
        r = self.server.cmd("check", "-c", conf, timeout=CLI_TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("instruction budget exceeded", r.stdout.decode() + r.stderr.decode())
        # reload re-runs the tests (in the master and in the worker)
        mark = len(self.server.log())
        self.server.reload()
        wait_for(lambda: "reload: configuration reloaded" in self.server.log()[mark:], timeout=CLI_TIMEOUT,
                 what="reload done")
        self.assert_worker_answers("reload")
        self.assertEqual(self.rcpt("xpcall_handler@example.net"), "451 4.3.5 Server configuration problem")
        # The master checks the config at start and reload, but never runs
        # policy code itself: the self-tests' log lines come from others.
        ran = [l for l in self.server.log().splitlines() if "policy-selftest-ran" in l]
        self.assertTrue(ran)
        master = "[%d]:" % self.server.pid
        self.assertEqual([l for l in ran if master in l], [])


if __name__ == "__main__":
    unittest.main()
