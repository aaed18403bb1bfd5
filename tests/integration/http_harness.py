"""HTTP helpers for the HTTP-mode integration tests (Python 3 stdlib only).

Builds on harness.py: raw-socket HTTP/1.1 response reading (so tests see the
exact bytes the proxy sends), small HTTP/1.1 upstream servers written in
Python (recording, chunked, WebSocket, sink ...), and a sampler of a process'
resident memory. Everything is bounded in time; nothing leaves 127.0.0.1.
"""

import base64
import hashlib
import os
import socket
import threading
import time

import harness
from harness import LOOPBACK, MiB, TcpServer, WaitTimeout

CRLF = b"\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest()).decode()


# --------------------------------------------------------------------------
# buffered socket reading (both sides)
# --------------------------------------------------------------------------

class SockReader:
    """A read buffer over a socket. `on_bytes(data)` sees every byte received.

    Every blocking call is bounded: by `deadline` (monotonic) when given,
    otherwise by the socket's own timeout on each recv.
    """

    def __init__(self, sock, on_bytes=None, recv_size=256 * 1024):
        self.sock = sock
        self.buf = bytearray()
        self.on_bytes = on_bytes
        self.recv_size = recv_size
        self.eof = False

    def fill(self, deadline=None):
        """Receive once into the buffer; False on EOF."""
        if self.eof:
            return False
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout("read timed out with %d bytes buffered: %r"
                                  % (len(self.buf), bytes(self.buf[:200])))
            self.sock.settimeout(left)
        data = self.sock.recv(self.recv_size)
        if not data:
            self.eof = True
            return False
        if self.on_bytes is not None:
            self.on_bytes(data)
        self.buf += data
        return True

    def read_until(self, delim, limit=1 * MiB, deadline=None, start=0):
        """Bytes up to and including `delim`. None on EOF before any byte;
        EOFError on EOF in the middle."""
        pos = start
        while True:
            i = self.buf.find(delim, max(0, pos - len(delim)))
            if i >= 0:
                end = i + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            pos = len(self.buf)
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (delim, limit))
            if not self.fill(deadline):
                if not self.buf:
                    return None
                raise EOFError("EOF before %r; buffered %r" % (delim, bytes(self.buf[:200])))

    def read_exact(self, n, deadline=None):
        while len(self.buf) < n:
            if not self.fill(deadline):
                raise EOFError("EOF after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, n, deadline=None):
        """Up to n bytes (at least 1); b'' on EOF."""
        if not self.buf and not self.fill(deadline):
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, limit=1 * MiB, deadline=None):
        """A message head up to and including the blank line; None on clean EOF."""
        return self.read_until(b"\r\n\r\n", limit=limit, deadline=deadline)

    def read_chunked(self, deadline=None, sink=None):
        """Read a chunked body. Returns (payload or None if sink is used, wire bytes
        or None if sink is used, trailer fields). `sink(data)` streams the payload."""
        payload = bytearray() if sink is None else None
        wire = bytearray() if sink is None else None
        trailers = []
        while True:
            line = self.read_until(CRLF, limit=64 * 1024, deadline=deadline)
            if line is None:
                raise EOFError("EOF before a chunk size line")
            if wire is not None:
                wire += line
            size = int(line[:-2].split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            left = size
            while left > 0:
                if not self.buf and not self.fill(deadline):
                    raise EOFError("EOF inside a chunk")
                take = min(left, len(self.buf))
                piece = bytes(self.buf[:take])
                del self.buf[:take]
                left -= take
                if sink is not None:
                    sink(piece)
                else:
                    payload += piece
                    wire += piece
            end = self.read_exact(2, deadline)
            if end != CRLF:
                raise ValueError("chunk data not followed by CRLF: %r" % end)
            if wire is not None:
                wire += end
        while True:
            line = self.read_until(CRLF, limit=64 * 1024, deadline=deadline)
            if line is None:
                raise EOFError("EOF in the trailer section")
            if wire is not None:
                wire += line
            if line == CRLF:
                break
            name, _, value = line[:-2].partition(b":")
            trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return (bytes(payload) if payload is not None else None,
                bytes(wire) if wire is not None else None, trailers)


def parse_head(head):
    """b'LINE\\r\\nName: value\\r\\n...\\r\\n\\r\\n' -> (start line str, [(name, value)])."""
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0]
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        fields.append((name, value.strip(" \t")))
    return start, fields


class _Fields:
    """Case-insensitive access to a list of (name, value)."""

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_token(self, name, token):
        """True if the list field `name` contains `token` (case-insensitive)."""
        token = token.lower()
        for v in self.header_all(name):
            if token in [t.strip().lower() for t in v.split(",")]:
                return True
        return False


class Response(_Fields):
    def __init__(self, head):
        self.head = head
        start, self.headers = parse_head(head)
        parts = start.split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.body = b""
        self.wire_body = b""
        self.trailers = []
        self.framing = None

    @property
    def raw(self):
        return self.head + self.wire_body

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                          self.body[:200])


class HttpClient:
    """Raw-socket HTTP/1.1 client: sends exactly the bytes given, parses the responses.

    read_response() returns interim (1xx) responses like any other; the caller decides.
    """

    def __init__(self, port, timeout=5.0, sock=None):
        self.sock = sock or harness.connect(port, timeout=timeout)
        self.reader = SockReader(self.sock, recv_size=64 * 1024)
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def read_response(self, method="GET", timeout=None, max_body=64 * MiB):
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self.reader.read_head(limit=256 * 1024, deadline=deadline)
        if head is None:
            raise EOFError("connection closed before a response")
        r = Response(head)
        if method == "HEAD" or r.status < 200 or r.status in (204, 304):
            r.framing = "none"
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if te is not None and te.lower().split(",")[-1].strip() == "chunked":
            r.framing = "chunked"
            r.body, r.wire_body, r.trailers = self.reader.read_chunked(deadline=deadline)
        elif cl is not None:
            r.framing = "length"
            n = int(cl)
            if n > max_body:
                raise ValueError("Content-Length %d over the test's limit" % n)
            r.body = r.wire_body = self.reader.read_exact(n, deadline=deadline)
        else:
            r.framing = "close"
            buf = bytearray()
            while True:
                data = self.reader.read_some(65536, deadline=deadline)
                if not data:
                    break
                buf += data
                if len(buf) > max_body:
                    raise ValueError("close-delimited body over the test's limit")
            r.body = r.wire_body = bytes(buf)
        return r

    def read_final_response(self, method="GET", timeout=None):
        """Skip interim responses; return (final response, [interim responses])."""
        interim = []
        for _ in range(10):
            r = self.read_response(method=method, timeout=timeout)
            if r.status >= 200 or r.status == 101:
                return r, interim
            interim.append(r)
        raise AssertionError("more than 10 interim responses")

    def closed_state(self, timeout=3.0):
        """What the connection does next: 'eof', 'reset', 'data:<bytes>' or 'timeout'."""
        deadline = time.monotonic() + timeout
        if self.reader.buf:
            return "data:%r" % bytes(self.reader.buf[:200])
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
                if not data:
                    return "eof"
                return "data:%r" % data[:200]
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            return "timeout"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def expect_eof(sock, timeout=3.0):
    """'eof' if the peer closes within `timeout` with no more data, else what happened."""
    c = HttpClient(0, sock=sock)
    return c.closed_state(timeout)


def build_response(status=200, body=b"", headers=(), reason=None, version="HTTP/1.1",
                   content_length=True):
    reason = reason if reason is not None else {200: "OK", 101: "Switching Protocols",
                                                 204: "No Content", 404: "Not Found"}.get(status, "X")
    out = ["%s %d %s" % (version, status, reason)]
    for n, v in headers:
        out.append("%s: %s" % (n, v))
    if content_length:
        out.append("Content-Length: %d" % len(body))
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------
# HTTP upstreams in Python
# --------------------------------------------------------------------------

class Request(_Fields):
    def __init__(self, head, conn_index):
        self.head = head
        start, self.headers = parse_head(head)
        parts = start.split(" ")
        self.start_line = start
        self.method = parts[0]
        self.target = parts[1] if len(parts) > 1 else ""
        self.version = parts[2] if len(parts) > 2 else ""
        self.conn_index = conn_index
        self.body = b""
        self.wire_body = b""
        self.trailers = []
        self.complete = False  # the whole body arrived

    @property
    def raw(self):
        return self.head + self.wire_body

    @property
    def framing(self):
        te = self.header("Transfer-Encoding")
        if te is not None and "chunked" in te.lower():
            return "chunked"
        if self.header("Content-Length") is not None:
            return "length"
        return "none"

    def keep_alive(self):
        if self.has_token("Connection", "close"):
            return False
        return self.version == "HTTP/1.1" or self.has_token("Connection", "keep-alive")

    def __repr__(self):
        return "<Request %r headers=%r body=%r complete=%s>" % (self.start_line, self.headers,
                                                                 self.body[:100], self.complete)


class HttpUpstream(TcpServer):
    """A small HTTP/1.1 keep-alive server. Subclasses override respond() (or serve()).

    Keeps every request (self.requests, in arrival order), each connection's byte
    count, and with keep_raw=True every byte received (record['raw']).
    """

    keep_raw = True
    name = "py-upstream"

    def __init__(self, port=0, start=True):
        self.requests = []
        self.total_received = 0
        self.stream = bytearray()   # every byte of every connection, in arrival order
        self._req_lock = threading.Lock()
        super().__init__(port=port, start=start)

    # --- accounting ---
    def _on_bytes(self, record, data):
        record["received"] += len(data)
        if self.keep_raw:
            record["raw"] += data
        with self._req_lock:
            self.total_received += len(data)
            if self.keep_raw:
                self.stream += data

    def complete_requests(self):
        with self._req_lock:
            return [r for r in self.requests if r.complete]

    def all_requests(self):
        with self._req_lock:
            return list(self.requests)

    def busy(self):
        """True while some connection is in the middle of a request."""
        with self._lock:
            return any(r.get("in_request") and not r["done"].is_set() for r in self.records)

    def wait_quiet(self, timeout=3.0):
        """Wait (bounded) until no connection is in the middle of a request."""
        harness.wait_for(lambda: not self.busy(), timeout, interval=0.005,
                         desc="the app to finish the requests in progress")

    def received_since(self, offset):
        """Bytes received (all connections) after the first `offset` ones."""
        with self._req_lock:
            return bytes(self.stream[offset:])

    def data_connections(self):
        return len(self.data_records())

    def raw_bytes(self):
        with self._lock:
            return b"".join(bytes(r.get("raw", b"")) for r in self.records)

    # --- serving ---
    def handle(self, conn, record):
        record["raw"] = bytearray()
        with self._lock:
            index = self.records.index(record)
        rd = SockReader(conn, on_bytes=lambda d: self._on_bytes(record, d))
        while True:
            head = rd.read_head(limit=1 * MiB)
            if head is None:
                return
            req = Request(head, index)
            with self._req_lock:
                self.requests.append(req)
            record["in_request"] = True
            try:
                if not self.serve(conn, rd, req):
                    return
            finally:
                record["in_request"] = False

    def read_body(self, rd, req):
        if req.framing == "chunked":
            req.body, req.wire_body, req.trailers = rd.read_chunked()
        elif req.framing == "length":
            req.body = req.wire_body = rd.read_exact(int(req.header("Content-Length").split(",")[0]))
        req.complete = True

    def serve(self, conn, rd, req):
        """Read the body, answer; return whether to keep the connection."""
        self.read_body(rd, req)
        out = self.respond(req)
        keep = req.keep_alive()
        if isinstance(out, tuple):
            out, keep = out
        if out:
            conn.sendall(out)
        return keep

    def respond(self, req):
        return build_response(200, b"ok\n", [("X-Served-By", self.name)])


class RecordingUpstream(HttpUpstream):
    """Records every byte; answers every request '200 ok' (Content-Length)."""
    name = "recorder"


class ScriptedUpstream(HttpUpstream):
    """respond() is a function given at construction: fn(req) -> bytes | (bytes, keep)."""

    def __init__(self, fn, port=0, start=True):
        self.fn = fn
        super().__init__(port=port, start=start)

    def respond(self, req):
        return self.fn(req)


# --------------------------------------------------------------------------
# memory of a process
# --------------------------------------------------------------------------

def vm_rss_kib(pid):
    """VmRSS of `pid` in KiB (None if unreadable)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread (bounded by max_seconds)."""

    def __init__(self, pid, interval=0.1, max_seconds=600):
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-%d" % pid)

    def __enter__(self):
        first = vm_rss_kib(self.pid)
        if first is not None:
            self.samples.append(first)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            v = vm_rss_kib(self.pid)
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        last = vm_rss_kib(self.pid)
        if last is not None:
            self.samples.append(last)

    @property
    def max_kib(self):
        return max(self.samples) if self.samples else None


def rss_supported():
    return vm_rss_kib(os.getpid()) is not None
