#!/usr/bin/env python3
"""Bodies are acknowledged promptly, so an ACK-clocked sender is not stalled.

A connection that carries requests and responses is in the kernel's delayed-ACK
"interactive" mode: ACKs wait for data going the other way, or for the delayed-ACK
timer (40 ms at least). A sender that may not put more in flight until its last
bytes are acknowledged (a full congestion window; paced TCP on loopback gets there)
then waits for that timer: in the benchmark some 1 MiB responses took over 100 ms
instead of about 8. The proxy leaves that mode for the rest of a body (HTTP: before
it first waits for more of a body; TCP mode: when a flow turns bulk).

Each test's sender puts one piece in flight, waits until the kernel reports it
acknowledged (SIOCOUTQ = 0), then sends the next, and records the waits. Through
a proxy that ACKs late, the first piece of every body waits for the 40 ms timer
(when it fires, the kernel leaves the mode for that connection until requests
flow again). Each test sends several bodies and looks at the median of their
longest waits, so one slow moment of a loaded machine does not decide it.
"""

import fcntl
import os
import statistics
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest, TcpServer, connect, recv_exact, wait_for  # noqa: E402
from http_harness import HttpClient, HttpUpstream, build_response  # noqa: E402

PIECES = 12
ROUNDS = 5
# Sizes vary so that no piece looks like a full-sized segment that TCP may ACK only
# every second time.
PIECE_SIZES = [6000 + 397 * (i % 5) for i in range(PIECES)]
# The delayed-ACK timer is 40 ms at least; a prompt ACK takes well under a millisecond
# here. The threshold separates the two with room for a slow machine.
PROMPT_LIMIT = 0.020
ACK_TIMEOUT = 2.0


def unacked(sock):
    """Bytes sent on `sock` and not yet acknowledged by the peer (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def send_ack_clocked(sock, first, pieces):
    """Sends `first` and each piece once everything before it is acknowledged; returns
    how long each piece waited for its ACK."""
    waits = []
    for i, piece in enumerate(pieces):
        sock.sendall((first if i == 0 else b"") + piece)
        t0 = time.monotonic()
        wait_for(lambda: unacked(sock) == 0, ACK_TIMEOUT, interval=0.0005,
                 desc="the proxy to acknowledge piece %d" % i)
        waits.append(time.monotonic() - t0)
    return waits


def pieces_of(sizes, seed):
    return [bytes([65 + (seed + i) % 26]) * n for i, n in enumerate(sizes)]


class ClockedUpstream(HttpUpstream):
    """GET /small: a short answer. GET /clocked (a Content-Length body) and
    GET /clocked-chunked: a body sent ACK-clocked; the waits of each such response
    are appended to self.waits."""

    keep_raw = False

    def __init__(self, *a, **kw):
        self.waits = []
        super().__init__(*a, **kw)

    def serve(self, conn, rd, req):
        self.read_body(rd, req)
        if req.target not in ("/clocked", "/clocked-chunked"):
            conn.sendall(build_response(200, b"small"))
            return req.keep_alive()
        body = pieces_of(PIECE_SIZES, 0)
        if req.target == "/clocked":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % sum(PIECE_SIZES)
        else:
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            body = [b"%x\r\n%s\r\n" % (len(p), p) for p in body]
            body[-1] += b"0\r\n\r\n"
        self.waits.append(send_ack_clocked(conn, head, body))
        return req.keep_alive()


class ClockedTcpUpstream(TcpServer):
    """TCP mode: sends a banner line and reads one line, as a request/response protocol
    would; then answers with ACK-clocked pieces and closes."""

    def __init__(self, sizes, *a, **kw):
        self.sizes = sizes
        self.waits = []
        super().__init__(*a, **kw)

    def handle(self, conn, record):
        conn.sendall(b"ready\n")
        line = b""
        while not line.endswith(b"\n"):
            got = conn.recv(1)
            if not got:
                return
            line += got
        self.waits.append(send_ack_clocked(conn, b"", pieces_of(self.sizes, 0)))
        conn.close()


class PromptAckTest(IntegrationTest):

    def assertPrompt(self, rounds, what):
        """`rounds`: the ACK waits of each body."""
        self.assertEqual(len(rounds), ROUNDS)
        longest = [max(waits) for waits in rounds]
        median = statistics.median(longest)
        print("\n  %s: longest ACK wait per body %s ms (median %.1f ms)"
              % (what, [round(w * 1000, 1) for w in longest], median * 1000))
        self.assertLess(median, PROMPT_LIMIT,
                        "%s: the proxy held its ACKs back until the delayed-ACK timer "
                        "(longest wait per body %s ms)" % (what, [round(w * 1000, 1) for w in longest]))

    def response_bodies(self, path, what):
        app = self.start_server(ClockedUpstream)
        dp = self.start_http_proxy(app.port, *self.FAST, "--workers", "1")
        c = HttpClient(dp.listen_port, timeout=10)
        self.addCleanup(c.close)
        # The first answer makes the app connection a request/response one; the second
        # request follows at once, on the same (pooled) app connection.
        for _ in range(ROUNDS):
            c.send(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(c.read_response().body, b"small")
            c.send(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response(timeout=10)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"".join(pieces_of(PIECE_SIZES, 0)))
        # The app records a body's waits once its last piece is acknowledged.
        wait_for(lambda: len(app.waits) == ROUNDS, 5, desc="the app to record its waits")
        self.assertEqual(app.data_connections(), 1, "the app connection was not reused")
        self.assertPrompt(app.waits, what)

    def test_http_response_body_from_a_reused_app_connection(self):
        self.response_bodies(b"/clocked", "response body")

    def test_http_chunked_response_body(self):
        self.response_bodies(b"/clocked-chunked", "chunked response body")

    def test_http_request_body_on_a_keep_alive_connection(self):
        app = self.start_server(ClockedUpstream)
        dp = self.start_http_proxy(app.port, *self.FAST, "--workers", "1")
        c = HttpClient(dp.listen_port, timeout=10)
        self.addCleanup(c.close)
        rounds = []
        for r in range(ROUNDS):
            c.send(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(c.read_response().body, b"small")
            body = pieces_of(PIECE_SIZES, r)
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % sum(PIECE_SIZES)
            rounds.append(send_ack_clocked(c.sock, head, body))
            self.assertEqual(c.read_response(timeout=10).body, b"small")
            self.assertEqual(app.complete_requests()[-1].body, b"".join(body))
        self.assertPrompt(rounds, "request body")

    def test_tcp_stream_in_bulk(self):
        # In TCP mode a flow becomes bulk when a read fills the relay buffer (16 KiB).
        sizes = [20000 + 1000 * (i % 3) for i in range(PIECES)]
        app = self.start_server(ClockedTcpUpstream, sizes)
        dp = self.start_proxy(app.port, *self.FAST, "--workers", "1")
        for r in range(ROUNDS):
            s = connect(dp.listen_port, timeout=10)
            self.addCleanup(s.close)
            self.assertEqual(recv_exact(s, 6, timeout=10), b"ready\n")
            s.sendall(b"go\n")
            got = recv_exact(s, sum(sizes), timeout=10)
            self.assertEqual(got, b"".join(pieces_of(sizes, 0)))
            wait_for(lambda: len(app.waits) > r, 5, desc="the app to record its waits")
        self.assertPrompt(app.waits, "tcp stream")


if __name__ == "__main__":
    harness.main()
