#!/bin/sh
# IMAP/POP3 benchmark, Dovecot vs Postern side by side (`make bench`, not CI,
# never part of `make test`). Installs Dovecot from Debian (scripts/deps.sh
# bench), runs it from a throwaway config under /var/tmp/postern-bench/imap
# on 127.0.0.1:20143/20110 and Postern on 21143/21110 (SMTP 21025 for the
# IDLE deliveries), both as root serving one mbox (10k messages by default;
# issue 15's figures: --messages 100000), then runs tests/bench/imap/bench.py
# (its docstring says what is measured). Servers are stopped by pid, the
# mbox copies removed at the end.
# Usage: tests/bench/imap/run.sh [BUILD_DIR] [extra bench.py args]
#   e.g. tests/bench/imap/run.sh build --messages 100000 --rounds 3
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
# A relative BUILD_DIR is taken from the current directory, else from the source tree.
[ -d "$build" ] || build=$src/$build
build=$(cd "$build" && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (installs and runs Dovecot, creates a bench user)" >&2
  exit 1
fi
"$src/scripts/deps.sh" bench
command -v dovecot >/dev/null || { echo "run.sh: dovecot missing (package dovecot-imapd)" >&2; exit 1; }
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
exec /usr/bin/python3 "$here/bench.py" --postern "$build/bin/postern" --modules "$build/modules" \
  --out /var/tmp/postern-bench/imap/last-run.md "$@"
