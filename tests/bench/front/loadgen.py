"""IMAP login load: C parallel clients, each in a loop: connect, read the
greeting, LOGIN user password, LOGOUT, close; for --seconds. Users are
taken round-robin from --users (name:password,...); client i connects
from --sources[i mod n] (many client addresses, as real users have). Prints one JSON line:
logins that got "a OK", failures (anything else) and the elapsed time.
Run inside the client's network namespace (ip netns exec ...): the
sockets are made there. Part of tests/bench/front (not CI)."""
import argparse
import asyncio
import json
import sys
import time


async def one_login(host, port, user, password, timeout, source):
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(source, 0) if source else None),
                                  timeout)
    try:
        greeting = await asyncio.wait_for(r.readline(), timeout)
        if not greeting.startswith(b"* OK"):
            return False
        w.write(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
        ok = False
        while True:
            line = await asyncio.wait_for(r.readline(), timeout)
            if not line:
                return False
            if line.startswith(b"a "):
                ok = line.startswith(b"a OK")
                break
        if not ok:
            return False
        w.write(b"b LOGOUT\r\n")
        while True:
            line = await asyncio.wait_for(r.readline(), timeout)
            if not line or line.startswith(b"b "):
                break
        return True
    finally:
        w.close()
        try:
            await w.wait_closed()
        except OSError:
            pass


async def client(i, args, users, stats, end):
    k = i
    while time.monotonic() < end:
        user, password = users[k % len(users)]
        k += args.clients
        try:
            ok = await one_login(args.host, args.port, user, password, args.timeout,
                                 args.sources[i % len(args.sources)] if args.sources else None)
        except (OSError, asyncio.TimeoutError):
            ok = False
        stats["ok" if ok else "fail"] += 1


async def main_async(args):
    users = [tuple(u.split(":", 1)) for u in args.users.split(",")]
    stats = {"ok": 0, "fail": 0}
    t0 = time.monotonic()
    end = t0 + args.seconds
    await asyncio.gather(*(client(i, args, users, stats, end) for i in range(args.clients)))
    stats["seconds"] = time.monotonic() - t0
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--users", required=True)
    ap.add_argument("--sources", default="", help="client addresses to connect from, round-robin per client")
    args = ap.parse_args()
    args.sources = [a for a in args.sources.split(",") if a]
    stats = asyncio.run(main_async(args))
    json.dump(stats, sys.stdout)
    print()


if __name__ == "__main__":
    main()
