"""The shipped sample configs stay valid: conf/postern.conf (the seed's
setup) and conf/dev.conf (make run) pass `postern check` with their file
paths pointed at a scratch directory."""
import os
import subprocess
import tempfile
import unittest

from harness import BIN, MODULES, SRC, test_cert


class SampleConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="postern-conf-")
        for name, text in (("aliases", "postmaster: root\nsysadmin: alice, bob\n"),
                           ("transport", "example.com.ar local:\n.example.com.ar local:\n"),
                           ("mailname", "example.com.ar\n"), ("users", "alice:{PLAIN}x::::/tmp::\n")):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)

    def check(self, text):
        path = os.path.join(self.dir, "postern.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([BIN, "check", "-c", path], capture_output=True, timeout=30)

    def test_seed_config(self):
        cert, key = test_cert()
        with open(os.path.join(SRC, "conf", "postern.conf")) as f:
            text = f.read()
        text = (text.replace("/etc/mailname", os.path.join(self.dir, "mailname"))
                .replace("/etc/aliases", os.path.join(self.dir, "aliases"))
                .replace("/etc/postern/transport", os.path.join(self.dir, "transport"))
                .replace("/etc/ssl/certs/ssl-cert-snakeoil.pem", cert)
                .replace("/etc/ssl/private/ssl-cert-snakeoil.key", key))
        text = "module_directory = %s\n" % os.path.abspath(MODULES) + text
        r = self.check(text)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # The seed's own wording is accepted too.
        r = self.check(text.replace("mynetworks = 127.0.0.0/8, [::1]/128, 192.168.0.0/24", "mynetworks = subnet"))
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_dev_config(self):
        with open(os.path.join(SRC, "conf", "dev.conf")) as f:
            text = f.read()
        cert, key = test_cert()
        text = text.replace("@RUN@", self.dir).replace("@MODULES@", os.path.abspath(MODULES))
        text = text.replace("<%s/cert.pem" % self.dir, "<" + cert).replace("<%s/key.pem" % self.dir, "<" + key)
        r = self.check(text)
        self.assertEqual(r.returncode, 0, r.stderr.decode())


class ReferenceDocTest(unittest.TestCase):
    def test_config_reference_is_current(self):
        """docs/CONFIG.md is generated from the parameter tables; a new or
        changed parameter must come with the regenerated file."""
        r = subprocess.run([os.path.join(SRC, "scripts", "gen-config-doc.sh"), BIN], capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(os.path.join(SRC, "docs", "CONFIG.md")) as f:
            committed = f.read()
        self.assertEqual(committed, r.stdout.decode(),
                         "docs/CONFIG.md is stale: run scripts/gen-config-doc.sh build/bin/postern > docs/CONFIG.md")

    def test_doc_of_one_parameter(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as empty:
            r = subprocess.run([BIN, "config", "-d", "-c", empty.name, "message_size_limit"], capture_output=True,
                               timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertTrue(r.stdout.decode().startswith("message_size_limit = 10240000\t# (core) "))


if __name__ == "__main__":
    unittest.main()
