"""A CRLF line client over any connected socket (plain or TLS), for tests
that need the raw wire: what arrives, line by line, and whether the server
hung up."""
import socket


class Lines:
    def __init__(self, sock, timeout=15):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    @classmethod
    def connect(cls, port, host="127.0.0.1", source=None, timeout=15):
        src = (source, 0) if source else None
        return cls(socket.create_connection((host, port), timeout=timeout, source_address=src), timeout)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("closed; buffered %r" % self.buf)
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l.decode("utf-8", "replace")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def closed(self, timeout=5):
        """True once the server has hung up (what it sent before stays
        readable through line())."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
