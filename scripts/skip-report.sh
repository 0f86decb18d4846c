#!/bin/sh
# Prints the tests a run skipped, with their reasons (recorded by
# tests/run_py.py under BUILD/skipped/), so no skip passes unseen.
# Usage: scripts/skip-report.sh BUILD_DIR
dir="${1:-build}/skipped"
n=$(cat "$dir"/*.txt 2>/dev/null | wc -l)
if [ "$n" -eq 0 ]; then
  echo "make test: no test skipped"
  exit 0
fi
echo "make test: $n test(s) skipped:"
cat "$dir"/*.txt | sed 's/^/  /'
