"""core/unicode_casemap_data.c is what scripts/gen-unicode-casemap.py makes
of Debian's UnicodeData.txt (package unicode-data, scripts/deps.sh test):
the committed tables must be regenerated, not edited. Skipped, and said
so, on a machine without the data file or with another version of it
than the tables name (their header has its sha256): there the generator
would rightly make other tables."""
import hashlib
import os
import re
import subprocess
import sys
import unittest

SRC = os.environ.get("POSTERN_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GEN = os.path.join(SRC, "scripts", "gen-unicode-casemap.py")
DATA = "/usr/share/unicode/UnicodeData.txt"


class TablesTest(unittest.TestCase):
    def test_committed_tables_are_generated(self):
        if not os.path.exists(DATA):
            print("SKIP: %s missing (apt-get install unicode-data): the committed "
                  "core/unicode_casemap_data.c is not checked" % DATA, file=sys.stderr)
            self.skipTest("%s missing: install unicode-data" % DATA)
        with open(os.path.join(SRC, "core", "unicode_casemap_data.c"), "rb") as f:
            named = re.search(rb"UnicodeData.txt sha256 ([0-9a-f]{64})", f.read(1024))
        self.assertIsNotNone(named, "the generated tables do not name their UnicodeData.txt")
        with open(DATA, "rb") as f:
            here = hashlib.sha256(f.read()).hexdigest()
        if here != named.group(1).decode():
            print("SKIP: %s is another version than the one core/unicode_casemap_data.c was "
                  "made from: not compared" % DATA, file=sys.stderr)
            self.skipTest("another UnicodeData.txt than the tables' own")
        out = subprocess.run([sys.executable, GEN, DATA], check=True, capture_output=True).stdout
        with open(os.path.join(SRC, "core", "unicode_casemap_data.c"), "rb") as f:
            committed = f.read()
        self.assertTrue(out == committed,
                        "core/unicode_casemap_data.c differs from the generator's output: "
                        "run scripts/gen-unicode-casemap.py > core/unicode_casemap_data.c")


if __name__ == "__main__":
    unittest.main()
