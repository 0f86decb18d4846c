#!/bin/sh
# Runs a command (as root) in the conditions of a fresh Debian machine, so
# that a test leaning on this machine fails here instead of passing by luck:
# a private mount + UTS namespace whose /etc is a copy with
#  - /etc/passwd, group, shadow, gshadow rebuilt from base-passwd's masters
#    (root, nobody, mail, ... -- no user left by an earlier install or test,
#    no "postern" user),
#  - /etc/hosts naming every 127.0.0.x address (a normal thing for a LAN
#    box; tests must not expect "unknown" for them),
#  - a random host name, and an odd time zone (TZ, 13:45 east of UTC) and
#    the POSIX locale.
# The real /etc is untouched: users the tests create and remove live in
# the copy, which is deleted afterwards.
# Usage: scripts/fresh-machine.sh COMMAND [ARG...]
set -e
if [ "$(id -u)" != 0 ]; then
  echo "fresh-machine.sh: needs root (mount namespace)" >&2
  exit 2
fi
if [ "$1" != "--inside" ]; then
  tmp=$(mktemp -d /tmp/postern-fresh-etc.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  export POSTERN_FRESH_ETC="$tmp/etc"
  cp -a /etc "$tmp/etc"
  e="$tmp/etc"
  if [ -r /usr/share/base-passwd/passwd.master ]; then
    cp /usr/share/base-passwd/passwd.master "$e/passwd"
    cp /usr/share/base-passwd/group.master "$e/group"
  else
    # base-passwd's masters missing: keep only uids below 100 (its range).
    awk -F: '$3 < 100 || $3 == 65534' /etc/passwd > "$e/passwd"
    awk -F: '$3 < 100 || $3 == 65534' /etc/group > "$e/group"
  fi
  rm -f "$e/shadow" "$e/gshadow" "$e/passwd-" "$e/group-" "$e/shadow-" "$e/gshadow-" \
        "$e/subuid" "$e/subgid"
  chmod 644 "$e/passwd" "$e/group"
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    i=2
    while [ $i -le 254 ]; do
      echo "127.0.0.$i client$i.example.com.ar client$i"
      i=$((i + 1))
    done
    echo "127.0.1.1 fresh-box.example.com.ar fresh-box"
  } > "$e/hosts"
  rc=0
  unshare --mount --uts --propagation private -- "$0" --inside "$@" || rc=$?
  exit $rc
fi
shift
mount --bind "$POSTERN_FRESH_ETC" /etc
# shadow files for the new passwd/group (inside, so they land in the copy)
pwconv
grpconv
hostname "fresh-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
unset LANG LANGUAGE LC_ALL LC_CTYPE LC_MESSAGES LC_TIME
export TZ="FRESH-13:45"
echo "fresh-machine.sh: $(hostname), TZ=$TZ, $(wc -l < /etc/passwd) users in /etc/passwd, /etc/hosts names 127.0.0.2-254"
exec "$@"
