#!/bin/sh
# Through a front (issue 16): IMAP logins per second and SMTP end to end
# via a front to two mailbox hosts, on network namespaces; Postern vs
# Dovecot 2.3 (logins) and Postfix 3.7 (SMTP), users and maps in slapd
# (`make bench`, not CI). Installs what it needs (scripts/deps.sh bench).
# Usage: tests/bench/front/run.sh [BUILD_DIR] [extra bench.py args]
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (network namespaces, slapd, Dovecot and Postfix)" >&2
  exit 1
fi
"$src/scripts/deps.sh" bench
[ -x /usr/sbin/smtp-source ] || { echo "run.sh: smtp-source missing (package postfix)" >&2; exit 1; }
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
[ -f "$build/modules/ldap.so" ] || { echo "run.sh: the ldap module is not built (libldap-dev)" >&2; exit 1; }
export POSTERN_BIN="$build/bin/postern" POSTERN_MODULES="$build/modules"
exec /usr/bin/python3 "$here/bench.py" --out /var/tmp/postern-bench/front-last-run.md "$@"
