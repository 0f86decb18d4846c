"""Helpers for the real-client tests (test_imap_clients_*.py): a daemon
with IMAP and POP3 whose certificate is signed by a CA the test makes (so
clients verify the chain and the name instead of skipping verification),
a private HOME for each client, seeding through imaplib.

The server certificate names 127.0.0.1 both as an IP address and as a DNS
name: clients connect to the address (no /etc/hosts name is relied on),
and some of them (mbsync, mutt, fetchmail) match the host only against
DNS names and the CN.
"""
import atexit
import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from harness import Server

_ca_cache = None


def test_ca():
    """(ca.pem, cert.pem, key.pem): a CA and a server certificate it
    signed, made once per test process."""
    global _ca_cache
    if _ca_cache and all(os.path.exists(p) for p in _ca_cache):
        return _ca_cache
    d = tempfile.mkdtemp(prefix="postern-ca-")
    atexit.register(shutil.rmtree, d, True)
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    cert, key, csr = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"), os.path.join(d, "req.csr")
    ext = os.path.join(d, "ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Postern client-test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=mail.example.com.ar")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:mail.example.com.ar,DNS:127.0.0.1,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2", "-extfile", ext)
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)   # the daemon runs as nobody and reads it
    _ca_cache = (ca, cert, key)
    return _ca_cache


def client_server(test, conf="", listeners=("smtpd", "imap", "imaps", "pop3", "pop3s"), **kw):
    """Started daemon with mbox, smtp, imap and pop3, TLS from test_ca()."""
    ca, cert, key = test_ca()
    s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=listeners, tls=False, **kw)
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nssl_cert = <%s\nssl_key = <%s\n%s\n"
                 % (s.passwd_file, cert, key, conf))
    test.addCleanup(s.cleanup)
    s.start()
    return s


def need(*programs):
    """Skip the test class when a client is not installed (scripts/deps.sh
    test installs them all)."""
    missing = [p for p in programs if not shutil.which(p)]
    return unittest.skipIf(missing, "not installed: %s (scripts/deps.sh test)" % " ".join(missing))


def home(test):
    """A private HOME for a client run: its config, state and mail."""
    d = tempfile.mkdtemp(prefix="postern-client-")
    test.addCleanup(shutil.rmtree, d, True)
    return d


def run(argv, home, timeout=40, input=None, ok=True, env=None):
    """Run a client with HOME=home; with ok, fail the test on a non-zero
    exit (showing its output)."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
         "TZ": os.environ.get("TZ", "UTC"), "USER": "root", "LOGNAME": "root", "TERM": "dumb"}
    e.update(env or {})
    try:
        p = subprocess.run(argv, cwd=home, env=e, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as t:
        # what the client said before it hung is the clue
        raise AssertionError("%s timed out after %ss\nstdout:\n%s\nstderr:\n%s" % (
            argv[0], timeout, (t.stdout or b"").decode(errors="replace")[-6000:],
            (t.stderr or b"").decode(errors="replace")[-6000:])) from None
    if ok and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            argv[0], p.returncode, p.stdout.decode(errors="replace")[-6000:],
            p.stderr.decode(errors="replace")[-6000:]))
    return p


def imap(server, user="alice", password="secret"):
    c = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    # imaplib sends a literal and its closing CRLF in two writes: with
    # Nagle on, each APPEND would wait for the server's delayed ACK
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.login(user, password)
    return c


def message(i, subject=None, extra="", body=None):
    """A message with CRLF line ends and a body line starting "From "
    (mbox quoting must not show through)."""
    return ("From: Sender %d <s%d@example.com>\r\nTo: alice@example.com.ar\r\nSubject: %s\r\n"
            "Message-ID: <c%d@example.com>\r\nDate: Mon, 1 Jan 2024 10:%02d:00 +0000\r\n%s\r\n%s"
            % (i, i, subject or "message %d" % i, i, i % 60, extra,
               body if body is not None else "body %d\r\nFrom here on, a quoted line\r\n>From too\r\n" % i)).encode()


def q(box):
    """A mailbox name as imaplib needs it on the wire (it quotes nothing)."""
    if box and all(ch.isalnum() or ch in "&-_./[" for ch in box):
        return box
    return '"%s"' % box.replace("\\", "\\\\").replace('"', '\\"')


def seed(server, box, msgs, user="alice"):
    """APPEND msgs [(bytes, flags string or None)] to box (created if
    missing); returns the UIDs."""
    c = imap(server, user)
    try:
        if box.upper() != "INBOX":
            c.create(q(box))
        uids = []
        for data, flags in msgs:
            typ, resp = c.append(q(box), flags, None, data)
            assert typ == "OK", resp
            uids.append(int(resp[0].split()[2].rstrip(b"]")))   # [APPENDUID v uid]
        return uids
    finally:
        c.logout()


def server_state(server, box, user="alice"):
    """{Message-ID: (flags set without \\Recent, full message bytes)} of box."""
    c = imap(server, user)
    try:
        typ, _ = c.select(q(box), readonly=True)
        assert typ == "OK", box
        typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        out = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = set(imaplib.ParseFlags(item[0])) - {b"\\Recent"}
            out[message_id(item[1])] = ({f.decode() for f in flags}, item[1])
        return out
    finally:
        c.logout()


def message_id(data):
    for line in data.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if line in (b"", b"\r"):
            break
    return None


def tls_context():
    ctx = ssl.create_default_context(cafile=test_ca()[0])
    return ctx


def run_pty(argv, home, timeout=40):
    """Run a full-screen client (mutt) on a pseudo-terminal of its own
    until it exits; its keystrokes come from its command line (push), so
    nothing is typed. Returns (exit status, screen output)."""
    import pty
    import select
    import time
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
           "TZ": os.environ.get("TZ", "UTC"),
           "USER": "root", "LOGNAME": "root", "TERM": "vt100", "LINES": "40", "COLUMNS": "150"}
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=home, start_new_session=True)
    os.close(slave)
    out = b""
    end = time.time() + timeout
    try:
        while p.poll() is None and time.time() < end:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:   # EIO: the client closed the terminal
                    break
        if p.poll() is None and time.time() >= end:
            p.kill()
            p.wait()
            raise AssertionError("%s did not finish within %ss; screen:\n%r" % (argv[0], timeout, out[-3000:]))
        return p.wait(timeout=10), out
    finally:
        os.close(master)
