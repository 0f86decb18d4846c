"""THREAD and SORT over a realistic mailing-list folder, asked by a real
client (curl's custom requests) and checked against the RFC 5256 model
of test_imap_sort.py (model_references, model_orderedsubject: the
algorithm's steps written out in Python, independent of the server).

test_imap_sort.RandomThreads already checks random folders against the
model; this folder adds what a list archive has and those lack: threads
whose subject changes midway ("New (was: Old)") and goes on under the
new one, "AW:"/"SV:" prefixes (not reply markers in RFC 5256, so other
base subjects), "Fw:" and "Re[3]:" forms, Date headers in other time
zones (sent date compared as UTC instants), exact date ties, duplicate
deliveries (same Message-ID twice), replies whose References were cut
to the last few ids, In-Reply-To only, and lost thread starters.
"""
import datetime
import random
import re
import unittest

from clients_util import client_server, home, need, run, seed, test_ca
from test_imap_sort import model_base_subject, model_orderedsubject, model_references

TOPICS = ["Release 2.0 planning", "Build broken on arm64", "Proposal: drop Python 2", "Meeting notes",
          "[ANN] 1.9.3 released", "Question about config", "CI is slow", "Website redesign"]


def make_folder(seed_):
    rng = random.Random(seed_)
    msgs = []
    base = datetime.datetime(2024, 3, 1, 9, 0, tzinfo=datetime.timezone.utc)
    lost = {}
    for i in range(110):
        m = {"seq": i + 1, "id": i + 1}
        if msgs and rng.random() < 0.15:
            m["date"] = rng.choice(msgs)["date"]   # an exact tie
        else:
            m["date"] = int((base + datetime.timedelta(minutes=rng.randrange(0, 6000))).timestamp())
        m["msgid"] = "l%d.%d@lists.example.org" % (seed_, i)
        r = rng.random()
        if r < 0.03 and msgs:
            m["msgid"] = rng.choice(msgs)["msgid"]   # delivered twice
        elif r < 0.05:
            m["msgid"] = None
        parent = rng.choice(msgs) if msgs and rng.random() < 0.7 else None
        m["irt_only"] = False
        if parent is None:
            topic = rng.choice(TOPICS)
            if rng.random() < 0.2:   # the starter never reached this folder
                key = lost.setdefault(topic, "lost.%d.%d@lists.example.org" % (seed_, len(lost)))
                m["refs"] = [key]
                m["subject"] = "Re: " + topic
            else:
                m["refs"] = []
                m["subject"] = topic
        else:
            chain = parent["refs"] + [parent["msgid"] or "noid.%d@x" % parent["seq"]]
            r = rng.random()
            if r < 0.15:
                chain, m["irt_only"] = chain[-1:], True
            elif r < 0.3:
                chain = chain[-3:]   # a client that keeps only the last ids
            m["refs"] = chain
            ps = model_base_subject(parent["subject"])[0]
            if rng.random() < 0.08:
                m["subject"] = "%s (was: %s)" % (rng.choice(["Side question", "Off topic", "Follow-up"]), ps)
            else:
                m["subject"] = rng.choice(["Re: %s", "RE: %s", "Re: Re: %s", "Re[3]: %s", "Fw: %s", "Fwd: %s",
                                           "[dev] Re: %s", "%s (fwd)", "AW: %s", "SV: Re: %s", "%s"]) % ps
        msgs.append(m)
    return msgs


def render(m, rng):
    # the same instant written in another zone now and then
    off = rng.choice([0, 0, 60, -300, 330, 780])
    tz = datetime.timezone(datetime.timedelta(minutes=off))
    date = datetime.datetime.fromtimestamp(m["date"], tz).strftime("%a, %d %b %Y %H:%M:%S %z")
    h = "From: user%d@example.org\r\nTo: dev@lists.example.org\r\nSubject: %s\r\nDate: %s\r\n" % (
        rng.randrange(20), m["subject"], date)
    if m["msgid"]:
        h += "Message-ID: <%s>\r\n" % m["msgid"]
    if m["refs"]:
        if m["irt_only"]:
            h += "In-Reply-To: <%s>\r\n" % m["refs"][-1]
        else:
            h += "References: %s\r\n" % "\r\n\t".join("<%s>" % r for r in m["refs"])
    return (h + "List-Id: <dev.lists.example.org>\r\n\r\nmessage %d\r\n" % m["seq"]).encode()


@need("curl")
class ListArchiveThreads(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self)
        self.home = home(self)

    def curl(self, box, command):
        p = run(["curl", "-sS", "--max-time", "20", "--cacert", test_ca()[0], "-u", "alice:secret",
                 "imaps://127.0.0.1:%d/%s" % (self.server.ports["imaps"], box), "-X", command], self.home)
        return p.stdout.decode()

    def test_against_model(self):
        for s in (11, 12, 13):
            msgs = make_folder(s)
            rng = random.Random(s)
            box = "list%d" % s
            seed(self.server, box, [(render(m, rng), None) for m in msgs])
            # a subject change must really be in there, and ties
            self.assertTrue(any("(was: " in m["subject"] for m in msgs))
            self.assertLess(len({m["date"] for m in msgs}), len(msgs))
            out = self.curl(box, "THREAD REFERENCES UTF-8 ALL")
            self.assertEqual(re.findall(r"^\* THREAD (.*?)\r?$", out, re.M), [model_references(msgs)], "seed %d" % s)
            out = self.curl(box, "THREAD ORDEREDSUBJECT UTF-8 ALL")
            self.assertEqual(re.findall(r"^\* THREAD (.*?)\r?$", out, re.M), [model_orderedsubject(msgs)],
                             "seed %d" % s)
            want = sorted(msgs, key=lambda m: (model_base_subject(m["subject"])[0].upper(), m["date"], m["seq"]))
            out = self.curl(box, "SORT (SUBJECT DATE) UTF-8 ALL")
            self.assertEqual(re.findall(r"^\* SORT (.*?)\r?$", out, re.M), [" ".join(str(m["seq"]) for m in want)])
            # a thread of a search result only: the model over that subset
            out = self.curl(box, "UID THREAD REFERENCES UTF-8 NOT HEADER Subject AW:")
            sub = [m for m in msgs if not re.search(r"aw:", m["subject"], re.I)]
            self.assertEqual(re.findall(r"^\* THREAD (.*?)\r?$", out, re.M), [model_references(sub)], "seed %d" % s)


if __name__ == "__main__":
    unittest.main()
