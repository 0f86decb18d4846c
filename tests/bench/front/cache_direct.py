"""The LDAP credential cache alone (issue 16), without the front's proxy
hop: one Postern on loopback with `passdb = ldap:` (bind as the user),
its users' mailboxes local, and slapd beside it; loadgen.py's IMAP
LOGIN+LOGOUT loop from 32 loopback addresses, `cache_ttl = 0` against
`cache_ttl = 60` (after a warm-up pass), alternating which goes first in
each round. Prints logins/s and CPU per login of Postern's process tree
and of slapd. As root (`python3 tests/bench/front/cache_direct.py`,
build/ of the tree; not CI)."""
import argparse
import json
import os
import pwd
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import slapd_fixture  # noqa: E402
from harness import Server  # noqa: E402
from slapd_fixture import ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, user_ldif  # noqa: E402


def tree_cpu(pid):
    """CPU seconds of pid and its descendants (reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    seen, todo, total = set(), [pid], 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm-both", action="store_true", help="the warm-up pass with the cache off too")
    a = ap.parse_args()
    sources = ",".join("127.0.1.%d" % i for i in range(1, 33))
    users = [("cu%04d" % i, "pw-%04d" % i) for i in range(a.users)]
    results = {False: [], True: []}
    for rnd in range(a.rounds):
        for cache in ((False, True) if rnd % 2 == 0 else (True, False)):
            srv = Server(modules=("mbox", "imap", "ldap"), users=(), as_root=True)
            saved = slapd_fixture.CONFIG
            slapd_fixture.CONFIG = saved + "olcDbIndex: objectClass,uid eq\n"
            try:
                uid = pwd.getpwnam(srv.mail_owner).pw_uid
                home = srv.path("home")
                data = ""
                for name, pw in users:
                    data += user_ldif(name, uid, pw, os.path.join(home, name))
                    os.makedirs(os.path.join(home, name, "mail"))
                    os.chown(os.path.join(home, name), uid, -1)
                    os.chown(os.path.join(home, name, "mail"), uid, -1)
                os.chmod(srv.path("spool"), 0o1777)
                slapd = Slapd(data)
            finally:
                slapd_fixture.CONFIG = saved
            try:
                slapd.start()
                cf = srv.path("ldap-users.cf")
                ttl = 60 if cache else 0
                with open(cf, "w") as f:
                    f.write("server_host = %s\nsearch_base = %s\nbind = yes\nbind_dn = %s\nbind_pw = %s\n"
                            "cache_ttl = %d\ncache_negative_ttl = %d\n"
                            "user_filter = (&(objectClass=posixAccount)(uid=%%u))\n"
                            % (slapd.uri, SUFFIX, ADMIN_DN, ADMIN_PW, ttl, ttl))
                srv.write_conf("userdb = ldap:%s\npassdb = ldap:%s\ndisable_plaintext_auth = no\n"
                               "auth_failure_delay = 0\nauth_throttle = no\n"
                               "mail_max_userip_connections = 0\n" % (cf, cf))
                srv.start()
                port = srv.ports["imap"]
                userlist = ",".join("%s:%s" % u for u in users)

                def load(seconds):
                    r = subprocess.run([sys.executable, os.path.join(HERE, "loadgen.py"), "--host", "127.0.0.1",
                                        "--port", str(port), "--clients", str(a.clients), "--seconds",
                                        str(seconds), "--users", userlist, "--sources", sources],
                                       capture_output=True, text=True, check=True)
                    return json.loads(r.stdout.strip().splitlines()[-1])
                if cache or a.warm_both:
                    load(max(3.0, a.users / 100.0))
                c0, d0 = tree_cpu(srv.pid), tree_cpu(slapd.proc.pid)
                st = load(a.seconds)
                c1, d1 = tree_cpu(srv.pid), tree_cpu(slapd.proc.pid)
                rate = st["ok"] / st["seconds"]
                per = (lambda c: 1000.0 * c / st["ok"] if st["ok"] else float("nan"))
                results[cache].append((rate, per(c1 - c0), per(d1 - d0), st["fail"]))
                print("round %d cache=%s: %d ok, %d failed, %.0f logins/s; CPU/login postern %.2f ms, slapd %.2f ms"
                      % (rnd + 1, "on" if cache else "off", st["ok"], st["fail"], rate, per(c1 - c0),
                         per(d1 - d0)), flush=True)
            finally:
                srv.cleanup()
                slapd.cleanup()
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    for cache in (False, True):
        r = results[cache]
        print("cache %s: median %.0f logins/s (%s); CPU/login postern %.2f ms, slapd %.2f ms; %d failed"
              % ("on" if cache else "off", statistics.median(x[0] for x in r), " ".join("%.0f" % x[0] for x in r),
                 statistics.median(x[1] for x in r), statistics.median(x[2] for x in r), sum(x[3] for x in r)))


if __name__ == "__main__":
    main()
