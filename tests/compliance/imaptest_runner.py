"""Runs scripted IMAP compliance tests in the format of Dovecot's imaptest
(src/tests/: header, commands with expected replies, $variables, fixture
mboxes) against Postern or any IMAP server, printing PASS/FAIL/SKIP per
script with every mismatch (command, expected, got). Our own code: the
script format is implemented from its documented behaviour.

Usage: imaptest_runner.py [SCRIPT_DIR] [--script NAME ...] [--host H --port P
--user U --password P] [--ignore-caps]. SCRIPT_DIR may come from
POSTERN_IMAPTEST_DIR; without one the runner says so and exits 0. Without
--port it starts a Postern daemon through tests/integration/harness.py.
"""
import argparse
import os
import re
import socket
import sys
import time
from datetime import datetime

DEFAULT_MAILBOX = "imaptest"
TIMEOUT = 20


class ScriptError(Exception):
    pass


# ---------------------------------------------------------------- IMAP values
class Atom(str):
    pass


class Str(str):
    """A quoted string or literal."""


NIL = None


def parse_args(text, pos=0, nested=False):
    """Parse IMAP data (atoms with every char but SP ( ) " {, quoted strings,
    literals {n}\\r\\n..., lists, NIL) into Python values."""
    out = []
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == " ":
            pos += 1
        elif c == "(":
            sub, pos = parse_args(text, pos + 1, True)
            out.append(sub)
        elif c == ")":
            if nested:
                return out, pos + 1
            raise ScriptError("unbalanced ) in %r" % text)
        elif c == '"':
            j = pos + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            out.append(Str("".join(buf)))
            pos = j + 1
        elif c in "{~" and re.match(r"~?\{(\d+)\+?\}\r\n", text[pos:]):
            m = re.match(r"~?\{(\d+)\+?\}\r\n", text[pos:])
            start = pos + m.end()
            out.append(Str(text[start:start + int(m.group(1))]))
            pos = start + int(m.group(1))
        else:
            m = re.match(r'[^ ()"]+', text[pos:])
            if not m:
                # a stray quote/brace char: treat it as a one-char atom
                out.append(Atom(c))
                pos += 1
                continue
            tok = m.group(0)
            out.append(NIL if tok.upper() == "NIL" else Atom(tok))
            pos += len(tok)
    if nested:
        raise ScriptError("unbalanced ( in %r" % text)
    return out, pos


def to_str(v):
    if v is None:
        return "NIL"
    if isinstance(v, list):
        return "(" + " ".join(to_str(x) for x in v) + ")"
    if isinstance(v, Str):
        if "\n" in v or len(v) > 200:
            return "{%d}%r" % (len(v), str(v)[:300])
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    return str(v)


# ------------------------------------------------------------- script format
class Command:
    def __init__(self, conn, text, reply, tag, lineno):
        self.conn, self.text, self.reply, self.tag, self.lineno = conn, text, reply, tag, lineno


class Group:
    def __init__(self, conn):
        self.conn = conn
        self.commands = []
        self.untagged = []   # (existence '*','!','?', args)
        self.ordered = False
        self.pending = 0
        self.banner = False


class Script:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.caps = []
        self.connections = 1
        self.messages = None      # None: all of the mbox
        self.state = "selected"
        self.groups = []
        mbox = path + ".mbox"
        self.mbox = mbox if os.path.exists(mbox) else os.path.join(os.path.dirname(path), "default.mbox")
        self._parse()

    def _lines(self):
        """Logical lines: {{{ ... }}} multi-line literals folded in."""
        with open(self.path, encoding="utf-8", errors="replace") as f:
            raw = f.read().split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        i = 0
        while i < len(raw):
            line, lineno = raw[i], i + 1
            i += 1
            while line.endswith("{{{"):
                binary = line.endswith("~{{{")
                head = line[:-4] if binary else line[:-3]
                body = []
                while i < len(raw) and not raw[i].startswith("}}}"):
                    body.append(raw[i])
                    i += 1
                if i >= len(raw):
                    raise ScriptError("line %d: multi-line literal not ended" % lineno)
                tail = raw[i][3:]
                i += 1
                data = "\r\n".join(body)
                line = head + ("~" if binary else "") + "{%d}\r\n" % len(data) + data + tail
            yield lineno, line

    def _parse(self):
        header = True
        group = None
        first = True
        for lineno, line in self._lines():
            if first and line == "":
                header = False
            first = False
            if line == "":
                header = False
                continue
            if line.startswith("#"):
                continue
            if header:
                key, sep, value = line.partition(":")
                if not sep:
                    raise ScriptError("line %d: header without ':'" % lineno)
                key, value = key.strip().lower(), value.strip()
                if key == "capabilities":
                    self.caps = value.split()
                elif key == "connections":
                    self.connections = int(value)
                elif key == "messages":
                    self.messages = None if value == "all" else int(value)
                elif key == "state":
                    self.state = value.lower()
                elif key == "ignore_extra_untagged":
                    pass
                else:
                    raise ScriptError("line %d: unknown header %s" % (lineno, key))
                continue
            group = self._command_line(group, lineno, line)
        if group is not None and group.pending:
            raise ScriptError("missing reply at end of script")

    @staticmethod
    def _reply_prefix(text):
        """Split an optional 'tagN' and ok/no/bad/"" reply off a line."""
        tag = None
        m = re.match(r"(?i)tag(\d+)(?: |$)", text)
        if m:
            tag = int(m.group(1))
            text = text[m.end():]
        m = re.match(r'(?i)(ok|no|bad|"")(?= |$)', text)
        if not m:
            return tag, None, text
        reply = "" if m.group(1) == '""' else m.group(1).lower()
        return tag, reply, text[m.end():].lstrip(" ")

    def _command_line(self, group, lineno, line):
        if group is not None:
            if line == "!ordered":
                group.ordered = True
                return group
            if line[:2] in ("* ", "! ", "? "):
                group.untagged.append((line[0], parse_args(line[2:])[0]))
                return group
            if group.pending:
                rest = line
                if self.connections > 1:
                    conn, _, rest = line.partition(" ")
                tag, reply, after = self._reply_prefix(rest)
                if reply is not None:
                    for c in group.commands:
                        if c.tag == tag and c.reply is None:
                            c.reply = [Atom(reply)] + parse_args(after)[0] if reply else [Atom("")]
                            group.pending -= 1
                            return group
                    raise ScriptError("line %d: reply for unknown tag" % lineno)
        conn = 1
        if self.connections > 1:
            c, _, line = line.partition(" ")
            if not c.isdigit():
                raise ScriptError("line %d: missing connection index" % lineno)
            conn = int(c)
        tag, reply, text = self._reply_prefix(line)
        if group is None or group.pending == 0 or tag is None:
            if group is not None and group.pending and tag is None:
                raise ScriptError("line %d: missing reply for previous command" % lineno)
            if group is None or not group.pending:
                group = Group(conn)
                self.groups.append(group)
        if text[:2] in ("* ", "! ", "? ") and not group.commands:
            group.banner = True
            group.untagged.append((text[0], parse_args(text[2:])[0]))
            return group
        cmd = Command(conn, text, [Atom(reply)] if reply else ([Atom("")] if reply == "" else None), tag, lineno)
        if cmd.reply is None:
            group.pending += 1
        group.commands.append(cmd)
        return group


# ------------------------------------------------------------------ fixtures
def read_mbox(path):
    """Messages of an mbox as (CRLF bytes, internaldate string)."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    msgs, cur, date = [], None, None
    for line in lines:
        if line.startswith(b"From ") and (cur is None or not cur or cur[-1] == b""):
            if cur is not None:
                msgs.append((cur, date))
            cur, date = [], from_line_date(line.decode(errors="replace"))
            continue
        if cur is not None:
            cur.append(line)
    if cur is not None:
        msgs.append((cur, date))
    out = []
    for body, date in msgs:
        if body and body[-1] == b"":
            body = body[:-1]   # the blank line that separates messages
        out.append((b"".join(l + b"\r\n" for l in body), date))
    return out


def from_line_date(line):
    m = re.search(r"(\w{3}) (\w{3}) +(\d+) (\d\d:\d\d:\d\d) (\d{4})(?: ([+-]\d{4}))?", line)
    if not m:
        return None
    _, mon, day, hms, year, zone = m.groups()
    return "%02d-%s-%s %s %s" % (int(day), mon, year, hms, zone or "+0000")


# ------------------------------------------------------------------- client
class Conn:
    def __init__(self, host, port, idx):
        self.idx = idx
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buf = b""
        self.tagno = 0
        self.exists = 0
        self.caps = []
        self.closed = False

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise EOFError("connection %d closed by server" % self.idx)
        self.buf += chunk

    def read_response(self):
        """One full response line with its literals, as text."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            out += line
            m = re.search(rb"\{(\d+)\+?\}$", line)
            if not m:
                return out.decode("utf-8", errors="replace")
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def next_tag(self):
        self.tagno += 1
        return "%d.%d" % (self.idx, self.tagno)

    def track(self, args):
        if len(args) >= 2 and isinstance(args[1], str) and args[0] is not None and str(args[0]).isdigit():
            word = args[1].upper()
            if word == "EXISTS":
                self.exists = int(args[0])
            elif word == "EXPUNGE":
                self.exists -= 1
        if args and isinstance(args[0], str) and args[0].upper() == "CAPABILITY":
            self.caps = [str(a).upper() for a in args[1:]]
        for a in args:
            if isinstance(a, str) and a.upper().startswith("[CAPABILITY"):
                i = args.index(a)
                caps = []
                for b in args[i + 1:]:
                    caps.append(str(b).rstrip("]").upper())
                    if str(b).endswith("]"):
                        break
                self.caps = caps

    def simple(self, text, literal=None):
        """Run a command to completion: (untagged list, tagged args)."""
        tag = self.next_tag()
        if literal is None:
            self.send("%s %s\r\n" % (tag, text))
        else:
            self.send("%s %s {%d}\r\n" % (tag, text, len(literal)))
            line = self.read_response()
            if not line.startswith("+"):
                return [], parse_args(line.partition(" ")[2])[0]
            self.send(literal + b"\r\n")
        untagged = []
        while True:
            line = self.read_response()
            if line.startswith(tag + " "):
                args = parse_args(line[len(tag) + 1:])[0]
                self.track(args)
                return untagged, args
            if line.startswith("* "):
                args = parse_args(line[2:])[0]
                self.track(args)
                untagged.append(args)


def quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------- execution
class Run:
    def __init__(self, script, opts):
        self.s = script
        self.o = opts
        self.vars = {"mailbox": opts.mailbox, "user": opts.user, "username": opts.user.split("@")[0],
                     "password": opts.password, "domain": "localhost"}
        self.failures = []
        self.msgs = read_mbox(script.mbox)
        self.msg_next = 0
        self.conns = []
        self.seqmap = []
        self.added = []
        self.cur_tag = None

    # -- variables and matching
    def rel_seq(self, n):
        if n == 0 or n > len(self.seqmap):
            return "<out of range>"
        return "<expunged>" if self.seqmap[n - 1] == 0 else str(self.seqmap[n - 1])

    def expand(self, text, tag=None):
        def var(m):
            name = m.group(1) or m.group(2)
            if name == "$":
                return "$"
            if name.isdigit():
                return self.rel_seq(int(name))
            if name == "tag" and tag:
                return tag
            if name not in self.vars:
                raise ScriptError("uninitialized variable $%s" % name)
            return self.vars[name]
        return re.sub(r"\$(?:\{([^}]*)\}|(\$|[A-Za-z0-9_]+))", var, text)

    def match_str(self, pat, inp, prefix):
        """Match one pattern string against one input string, binding
        unknown $variables to the input up to the pattern's next char."""
        out = []
        i = j = 0
        icase = True
        while i < len(pat):
            c = pat[i]
            if c != "$" or pat[i + 1:i + 2] == "$":
                if c == "$":
                    i += 1
                if j >= len(inp) or pat[i].upper() != inp[j].upper():
                    return False
                out.append(pat[i])
                i += 1
                j += 1
                continue
            i += 1
            if pat[i:i + 1] == "{":
                k = pat.index("}", i)
                name = pat[i + 1:k]
                i = k + 1
            else:
                m = re.match(r"[A-Za-z0-9_]*", pat[i:])
                name = m.group(0)
                i += len(name)
            if name.isdigit():
                value = self.rel_seq(int(name))
            elif name == "tag" and self.cur_tag:
                value = self.cur_tag
            elif name.startswith("case:"):
                icase = False
                value = name[5:]
            elif name and name in self.vars:
                value = self.vars[name]
            else:
                nxt = pat[i:i + 1]
                k = j
                while k < len(inp) and (not nxt or inp[k].upper() != nxt.upper()):
                    k += 1
                value = inp[j:k]
                if name:
                    self.vars[name] = value
                    self.added.append(name)
            if inp[j:j + len(value)] != value:
                return False
            out.append(value)
            j += len(value)
        full = "".join(out)
        if prefix:
            a, b = inp[:len(full)], full
        else:
            a, b = inp, full
        return a.upper() == b.upper() if icase else a == b

    def match_args(self, pat, args, maxn=None, prefix=False):
        """Count of leading matched arguments, or True for a full match."""
        n = 0
        pi = ai = 0
        while pi < len(pat) and (maxn is None or n < maxn):
            p = pat[pi]
            a = args[ai] if ai < len(args) else "<missing>"
            if p is None:
                if a is not None:
                    return n
            elif isinstance(p, list):
                if not isinstance(a, list):
                    return n
                r = self.match_list(p, a)
                if r is not True:
                    return n + r
            else:
                if p == "$" and isinstance(a, list):
                    pass
                elif p == "$]":
                    while ai < len(args) and isinstance(args[ai], str) and "]" not in args[ai]:
                        ai += 1
                elif a is None or isinstance(a, list) or a == "<missing>" and ai >= len(args):
                    return n
                elif not self.match_str(p, a, prefix and pi == len(pat) - 1):
                    return n
            n += 1
            pi += 1
            ai += 1
        if prefix or ai >= len(args) or maxn is not None:
            return True
        return n

    def match_list(self, pat, args):
        unordered, chain, noextra = False, 1, None
        ignores, bans = [], []
        while pat and isinstance(pat[0], str) and pat[0].startswith("$!"):
            d = pat[0][2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra is None:
                    noextra = False
                if d.startswith("unordered="):
                    chain = int(d[10:])
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = False
            elif d == "noextra":
                noextra = True
            elif d.startswith("ignore="):
                ignores.append(d[7:].lower())
            elif d.startswith("ban="):
                bans.append(d[4:].lower())
            pat = pat[1:]
        if noextra is None:
            noextra = True
        if not unordered:
            return self.match_args(pat, args)
        if len(args) % chain:
            return 0
        matched = [False] * len(args)
        ret = 0
        for pi in range(0, len(pat), chain):
            for ai in range(0, len(args), chain):
                if self.match_args(pat[pi:pi + chain], args[ai:ai + chain], chain) is True:
                    matched[ai] = True
                    break
            else:
                return ret
            ret += 1
        for ai in range(0, len(args), chain):
            if matched[ai] or not isinstance(args[ai], str):
                continue
            if noextra and args[ai].lower() not in ignores:
                return ret
            if not noextra and args[ai].lower() in bans:
                return ret
        return True

    @staticmethod
    def add_defaults(args, reply_name, depth=0, parent_idx=None, prev_atom=None, top_idx=None):
        """imaptest's implied directives: FETCH/STATUS items and LIST flags
        unordered; FETCH FLAGS unordered with \\Recent ignored."""
        out = []
        for i, a in enumerate(args):
            if isinstance(a, list):
                has = a and isinstance(a[0], str) and a[0].startswith("$!")
                sub = Run.add_defaults(a, reply_name, depth + 1, i, args[i - 1] if i else None,
                                       parent_idx if depth == 1 else None)
                if not has:
                    if reply_name in ("list", "lsub") and depth == 0 and i == 1:
                        sub = ["$!unordered"] + sub
                    elif reply_name == "status" and depth == 0 and i == 2:
                        sub = ["$!unordered=2"] + sub
                    elif reply_name == "fetch" and depth == 0 and i == 2:
                        sub = ["$!unordered=2"] + sub
                    elif (reply_name == "fetch" and depth == 1 and parent_idx == 2 and
                          isinstance(args[i - 1] if i else None, str) and args[i - 1].lower() == "flags"):
                        sub = ["$!unordered", "$!noextra", "$!ignore=\\recent",
                               "$!ignore=$HasAttachment", "$!ignore=$HasNoAttachment"] + sub
                out.append(sub)
            else:
                out.append(a)
        return out

    @staticmethod
    def reply_name(args):
        if not args or not isinstance(args[0], str):
            return ""
        first = args[0]
        if first.startswith("$") or first[:1].isdigit():
            return args[1].lower() if len(args) > 1 and isinstance(args[1], str) else ""
        return first.lower()

    def fail(self, group, what):
        cmds = "; ".join("%d: %s" % (c.conn, c.text) for c in group.commands) or "(banner)"
        self.failures.append("line %d [%s]\n      %s" % (
            group.commands[0].lineno if group.commands else 0, cmds, what.replace("\n", "\n      ")))

    # -- startup
    def connect(self):
        for i in range(self.s.connections):
            c = Conn(self.o.host, self.o.port, i + 1)
            greet = c.read_response()
            c.track(parse_args(greet[2:])[0])
            _, tagged = c.simple("LOGIN %s %s" % (quote(self.o.user), quote(self.o.password)))
            if not tagged or str(tagged[0]).upper() != "OK":
                raise ScriptError("LOGIN failed: %s" % to_str(tagged))
            c.track(tagged)
            self.conns.append(c)

    def have_caps(self):
        c = self.conns[0]
        _, t = c.simple("CAPABILITY")
        have = set(c.caps)
        return [x for x in self.s.caps if x.upper() not in have]

    def append_next(self, conn, args_text):
        if self.msg_next >= len(self.msgs):
            self.msg_next = 0   # imaptest wraps around the fixture
        body, date = self.msgs[self.msg_next]
        self.msg_next += 1
        text = "APPEND " + args_text
        if date and not re.search(r'"\d', args_text):
            text += ' "%s"' % date
        return conn.simple(text, literal=body)

    def startup(self):
        c = self.conns[0]
        box = self.o.mailbox
        if self.s.state == "nonauth":
            return
        untagged, _ = c.simple("LIST \"\" %s" % quote(box + "*"))
        names = [u[3] for u in untagged if len(u) >= 4 and str(u[0]).upper() == "LIST"]
        untagged, _ = c.simple("LSUB \"\" %s" % quote(box + "*"))
        subs = [u[3] for u in untagged if len(u) >= 4 and str(u[0]).upper() == "LSUB"]
        for n in sorted(names, key=lambda s: s.lower(), reverse=True):
            c.simple("DELETE %s" % quote(n))
        for n in sorted(subs, key=lambda s: s.lower(), reverse=True):
            c.simple("UNSUBSCRIBE %s" % quote(n))
        if self.s.state == "auth":
            return
        if box.upper() != "INBOX":
            _, t = c.simple("CREATE %s" % quote(box))
            if str(t[0]).upper() != "OK":
                raise ScriptError("CREATE %s failed: %s" % (box, to_str(t)))
        if self.s.state == "created":
            return
        count = len(self.msgs) if self.s.messages is None else self.s.messages
        for _ in range(count):
            _, t = self.append_next(c, quote(box))
            if str(t[0]).upper() != "OK":
                raise ScriptError("APPEND failed: %s" % to_str(t))
        if self.s.state == "appended":
            return
        for conn in self.conns:
            _, t = conn.simple("SELECT %s" % quote(box))
            if str(t[0]).upper() != "OK":
                raise ScriptError("SELECT failed: %s" % to_str(t))

    # -- one group
    def run_group(self, group):
        conn = self.conns[group.conn - 1]
        self.seqmap = list(range(1, conn.exists + 1))
        found = [False] * len(group.untagged)
        best = [(0, None)] * len(group.untagged)
        pend = {}
        self.cur_tag = None
        for cmd in group.commands:
            text = self.expand(cmd.text)
            tag = conn.next_tag()
            pend[tag] = cmd
            low = text.lower()
            if low == "append" or (low.startswith("append ") and not re.search(r"\{\d+\+?\}", text)):
                args = quote(self.o.mailbox) if low == "append" else text[7:]
                if self.msg_next >= len(self.msgs):
                    self.msg_next = 0
                body, date = self.msgs[self.msg_next]
                self.msg_next += 1
                extra = ' "%s"' % date if date and not re.search(r'"\d', args) else ""
                conn.send("%s APPEND %s%s {%d+}\r\n" % (tag, args, extra, len(body)))
                conn.send(body + b"\r\n")
            else:
                self.send_with_literals(conn, tag, text)
        while pend:
            try:
                line = conn.read_response()
            except (EOFError, OSError) as e:
                if all(c.reply == [""] for c in pend.values()):
                    return
                self.fail(group, "connection lost: %s" % e)
                raise
            if line.startswith("+"):
                continue
            tag, _, rest = line.partition(" ")
            args = parse_args(rest)[0]
            if tag == "*":
                # "$tag" in an untagged reply (ESEARCH's TAG) is the tag of
                # the command it answers: known when one is pending
                self.cur_tag = next(iter(pend)) if len(pend) == 1 else None
                self.on_untagged(group, args, found, best)
                conn.track(args)
                if len(args) >= 2 and isinstance(args[1], str) and args[1].upper() == "EXPUNGE":
                    self.expunge_seq(int(args[0]))
                continue
            if tag not in pend:
                continue
            cmd = pend.pop(tag)
            conn.track(args)
            self.cur_tag = tag
            want = cmd.reply
            if want and want != [""]:
                if self.match_args(want, args, prefix=True) is not True:
                    self.fail(group, "cmd: %s\n expected tagged: %s\n got: %s %s" % (
                        self.expand(cmd.text), to_str(want)[1:-1], tag, to_str(args)[1:-1]))
            self.cur_tag = None
        for i, (kind, pat) in enumerate(group.untagged):
            if kind == "*" and not found[i]:
                try:
                    exp = self.expand(to_str(pat)[1:-1].replace("$!", "$$!"))
                except ScriptError:
                    exp = to_str(pat)[1:-1]
                self.fail(group, "missing untagged: %s\n expanded: %s\n best match: %s" % (
                    to_str(pat)[1:-1], exp, best[i][1] or "(none)"))

    def send_with_literals(self, conn, tag, text):
        parts = re.split(r"(~?\{\d+\+?\}\r\n)", text)
        data = tag + " " + parts[0]
        i = 1
        while i < len(parts):
            lit = parts[i]
            n = int(re.search(r"\d+", lit).group(0))
            payload, rest = parts[i + 1][:n], parts[i + 1][n:]
            conn.send(data + lit.replace("}", "+}", 1) if "+" not in lit else data + lit)
            data = payload + rest
            i += 2
        conn.send(data + "\r\n")

    def expunge_seq(self, seq):
        if seq > len(self.seqmap):
            return
        for i in range(seq - 1, len(self.seqmap)):
            if self.seqmap[i] == seq:
                self.seqmap[i] = 0
            elif self.seqmap[i] > seq:
                self.seqmap[i] -= 1

    def on_untagged(self, group, args, found, best):
        prefix = bool(args) and isinstance(args[0], str) and args[0].upper() in ("OK", "NO", "BAD", "BYE")
        for i, (kind, pat) in enumerate(group.untagged):
            if found[i]:
                continue
            self.added = []
            pat2 = self.add_defaults(pat, self.reply_name(pat))
            r = self.match_args(pat2, args, prefix=prefix)
            if r is True:
                if kind == "!":
                    self.fail(group, "unexpected untagged: %s\n matched forbidden: %s" % (
                        to_str(args)[1:-1], to_str(pat)[1:-1]))
                    return
                found[i] = True
                if group.ordered:
                    break
                continue
            if r > best[i][0] or best[i][1] is None:
                best[i] = (r, to_str(args)[1:-1][:400])
            for name in self.added:
                self.vars.pop(name, None)
            if group.ordered and kind == "*":
                break

    def run(self):
        self.connect()
        missing = self.have_caps()
        if missing and not self.o.ignore_caps:
            return "SKIP", "server lacks " + " ".join(missing)
        self.startup()
        for group in self.s.groups:
            try:
                self.run_group(group)
            except ScriptError as e:
                self.fail(group, str(e))
            except (EOFError, OSError) as e:
                self.fail(group, "I/O: %s" % e)
                break
        for c in self.conns:
            try:
                if not c.closed:
                    c.send("%s LOGOUT\r\n" % c.next_tag())
                c.sock.close()
            except OSError:
                pass
        return ("FAIL" if self.failures else "PASS"), "\n".join(self.failures)


def start_postern():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "integration"))
    from harness import Server
    s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
    s.start()
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", default=os.environ.get("POSTERN_IMAPTEST_DIR"))
    ap.add_argument("--script", action="append", default=[])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--mailbox", default=DEFAULT_MAILBOX)
    ap.add_argument("--ignore-caps", action="store_true", help="run scripts whose capabilities are missing")
    o = ap.parse_args(argv)
    if not o.dir:
        print("imaptest_runner: no script directory (argument or POSTERN_IMAPTEST_DIR): skipped")
        return 0
    names = o.script or sorted(n for n in os.listdir(o.dir)
                               if not n.startswith(".") and not n.endswith(".mbox") and n not in ("Makefile.am",)
                               and os.path.isfile(os.path.join(o.dir, n)))
    server = None
    if o.port is None:
        server = start_postern()
        o.port = server.ports["imap"]
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        for n in names:
            try:
                script = Script(os.path.join(o.dir, n))
                status, detail = Run(script, o).run()
            except ScriptError as e:
                status, detail = "FAIL", "setup: %s" % e
            except (EOFError, OSError) as e:
                status, detail = "FAIL", "I/O: %s" % e
            counts[status] += 1
            print("%-4s %s" % (status, n))
            if detail:
                print("    " + detail.replace("\n", "\n    "))
            sys.stdout.flush()
    finally:
        if server:
            server.cleanup()
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
