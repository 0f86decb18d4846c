#!/bin/sh
# IMAP/POP3 benchmark, Dovecot vs Postern side by side (`make bench`, not CI).
# Installs Dovecot from Debian (scripts/deps.sh bench), runs it from a
# throwaway config under /var/tmp/postern-bench/imap on 127.0.0.1:20143/20110
# and Postern on 21143/21110, both as root serving one 10k-message mbox,
# then runs tests/bench/imap/bench.py.
# Usage: tests/bench/imap/run.sh [BUILD_DIR] [extra bench.py args]
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (installs and runs Dovecot, creates a bench user)" >&2
  exit 1
fi
"$src/scripts/deps.sh" bench
command -v dovecot >/dev/null || { echo "run.sh: dovecot missing (package dovecot-imapd)" >&2; exit 1; }
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
exec /usr/bin/python3 "$here/bench.py" --postern "$build/bin/postern" --modules "$build/modules" \
  --out /var/tmp/postern-bench/imap/last-run.md "$@"
