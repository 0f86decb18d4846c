"""The queue end to end: deferral of a locked mailbox and `postern queue
flush`, `queue list` / `delete`, bounces reaching the sender's mailbox,
alias fan-out, soft_bounce, and 10 clients x 50 messages into one mbox."""
import fcntl
import os
import re
import smtplib
import threading
import time
import unittest

from harness import Server, ServerTestCase, wait_for


def send(server, sender, rcpts, body, subject="t"):
    msg = "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <fanout.%d@example.com.ar>\r\n\r\n%s" % (
        sender, rcpts[0], subject, int(time.time() * 1000), body)
    with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=60) as c:
        c.ehlo("client.example.com.ar")
        c.mail(sender)
        for r in rcpts:
            code, _ = c.rcpt(r)
            assert code == 250, (r, code)
        code, text = c.data(msg.encode())
        return code, text.decode()


def queue_id(reply_text):
    m = re.search(r"queued as ([0-9A-F]+)", reply_text)
    return m.group(1) if m else None


class QueueTest(ServerTestCase, unittest.TestCase):
    server_args = {"modules": ("mbox", "alias", "smtp"),
                   "conf": "mbox_lock_timeout = 1s\nminimal_backoff_time = 300s\n"
                           "maximal_backoff_time = 600s\nmailbox_size_limit = 40000\n"}

    def lock_mbox(self, user):
        code, _ = send(self.server, "carol@example.com.ar", ["%s@example.com.ar" % user], "first\n")
        self.assertEqual(code, 250)
        self.server.wait_messages(user, 1)
        f = open(self.server.mbox_path(user), "r+")
        fcntl.lockf(f, fcntl.LOCK_EX)
        return f

    def test_locked_mailbox_deferred_then_flush_delivers(self):
        f = self.lock_mbox("alice")
        try:
            code, text = send(self.server, "carol@example.com.ar", ["alice@example.com.ar"], "second\n")
            self.assertEqual(code, 250)  # durable in the queue, not delivered
            qid = queue_id(text)
            self.server.wait_log("%s: to=<alice@example.com.ar>" % qid)
            self.assertIn("status=deferred", self.server.log())
            listing = self.server.cmd("queue", "list").stdout.decode()
            self.assertIn(qid, listing)
            self.assertIn("locked", listing)
            self.assertIn("alice@example.com.ar", listing)
            self.assertIn("1 Request.", listing)
            self.assertEqual(len(self.server.messages("alice")), 1)
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
            f.close()
        r = self.server.cmd("queue", "flush")
        self.assertEqual(r.returncode, 0, r.stderr)
        msgs = self.server.wait_messages("alice", 2)
        self.assertIn("second", msgs[1].get_payload())
        wait_for(lambda: "%s: removed" % qid in self.server.log(), what="removed")
        self.assertIn("Mail queue is empty", self.server.cmd("queue", "list").stdout.decode())

    def test_queue_delete(self):
        f = self.lock_mbox("bob")
        try:
            code, text = send(self.server, "carol@example.com.ar", ["bob@example.com.ar"], "doomed\n")
            qid = queue_id(text)
            self.server.wait_log("%s: to=<bob@example.com.ar>" % qid)
            r = self.server.cmd("queue", "delete", qid)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("removed", r.stdout.decode())
            r = self.server.cmd("queue", "delete", qid)
            self.assertEqual(r.returncode, 1)
            r = self.server.cmd("queue", "delete", "../../etc/passwd")
            self.assertEqual(r.returncode, 2)
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
            f.close()
        self.server.cmd("queue", "flush")
        time.sleep(2)
        self.assertEqual(len(self.server.messages("bob")), 1)
        self.assertIn("Mail queue is empty", self.server.cmd("queue", "list").stdout.decode())

    def test_queue_cli_usage(self):
        for args in (("queue",), ("queue", "frob"), ("queue", "delete"), ("queue", "list", "x")):
            r = self.server.cmd(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.decode().strip().splitlines()), 1)

    def test_full_mailbox_refused_at_data_when_delivered_inline(self):
        big = ("x" * 70 + "\n") * 900  # over mailbox_size_limit = 40000
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=60) as c:
            c.ehlo("client.example.com.ar")
            with self.assertRaises(smtplib.SMTPDataError) as e:
                c.sendmail("alice@example.com.ar", ["bob@example.com.ar"],
                           ("Subject: too big\r\n\r\n" + big).encode())
            self.assertEqual(e.exception.smtp_code, 552)
            self.assertTrue(e.exception.smtp_error.startswith(b"5.2.2 <bob@example.com.ar>: Mailbox full"),
                            e.exception.smtp_error)
            self.assertEqual(c.noop()[0], 250)  # the session goes on
        time.sleep(0.5)
        self.assertEqual(self.server.messages("bob"), [])
        self.assertEqual(self.server.messages("alice"), [])  # no bounce: the client was told
        self.assertEqual(os.path.getsize(self.server.mbox_path("bob")) if os.path.exists(self.server.mbox_path("bob"))
                         else 0, 0)

    def test_bounce_reaches_sender_mailbox(self):
        # Over mailbox_size_limit, and over the 50000 bytes a bounce quotes
        # in full (so the notice itself fits). Submitted with sendmail, no
        # client waits on the outcome, so the full mailbox bounces.
        big = ("x" * 70 + "\n") * 900
        r = self.server.cmd("sendmail", "-f", "alice@example.com.ar", "bob@example.com.ar",
                            input=("Subject: too big\n\n" + big).encode(), as_daemon_user=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        qid = wait_for(lambda: re.search(r"([0-9A-F]+): to=<bob@example.com.ar>, .*status=bounced", self.server.log()),
                       20, what="bounce of the big message").group(1)
        msgs = self.server.wait_messages("alice", 1)
        b = msgs[0]
        self.assertEqual(b["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(b["From"], "Mail Delivery System <MAILER-DAEMON@example.com.ar>")
        self.assertEqual(b.get_content_type(), "multipart/report")
        parts = b.get_payload()
        self.assertIn("This is the mail system at host mail.example.com.ar.", parts[0].get_payload())
        self.assertIn("<bob@example.com.ar>:", parts[0].get_payload())
        status = parts[1].get_payload()[1]
        self.assertEqual(status["Status"], "5.2.2")
        self.assertEqual(status["Action"], "failed")
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("Subject: too big", parts[2].get_payload())
        self.assertEqual(len(self.server.messages("bob")), 0)
        log = self.server.log()
        self.assertIn("%s: sender non-delivery notification:" % qid, log)
        self.assertRegex(log, r"%s: to=<bob@example.com.ar>, relay=local, .*dsn=5\.2\.2, status=bounced" % qid)
        self.assertRegex(log, r"[0-9A-F]+: from=<>, size=\d+, nrcpt=1 \(queue active\)")

    def test_message_already_delivered_to_recipient_bounces_as_loop(self):
        msg = ("Delivered-To: sysadmin@example.com.ar\r\nFrom: <carol@example.com.ar>\r\n"
               "Subject: looped\r\n\r\nround and round\r\n")
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=60) as c:
            c.ehlo("client.example.com.ar")
            self.assertEqual(c.sendmail("carol@example.com.ar", ["sysadmin@example.com.ar"], msg.encode()), {})
        bounce = self.server.wait_messages("carol", 1)[0]
        self.assertEqual(bounce["Subject"], "Undelivered Mail Returned to Sender")
        self.assertIn("mail forwarding loop for sysadmin@example.com.ar", str(bounce))
        self.assertIn("Status: 5.4.6", str(bounce))
        self.assertEqual(self.server.messages("alice"), [])
        self.assertEqual(self.server.messages("bob"), [])

    def test_alias_fanout_and_log_lines(self):
        code, text = send(self.server, "carol@example.com.ar", ["sysadmin@example.com.ar"], "to the admins\n")
        qid = queue_id(text)
        self.server.wait_messages("alice", 1)
        self.server.wait_messages("bob", 1)
        self.server.wait_log("%s: removed" % qid)
        log = self.server.log()
        self.assertIn("%s: from=<carol@example.com.ar>, size=" % qid, log)
        self.assertIn("postern/cleanup[", log)
        self.assertRegex(log, r"%s: message-id=<fanout\.[0-9]+@example\.com\.ar>" % qid)
        self.assertRegex(log, r"%s: to=<alice@example.com.ar>, orig_to=<sysadmin@example.com.ar>, relay=local, "
                              r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, "
                              r"status=sent \(delivered to mailbox\)" % qid)
        m = self.server.messages("alice")[0]
        # As Postfix's local(8): the recipient before alias expansion.
        self.assertEqual(m["Delivered-To"], "sysadmin@example.com.ar")
        self.assertEqual(m["X-Original-To"], "sysadmin@example.com.ar")


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class RootDeliveryTest(unittest.TestCase):
    """Privilege separation: the root delivery agent writes each mailbox
    with that recipient's identity (per-thread fsuid), in a root:mail 2775
    spool as /var/mail is."""

    def test_mailboxes_written_as_each_recipient(self):
        import grp
        s = Server(modules=("mbox", "alias", "smtp"), as_root=True, conf="mail_owner = nobody\n")
        self.addCleanup(s.cleanup)
        with open(s.passwd_file, "w") as f:
            for name, uid in (("alice", 1), ("bob", 2), ("carol", 3)):
                f.write("%s:{PLAIN}secret:%d:%d::%s::\n" % (name, uid, uid, s.path("home", name)))
        os.chown(s.path("spool"), 0, grp.getgrnam("mail").gr_gid)
        os.chmod(s.path("spool"), 0o2775)
        s.start()
        code, _ = send(s, "carol@example.com.ar", ["sysadmin@example.com.ar"], "as root\n")
        self.assertEqual(code, 250)
        s.wait_messages("alice", 1)
        s.wait_messages("bob", 1)
        self.assertEqual(os.stat(s.mbox_path("alice")).st_uid, 1)
        self.assertEqual(os.stat(s.mbox_path("bob")).st_uid, 2)
        # The worker that parses SMTP is not root.
        workers = [p for p in s.children() if os.stat("/proc/%d" % p).st_uid != 0]
        self.assertTrue(workers)


class SoftBounceTest(ServerTestCase, unittest.TestCase):
    """soft_bounce = yes: what would bounce is deferred and kept, logged as
    deferred by the local transport, and a waiting client hears 250."""
    server_args = {"modules": ("mbox", "alias", "smtp"),
                   "conf": "soft_bounce = yes\nminimal_backoff_time = 300s\nmailbox_size_limit = 40000\n"}

    def test_full_mailbox_is_deferred_not_refused_or_bounced(self):
        big = ("x" * 70 + "\n") * 900  # over mailbox_size_limit
        code, text = send(self.server, "alice@example.com.ar", ["bob@example.com.ar"], big, subject="too big")
        self.assertEqual(code, 250)
        qid = queue_id(text)
        self.server.wait_log("%s: to=<bob@example.com.ar>" % qid)
        self.assertRegex(self.server.log(), r"%s: to=<bob@example\.com\.ar>, relay=local, .*dsn=5\.2\.2, "
                                            r"status=deferred \(" % qid)
        self.assertIn(qid, self.server.cmd("queue", "list").stdout.decode())
        time.sleep(0.5)
        self.assertEqual(self.server.messages("alice"), [])  # no bounce
        self.assertEqual(self.server.messages("bob"), [])


class ConcurrencyTest(ServerTestCase, unittest.TestCase):
    server_args = {"modules": ("mbox", "smtp")}

    def test_ten_clients_fifty_messages_one_mailbox(self):
        errors = []

        def client(n):
            try:
                with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=120) as c:
                    c.ehlo("client%d.example.com.ar" % n)
                    for i in range(50):
                        token = "c%02d-m%02d" % (n, i)
                        body = "".join("%s line %d\r\n" % (token, k) for k in range(20))
                        msg = "Subject: %s\r\n\r\n%sEND %s\r\n" % (token, body, token)
                        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], msg.encode())
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        msgs = self.server.wait_messages("alice", 500, timeout=60)
        self.assertEqual(len(msgs), 500)
        seen = set()
        for m in msgs:
            token = m["Subject"]
            body = m.get_payload()
            self.assertTrue(body.endswith("END %s\n" % token), token)
            self.assertEqual(body.count(token), 21)
            seen.add(token)
        self.assertEqual(len(seen), 500)


if __name__ == "__main__":
    unittest.main()
