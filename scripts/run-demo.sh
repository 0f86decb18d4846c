#!/bin/sh
# `make run`: a demo Postern on 127.0.0.1 high ports with users alice, bob,
# carol (password "password") and the alias sysadmin: alice, bob. All state
# lives in ./run/. As root, the demo runs rootless as the user nobody.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
run="${POSTERN_RUN_DIR:-$top/run}"
bin="${POSTERN_BIN:-$top/build/bin/postern}"
modules="${POSTERN_MODULES:-$(dirname "$bin")/../modules}"
modules=$(cd "$modules" && pwd)
mkdir -p "$run/mail" "$run/queue" "$run/home"
for u in alice bob carol; do mkdir -p "$run/home/$u/mail"; done
[ -f "$run/users" ] || {
  for u in alice bob carol; do echo "$u:{PLAIN}password::::$run/home/$u::"; done > "$run/users"
}
[ -f "$run/aliases" ] || printf 'postmaster: alice\nsysadmin: alice, bob\n' > "$run/aliases"
[ -f "$run/transport" ] || printf 'example.com.ar local:\n.example.com.ar local:\n' > "$run/transport"
[ -f "$run/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$run/key.pem" -out "$run/cert.pem" -days 365 -subj /CN=mail.example.com.ar 2>/dev/null
sed -e "s|@RUN@|$run|g" -e "s|@MODULES@|$modules|g" "$top/conf/dev.conf" > "$run/postern.conf"
"$bin" check -c "$run/postern.conf"
as=""
if [ "$(id -u)" = 0 ]; then
  chown -R nobody:nogroup "$run"
  chmod 755 "$run"
  # nobody must reach the state directory through its parents.
  d=$(dirname "$run"); while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  as="setpriv --reuid=nobody --regid=nogroup --clear-groups"
fi
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
exec $as "$bin" run -c "$run/postern.conf"
