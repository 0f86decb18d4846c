"""Scaling out: a front and two mailbox hosts, each a separate Postern in
its own network namespace (netns.py), and a client in a fourth:

    client --- front --- host1 (alice)
                    \\--- host2 (bob)

The front's passwd-file says `proxy=y host=ADDR` for each user and its
transport map routes each user's mail to the same host. Through the
front: mail to both users lands in the right host's mbox; IMAP and POP3
logins reach the right host and see only that mailbox; a wrong password
is refused at the front (the host never hears of it); a stopped host gives
a temporary error and loses nothing; the host logs the client's address
the front passed on (IMAP ID, believed from login_trusted_networks).

Skipped, loudly, only where the kernel refuses network namespaces."""
import imaplib
import os
import poplib
import shutil
import signal
import smtplib
import subprocess
import tempfile
import unittest
import uuid

import netns
from harness import SANITIZE, Server, free_port, wait_for

# Above proxy_timeout (10s) with room for a loaded machine: a front that
# gives up on a host must be heard giving up.
TIMEOUT = 60 if SANITIZE else 30
WHY_NOT = netns.unavailable_reason()
if WHY_NOT:
    print("\n*** test_proxy SKIPPED: %s ***\n" % WHY_NOT, flush=True)

MODULES_HOST = ("mbox", "smtp", "imap", "pop3")
MODULES_FRONT = ("mbox", "transport", "smtp", "imap", "pop3")
COMMON = ("auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\nauth_mechanisms = plain login\n")


def message(rcpt, subject):
    return ("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n"
            "body of %s\r\n" % (rcpt, subject, uuid.uuid4().hex, subject))


def insecure_tls():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def host_cert(ips):
    """A self-signed certificate naming the hosts' addresses: the hosts
    serve it, the front trusts it as proxy_tls_ca_file."""
    d = tempfile.mkdtemp(prefix="postern-proxy-cert-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=mailbox hosts",
                    "-addext", "subjectAltName=" + ",".join("IP:" + i for i in ips)],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)
    return d, cert, key


class Topology:
    """The topology and the tests every variant runs (mixed into the
    TestCases at the end with the checks that apply to each)."""
    PROXY_TLS = "no"

    @classmethod
    def setUpClass(cls):
        cls.topo = netns.Topology()
        try:
            cls._build()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _build(cls):
        t = cls.topo
        for role in ("client", "front", "host1", "host2"):
            t.add(role)
        cls.client_ip, cls.front_ip = t.link("client", "front")
        cls.front_ip1, cls.host1_ip = t.link("front", "host1")
        cls.front_ip2, cls.host2_ip = t.link("front", "host2")
        cls.servers = []

        # The two mailbox hosts: the same ports (each has its own stack).
        ports = {l: free_port() for l in ("smtpd", "submission", "imap", "pop3", "imaps", "pop3s")}
        tls_conf = ""
        if cls.PROXY_TLS != "no":
            cls.certdir, cert, key = host_cert([cls.host1_ip, cls.host2_ip])
            tls_conf = "ssl_cert = <%s\nssl_key = <%s\n" % (cert, key)
        cls.hosts = {}
        for name, ip, front_side, user in (("host1", cls.host1_ip, cls.front_ip1, "alice"),
                                           ("host2", cls.host2_ip, cls.front_ip2, "bob")):
            s = Server(modules=MODULES_HOST, users=(user,), listeners=tuple(ports),
                       netns=t.hosts[name], listen_addr=ip)
            s.ports.update(ports)
            # disable_plaintext_auth stays on (the default): the front,
            # in login_trusted_networks, may log in without TLS all the same.
            s.write_conf("passdb = passwd-file:%s\n%s%s"
                         "login_trusted_networks = %s/32\n"
                         "smtpd_authorized_xclient_hosts = %s/32\n%s"
                         % (s.passwd_file, COMMON, tls_conf, front_side, front_side,
                            # Without TLS from the front, its submission need not be encrypted.
                            "submission.smtpd_tls_security_level = may\n" if cls.PROXY_TLS == "no" else ""))
            cls.servers.append(s)
            cls.hosts[name] = s
        cls.ports = ports

        f = Server(modules=MODULES_FRONT, users=(), listeners=("smtpd", "submission", "imap", "pop3"),
                   netns=t.hosts["front"], listen_addr=cls.front_ip)
        with open(f.passwd_file, "w") as fh:
            fh.write("alice:{PLAIN}secret::::%s:: proxy=y host=%s\n" % (f.path("home"), cls.host1_ip))
            fh.write("bob:{PLAIN}secret::::%s:: proxy host=%s\n" % (f.path("home"), cls.host2_ip))
        transport = f.path("transport")
        with open(transport, "w") as fh:
            fh.write("alice@example.com.ar smtp:[%s]:%d\n" % (cls.host1_ip, ports["smtpd"]))
            fh.write("bob@example.com.ar smtp:[%s]:%d\n" % (cls.host2_ip, ports["smtpd"]))
        implicit = cls.PROXY_TLS == "yes"
        f.write_conf("passdb = passwd-file:%s\n%s"
                     "mydestination = front.example.net\n"
                     "relay_domains = example.com.ar\n"
                     "transport_maps = hash:%s\n"
                     "disable_plaintext_auth = no\n"
                     "proxy_imap_port = %d\nproxy_pop3_port = %d\nproxy_timeout = 10s\n"
                     "proxy_submission_port = %d\n"
                     "proxy_tls = %s\n%s"
                     % (f.passwd_file, COMMON, transport, ports["imaps" if implicit else "imap"],
                        ports["pop3s" if implicit else "pop3"], ports["submission"], cls.PROXY_TLS,
                        ("proxy_tls_ca_file = %s\n" % os.path.join(cls.certdir, "cert.pem"))
                        if cls.PROXY_TLS != "no" else ""))
        cls.servers.append(f)
        cls.front = f
        for s in cls.servers:
            s.start()

    @classmethod
    def _teardown(cls):
        for s in getattr(cls, "servers", []):
            s.cleanup()
        cls.topo.close()
        if getattr(cls, "certdir", None):
            shutil.rmtree(cls.certdir, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls._teardown()

    # ---- clients, from the client's namespace ----

    def smtp(self):
        with self.topo.hosts["client"].inside():
            return smtplib.SMTP(self.front_ip, self.front.ports["smtpd"], timeout=TIMEOUT)

    def imap(self):
        with self.topo.hosts["client"].inside():
            return imaplib.IMAP4(self.front_ip, self.front.ports["imap"], timeout=TIMEOUT)

    def pop3(self):
        with self.topo.hosts["client"].inside():
            return poplib.POP3(self.front_ip, self.front.ports["pop3"], timeout=TIMEOUT)

    def send(self, rcpt, subject):
        with self.smtp() as c:
            c.ehlo("client.example.net")
            c.sendmail("sender@example.net", [rcpt], message(rcpt, subject))

    def subjects(self, host, user):
        return [m["Subject"] for m in self.hosts[host].messages(user)]

    def wait_subject(self, host, user, subject):
        wait_for(lambda: subject in self.subjects(host, user), TIMEOUT,
                 what="%r in %s's mbox on %s" % (subject, user, host))

    # ---- the tests ----

    def test_smtp_routes_each_user_to_their_host(self):
        s1, s2 = "to-alice-" + uuid.uuid4().hex[:8], "to-bob-" + uuid.uuid4().hex[:8]
        self.send("alice@example.com.ar", s1)
        self.send("bob@example.com.ar", s2)
        self.wait_subject("host1", "alice", s1)
        self.wait_subject("host2", "bob", s2)
        # Nothing misrouted: no mbox for the other user on either host.
        self.assertEqual(self.hosts["host1"].messages("bob"), [])
        self.assertEqual(self.hosts["host2"].messages("alice"), [])
        self.assertNotIn(s2, self.subjects("host1", "alice"))

    def test_imap_login_through_front_sees_own_host(self):
        only1, only2 = "imap-a-" + uuid.uuid4().hex[:8], "imap-b-" + uuid.uuid4().hex[:8]
        self.send("alice@example.com.ar", only1)
        self.send("bob@example.com.ar", only2)
        self.wait_subject("host1", "alice", only1)
        self.wait_subject("host2", "bob", only2)
        for user, mine, other in (("alice", only1, only2), ("bob", only2, only1)):
            c = self.imap()
            try:
                typ, data = c.login(user, "secret")
                self.assertEqual(typ, "OK", data)
                typ, _ = c.select("INBOX")
                self.assertEqual(typ, "OK")
                typ, data = c.search(None, "SUBJECT", mine)
                self.assertTrue(data[0].split(), "%s does not see %s" % (user, mine))
                typ, data = c.search(None, "SUBJECT", other)
                self.assertEqual(data[0].split(), [], "%s sees the other host's mail" % user)
                c.logout()
            finally:
                try:
                    c.shutdown()
                except OSError:
                    pass
        # Logged at the front as proxied, at the host with the client's address.
        self.front.wait_log("proxy=%s%s" % (self.host1_ip, " (TLS)" if self.PROXY_TLS != "no" else ""))
        self.hosts["host1"].wait_log("proxied by %s: rip=%s" % (self.front_ip1, self.client_ip))
        self.hosts["host1"].wait_log("user=<alice>, method=PLAIN, rip=%s" % self.client_ip)

    def test_pop3_login_through_front_sees_own_host(self):
        subj = "pop-b-" + uuid.uuid4().hex[:8]
        self.send("bob@example.com.ar", subj)
        self.wait_subject("host2", "bob", subj)
        c = self.pop3()
        try:
            c.user("bob")
            self.assertTrue(c.pass_("secret").startswith(b"+OK"))
            n, _ = c.stat()
            found = False
            for i in range(1, n + 1):
                if subj.encode() in b"\n".join(c.top(i, 0)[1]):
                    found = True
            self.assertTrue(found, "bob's POP3 session does not show %s" % subj)
            c.quit()
        finally:
            c.close()
        self.front.wait_log("proxy=%s" % self.host2_ip)
        # XCLIENT from the front (login_trusted_networks): the host names the client.
        self.hosts["host2"].wait_log("proxied by %s: rip=%s" % (self.front_ip2, self.client_ip))
        self.hosts["host2"].wait_log("user=<bob>, method=PLAIN, rip=%s" % self.client_ip)

    def test_wrong_password_refused_at_front(self):
        before = self.hosts["host1"].log()
        c = self.imap()
        try:
            with self.assertRaises(imaplib.IMAP4.error) as e:
                c.login("alice", "wrong")
            self.assertIn("AUTHENTICATIONFAILED", str(e.exception))
        finally:
            c.shutdown()
        p = self.pop3()
        try:
            p.user("bob")
            with self.assertRaises(poplib.error_proto):
                p.pass_("wrong")
        finally:
            p.close()
        self.front.wait_log("auth failed: user=<alice>")
        # The host never heard of it: no new connection in its log.
        logins = [l for l in self.hosts["host1"].log()[len(before):].splitlines()
                  if "Login" in l or "login" in l or "auth" in l or "proxied by" in l]
        self.assertEqual(logins, [])

    def test_submission_wrong_password_and_unauthorized_xclient(self):
        with self.topo.hosts["client"].inside():
            c = smtplib.SMTP(self.front_ip, self.front.ports["submission"], timeout=TIMEOUT)
        with c:
            c.ehlo("laptop.example.net")
            c.starttls(context=insecure_tls())
            c.ehlo("laptop.example.net")
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                c.login("alice", "wrong")
        # The front may XCLIENT; anyone else (here: the host's own address,
        # not in smtpd_authorized_xclient_hosts) may not.
        with self.topo.hosts["front"].inside():
            h = smtplib.SMTP(self.host1_ip, self.ports["smtpd"], timeout=TIMEOUT)
        with h:
            h.ehlo("front.example.net")
            self.assertIn("xclient", h.esmtp_features)
        with self.topo.hosts["host1"].inside():
            h = smtplib.SMTP(self.host1_ip, self.ports["smtpd"], timeout=TIMEOUT)
        with h:
            h.ehlo("x")
            self.assertNotIn("xclient", h.esmtp_features)
            code, msg = h.docmd("XCLIENT", "ADDR=192.0.2.1 LOGIN=alice")
            self.assertEqual(code, 550, msg)
            code, msg = h.docmd("MAIL", "FROM:<alice@example.com.ar>")
            self.assertEqual(code, 250, msg)
        self.assertNotIn("192.0.2.1", self.hosts["host1"].log())

    def imap_login_result(self, user):
        c = self.imap()
        try:
            return c.login(user, "secret")[0]
        except imaplib.IMAP4.error as e:
            return str(e)
        finally:
            try:
                c.shutdown()
            except OSError:
                pass

    def test_zz_backend_down_is_temporary_and_loses_nothing(self):
        host2 = self.hosts["host2"]
        host2.stop()
        try:
            c = self.imap()
            try:
                with self.assertRaises(imaplib.IMAP4.error) as e:
                    c.login("bob", "secret")
                self.assertIn("UNAVAILABLE", str(e.exception))
            finally:
                c.shutdown()
            p = self.pop3()
            try:
                p.user("bob")
                with self.assertRaises(poplib.error_proto) as e:
                    p.pass_("secret")
                self.assertIn(b"[SYS/TEMP]", e.exception.args[0])
            finally:
                p.close()
            self.front.wait_log("proxy: user=<bob>")
            with self.topo.hosts["client"].inside():
                sm = smtplib.SMTP(self.front_ip, self.front.ports["submission"], timeout=TIMEOUT)
            with sm:
                sm.ehlo("laptop.example.net")
                sm.starttls(context=insecure_tls())
                sm.ehlo("laptop.example.net")
                with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
                    sm.login("bob", "secret")
                self.assertEqual(e.exception.smtp_code, 454)
            # Mail for bob waits in the front's queue meanwhile.
            subj = "while-down-" + uuid.uuid4().hex[:8]
            self.send("bob@example.com.ar", subj)
        finally:
            host2.start()
        # Once the host is back, a flush delivers what waited.
        self.front.cmd("queue", "flush")
        self.wait_subject("host2", "bob", subj)
        c = self.imap()
        try:
            self.assertEqual(c.login("bob", "secret")[0], "OK")
            c.logout()
        finally:
            try:
                c.shutdown()
            except OSError:
                pass


class CleanStop:
    """Last: every instance stops cleanly after all that proxying (under
    ASan + UBSan, a leak or error in any process shows on its stderr)."""

    def test_zzz_clean_stop(self):
        for s in self.servers:
            proc = s.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            text = err.decode(errors="replace")
            self.assertEqual(proc.returncode, 0, text)
            self.assertNotIn("Sanitizer", text)
            self.assertNotIn("runtime error", text)


class SubmissionChecks:
    """Submission is proxied in plaintext or with STARTTLS (there is no
    smtps to the hosts), so only those variants run it."""

    def test_submission_through_front_reaches_host(self):
        """AUTH at the front; the session goes on at alice's host, which
        learns the client and the login by XCLIENT and takes the mail."""
        subj = "submitted-" + uuid.uuid4().hex[:8]
        with self.topo.hosts["client"].inside():
            c = smtplib.SMTP(self.front_ip, self.front.ports["submission"], timeout=TIMEOUT)
        with c:
            c.ehlo("laptop.example.net")
            c.starttls(context=insecure_tls())
            c.ehlo("laptop.example.net")
            c.login("alice", "secret")
            c.sendmail("alice@example.com.ar", ["alice@example.com.ar"], message("alice@example.com.ar", subj))
        self.wait_subject("host1", "alice", subj)
        self.hosts["host1"].wait_log("xclient from %s: client=unknown[%s], sasl_username=alice"
                                     % (self.front_ip1, self.client_ip))
        received = self.hosts["host1"].messages("alice")[-1].get_all("Received")
        self.assertIn(self.client_ip, received[-1] if len(received) == 1 else "\n".join(received))


class TLSChecks:

    def test_untrusted_host_certificate_refused(self):
        """With a CA the hosts' certificate does not chain to, the front
        gives up before sending the password: a temporary error."""
        from harness import test_cert
        conf = self.front.extra_conf
        other_ca, _ = test_cert()
        self.front.write_conf(conf.replace(os.path.join(self.certdir, "cert.pem"), other_ca))
        try:
            self.front.reload()
            wait_for(lambda: "UNAVAILABLE" in self.imap_login_result("alice"), TIMEOUT,
                     what="a refused certificate")
            self.front.wait_log("certificate verify failed")
        finally:
            self.front.write_conf(conf)
            self.front.reload()
        wait_for(lambda: self.imap_login_result("alice") == "OK", TIMEOUT, what="logins again")


@unittest.skipIf(WHY_NOT, "network namespaces unavailable: %s" % WHY_NOT)
class ProxyPlain(Topology, SubmissionChecks, CleanStop, unittest.TestCase):
    """The front talks plaintext to the hosts (a trusted LAN)."""
    PROXY_TLS = "no"


@unittest.skipIf(WHY_NOT, "network namespaces unavailable: %s" % WHY_NOT)
class ProxyStartTLS(Topology, SubmissionChecks, TLSChecks, CleanStop, unittest.TestCase):
    """The same through STARTTLS to the hosts, whose certificate the front
    checks against proxy_tls_ca_file and the host's address (the front's
    log line says TLS)."""
    PROXY_TLS = "starttls"


@unittest.skipIf(WHY_NOT, "network namespaces unavailable: %s" % WHY_NOT)
class ProxyImplicitTLS(Topology, TLSChecks, CleanStop, unittest.TestCase):
    """The same over the hosts' IMAPS/POP3S ports (proxy_tls = yes)."""
    PROXY_TLS = "yes"


if __name__ == "__main__":
    unittest.main()
