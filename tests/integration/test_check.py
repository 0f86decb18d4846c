"""`postern check` reports every error it can find in one run, each as
FILE:LINE: message, and exits 1: parameters, restriction items, map
contents (syntax, missing files, transport names no module provides), Lua
policies and their tests, colliding listeners, missing modules. A missing
map file is an error at start too (the daemon refuses it as check does)."""
import os
import re
import subprocess
import unittest

from harness import BIN, Server, free_port

BROKEN_LUA = "return function(a) return 'DUNNO'\n"   # no `end`
FAILING_TESTS_LUA = """return function(a) return "DUNNO" end, {
  { request = { sender = "spammer@example.net" }, expect = "REJECT" },
}
"""
GOOD_LUA = """return function(a) return "DUNNO" end, {
  { request = { sender = "x@example.net" }, expect = "DUNNO" },
}
"""


class CheckCase(unittest.TestCase):
    MODULES = ("mbox", "alias", "transport", "restrict", "smtp")

    def setUp(self):
        self.server = Server(modules=self.MODULES, listeners=("smtpd",))
        self.addCleanup(self.server.cleanup)
        self.files = {"aliases": "postmaster: alice\n", "transport": "example.org smtp:[127.0.0.1]:2525\n",
                      "good.lua": GOOD_LUA}
        for name, text in self.files.items():
            self.put(name, text)

    def put(self, name, text):
        path = self.server.path(name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def base(self):
        """The harness's valid config for these modules, plus a transport map."""
        return "\n".join(self.server.base_conf() + self.server.listener_conf() +
                         ["smtps_listen =", "transport_maps = hash:%s" % self.server.path("transport")]) + "\n"

    def check(self, text, name="t.conf"):
        conf = self.put(name, text)
        r = subprocess.run([BIN, "check", "-c", conf], capture_output=True, timeout=60, env=self.server.env())
        errors = [l for l in r.stderr.decode().splitlines() if l.startswith(conf + ":")]
        return r, conf, errors

    def line_of(self, text, needle):
        """The last line holding needle (a later setting wins)."""
        found = [i for i, l in enumerate(text.splitlines(), 1) if needle in l]
        if not found:
            raise AssertionError("%r not in config" % needle)
        return found[-1]

    def assertReported(self, errors, conf, line, *words):
        prefix = "%s:%d: " % (conf, line)
        hits = [e for e in errors if e.startswith(prefix) and all(w in e for w in words)]
        self.assertTrue(hits, "no error at %s naming %s in:\n%s" % (prefix, words, "\n".join(errors)))


class TenMistakes(CheckCase):
    def test_ten_mistakes_in_one_run(self):
        """The issue's complaint: fixing one class of error revealed the
        next. Ten different mistakes, all listed by one run, in file
        order, each at its own line."""
        self.put("aliases", "postmaster: alice\nthis line has no colon\n")
        self.put("transport", "example.org smtp:[127.0.0.1]:2525\nexample.net foo:[192.0.2.1]\n")
        self.put("broken.lua", BROKEN_LUA)
        self.put("failing.lua", FAILING_TESTS_LUA)
        port = self.server.ports["smtpd"]
        mistakes = [
            ("module nosuchmod", ("module nosuchmod", "cannot load")),
            ("myhostnme = mail.example.com.ar", ("unknown parameter \"myhostnme\"", "did you mean \"myhostname\"")),
            ("message_size_limit = lots", ("invalid value for message_size_limit",)),
            ("submission_listen = 127.0.0.1:%d" % port, ("submission_listen", "collides", "smtpd_listen")),
            ("alias_maps = hash:%s" % self.server.path("aliases"), ("aliases:2:", "need name: value pair")),
            ("alias_database = hash:%s" % self.server.path("missing-aliases"), ("missing-aliases", "does not exist")),
            ("transport_maps = hash:%s" % self.server.path("transport"),
             ("transport:2:", "no loaded module provides transport \"foo\"")),
            ("smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destinaton",
             ("unknown restriction \"reject_unauth_destinaton\"", "did you mean \"reject_unauth_destination\"")),
            ("smtpd_client_restrictions = check_lua_policy %s" % self.server.path("broken.lua"),
             ("broken.lua", "'end' expected")),
            ("smtpd_sender_restrictions = check_lua_policy %s" % self.server.path("failing.lua"),
             ("failing.lua", "test 1 failed", "expected \"REJECT\", got \"DUNNO\"")),
        ]
        lines = [l for l in self.base().splitlines()
                 if not l.startswith(("alias_maps", "alias_database", "transport_maps"))]
        text = "\n".join(lines + [m for m, _ in mistakes]) + "\n"
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertEqual(len(errors), 10, "\n".join(errors))
        for m, words in mistakes:
            self.assertReported(errors, conf, self.line_of(text, m), *words)
        # In file order: the first mistake's line first.
        nums = [int(re.match(r".*?:(\d+): ", e).group(1)) for e in errors]
        self.assertEqual(nums, sorted(nums))


class PerKind(CheckCase):
    def test_clean_config_passes(self):
        r, conf, errors = self.check(self.base())
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(errors, [])

    def test_parameter_and_restriction_typos_together(self):
        text = self.base() + ("smtpd_helo_requird = yes\n"
                              "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destinaton\n"
                              "smtpd_client_restrictions = permit_mynetwork, rejct\n")
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "smtpd_helo_requird"), "smtpd_helo_required")
        self.assertReported(errors, conf, self.line_of(text, "destinaton"), "reject_unauth_destination")
        # Every bad item of one list, not only the first.
        self.assertReported(errors, conf, self.line_of(text, "rejct"), "\"permit_mynetwork\"",
                            "\"permit_mynetworks\"", "\"rejct\"", "\"reject\"")
        self.assertEqual(len(errors), 3, "\n".join(errors))

    def test_listener_overrides_are_checked_with_the_rest(self):
        """A per-listener value (LISTENER.PARAM) has its restriction items
        and maps checked in the same run as the file's parameters."""
        text = self.base() + ("smtpd_helo_requird = yes\n"
                              "submission.smtpd_relay_restrictions = permit_sasl_authenticated, rejet\n"
                              "submission.smtpd_sender_restrictions = check_sender_access hash:%s\n"
                              % self.server.path("no-access"))
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "smtpd_helo_requird"), "smtpd_helo_required")
        self.assertReported(errors, conf, self.line_of(text, "rejet"), "did you mean \"reject\"")
        self.assertReported(errors, conf, self.line_of(text, "no-access"), "no-access", "No such file")
        self.assertEqual(len(errors), 3, "\n".join(errors))

    def test_bad_values_do_not_cause_follow_on_errors(self):
        """A refused value is not judged again by the modules' checks (it
        reads as its default there)."""
        text = self.base() + "mynetworks = 10.0.0.0/33\nmessage_size_limit = huge\n"
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(errors), 2, "\n".join(errors))
        self.assertNotIn(b"mailbox_size_limit", r.stderr)

    def test_missing_module(self):
        text = "module nosuchmod\n" + self.base() + "module imapp\n"
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, 1, "module nosuchmod", "cannot load")
        self.assertReported(errors, conf, self.line_of(text, "imapp"), "module imapp", "did you mean \"imap\"")
        self.assertEqual(len(errors), 2, "\n".join(errors))

    def test_parameters_of_a_module_that_did_not_load(self):
        """A module that fails to load leaves its parameters undeclared: one
        error names them as unchecked instead of a "did you mean" each, and a
        real typo of a known parameter is still reported on its own line."""
        text = (self.base() + "module imapx\n" +
                "imap_idle_inotify = yes\nimap_max_connections = 10\nmyhostnme = x\n")
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "module imapx"), "module imapx", "cannot load")
        self.assertReported(errors, conf, self.line_of(text, "imap_idle_inotify"), "not checked", "module imapx did not load",
                            "imap_idle_inotify", "imap_max_connections")
        self.assertReported(errors, conf, self.line_of(text, "myhostnme"), "unknown parameter \"myhostnme\"",
                            "did you mean \"myhostname\"")
        self.assertEqual(len(errors), 3, "\n".join(errors))
        self.assertNotIn("unknown parameter \"imap_", r.stderr.decode())

    def test_map_syntax(self):
        self.put("aliases", "postmaster alice\n")
        self.put("transport", "example.net\n")
        r, conf, errors = self.check(self.base())
        self.assertEqual(r.returncode, 1)
        text = self.base()
        self.assertReported(errors, conf, self.line_of(text, "alias_maps"), "aliases:1:", "need name: value pair")
        self.assertReported(errors, conf, self.line_of(text, "transport_maps"), "transport:1:", "no value")

    def test_unknown_transport_names(self):
        self.put("transport", "example.net foo:[192.0.2.1]\n.example.net local:\nexample.com :[192.0.2.2]\n"
                              "example.edu error:5.1.1 gone\n")
        text = self.base() + "default_transport = bar\nrelay_transport = relay\n"
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "transport_maps"), "transport:1:",
                            "no loaded module provides transport \"foo\"", "known: local, smtp")
        self.assertReported(errors, conf, self.line_of(text, "default_transport"), "\"bar\"")
        self.assertEqual(len(errors), 2, "\n".join(errors))

    def test_missing_map_files(self):
        text = "\n".join(l for l in self.base().splitlines() if not l.startswith(("alias_", "transport_maps")))
        text += ("\nalias_maps = hash:%s\nalias_database = hash:%s\ntransport_maps = hash:%s\n"
                 "smtpd_sender_restrictions = check_sender_access hash:%s\n"
                 % (self.server.path("no-aliases"), self.server.aliases_file, self.server.path("no-transport"),
                    self.server.path("no-access")))
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "alias_maps"), "no-aliases", "does not exist")
        self.assertReported(errors, conf, self.line_of(text, "transport_maps"), "no-transport", "does not exist")
        self.assertReported(errors, conf, self.line_of(text, "check_sender_access"), "no-access",
                            "No such file")
        self.assertEqual(len(errors), 3, "\n".join(errors))

    def test_lua_policy_load_and_tests(self):
        self.put("broken.lua", BROKEN_LUA)
        self.put("failing.lua", FAILING_TESTS_LUA)
        text = self.base() + ("smtpd_client_restrictions = check_lua_policy %s\n"
                              "smtpd_helo_restrictions = check_lua_policy %s\n"
                              "smtpd_sender_restrictions = check_lua_policy %s, reject_bogus_thing\n"
                              % (self.server.path("good.lua"), self.server.path("broken.lua"),
                                 self.server.path("failing.lua")))
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "smtpd_helo_restrictions"), "broken.lua")
        # The Lua tests of a list run even though the list also has a typo.
        self.assertReported(errors, conf, self.line_of(text, "smtpd_sender_restrictions"), "failing.lua",
                            "expected \"REJECT\"")
        self.assertReported(errors, conf, self.line_of(text, "smtpd_sender_restrictions"),
                            "unknown restriction \"reject_bogus_thing\"")
        self.assertEqual(len(errors), 3, "\n".join(errors))

    def test_colliding_listeners(self):
        port = self.server.ports["smtpd"]
        other = free_port()
        text = self.base() + ("submission_listen = %d\nsmtps_listen = 127.0.0.1:%d, [::1]:%d, 127.0.0.1:%d\n"
                              % (port, other, other, other))
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        # inet_interfaces = loopback-only: "PORT" is 127.0.0.1:PORT and [::1]:PORT.
        self.assertReported(errors, conf, self.line_of(text, "submission_listen"),
                            "127.0.0.1:%d collides with 127.0.0.1:%d of smtpd_listen" % (port, port))
        self.assertReported(errors, conf, self.line_of(text, "smtps_listen"), "same list")
        self.assertEqual(len(errors), 2, "\n".join(errors))

    def test_wildcard_collides_with_address(self):
        port = free_port()
        text = self.base() + "submission_listen = 0.0.0.0:%d\nsmtps_listen = 127.0.0.1:%d\n" % (port, port)
        r, conf, errors = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertReported(errors, conf, self.line_of(text, "smtps_listen"), "0.0.0.0:%d" % port)


class MissingMapAtStart(CheckCase):
    def test_start_refuses_missing_alias_file_as_check_does(self):
        """check and start agree: a missing alias file is an error for
        both (it would defer every local recipient), not a warning."""
        os.unlink(self.server.aliases_file)
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"does not exist", r.stderr)
        p = subprocess.run([BIN, "run", "-c", self.server.conf_file], capture_output=True, timeout=60,
                           env=self.server.env(), preexec_fn=self.server._preexec if self.server.run_user else None)
        self.assertEqual(p.returncode, 1, p.stderr.decode())
        self.assertRegex(p.stderr.decode(), r"%s:\d+: alias_maps: %s does not exist" %
                         (re.escape(self.server.conf_file), re.escape(self.server.aliases_file)))
        # An empty file is a valid table.
        with open(self.server.aliases_file, "w"):
            pass
        os.chmod(self.server.aliases_file, 0o644)
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr.decode())


class MapCheckTransports(CheckCase):
    def test_map_check_reports_unknown_transports(self):
        self.put("transport", "example.net foo:[192.0.2.1]\nexample.org smtp:[127.0.0.1]:2525\n"
                              ".example.org local:\n")
        conf = self.put("t.conf", self.base())
        tmap = self.server.path("transport")
        # The file is one of the config's transport_maps: checked as one.
        r = subprocess.run([BIN, "map", "check", "-c", conf, tmap], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn(("%s:1: example.net foo:[192.0.2.1]: no loaded module provides transport \"foo\"" % tmap)
                      .encode(), r.stderr)
        self.assertNotIn(b":2:", r.stderr)
        # -t for a file the config does not name.
        other = self.put("other", "example.com bar:\n")
        r = subprocess.run([BIN, "map", "check", "-t", "-c", conf, other], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"transport \"bar\"", r.stderr)
        # Without -t and not a transport map: only its syntax.
        r = subprocess.run([BIN, "map", "check", "-c", conf, other], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # Without the transport module loaded, smtp is unknown too.
        noconf = self.put("n.conf", "module_directory = %s\nmodule mbox\n" %
                          re.search(r"module_directory = (.*)", self.base()).group(1))
        r = subprocess.run([BIN, "map", "check", "-t", "-c", noconf, tmap], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"transport \"smtp\"", r.stderr)
        self.assertIn(b"known: local)", r.stderr)


if __name__ == "__main__":
    unittest.main()
