"""The mbox store's header cache (postern.hcache, issue 15) gives the same
answers as reading the mbox: one server with mbox_header_cache = no is the
reference, a second one with the cache (the default) serves the same folder,
and every FETCH ENVELOPE / HEADER.FIELDS, SEARCH header key, SORT and
THREAD answer must be byte for byte the same with the cache cold, warm in
the session, loaded from disk by a new session, after a mailx-style append
and an in-place change of a message by another program, after another
session's EXPUNGE, and with the cache file truncated or overwritten with
garbage. The SORT keys kept with the cache (base subject, FROM key and
their ranks) are checked the same way, also after another session's
APPEND and STORE."""
import os
import random
import stat
import time
import unittest

from test_imap_fetch import Client, imap_server, write_mbox, T0, mbox_from_line


def folder():
    """About 60 messages: threads by References and In-Reply-To, encoded
    and folded subjects, several To/Cc fields, upper/lower case names, a
    line that is no field, a References too long for the cache, a message
    with none of the cached fields."""
    rnd = random.Random(15)
    names = ["Alice Example <alice@example.com>", "bob@example.com", "\"Carl, Jr.\" <carl@x.org>",
             "=?UTF-8?Q?J=C3=B6rg?= <joerg@example.de>", "dave@example.net (Dave)", "Eve <eve@y>"]
    msgs = []
    for i in range(1, 61):
        h = []
        h.append("Received: from relay%d by mx; Sat, 28 Nov 2026 06:00:00 +0000" % i)
        h.append(("From" if i % 7 else "FROM") + ": " + names[i % len(names)])
        h.append("To: " + names[(i + 1) % len(names)])
        if i % 3 == 0:
            h.append("Cc: " + names[(i + 2) % len(names)] + ",\n\t" + names[(i + 4) % len(names)])
        if i % 11 == 0:
            h.append("To: second-to@example.com")
        subj = rnd.choice(["Meeting", "Re: Meeting", "Fwd: plans", "[list] Re: plans",
                           "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "lunch (fwd)", "Quarterly\n numbers folded"])
        h.append("Subject: %s %d" % (subj, i % 5))
        h.append("Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0100", time.gmtime(T0 - i * 3600 * rnd.randint(1, 40))))
        # Message-IDs for the index (SEARCH HEADER Message-ID is a
        # case-insensitive substring match): a duplicate, case and blanks,
        # folded, encoded, two fields, nested, unclosed, several ids.
        h.append({30: "Message-ID: <m29@example.com>",
                  31: "Message-ID:   <M31@Example.COM>  \t",
                  32: "Message-ID: <m32@example.com>\n (folded comment)",
                  33: "Message-ID: =?UTF-8?Q?=3Cm33@example.com=3E?=",
                  34: "Message-ID: <m34@example.com>\nX-Between: 1\nmessage-id: <second34@example.com>",
                  35: "Message-ID: <<m35@example.com>>",
                  36: "Message-ID: <m36@example.com",
                  37: "Message-ID: x<m37@example.com>y <other37@example.com>",
                  38: "Message-ID: <a<m38@example.com>"}.get(i, "Message-ID: <m%d@example.com>" % i))
        if i > 1 and i % 4 == 0:
            h.append("In-Reply-To: <m%d@example.com>" % (i - 1))
        if i > 2 and i % 5 == 0:
            h.append("References: <m%d@example.com>\n <m%d@example.com>" % (i - 2, i - 1))
        if i % 9 == 0:
            h.append("Content-Type: text/plain;\n charset=utf-8")
        h.append("X-Custom: value %d" % i)
        if i == 13:
            h.append("this line is no field")
        if i == 17:
            h.append("References: " + "\n ".join("<r%d-long-reference@example.com>" % k for k in range(800)))
        if i == 23:
            h = ["X-Only: nothing cached here"]
        msgs.append(("\n".join(h) + "\n\nbody of %d\nmeeting lunch\n" % i, T0 + i * 60))
    return msgs


QUERIES = [
    "FETCH 1:* (UID ENVELOPE)",
    "FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References In-Reply-To)])",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (subject content-type)]<3.20>)",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (X-Custom Subject)])",
    "SEARCH HEADER Message-ID <m17@example.com>",
    # An exact id is answered from the cache's Message-ID index once it
    # is on disk; any other form by looking at every message.
    "SEARCH HEADER Message-ID <m29@example.com>",
    "SEARCH HEADER Message-ID <m31@example.com>",
    "SEARCH HEADER Message-ID <M31@EXAMPLE.com>",
    "SEARCH HEADER MESSAGE-ID <m32@example.com>",
    "SEARCH HEADER Message-ID <m33@example.com>",
    "SEARCH HEADER Message-ID <m34@example.com>",
    "SEARCH HEADER Message-ID <second34@example.com>",
    "SEARCH HEADER Message-ID <m35@example.com>",
    "SEARCH HEADER Message-ID <<m35@example.com>",
    "SEARCH HEADER Message-ID <m36@example.com>",
    "SEARCH HEADER Message-ID <m37@example.com>",
    "SEARCH HEADER Message-ID <other37@example.com>",
    "SEARCH HEADER Message-ID <m38@example.com>",
    "SEARCH HEADER Message-ID <a<m38@example.com>",
    "SEARCH HEADER Message-ID <m12@example.com>",
    "SEARCH HEADER Message-ID <m5@example.com>",
    "SEARCH HEADER Message-ID <m5-changed-by-another-program@example.com>",
    "SEARCH HEADER Message-ID <late@example.com>",
    "SEARCH HEADER Message-ID <nowhere@example.com>",
    "UID SEARCH UNDELETED HEADER Message-ID <m4@example.com>",
    "SEARCH (SEEN HEADER Message-ID <m4@example.com>)",
    "SEARCH OR HEADER Message-ID <m7@example.com> HEADER Message-ID <m8@example.com>",
    "SEARCH NOT HEADER Message-ID <m9@example.com>",
    "SEARCH HEADER Message-ID m17@example.com>",
    "SEARCH HEADER Message-ID <m1",
    "SEARCH HEADER Message-ID <>",
    "SEARCH HEADER Message-ID m2",
    "SEARCH HEADER References m3",
    "SEARCH HEADER Subject \"\"",
    "SEARCH HEADER X-Custom 4",
    "SEARCH FROM alice",
    "SEARCH FROM \"carl, jr\"",
    "SEARCH TO bob",
    "SEARCH CC dave",
    "SEARCH BCC x",
    "SEARCH SUBJECT meeting",
    "SEARCH CHARSET UTF-8 SUBJECT gr\xfc",
    "SEARCH SUBJECT numbers",
    "SEARCH SENTSINCE 27-Nov-2026",
    "SEARCH OR FROM eve BODY lunch",
    "SEARCH NOT FROM alice SUBJECT plans",
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (FROM) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (TO CC SIZE) UTF-8 ALL",
    "SORT (DISPLAYFROM DISPLAYTO) UTF-8 ALL",
    "SORT (ARRIVAL) UTF-8 FROM alice",
    # The SORT keys kept with the cache and their ranks: reversed, mixed
    # with other keys, over a part of the folder, ESORT.
    "SORT (REVERSE SUBJECT) UTF-8 ALL",
    "SORT (FROM SUBJECT) UTF-8 ALL",
    "SORT (REVERSE FROM ARRIVAL) UTF-8 ALL",
    "UID SORT (SUBJECT) UTF-8 UID 10:40",
    "SORT (FROM) UTF-8 NOT SUBJECT meeting",
    "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL",
    # Without message 17 (too big to cache, so never ranked): every key
    # ranked, sorted by ranks alone.
    "SORT (SUBJECT) UTF-8 UID 18:*",
    "SORT (REVERSE SUBJECT) UTF-8 UID 18:*",
    "UID SORT (FROM) UTF-8 UID 18:*",
    "SORT (REVERSE FROM) UTF-8 UID 18:*",
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    # Thread answers are kept per set of messages (postern.answer.*).
    "UID THREAD REFERENCES UTF-8 ALL",
    "THREAD REFERENCES UTF-8 SUBJECT meeting",
    "THREAD ORDEREDSUBJECT UTF-8 UID 40:50",   # numbers move with an expunge below
    "UID THREAD ORDEREDSUBJECT UTF-8 UID 5:50",
    "THREAD REFERENCES UTF-8 ALL",
]


def answers(c):
    out = []
    for q in QUERIES:
        if "\xfc" in q:
            data = q.replace("gr\xfc", "{4+}").encode()
            tag = c.tag()
            c.sock.sendall(tag.encode() + b" " + data + b"\r\ngr\xc3\xbc\r\n")
            untagged, tagged = c.collect(tag)
        else:
            untagged, tagged = c.cmd(q)
        assert " OK " in tagged, (q, tagged)
        out.append((q, untagged))
    return out


class HeaderCacheTest(unittest.TestCase):
    def setUp(self):
        self.ref = imap_server(self)
        self.ref.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nmbox_header_cache = no\n"
                            % self.ref.passwd_file)
        self.hc = imap_server(self)
        self.servers = (self.ref, self.hc)
        for s in self.servers:
            write_mbox(s, "alice", folder())
            s.start()

    def cache_file(self, s):
        return s.path("home", "alice", "mail", ".imap", "INBOX", "postern.hcache")

    def session(self, s):
        c = Client(s.ports["imap"])
        self.addCleanup(c.close)
        _, tagged = c.cmd("SELECT INBOX")
        self.assertIn(" OK ", tagged)
        return c

    def same(self, what, ca, cb):
        a, b = answers(ca), answers(cb)
        for (q, ua), (_, ub) in zip(a, b):
            self.assertEqual(ua, ub, "%s: %s differs with the cache" % (what, q))

    def logout(self, c, s):
        c.cmd("LOGOUT")
        c.close()

    def wait_cache(self, before=None):
        p = self.cache_file(self.hc)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                st = os.lstat(p)
                if before is None or (st.st_mtime_ns, st.st_ino) != before:
                    return st
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        self.fail("no header cache written at %s" % p)

    def append_mailx(self, s, text, when):
        # What mail(1) or local delivery does: append to the file.
        with open(s.mbox_path("alice"), "a") as f:
            f.write(mbox_from_line("someone@example.com", when) + text + "\n")

    def rewrite_message(self, s, old, new):
        # Another program rewrites the file (new inode) with one subject
        # longer: that message's text and everything after it moves.
        p = s.mbox_path("alice")
        with open(p, newline="") as f:
            text = f.read()
        self.assertIn(old, text)
        st = os.stat(p)
        with open(p + ".new", "w", newline="") as f:
            f.write(text.replace(old, new, 1))
        os.chown(p + ".new", st.st_uid, st.st_gid)
        os.chmod(p + ".new", 0o600)
        os.rename(p + ".new", p)

    def test_same_answers_in_every_state(self):
        ra, ca = self.session(self.ref), self.session(self.hc)
        self.same("cold", ra, ca)
        self.same("warm", ra, ca)
        self.logout(ra, self.ref)
        self.logout(ca, self.hc)
        # Saved at the close, as the user, mode 0600, no symlink.
        st = self.wait_cache()
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.stat(self.hc.mbox_path("alice")).st_uid)
        self.assertFalse(os.path.exists(self.cache_file(self.ref)))
        with open(self.cache_file(self.hc), "rb") as f:
            saved = f.read()
        # The sort keys were kept (as compared: upper case, NUL-ended).
        self.assertIn(b"MEETING 4\x00", saved)
        self.assertIn(b"ALICE\x00", saved)
        ra, ca = self.session(self.ref), self.session(self.hc)
        self.same("from disk", ra, ca)

        # Another session appends (a subject that sorts first, one that
        # sorts between ranked ones) and changes flags.
        for s in self.servers:
            o = self.session(s)
            for n, m in enumerate((b"From: Aaron <aaron@example.com>\r\nSubject: Re: AAA first\r\n"
                                   b"Message-ID: <M12@example.com>\r\n\r\nx\r\n",
                                   b"From: mid@example.com\r\nSubject: Fwd: Meeting 2\r\n\r\ny\r\n")):
                tag = o.tag()
                o.sock.sendall(tag.encode() + b' APPEND INBOX "07-Dec-2026 10:0%d:00 +0000" {%d+}\r\n'
                               % (n, len(m)) + m + b"\r\n")
                self.assertIn(" OK ", o.collect(tag)[1])
            self.assertIn(" OK ", o.cmd("STORE 2:9 +FLAGS.SILENT (\\Seen)")[1])
            self.logout(o, s)
        for c in (ra, ca):
            c.cmd("NOOP")
        self.same("after another session's APPEND and STORE", ra, ca)

        # A mailx-style append and another program's rewrite of message 5.
        for s in self.servers:
            self.append_mailx(s, "From: late@example.com\nSubject: Re: Meeting 4\n"
                                 "Message-ID: <late@example.com>\nReferences: <m4@example.com>\n\nlate\n",
                              T0 + 10000)
            self.rewrite_message(s, "Message-ID: <m5@example.com>",
                                 "Message-ID: <m5-changed-by-another-program@example.com>")
        for c in (ra, ca):
            c.cmd("NOOP")
        self.same("after an outside append and rewrite", ra, ca)

        # Another session expunges two messages.
        for s in self.servers:
            o = self.session(s)
            o.cmd("STORE 3,30 +FLAGS.SILENT (\\Deleted)")
            _, tagged = o.cmd("EXPUNGE")
            self.assertIn(" OK ", tagged)
            self.logout(o, s)
        for c in (ra, ca):
            c.cmd("NOOP")
        self.same("after another session's EXPUNGE", ra, ca)
        before = os.lstat(self.cache_file(self.hc))
        self.logout(ra, self.ref)
        self.logout(ca, self.hc)
        self.wait_cache((before.st_mtime_ns, before.st_ino))

        # Damaged kept answers are not given back.
        d = os.path.dirname(self.cache_file(self.hc))
        kept = sorted(x for x in os.listdir(d) if x.startswith("postern.answer."))
        self.assertEqual(kept, ["postern.answer.thread-refs-seq-all", "postern.answer.thread-refs-seq-part",
                                "postern.answer.thread-refs-uid-all", "postern.answer.thread-subj-seq-all",
                                "postern.answer.thread-subj-seq-part", "postern.answer.thread-subj-uid-part"])
        for name in kept:
            ap = os.path.join(d, name)
            with open(ap, "rb") as f:
                good_answer = f.read()
            body = bytearray(good_answer)
            body[-3] ^= 0x01                         # a digit of the answer
            head = bytearray(good_answer)
            head[24] ^= 0x01                         # the fingerprint
            for bad in (good_answer[:20], good_answer[:-1], bytes(body), bytes(head),
                        good_answer + b"1"):
                with open(ap, "wb") as f:
                    f.write(bad)
                ra, ca = self.session(self.ref), self.session(self.hc)
                self.same("with a damaged %s (%d octets)" % (name, len(bad)), ra, ca)
                self.logout(ra, self.ref)
                self.logout(ca, self.hc)

        # A damaged cache file is ignored and rebuilt.
        p = self.cache_file(self.hc)
        with open(p, "rb") as f:
            good = f.read()
        rnd = random.Random(7)
        damaged = [good[:len(good) // 2], good[:40], b"",
                   good[:8] + bytes(rnd.randrange(256) for _ in range(len(good) - 8)),
                   good[:len(good) - 100] + bytes(100)]
        flipped = bytearray(good)
        flipped[len(good) * 3 // 4] ^= 0x20   # one letter's case inside a block
        damaged.append(bytes(flipped))
        for bad in damaged:
            with open(p, "wb") as f:
                f.write(bad)
            st = os.lstat(p)
            ra, ca = self.session(self.ref), self.session(self.hc)
            self.same("with a damaged cache file (%d octets)" % len(bad), ra, ca)
            self.logout(ra, self.ref)
            self.logout(ca, self.hc)
            self.wait_cache((st.st_mtime_ns, st.st_ino))
            with open(p, "rb") as f:
                self.assertEqual(f.read(8), b"PTHC0004")

    def test_delete_takes_the_cache_along(self):
        c = self.session(self.hc)
        self.assertIn(" OK ", c.cmd("CREATE Box")[1])
        msg = b"From: a@example.com\r\nSubject: in a folder\r\n\r\nbody\r\n"
        tag = c.tag()
        c.sock.sendall(tag.encode() + b" APPEND Box {%d+}\r\n" % len(msg) + msg + b"\r\n")
        self.assertIn(" OK ", c.collect(tag)[1])
        self.assertIn(" OK ", c.cmd("SELECT Box")[1])
        untagged, _ = c.cmd("FETCH 1 ENVELOPE")
        self.assertIn(b'"in a folder"', untagged[0])
        self.assertIn(" OK ", c.cmd("THREAD REFERENCES UTF-8 ALL")[1])   # an answer kept
        self.assertIn(" OK ", c.cmd("SELECT INBOX")[1])   # closes Box: saved
        d = self.hc.path("home", "alice", "mail", ".imap", "Box")
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(d, "postern.hcache")) and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(os.path.join(d, "postern.hcache")))
        self.assertIn(" OK ", c.cmd("DELETE Box")[1])
        self.assertFalse(os.path.exists(d), os.listdir(d) if os.path.isdir(d) else "")
        self.logout(c, self.hc)


if __name__ == "__main__":
    unittest.main()
