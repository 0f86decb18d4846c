#!/bin/bash
# CI: builds the .deb, runs lintian on it, installs it system-wide, checks
# the installed server end to end (shipped config, man pages, documentation,
# sendmail, SMTP, IMAP, POP3, IMAPS, privilege separation, the
# mailq/newaliases links, the fail2ban filter over the server's log), then
# purges it; the module packages (postern-ldap, postern-pgsql when built):
# lintian, no LDAP/PostgreSQL library in the core package's Depends, and
# `module NAME` loading only once the package is installed.
# Usage: scripts/test-deb.sh --yes [--no-build]   (as root, Debian 12)
set -u

usage="usage: $0 --yes [--no-build]
Installs the postern package system-wide (replacing an installed MTA and
IMAP/POP3 server), tests it on 127.0.0.1 and purges it. Run it as root on
a throwaway machine; --yes says you mean it. --no-build reuses build-deb/."
yes=0 build=1
for a in "$@"; do
	case "$a" in
	--yes) yes=1 ;;
	--no-build) build=0 ;;
	-h|--help) echo "$usage"; exit 0 ;;
	*) echo "$usage" >&2; exit 2 ;;
	esac
done
if [ "$yes" != 1 ]; then
	echo "$usage" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "test-deb: must run as root (it installs a package)" >&2
	exit 2
fi

top=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
tmp=$(mktemp -d /tmp/postern-debtest.XXXXXX)
chmod 0755 "$tmp"
conf=/etc/postern/postern.conf
testconf="$tmp/postern.conf"
log="$tmp/mail.log"
user="ptdeb$$"
pass="Deb-$$-$RANDOM-pw"
server_pid=""
installed=0
user_made=0
failed=0
n=0

ok() {
	n=$((n + 1))
	echo "ok $n - $*"
}

# Any failure ends the run: the rest would only fail for the same reason.
fail() {
	failed=1
	echo "FAIL - $*"
	exit 1
}

# Prints a failed command's output, then fails.
run_quiet() {
	local what="$1" out
	shift
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" | tail -n 40
		fail "$what"
	fi
	ok "$what"
}

cleanup() {
	local rc=$?
	[ "$failed" = 1 ] && rc=1
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null
	fi
	if [ "$rc" != 0 ] && [ -s "$log" ]; then
		echo "---- server log ($log) ----"
		tail -n 80 "$log"
		echo "---- end of server log ----"
	fi
	if [ "$user_made" = 1 ]; then
		userdel -r "$user" >/dev/null 2>&1
		rm -f "/var/mail/$user"
	fi
	if [ "$installed" = 1 ]; then
		apt-get purge -y -q postern postern-ldap postern-pgsql >/dev/null 2>&1 ||
			apt-get purge -y -q postern >/dev/null 2>&1
	fi
	rm -rf "$tmp"
	echo "test-deb: $([ "$rc" = 0 ] && echo PASS || echo FAIL) ($n checks passed, $(($(date +%s) - start)) s)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build and install ------------------------------------------------------
"$top/scripts/deps.sh" debtest || fail "scripts/deps.sh debtest (swaks, python3, package tools)"
if [ "$build" = 1 ]; then
	run_quiet "make deb" make -C "$top" deb
fi
deb=""
for f in "$top"/build-deb/postern_*.deb; do [ -f "$f" ] && deb=$f; done
[ -n "$deb" ] || fail "no build-deb/postern_*.deb"
# The modules that link a directory's or a database's library come in
# packages of their own (debian/rules: SPLIT_MODULES); pgsql only once the
# tree has the module.
ldap_deb="" pgsql_deb=""
for f in "$top"/build-deb/postern-ldap_*.deb; do [ -f "$f" ] && ldap_deb=$f; done
for f in "$top"/build-deb/postern-pgsql_*.deb; do [ -f "$f" ] && pgsql_deb=$f; done
[ -n "$ldap_deb" ] || fail "no build-deb/postern-ldap_*.deb"
if [ -d "$top/modules/pgsql" ]; then
	[ -n "$pgsql_deb" ] || fail "modules/pgsql exists but no build-deb/postern-pgsql_*.deb was built"
fi
# No error and no warning; the info tags that remain are listed (each is
# justified in the README's Packaging section).
for d in "$deb" $ldap_deb $pgsql_deb; do
	lintian --fail-on error,warning --display-info --no-tag-display-limit "$d" >"$tmp/lintian.out" 2>&1 ||
		{ cat "$tmp/lintian.out"; fail "lintian reports errors or warnings on $(basename "$d")"; }
	ok "lintian $(basename "$d"): no error or warning ($(grep -c '^I: ' "$tmp/lintian.out") info tags)"
	sed -n 's/^I: /  info: /p' "$tmp/lintian.out"
done
# A LAN site installs neither libldap nor libpq: the core package neither
# depends on them nor carries the modules that link them.
core_deps=$(dpkg-deb -f "$deb" Depends)
case "$core_deps" in
*libldap* | *liblber* | *libpq*) fail "$(basename "$deb") depends on no LDAP or PostgreSQL library (Depends: $core_deps)" ;;
esac
dpkg-deb -c "$deb" | grep -E '/modules/(ldap|pgsql)\.so$' && fail "$(basename "$deb") carries no ldap.so or pgsql.so"
ok "$(basename "$deb"): no libldap/libpq in Depends, no ldap.so/pgsql.so inside"
for d in $ldap_deb $pgsql_deb; do
	m=$(dpkg-deb -f "$d" Package)
	m=${m#postern-}
	dpkg-deb -c "$d" | grep -q "/usr/lib/postern/modules/$m\.so$" || fail "$(basename "$d") holds $m.so"
	dpkg-deb -f "$d" Depends | grep -q "postern (= $(dpkg-deb -f "$deb" Version))" ||
		fail "$(basename "$d") depends on postern (= $(dpkg-deb -f "$deb" Version)) (Depends: $(dpkg-deb -f "$d" Depends))"
	ok "$(basename "$d"): $m.so, Depends: $(dpkg-deb -f "$d" Depends)"
done
[ -n "$pgsql_deb" ] || echo "  skipped: no pgsql module (postern-pgsql is built once modules/pgsql exists)"
# A fresh machine may have no package lists yet for the dependencies.
installed=1
if ! apt-get install -y -q "$deb" >"$tmp/apt.log" 2>&1; then
	apt-get update -q >/dev/null 2>&1
	if ! apt-get install -y -q "$deb" >"$tmp/apt.log" 2>&1; then
		tail -n 40 "$tmp/apt.log"
		fail "apt-get install $(basename "$deb")"
	fi
fi
dpkg-query -W -f='${Status}' postern | grep -q "install ok installed" || fail "postern is installed"
ok "apt-get install $(basename "$deb") (with its dependencies)"

# ---- what postinst must have made for the shipped config ----------------------
getent passwd postern >/dev/null || fail "user postern exists"
[ "$(stat -c %U:%G "/var/spool/postern")" = postern:postern ] || fail "/var/spool/postern is postern:postern"
[ "$(stat -c %G:%a /var/mail)" = mail:2775 ] || fail "/var/mail is group mail, mode 2775 (is $(stat -c %G:%a /var/mail))"
[ -s /etc/ssl/certs/ssl-cert-snakeoil.pem ] && [ -s /etc/ssl/private/ssl-cert-snakeoil.key ] ||
	fail "snakeoil certificate and key exist"
[ -e /etc/aliases ] && [ -s /etc/mailname ] || fail "/etc/aliases and /etc/mailname exist"
[ -e /etc/pam.d/postern ] || fail "/etc/pam.d/postern exists"
ok "postinst made the postern user, /var/spool/postern, /var/mail, snakeoil, /etc/aliases, /etc/mailname"
for l in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do
	[ "$(readlink -f "$l")" = /usr/sbin/postern ] || fail "$l links to /usr/sbin/postern"
done
ok "sendmail, mailq and newaliases link to /usr/sbin/postern"
run_quiet "postern check passes on the shipped $conf" env -u POSTERN_CONF /usr/sbin/postern check

# ---- postern-ldap / postern-pgsql: `module NAME` loads only once installed ----------
for d in $ldap_deb $pgsql_deb; do
	pkg=$(dpkg-deb -f "$d" Package)
	m=${pkg#postern-}
	modconf="$tmp/module-$m.conf"
	{ cat "$conf"; printf '\nmodule %s\n' "$m"; } >"$modconf"
	out=$(/usr/sbin/postern check -c "$modconf" 2>&1) &&
		fail "postern check fails on module $m before $pkg is installed (said: $out)"
	printf '%s\n' "$out" | grep -q "$m" || { echo "$out"; fail "the error names module $m"; }
	ok "without $pkg, module $m is refused: $(printf '%s\n' "$out" | head -n 1)"
	if ! apt-get install -y -q "$d" >"$tmp/apt.log" 2>&1; then
		tail -n 40 "$tmp/apt.log"
		fail "apt-get install $(basename "$d")"
	fi
	dpkg-query -W -f='${Status}' "$pkg" | grep -q "install ok installed" || fail "$pkg is installed"
	[ -f "/usr/lib/postern/modules/$m.so" ] || fail "$pkg installs /usr/lib/postern/modules/$m.so"
	run_quiet "with $pkg installed, postern check loads module $m" /usr/sbin/postern check -c "$modconf"
done

# ---- man pages, documentation, fail2ban files ----------------------------------------
# Each page renders without a groff warning (lintian's check of them too).
for page in "8 postern:postern reload" "5 postern.conf:smtpd_recipient_restrictions" \
	"7 postern-policy:check_lua_policy" "8 sendmail:newaliases" "1 mailq:sendmail" "1 newaliases:sendmail"; do
	sec=${page%% *} rest=${page#* }
	name=${rest%%:*} want=${rest#*:}
	out=$(MANWIDTH=80 man --warnings -P cat "$sec" "$name" 2>"$tmp/man.err") ||
		{ cat "$tmp/man.err"; fail "man $sec $name renders"; }
	[ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err"; fail "man $sec $name renders without warnings"; }
	printf '%s\n' "$out" | grep -q -- "$want" || fail "man $sec $name mentions $want"
done
ok "man postern, postern.conf, postern-policy, sendmail, mailq, newaliases render (man -P cat, no warnings)"
# Each parameter is a tagged paragraph: its name starts a line of the page.
MANWIDTH=200 man -P cat 5 postern.conf >"$tmp/conf.5.txt"
nparams=0 missing=""
for name in $(/usr/sbin/postern config -d -c "$conf" 2>/dev/null | sed 's/ .*//'); do
	nparams=$((nparams + 1))
	grep -q "^       $name\( \|\$\)" "$tmp/conf.5.txt" || missing="$missing $name"
done
[ "$nparams" -ge 100 ] && [ -z "$missing" ] ||
	fail "postern.conf(5) documents every parameter of the shipped config ($nparams; missing:${missing:- none})"
ok "postern.conf(5) documents all $nparams parameters of the shipped config"
doc=/usr/share/doc/postern
for f in README.md CONFIG.md lua/README.md; do
	[ -e "$doc/$f" ] || [ -e "$doc/$f.gz" ] || fail "$doc/$f is installed"
done
for f in greylisting ratelimit blocklist office_hours; do
	[ -e "$doc/examples/$f.lua" ] || [ -e "$doc/examples/$f.lua.gz" ] || fail "$doc/examples/$f.lua is installed"
done
ok "$doc holds README.md, CONFIG.md, lua/README.md and the example policies"
[ -f /etc/fail2ban/filter.d/postern.conf ] && [ -f /etc/fail2ban/jail.d/postern.conf ] ||
	fail "the fail2ban filter and jail are installed"
grep -q '^enabled *= *false' /etc/fail2ban/jail.d/postern.conf || fail "the fail2ban jail is shipped disabled"
ok "fail2ban filter and (disabled) jail in /etc/fail2ban"

# ---- a test config: the shipped one on 127.0.0.1 high ports -----------------------
ports=$(python3 - <<'EOF'
import socket
socks = []
for _ in range(7):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
) || fail "pick free ports"
read -r p_smtp p_sub p_smtps p_imap p_imaps p_pop3 p_pop3s <<<"$ports"
cp "$conf" "$testconf"
cat >>"$testconf" <<EOF

# ---- test-deb.sh: loopback high ports and a log file, nothing else ----
inet_interfaces = 127.0.0.1
smtpd_listen = 127.0.0.1:$p_smtp
submission_listen = 127.0.0.1:$p_sub
smtps_listen = 127.0.0.1:$p_smtps
imap_listen = 127.0.0.1:$p_imap
imaps_listen = 127.0.0.1:$p_imaps
pop3_listen = 127.0.0.1:$p_pop3
pop3s_listen = 127.0.0.1:$p_pop3s
maillog_file = $log
EOF
run_quiet "postern check passes on the test config" /usr/sbin/postern -c "$testconf" check

/usr/sbin/postern run -c "$testconf" >"$tmp/run.out" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 100); do
	kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/run.out"; fail "postern run stays up"; }
	if (exec 3<>"/dev/tcp/127.0.0.1/$p_smtp") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$p_imap") 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[ "$up" = 1 ] || fail "postern run listens on SMTP and IMAP"
ok "postern run -c TESTCONF started as root (pid $server_pid) and listens"

# ---- a throwaway user, mail to it two ways -------------------------------------------
useradd -m -s /bin/sh "$user" || fail "useradd $user"
user_made=1
echo "$user:$pass" | chpasswd || fail "chpasswd $user"
ok "made user $user with a password"

printf 'Subject: via sendmail %s\n\nsent with /usr/sbin/sendmail\n' "$$" |
	/usr/sbin/sendmail -C "$testconf" "$user@localhost" || fail "sendmail exits 0"
ok "/usr/sbin/sendmail -C TESTCONF accepted a message for $user@localhost"

swaks --server "127.0.0.1:$p_smtp" --ehlo client.example.com.ar --from tester@example.com.ar \
	--to "$user@localhost" --header "Subject: via swaks $$" --body "sent with swaks over SMTP" \
	>"$tmp/swaks.out" 2>&1 || { tail -n 20 "$tmp/swaks.out"; fail "swaks over SMTP"; }
grep -q '^<- *250.*queued' "$tmp/swaks.out" || { tail -n 20 "$tmp/swaks.out"; fail "swaks got 250 queued"; }
ok "swaks over SMTP (127.0.0.1:$p_smtp): $(grep '^<- *250.*queued' "$tmp/swaks.out" | sed 's/^<- *//')"

mbox="/var/mail/$user"
for _ in $(seq 150); do
	[ -f "$mbox" ] && [ "$(grep -c '^From ' "$mbox")" -ge 2 ] && break
	sleep 0.2
done
[ -f "$mbox" ] && [ "$(grep -c '^From ' "$mbox")" = 2 ] || fail "$mbox holds both messages"
[ "$(stat -c %U:%G "$mbox")" = "$user:mail" ] || fail "$mbox is owned by $user:mail (is $(stat -c %U:%G "$mbox"))"
grep -q "^Subject: via sendmail $$" "$mbox" && grep -q "^Subject: via swaks $$" "$mbox" ||
	fail "$mbox holds the sendmail and the swaks message"
ok "$mbox holds both messages, owned by $user:mail"

# ---- read it: IMAP, POP3, IMAPS; who runs what ---------------------------------------
USER_NAME="$user" USER_PASS="$pass" P_IMAP="$p_imap" P_IMAPS="$p_imaps" P_POP3="$p_pop3" \
LOG="$log" TAG="$$" python3 - <<'EOF' || fail "IMAP/POP3/IMAPS checks"
import imaplib, os, poplib, pwd, re, ssl, sys, time

user, pw, tag = os.environ["USER_NAME"], os.environ["USER_PASS"], os.environ["TAG"]
want = {"via sendmail " + tag, "via swaks " + tag}

def ok(msg):
    print("  ok - " + msg, flush=True)

def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise RuntimeError("no Uid in /proc/%d/status" % pid)

def login_line(service):
    pat = re.compile(r"postern/%s\[(\d+)\]: Login: user=<%s>.*mpid=(\d+)" % (service, re.escape(user)))
    for _ in range(50):
        with open(os.environ["LOG"], errors="replace") as f:
            hits = [m for m in map(pat.search, f) if m]
        if hits:
            return int(hits[-1].group(1)), int(hits[-1].group(2))
        time.sleep(0.1)
    raise RuntimeError("no %s Login line for %s in the log" % (service, user))

def subjects_imap(imap):
    typ, data = imap.select("INBOX")
    assert typ == "OK", (typ, data)
    assert int(data[0]) == 2, "INBOX has %s messages, not 2" % data[0]
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", (typ, data)
    got = {p[1].decode().split(":", 1)[1].strip() for p in data if isinstance(p, tuple)}
    assert got == want, got

u = pwd.getpwnam(user)
postern_uid = pwd.getpwnam("postern").pw_uid

imap = imaplib.IMAP4("127.0.0.1", int(os.environ["P_IMAP"]), timeout=20)
typ, _ = imap.login(user, pw)
assert typ == "OK"
subjects_imap(imap)
ok("IMAP LOGIN %s through PAM from 127.0.0.1; INBOX has both messages" % user)
worker, mpid = login_line("imap-login")
assert uid_of(mpid) == u.pw_uid, "mail process %d runs as uid %d, not %s's %d" % (mpid, uid_of(mpid), user, u.pw_uid)
ok("mail process (mpid=%d) runs as %s (uid %d) while the session is open" % (mpid, user, u.pw_uid))
assert uid_of(worker) == postern_uid, "worker %d runs as uid %d, not postern's %d" % (worker, uid_of(worker), postern_uid)
ok("worker (pid %d, logged the Login) runs as postern (uid %d)" % (worker, postern_uid))
imap.logout()

pop = poplib.POP3("127.0.0.1", int(os.environ["P_POP3"]), timeout=20)
pop.user(user)
pop.pass_(pw)
count, _ = pop.stat()
assert count == 2, "POP3 STAT says %d messages" % count
got = set()
for i in (1, 2):
    for line in pop.top(i, 0)[1]:
        if line.lower().startswith(b"subject:"):
            got.add(line.decode().split(":", 1)[1].strip())
assert got == want, got
pop.quit()
ok("POP3 USER/PASS; STAT 2 and both subjects")

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
imaps = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["P_IMAPS"]), ssl_context=ctx, timeout=20)
der = imaps.sock.getpeercert(binary_form=True)
with open("/etc/ssl/certs/ssl-cert-snakeoil.pem") as f:
    snakeoil = ssl.PEM_cert_to_DER_cert(f.read())
assert der == snakeoil, "IMAPS certificate is not the snakeoil one"
imaps.login(user, pw)
subjects_imap(imaps)
imaps.logout()
ok("IMAPS with the snakeoil certificate; INBOX has both messages")
EOF
ok "read over IMAP, POP3 and IMAPS; mail process as the user, worker as postern"

# ---- the other names ------------------------------------------------------------------------
out=$(POSTERN_CONF="$testconf" newaliases 2>&1) || { echo "$out"; fail "newaliases exits 0"; }
ok "newaliases (POSTERN_CONF=TESTCONF) exits 0${out:+: $out}"
out=$(POSTERN_CONF="$testconf" mailq 2>&1) || { echo "$out"; fail "mailq exits 0"; }
ok "mailq (POSTERN_CONF=TESTCONF) exits 0: $(printf '%s' "$out" | head -n 1)"

# cron and mailx run sendmail as the user, who cannot read ssl_key's file.
out=$(printf 'Subject: from the user %s\n\nsent by the user\n' "$$" |
	runuser -u "$user" -- /usr/sbin/sendmail -C "$testconf" "$user@localhost" 2>&1) ||
	{ echo "$out"; fail "/usr/sbin/sendmail run by $user (not root) exits 0"; }
for _ in $(seq 150); do
	[ "$(grep -c '^From ' "$mbox")" -ge 3 ] && break
	sleep 0.2
done
grep -q "^Subject: from the user $$" "$mbox" || fail "the message $user sent with sendmail is in $mbox"
ok "/usr/sbin/sendmail run by $user (not root, as cron and mailx do) delivers"

# ---- failed logins, counted by fail2ban-regex over this server's log -------------------------
USER_NAME="$user" P_SUB="$p_sub" P_IMAP="$p_imap" P_POP3="$p_pop3" python3 - <<'EOF' || fail "failed logins"
import imaplib, os, poplib, smtplib, socket, ssl

user = os.environ["USER_NAME"]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def from_source(cls, port, src):
    """imaplib/poplib client connecting from the loopback address src."""
    class From(cls):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
    return From("127.0.0.1", port, timeout=30)

# 127.0.0.2: two SMTP AUTH failures; 127.0.0.3: one IMAP and one POP3.
for _ in range(2):
    with smtplib.SMTP("127.0.0.1", int(os.environ["P_SUB"]), timeout=30, source_address=("127.0.0.2", 0)) as c:
        c.ehlo("client.example.com.ar")
        c.starttls(context=ctx)
        c.ehlo("client.example.com.ar")
        try:
            c.login(user, "wrong password")
            raise SystemExit("SMTP AUTH with a wrong password succeeded")
        except smtplib.SMTPAuthenticationError:
            pass
im = from_source(imaplib.IMAP4, int(os.environ["P_IMAP"]), "127.0.0.3")
im.starttls(ssl_context=ctx)
try:
    im.login(user, "wrong password")
    raise SystemExit("IMAP LOGIN with a wrong password succeeded")
except imaplib.IMAP4.error:
    pass
im.logout()
p = from_source(poplib.POP3, int(os.environ["P_POP3"]), "127.0.0.3")
p.stls(context=ctx)
p.user(user)
try:
    p.pass_("wrong password")
    raise SystemExit("POP3 PASS with a wrong password succeeded")
except poplib.error_proto:
    pass
p.quit()
print("  ok - 2 SMTP AUTH failures from 127.0.0.2, 1 IMAP and 1 POP3 failure from 127.0.0.3", flush=True)
EOF
counts=""
for _ in $(seq 100); do
	counts=$(fail2ban-regex -o ip "$log" /etc/fail2ban/filter.d/postern.conf 2>"$tmp/f2b.err" | sort | uniq -c |
		awk '{printf "%s=%s ", $2, $1}')
	[ "$counts" = "127.0.0.2=2 127.0.0.3=2 " ] && break
	sleep 0.2
done
[ "$counts" = "127.0.0.2=2 127.0.0.3=2 " ] ||
	{ cat "$tmp/f2b.err"; fail "fail2ban-regex counts 2 failures from 127.0.0.2 and 2 from 127.0.0.3 (got: ${counts:-none})"; }
ok "fail2ban-regex over the server's log with the installed filter: $counts"

# ---- stop, clean up, purge -------------------------------------------------------------------
kill -TERM "$server_pid"
for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "postern stops on SIGTERM within 10 s"
wait "$server_pid" 2>/dev/null
server_pid=""
ok "postern stopped on SIGTERM"

userdel -r "$user" >/dev/null 2>&1
rm -f "$mbox"
user_made=0
getent passwd "$user" >/dev/null && fail "user $user removed"
ok "user $user removed"

# Purging postern takes the module packages that depend on it along.
apt-get purge -y -q postern >"$tmp/apt.log" 2>&1 || { tail -n 20 "$tmp/apt.log"; fail "apt-get purge postern"; }
installed=0
for p in postern postern-ldap postern-pgsql; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && fail "$p purged"
done
[ -e /usr/lib/postern ] && fail "/usr/lib/postern is gone after purge"
for f in /usr/sbin/postern /usr/sbin/sendmail /etc/postern /var/spool/postern /etc/pam.d/postern \
	/etc/fail2ban/filter.d/postern.conf /etc/fail2ban/jail.d/postern.conf /usr/share/doc/postern; do
	[ -e "$f" ] || [ -L "$f" ] && fail "$f is gone after purge"
done
ok "apt-get purge postern removed the binary, links, /etc/postern, the queue, the PAM service, the fail2ban files and the docs"
exit 0
