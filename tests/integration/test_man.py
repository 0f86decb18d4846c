"""The man pages (docs/man/, installed by `make deb`): each renders with no
groff/man warning (what lintian checks), postern(8) has a paragraph for
every verb the binary dispatches (core/main.c's verb table), and
postern.conf(5), generated from the parameter tables by
scripts/gen-config-doc.sh --man, has one for every parameter
`postern config -d` knows."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN, SRC

MAN = os.path.join(SRC, "docs", "man")
PAGES = ("postern.8", "postern-policy.7", "sendmail.8")


def render(path, width=200):
    """The page as text, and man's warnings."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH=str(width), MANROFFSEQ="")
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-P", "cat", path],
                       capture_output=True, text=True, env=env, timeout=60)
    return r.returncode, r.stdout, r.stderr


@unittest.skipUnless(shutil.which("man") and shutil.which("groff"), "man-db not installed (scripts/deps.sh test)")
class ManPages(unittest.TestCase):
    def test_pages_render_without_warnings(self):
        for page in PAGES:
            rc, out, err = render(os.path.join(MAN, page))
            self.assertEqual((rc, err), (0, ""), page)
            self.assertIn("NAME", out, page)
        for link in ("mailq.1", "newaliases.1"):
            with open(os.path.join(MAN, link)) as f:
                self.assertEqual(f.read(), ".so man8/sendmail.8\n")

    def test_every_verb_has_a_paragraph(self):
        with open(os.path.join(SRC, "core", "main.c")) as f:
            table = re.search(r"verbs\[\] = \{(.*?)\};", f.read(), re.S).group(1)
        verbs = re.findall(r'\{ "([a-z]+)",', table)
        self.assertIn("run", verbs)
        _, out, _ = render(os.path.join(MAN, "postern.8"))
        section = out[out.index("\nVERBS"):out.index("\nEXIT STATUS")]
        for verb in verbs:
            self.assertRegex(section, r"\n       %s\b" % verb, "postern(8) has no paragraph for verb %s" % verb)

    def test_postern_conf_5_lists_every_parameter(self):
        d = tempfile.mkdtemp(prefix="postern-man-")
        self.addCleanup(shutil.rmtree, d, True)
        page = os.path.join(d, "postern.conf.5")
        with open(page, "w") as f:
            subprocess.run([os.path.join(SRC, "scripts", "gen-config-doc.sh"), "--man", BIN], stdout=f,
                           check=True, timeout=60)
        rc, out, err = render(page)
        self.assertEqual((rc, err), (0, ""))
        self.assertNotIn("@PARAMETERS@", out)
        # The same configuration as the generator: every module loaded.
        conf = os.path.join(d, "all.conf")
        with open(conf, "w") as f:
            f.write("module_directory = %s\n" % os.path.abspath(os.path.join(os.path.dirname(BIN), "..", "modules")))
            for m in ("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3"):
                f.write("module %s\n" % m)
            f.write("alias_maps = hash:%s\n" % os.path.join(d, "aliases"))
        open(os.path.join(d, "aliases"), "w").close()
        r = subprocess.run([BIN, "config", "-d", "-c", conf], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = [line.split(" = ")[0] for line in r.stdout.splitlines()]
        self.assertGreater(len(names), 100)
        for name in names:
            self.assertRegex(out, r"\n       %s\n" % re.escape(name), "postern.conf(5) lacks %s" % name)


if __name__ == "__main__":
    unittest.main()
