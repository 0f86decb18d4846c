#!/bin/sh
# `make run`: a demo Postern on 127.0.0.1 high ports with users alice, bob,
# carol (password "password") and the alias sysadmin: alice, bob. All state
# lives in ./run/.
# As root, the demo runs rootless as the user nobody, and root writes
# nothing inside the state directory (nobody owns it): the script makes the
# directory, then runs the rest of itself as nobody. When nobody cannot
# reach the checkout (a clone under /root, say), the state and a copy of
# the binary live under /var/lib/postern-demo instead, ./run links there,
# and the script says so: it never opens up directories above the checkout.
set -e

if [ "$1" != "--as-user" ]; then
  top=$(cd "$(dirname "$0")/.." && pwd)
  # The second half runs from text handed over, not from the checkout,
  # which nobody may not be able to read.
  POSTERN_DEMO_TEMPLATE=$(cat "$top/conf/dev.conf")
  export POSTERN_DEMO_TEMPLATE
  self=$(cat "$0")
  run="${POSTERN_RUN_DIR:-$top/run}"
  bin="${POSTERN_BIN:-$top/build-run/bin/postern}"
  [ -x "$bin" ] || bin="$top/build/bin/postern"
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  modules="${POSTERN_MODULES:-$(dirname "$bin")/../modules}"
  modules=$(cd "$modules" && pwd)
  if [ "$(id -u)" != 0 ]; then
    mkdir -p "$run"
    exec sh -c "$self" run-demo.sh --as-user "$run" "$bin" "$modules"
  fi
  as="setpriv --reuid=nobody --regid=nogroup --clear-groups"
  # Can nobody walk down to $1 (search permission on every parent)?
  reachable() { $as test -x "$1" 2>/dev/null; }
  if [ -z "$POSTERN_RUN_DIR" ] && ! reachable "$top"; then
    base=/var/lib/postern-demo
    mkdir -p -m 755 "$base"
    if [ -e "$run" ] && [ ! -L "$run" ]; then
      echo "run-demo: nobody cannot reach $run; move it away to use $base/state" >&2
      exit 1
    fi
    ln -sfn "$base/state" "$run"
    echo "run-demo: the user nobody cannot reach $top: state in $base/state (./run links to it)"
    run="$base/state"
    if ! reachable "$bin" || ! reachable "$modules"; then
      # nobody runs the binary: a root-owned copy it can reach.
      rm -rf "$base/bin" "$base/modules"
      mkdir -m 755 "$base/bin" "$base/modules"
      cp "$bin" "$base/bin/postern"
      cp "$modules"/*.so "$base/modules/"
      bin="$base/bin/postern"
      modules="$base/modules"
    fi
  fi
  [ -d "$run" ] || mkdir -m 755 "$run"
  case $(stat -c %U "$run") in
    nobody) ;;
    root) chown nobody:nogroup "$run"; chmod 755 "$run" ;;
    *) echo "run-demo: $run belongs to $(stat -c %U "$run"), not root or nobody" >&2; exit 1 ;;
  esac
  cd /
  exec $as sh -c "$self" run-demo.sh --as-user "$run" "$bin" "$modules"
fi

# From here on as the user the demo runs as, inside its own state directory.
run=$2 bin=$3 modules=$4
mkdir -p "$run/mail" "$run/queue" "$run/home"
for u in alice bob carol; do mkdir -p "$run/home/$u/mail"; done
[ -f "$run/users" ] || {
  for u in alice bob carol; do echo "$u:{PLAIN}password::::$run/home/$u::"; done > "$run/users"
}
[ -f "$run/aliases" ] || printf 'postmaster: alice\nsysadmin: alice, bob\n' > "$run/aliases"
[ -f "$run/transport" ] || printf 'example.com.ar local:\n.example.com.ar local:\n' > "$run/transport"
[ -f "$run/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$run/key.pem" -out "$run/cert.pem" -days 365 -subj /CN=mail.example.com.ar 2>/dev/null
printf '%s\n' "$POSTERN_DEMO_TEMPLATE" | sed -e "s|@RUN@|$run|g" -e "s|@MODULES@|$modules|g" > "$run/postern.conf"
"$bin" check -c "$run/postern.conf"
cat <<MSG
Postern demo on 127.0.0.1: SMTP 2525, submission 2587, IMAP 10143, IMAPS 10993,
POP3 10110, POP3S 10995 (users alice, bob, carol; password "password").
Try it from another terminal:
  swaks --server 127.0.0.1:2525 --from carol@example.com.ar --to sysadmin@example.com.ar
  swaks --server 127.0.0.1:2587 --tls --auth-user alice --auth-password password \\
        --from alice@example.com.ar --to bob@example.com.ar
  curl -k "imaps://127.0.0.1:10993/INBOX;UID=1" -u alice:password
  curl -k pop3s://127.0.0.1:10995/1 -u bob:password
  openssl s_client -connect 127.0.0.1:10143 -starttls imap -quiet
  openssl s_client -connect 127.0.0.1:2525 -starttls smtp -quiet
  cat $run/mail/alice
  $bin queue list -c $run/postern.conf
Stop with Ctrl-C. Logs follow.
MSG
exec "$bin" run -c "$run/postern.conf"
