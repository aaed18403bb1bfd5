#!/usr/bin/env python3
"""HTTP mode: 1 GiB bodies stream through in bounded memory.

Upload: client -> proxy -> a Python sink app that hashes and counts (Content-Length
and chunked). Download: the demo app's /bytes (Content-Length) and a Python app
that streams a chunked body. Each transfer checks size and sha256 end to end while
the proxy's VmRSS is sampled every 100 ms; the maximum must stay under RSS_BOUND.
Also: a slow upload that outlasts --upstream-timeout (the timeout is about the
app's answer, not about how long the client takes to send its body).
"""

import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MiB, IntegrationTest, pattern_chunks  # noqa: E402
from http_harness import (HttpClient, HttpUpstream, RssSampler, SockReader,  # noqa: E402
                          build_response, rss_supported)

GiB = 1024 * MiB
SIZE = int(os.environ.get("DRAINPROXY_IT_LARGE_BYTES", str(GiB)))
RSS_BOUND_KIB = 64 * 1024
TRANSFER_LIMIT = 120.0   # seconds, per direction
DEMO_PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class SinkUpstream(HttpUpstream):
    """Streams each request body into sha256 (never buffers it); answers JSON
    {"size": n, "sha256": hex}. GET /chunked?n=N streams N pattern bytes chunked."""

    keep_raw = False
    conn_timeout = 60.0

    def serve(self, conn, rd, req):
        if req.method == "GET" and req.target.startswith("/chunked"):
            n = int(req.target.split("n=", 1)[1])
            req.complete = True
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: application/octet-stream\r\n\r\n")
            for chunk in pattern_chunks(n):
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            conn.sendall(b"0\r\nX-Done: yes\r\n\r\n")
            return True
        h = hashlib.sha256()
        size = 0

        def sink(piece):
            nonlocal size
            h.update(piece)
            size += len(piece)

        deadline = time.monotonic() + TRANSFER_LIMIT
        if req.framing == "chunked":
            rd.read_chunked(deadline=deadline, sink=sink)
        elif req.framing == "length":
            left = int(req.header("Content-Length"))
            while left > 0:
                piece = rd.read_some(min(left, 1 << 20), deadline=deadline)
                if not piece:
                    raise EOFError("EOF with %d body bytes left" % left)
                sink(piece)
                left -= len(piece)
        req.complete = True
        body = json.dumps({"size": size, "sha256": h.hexdigest()}).encode()
        conn.sendall(build_response(200, body, [("Content-Type", "application/json")]))
        return req.keep_alive()


class LargeBodyTest(IntegrationTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not rss_supported():
            raise harness.unittest.SkipTest("no /proc/PID/status VmRSS here")

    def proxy(self, port, *flags):
        return self.start_http_proxy(port, *self.FAST, "--propagation-delay", "1s",
                                     "--drain-timeout", "5s", *flags)

    def report(self, what, sampler, took, nbytes):
        print("\n  %s: %d bytes in %.1fs (%.0f MiB/s); proxy VmRSS max %.1f MiB over %d samples "
              "(bound %d MiB)" % (what, nbytes, took, nbytes / MiB / max(took, 1e-6),
                                  sampler.max_kib / 1024.0, len(sampler.samples),
                                  RSS_BOUND_KIB // 1024))
        if os.environ.get("DRAINPROXY_SANITIZED") == "1":
            # ASan's shadow memory and free quarantine dominate RSS there; the bound is
            # about drainproxy's own buffering and is checked in the normal build.
            return
        self.assertLess(sampler.max_kib, RSS_BOUND_KIB,
                        "%s: proxy VmRSS reached %d KiB" % (what, sampler.max_kib))

    def upload(self, chunked):
        app = self.start_server(SinkUpstream)
        dp = self.proxy(app.port)
        c = HttpClient(dp.listen_port, timeout=TRANSFER_LIMIT)
        self.addCleanup(c.close)
        h = hashlib.sha256()
        if chunked:
            head = b"POST /sink HTTP/1.1\r\nHost: big\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            head = b"POST /sink HTTP/1.1\r\nHost: big\r\nContent-Length: %d\r\n\r\n" % SIZE
        t0 = time.monotonic()
        deadline = t0 + TRANSFER_LIMIT
        with RssSampler(dp.pid, 0.1, max_seconds=TRANSFER_LIMIT + 10) as rss:
            c.send(head)
            for chunk in pattern_chunks(SIZE):
                if time.monotonic() > deadline:
                    self.fail("upload not done within %.0fs" % TRANSFER_LIMIT)
                h.update(chunk)
                if chunked:
                    c.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    c.send(chunk)
            if chunked:
                c.send(b"0\r\n\r\n")
            r = c.read_response(timeout=max(5.0, deadline - time.monotonic()))
            took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        got = json.loads(r.body)
        self.assertEqual(got["size"], SIZE)
        self.assertEqual(got["sha256"], h.hexdigest())
        self.report("upload %s" % ("chunked" if chunked else "Content-Length"), rss, took, SIZE)
        # the connection stays usable
        c.send(b"POST /sink HTTP/1.1\r\nHost: big\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(json.loads(c.read_response().body)["size"], 3)

    def download(self, dp, path, expect_sha, what, framing):
        c = HttpClient(dp.listen_port, timeout=TRANSFER_LIMIT)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        deadline = t0 + TRANSFER_LIMIT
        h = hashlib.sha256()
        size = 0
        with RssSampler(dp.pid, 0.1, max_seconds=TRANSFER_LIMIT + 10) as rss:
            c.send(b"GET " + path + b" HTTP/1.1\r\nHost: big\r\n\r\n")
            rd = c.reader
            head = rd.read_head(deadline=deadline)
            self.assertTrue(head and head.startswith(b"HTTP/1.1 200 "), head)
            if framing == "length":
                self.assertIn(b"\r\nContent-Length: %d\r\n" % SIZE, head)
                buf = bytearray(MiB)
                view = memoryview(buf)
                if rd.buf:
                    h.update(rd.buf)
                    size += len(rd.buf)
                    rd.buf.clear()
                while size < SIZE:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.fail("download not done within %.0fs (%d bytes)" % (TRANSFER_LIMIT, size))
                    c.sock.settimeout(left)
                    n = c.sock.recv_into(buf, min(len(buf), SIZE - size))
                    if n == 0:
                        self.fail("EOF after %d of %d bytes" % (size, SIZE))
                    h.update(view[:n])
                    size += n
            else:
                self.assertIn(b"Transfer-Encoding: chunked", head)

                def sink(piece):
                    nonlocal size
                    h.update(piece)
                    size += len(piece)
                _, _, trailers = rd.read_chunked(deadline=deadline, sink=sink)
                self.assertEqual(trailers, [("X-Done", "yes")])
            took = time.monotonic() - t0
        self.assertEqual(size, SIZE)
        self.assertEqual(h.hexdigest(), expect_sha)
        self.report(what, rss, took, SIZE)
        c.send(b"GET /chunked?n=5 HTTP/1.1\r\nHost: big\r\n\r\n" if framing == "chunked"
               else b"GET /bytes?n=5 HTTP/1.1\r\nHost: big\r\n\r\n")
        self.assertEqual(len(c.read_response().body), 5)

    def test_upload_1gib_content_length(self):
        self.upload(chunked=False)

    def test_upload_1gib_chunked(self):
        self.upload(chunked=True)

    def test_download_1gib_from_demo_app(self):
        app = self.start_demo(name="big")
        dp = self.proxy(app.port)
        block = DEMO_PATTERN * (MiB // len(DEMO_PATTERN))
        h = hashlib.sha256()
        for _ in range(SIZE // MiB):
            h.update(block)
        h.update(block[:SIZE % MiB])
        self.download(dp, b"/bytes?n=%d" % SIZE, h.hexdigest(), "download Content-Length (demo app)",
                      "length")

    def test_download_1gib_chunked(self):
        app = self.start_server(SinkUpstream)
        dp = self.proxy(app.port)
        self.download(dp, b"/chunked?n=%d" % SIZE, harness.pattern_sha256(SIZE),
                      "download chunked (python app)", "chunked")

    def test_slow_upload_longer_than_upstream_timeout(self):
        """--upstream-timeout 1s bounds the wait for the app's answer; a client that takes
        ~2.5 s to send its body (the app reads it as it comes) must still get a 200."""
        app = self.start_server(SinkUpstream)
        dp = self.proxy(app.port, "--upstream-timeout", "1s")
        c = HttpClient(dp.listen_port, timeout=10)
        self.addCleanup(c.close)
        pieces = 25
        c.send(b"POST /sink HTTP/1.1\r\nHost: slow\r\nContent-Length: %d\r\n\r\n" % (pieces * 1000))
        h = hashlib.sha256()
        for i in range(pieces):   # bounded: 25 pieces, 100 ms apart (pacing, not synchronisation)
            piece = bytes([65 + i % 26]) * 1000
            h.update(piece)
            try:
                c.send(piece)
            except OSError as exc:
                self.fail("the proxy dropped a slow upload after %d ms: %s" % (i * 100, exc))
            time.sleep(0.1)
        r = c.read_response(timeout=5)
        self.assertEqual(r.status, 200, "a slow upload was cut off by --upstream-timeout: %r" % r)
        self.assertEqual(json.loads(r.body), {"size": pieces * 1000, "sha256": h.hexdigest()})


if __name__ == "__main__":
    harness.main()
