"""fetchmail against the real daemon, POP3 and IMAP, each through an MDA
that writes every message to its own file: keep with UIDL (a second run
fetches nothing, a third only what arrived since), no-keep (the maildrop
is emptied on the server), IMAP's fetch of unseen messages only; over
pop3s/imaps and STLS/STARTTLS on the plain ports, the certificate
checked against the test's CA (sslcertck). fetchmail hands the MDA the
message with LF line ends and, with `set invisible`, adds no Received
header: what it wrote must equal the appended bytes with LF ends."""
import os
import smtplib
import stat
import subprocess
import unittest

from clients_util import client_server, home, imap, message, need, run, seed, server_state, test_ca
from harness import test_cert, wait_for


@need("fetchmail")
class Fetchmail(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self)
        self.home = home(self)
        self.out = os.path.join(self.home, "delivered")
        os.makedirs(self.out)
        self.mda = os.path.join(self.home, "mda.sh")
        with open(self.mda, "w") as f:
            f.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\nexec cat > "%s/$(printf %%03d $n).eml"\n' % (self.out, self.out))
        os.chmod(self.mda, 0o755)
        self.msgs = [message(i) for i in range(5)]

    def rc(self, proto, port, tls, keep=True, extra="", cafile=None):
        """tls: "ssl" (implicit TLS) or "starttls" (STLS/STARTTLS required)."""
        tls_opts = "ssl" if tls == "ssl" else "sslproto 'TLS1.2+'"
        text = ("set no bouncemail\nset no syslog\nset invisible\n"
                "poll 127.0.0.1 service %d protocol %s %s\n"
                "  user alice there with password \"secret\" is root here\n"
                "  %s sslcertck sslcertfile %s\n"
                "  mda \"%s\"\n  %s %s\n"
                % (port, proto, "uidl" if proto == "POP3" else "", tls_opts, cafile or test_ca()[0], self.mda,
                   "keep" if keep else "nokeep", extra))
        path = os.path.join(self.home, ".fetchmailrc")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)   # fetchmail refuses a readable rc file
        return path

    def fetch(self, rcfile, want_mail=True):
        p = run(["fetchmail", "-f", rcfile, "-v", "--nosyslog", "--pidfile", os.path.join(self.home, "pid")],
                self.home, ok=False)
        log = (p.stdout + p.stderr).decode(errors="replace")
        # 0: mail retrieved, 1: none waiting (fetchmail's own exit codes)
        self.assertEqual(p.returncode, 0 if want_mail else 1, log[-4000:])
        return log

    def delivered(self):
        out = []
        for name in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, name), "rb") as f:
                out.append(f.read())
        return out

    def lf(self, msgs):
        return [m.replace(b"\r\n", b"\n") for m in msgs]

    def exists(self):
        c = imap(self.server)
        try:
            return int(c.select("INBOX", readonly=True)[1][0])
        finally:
            c.logout()

    def test_pop3_keep_uidl(self):
        seed(self.server, "INBOX", [(m, None) for m in self.msgs])
        rc = self.rc("POP3", self.server.ports["pop3s"], "ssl")
        log = self.fetch(rc)
        self.assertIn("POP3> UIDL", log)
        self.assertEqual(self.delivered(), self.lf(self.msgs))
        self.assertEqual(self.exists(), 5)
        # UIDL: nothing new, nothing fetched again
        log = self.fetch(rc, want_mail=False)
        self.assertEqual(len(self.delivered()), 5)
        new = message(9, "arrived later")
        seed(self.server, "INBOX", [(new, None)])
        self.fetch(rc)
        self.assertEqual(self.delivered(), self.lf(self.msgs + [new]))
        self.assertEqual(self.exists(), 6)

    def test_pop3_uidl_stable_across_expunge_and_restart(self):
        """The UIDLs fetchmail remembers stay those of the same messages
        after an IMAP session expunges one of them and the daemon
        restarts: nothing is fetched twice, nothing missed."""
        seed(self.server, "INBOX", [(m, None) for m in self.msgs])
        rc = self.rc("POP3", self.server.ports["pop3s"], "ssl")
        self.fetch(rc)
        c = imap(self.server)
        try:
            c.select("INBOX")
            c.store("2", "+FLAGS", "(\\Deleted)")
            self.assertEqual(c.expunge()[0], "OK")
        finally:
            c.logout()
        self.server.stop()
        self.server.start()
        self.fetch(rc, want_mail=False)
        new = message(9, "after the restart")
        seed(self.server, "INBOX", [(new, None)])
        self.fetch(rc)
        self.assertEqual(self.delivered(), self.lf(self.msgs + [new]))

    def test_pop3_stls_nokeep(self):
        seed(self.server, "INBOX", [(m, None) for m in self.msgs])
        log = self.fetch(self.rc("POP3", self.server.ports["pop3"], "starttls", keep=False))
        self.assertIn("POP3> STLS", log)
        self.assertEqual(self.delivered(), self.lf(self.msgs))
        self.assertEqual(self.exists(), 0)

    def test_imap_keep_unseen_only(self):
        seed(self.server, "INBOX", [(m, "(\\Seen)" if i in (1, 3) else None) for i, m in enumerate(self.msgs)])
        rc = self.rc("IMAP", self.server.ports["imaps"], "ssl")
        self.fetch(rc)
        want = [self.msgs[0], self.msgs[2], self.msgs[4]]
        self.assertEqual(self.delivered(), self.lf(want))
        # what it read is \Seen now, and stays on the server
        c = imap(self.server)
        try:
            c.select("INBOX", readonly=True)
            self.assertEqual(c.search(None, "UNSEEN")[1], [b""])
            self.assertEqual(c.search(None, "ALL")[1], [b"1 2 3 4 5"])
        finally:
            c.logout()
        self.fetch(rc, want_mail=False)
        new = message(9, "arrived later")
        seed(self.server, "INBOX", [(new, None)])
        self.fetch(rc)
        self.assertEqual(self.delivered(), self.lf(want + [new]))

    def test_imap_starttls_nokeep_fetchall(self):
        seed(self.server, "INBOX", [(m, "(\\Seen)" if i == 2 else None) for i, m in enumerate(self.msgs)])
        log = self.fetch(self.rc("IMAP", self.server.ports["imap"], "starttls", keep=False, extra="fetchall"))
        self.assertIn("STARTTLS", log)
        self.assertEqual(self.delivered(), self.lf(self.msgs))
        self.assertEqual(self.exists(), 0)

    def test_imap_idle_push(self):
        """fetchmail's IDLE mode (-d with `idle`): after its first poll it
        waits in IDLE; a message delivered through SMTP reaches its MDA
        without a new poll (within a generous bound; fetchmail's next
        poll would be 300 s away)."""
        seed(self.server, "INBOX", [(m, None) for m in self.msgs[:2]])
        rc = self.rc("IMAP", self.server.ports["imaps"], "ssl", extra="idle")
        log = os.path.join(self.home, "fetchmail.log")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home, "LANG": "C.UTF-8"}
        with open(log, "wb") as f:
            p = subprocess.Popen(["fetchmail", "-f", rc, "-v", "--nosyslog", "-d", "300", "-N",
                                  "--pidfile", os.path.join(self.home, "pid")], cwd=self.home, env=env,
                                 stdout=f, stderr=subprocess.STDOUT)

        def stop():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.addCleanup(stop)

        def idling():
            with open(log, errors="replace") as f:
                return "IMAP< + idling" in f.read() and len(self.delivered()) == 2
        wait_for(idling, 20, what="fetchmail idling after its first poll")
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as s:
            s.sendmail("x@example.com", ["alice@example.com.ar"],
                       "From: x@example.com\r\nSubject: pushed\r\nMessage-ID: <pushed@example.com>\r\n\r\nidle\r\n")
        wait_for(lambda: len(self.delivered()) == 3, 15, what="the pushed message at the MDA")
        stop()
        server = server_state(self.server, "INBOX")
        self.assertEqual(self.delivered()[2], server["<pushed@example.com>"][1].replace(b"\r\n", b"\n"))
        with open(log, errors="replace") as f:
            text = f.read()
        # it came through IDLE: the server's EXISTS ended the IDLE
        self.assertRegex(text, r"IMAP> A\d+ IDLE\n.*IMAP< \+ idling\n.*IMAP< \* 3 EXISTS\n(?:.*RECENT\n)?.*IMAP> DONE\n")

    def test_untrusted_certificate_refused(self):
        seed(self.server, "INBOX", [(self.msgs[0], None)])
        p = run(["fetchmail", "-f", self.rc("POP3", self.server.ports["pop3s"], "ssl", cafile=test_cert()[0]),
                 "-v", "--nosyslog", "--pidfile", os.path.join(self.home, "pid")], self.home, ok=False)
        self.assertNotIn(p.returncode, (0, 1))
        self.assertIn(b"certificate", (p.stdout + p.stderr).lower())
        self.assertEqual(self.delivered(), [])
        self.assertEqual(self.exists(), 1)


if __name__ == "__main__":
    unittest.main()
