#!/usr/bin/env python3
"""Runs one Python test module under unittest for ctest, and records every
skipped test with its reason in $POSTERN_SKIP_DIR/<module>.txt, so that
`make test` can say how many were skipped and why (a skip must never pass
unseen). Usage: run_py.py MODULE (from the module's directory)."""
import os
import sys
import unittest


def main():
    name = sys.argv[1]
    sys.path.insert(0, os.getcwd())
    sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    skip_dir = os.environ.get("POSTERN_SKIP_DIR")
    if skip_dir:
        os.makedirs(skip_dir, exist_ok=True)
        path = os.path.join(skip_dir, name + ".txt")
        if result.skipped:
            with open(path, "w") as f:
                for test, reason in result.skipped:
                    f.write("%s: %s\n" % (test.id(), reason))
        elif os.path.exists(path):
            os.unlink(path)
    if result.testsRun == 0:
        print("run_py: %s ran no test" % name, file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
