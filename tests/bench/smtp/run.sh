#!/bin/sh
# SMTP benchmark, Postfix vs Postern side by side (`make bench`, not CI).
# Installs Postfix from Debian (scripts/deps.sh bench), configures it on
# 127.0.0.1:2526 and Postern on 127.0.0.1:2525, both as root delivering to
# /var/mail with the seed's settings, then runs tests/bench/smtp/bench.py.
# Usage: tests/bench/smtp/run.sh [BUILD_DIR] [extra bench.py args]
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (installs and configures Postfix, creates bench users)" >&2
  exit 1
fi
"$src/scripts/deps.sh" bench
[ -x /usr/sbin/smtp-source ] || { echo "run.sh: smtp-source missing (package postfix)" >&2; exit 1; }
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
exec /usr/bin/python3 "$here/bench.py" --postern "$build/bin/postern" --modules "$build/modules" \
  --out /var/tmp/postern-bench/last-run.md "$@"
