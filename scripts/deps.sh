#!/bin/sh
# Installs the Debian packages Postern builds, tests and runs with, only
# those missing, non-interactively. Usage: scripts/deps.sh [run|build|test|fuzz|bench|deb|debtest]
# run: what `make run` needs to build and start the demo, nothing for tests.
set -e
run="build-essential cmake pkg-config libssl-dev liblua5.4-dev libcrypt-dev libpam0g-dev libsqlite3-dev zlib1g-dev openssl"
# isync offlineimap3 fetchmail mutt curl: the real-client IMAP/POP3 tests (tests/integration/test_imap_clients_*.py)
# libldap-dev, libpq-dev: the optional ldap and pgsql modules (cmake
# -DPOSTERN_LDAP=OFF / -DPOSTERN_PGSQL=OFF build without them)
build="$run libcmocka-dev libldap-dev libpq-dev"
# unicode-data: UnicodeData.txt, to regenerate core/unicode_casemap_data.c
# (scripts/gen-unicode-casemap.py) and to check the committed one
test="$build unicode-data python3 python3-aiosmtpd python3-prometheus-client curl isync offlineimap3 fetchmail mutt swaks libnet-ssleay-perl bsd-mailx whois procps iproute2 valgrind passwd util-linux fail2ban man-db slapd ldap-utils postgresql"
fuzz="$build clang libclang-rt-14-dev"
# dovecot-ldap, postfix-ldap (and -pgsql): the fronts tests/bench/front compares with
bench="$test postfix dovecot-imapd dovecot-pop3d dovecot-ldap postfix-ldap dovecot-pgsql postfix-pgsql"
deb="$build debhelper dpkg-dev fakeroot lintian man-db"
debtest="$deb python3 swaks passwd fail2ban"
case "${1:-build}" in
  run) want=$run ;; build) want=$build ;; test) want=$test ;; fuzz) want=$fuzz ;; bench) want=$bench ;; deb) want=$deb ;; debtest) want=$debtest ;;
  *) echo "deps.sh: unknown set: $1" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ -n "$POSTERN_FRESH_ETC" ]; then
  # Inside scripts/fresh-machine.sh /etc is a stripped copy: dpkg there
  # would fail on system groups it lacks and lose its /etc changes.
  echo "deps.sh: missing packages:$missing -- install them first (make deps), outside fresh-machine.sh" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages:$missing (run as root or install them)" >&2
  exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# postfix asks a debconf question on install; the bench configures it itself.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
apt-get update -q || true
apt-get install -y -q --no-install-recommends $missing
