#!/usr/bin/env python3
"""HTTP mode: real clients through the proxy.

curl and http.client (pooled keep-alive, reuse proven on both sides), pipelining,
chunked bodies both ways (forwarded byte for byte, trailers included),
Expect: 100-continue, HEAD, HTTP/1.0 clients, hop-by-hop removal and
X-Forwarded-*, the app's own "Connection: close", and a WebSocket tunnel.
"""

import http.client
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, IntegrationTest  # noqa: E402
from http_harness import (HttpClient, HttpUpstream, RecordingUpstream, ScriptedUpstream,  # noqa: E402
                          build_response, rss_supported, vm_rss_kib, websocket_accept)

HELLO = b"hello from app\n"


def request(method="GET", target="/", headers=(("Host", "example.test"),), body=b"",
            version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version)] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpProxyTest(IntegrationTest):

    def proxy_for(self, port, *flags):
        dp = self.start_http_proxy(port, *self.FAST, "--propagation-delay", "1s",
                                   "--drain-timeout", "5s", *flags)
        return dp

    def demo_and_proxy(self, *flags):
        app = self.start_demo(name="app")
        return app, self.proxy_for(app.port, *flags)

    def client(self, dp, timeout=5.0):
        c = HttpClient(dp.listen_port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def assertClosedAfter(self, c, timeout=3.0):
        self.assertEqual(c.closed_state(timeout), "eof",
                         "the proxy must close the connection after this response")

    # ------------------------------------------------------------------ curl

    def curl(self, *args, timeout=20.0):
        exe = shutil.which("curl")
        if exe is None:
            self.skipTest("curl is not installed")
        proc = subprocess.run([exe, "--silent", "--show-error", "--max-time", "10",
                               "--noproxy", "*"] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=harness.child_env())
        return proc

    def test_curl_get_reuses_one_connection(self):
        _, dp = self.demo_and_proxy()
        url = "http://%s/" % dp.listen_addr
        out = self.curl("-w", "|%{http_code} %{num_connects} %{http_version}\n", url, url, url)
        self.assertEqual(out.returncode, 0, out.stderr)
        # body1 |code n ver\n body2 |code n ver\n ...
        text = out.stdout.decode()
        results = [line.split("|")[1] for line in text.splitlines() if "|" in line]
        self.assertEqual(len(results), 3, text)
        self.assertEqual(text.count(HELLO.decode().strip()), 3, text)
        codes = [r.split() for r in results]
        self.assertEqual([c[0] for c in codes], ["200"] * 3, text)
        self.assertEqual([c[1] for c in codes], ["1", "0", "0"],
                         "curl must reuse its first connection for the next two transfers: %s"
                         % text)
        self.assertEqual(dp.metric("drainproxy_connections_total"), 1.0)

    def test_curl_post_with_expect_100_continue(self):
        _, dp = self.demo_and_proxy()
        data = random.Random(7).randbytes(300 * 1024)
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(data)
            path = f.name
        self.addCleanup(os.unlink, path)
        out = self.curl("-v", "--data-binary", "@" + path, "-H", "Expect: 100-continue",
                        "-H", "Content-Type: application/octet-stream",
                        "http://%s/echo" % dp.listen_addr)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        self.assertEqual(out.stdout, data, "echoed body differs")
        self.assertIn(b"HTTP/1.1 100 Continue", out.stderr)
        self.assertIn(b"HTTP/1.1 200", out.stderr)

    def test_curl_http10_and_head(self):
        _, dp = self.demo_and_proxy()
        out = self.curl("-0", "-D", "-", "http://%s/" % dp.listen_addr)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.endswith(HELLO), out.stdout)
        self.assertIn(b" 200 ", out.stdout.split(b"\r\n", 1)[0])
        upstream = self.head_app()
        dp2 = self.proxy_for(upstream.port)
        out = self.curl("-I", "http://%s/big" % dp2.listen_addr)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"content-length: 12345", out.stdout.lower())

    # ---------------------------------------------------------- http.client

    def test_http_client_pooled_keepalive_is_real(self):
        """4 pooled http.client connections, 40 requests each: every client socket serves
        all of its requests, and the proxy reuses its app connections (<= 4 in all)."""
        upstream = self.start_server(HttpUpstream)
        dp = self.proxy_for(upstream.port)
        n_conns, n_req = 4, 40
        errors = []
        ports = {}
        deadline = time.monotonic() + 30

        def worker(i):
            conn = http.client.HTTPConnection(LOOPBACK, dp.listen_port, timeout=5)
            try:
                seen = set()
                for k in range(n_req):
                    if time.monotonic() > deadline:
                        errors.append("worker %d: out of time" % i)
                        return
                    conn.request("GET", "/w%d/%d" % (i, k))
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 200 or body != b"ok\n":
                        errors.append("worker %d req %d: %s %r" % (i, k, r.status, body))
                    if r.getheader("Connection", "").lower() == "close":
                        errors.append("worker %d req %d: unexpected Connection: close" % (i, k))
                    seen.add(conn.sock.getsockname()[1])
                ports[i] = seen
            except Exception as exc:  # noqa: BLE001
                errors.append("worker %d: %s: %s" % (i, type(exc).__name__, exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=35)
        self.assertEqual(errors, [])
        for i in range(n_conns):
            self.assertEqual(len(ports[i]), 1, "client %d used several sockets: %s" % (i, ports[i]))
        self.assertEqual(len(upstream.complete_requests()), n_conns * n_req)
        self.assertEqual(dp.metric("drainproxy_connections_total"), float(n_conns))
        app_conns = upstream.data_connections()
        print("\n  %d requests over %d client connections used %d app connections"
              % (n_conns * n_req, n_conns, app_conns))
        self.assertLessEqual(app_conns, n_conns,
                             "the proxy must reuse pooled app connections")
        for req in upstream.complete_requests():
            self.assertEqual(req.version, "HTTP/1.1")
            self.assertTrue(req.has_token("Connection", "keep-alive"), req)

    def test_http_client_against_demo_app(self):
        _, dp = self.demo_and_proxy()
        conn = http.client.HTTPConnection(LOOPBACK, dp.listen_port, timeout=5)
        self.addCleanup(conn.close)
        sock_ids = set()
        for i in range(20):
            conn.request("GET", "/" if i % 2 == 0 else "/bytes?n=%d" % (1000 + i))
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("X-Served-By"), "app")
            if i % 2 == 0:
                self.assertEqual(body, HELLO)
            else:
                self.assertEqual(len(body), 1000 + i)
            sock_ids.add(id(conn.sock))
        self.assertEqual(len(sock_ids), 1)
        conn.request("POST", "/echo", body=b"x" * 100000)
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"x" * 100000))
        conn.request("GET", "/status/404")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (404, b"status 404\n"))
        self.assertEqual(dp.metric("drainproxy_connections_total"), 1.0)
        # a request is counted once its last byte went out: poll, the client may be faster
        dp.wait_for(lambda: (dp.metric("drainproxy_requests_total", code="2xx"),
                             dp.metric("drainproxy_requests_total", code="4xx")) == (21.0, 1.0),
                    3.0, desc="requests_total 2xx == 21 and 4xx == 1")

    def test_silent_connections_hold_no_request_buffer(self):
        """A client that connected and sent nothing costs the proxy no request buffer:
        the 16 KiB exchange is borrowed only while bytes are there (a just-accepted
        connection is read at once, and handed back when nothing has arrived yet)."""
        if os.environ.get("DRAINPROXY_SANITIZED") == "1":
            self.skipTest("ASan's allocator and quarantine dominate RSS")
        if not rss_supported():
            self.skipTest("no /proc/PID/status VmRSS here")
        _, dp = self.demo_and_proxy()
        conn = http.client.HTTPConnection(LOOPBACK, dp.listen_port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", "/")
        self.assertEqual(conn.getresponse().read(), HELLO)  # worker, pools and app link warm
        n = 300
        before = vm_rss_kib(dp.pid)
        for _ in range(n):
            s = socket.create_connection((LOOPBACK, dp.listen_port), timeout=5)
            self.addCleanup(s.close)
        # Counted as active once accepted, and the first read happens at accept.
        dp.wait_for(lambda: dp.status()["connections_active"] >= n + 1, 5.0,
                    desc="all %d silent connections accepted" % n)
        per_conn = (vm_rss_kib(dp.pid) - before) / n
        print("\n  %d silent connections: %.2f KiB of proxy RSS each" % (n, per_conn))
        self.assertLess(per_conn, 4.0, "a silent connection must not hold a request buffer")

    # ------------------------------------------------------------ pipelining

    def test_pipelined_requests_answered_in_order(self):
        _, dp = self.demo_and_proxy()
        c = self.client(dp)
        c.send(request(target="/delay?ms=300") + request(target="/")
               + request("POST", "/echo", (("Host", "a"), ("Content-Length", "5")), b"hello")
               + request(target="/status/201"))
        bodies = []
        for _ in range(4):
            r = c.read_response()
            self.assertNotEqual(r.header("Connection"), "close", r)
            bodies.append((r.status, r.body))
        self.assertEqual(bodies, [(200, b"slept 300 ms\n"), (200, HELLO), (200, b"hello"),
                                  (201, b"status 201\n")])
        # the connection is still usable
        c.send(request())
        self.assertEqual(c.read_response().body, HELLO)

    # --------------------------------------------------------------- chunked

    def test_chunked_request_body_forwarded_intact(self):
        upstream = self.start_server(RecordingUpstream)
        dp = self.proxy_for(upstream.port)
        wire = (b"5;name=value\r\nhello\r\n"
                b"7; q=\"quoted;str\"\r\n, world\r\n"
                b"1a\r\n" + b"z" * 26 + b"\r\n"
                b"0\r\nX-Trailer: yes\r\nX-Sum: 38\r\n\r\n")
        c = self.client(dp)
        c.send(request("POST", "/up", (("Host", "h"), ("Transfer-Encoding", "chunked")), wire))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        reqs = upstream.complete_requests()
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0].header("Transfer-Encoding"), "chunked")
        self.assertIsNone(reqs[0].header("Content-Length"))
        self.assertEqual(reqs[0].wire_body, wire, "the chunked body must be forwarded unchanged")
        self.assertEqual(reqs[0].body, b"hello, world" + b"z" * 26)
        self.assertEqual(reqs[0].trailers, [("X-Trailer", "yes"), ("X-Sum", "38")])

    def test_chunked_request_to_demo_echo_in_pieces(self):
        _, dp = self.demo_and_proxy()
        c = self.client(dp)
        c.send(request("POST", "/echo", (("Host", "h"), ("Transfer-Encoding", "chunked"))))
        payload = b""
        for i in range(20):   # the body dribbles in: the proxy streams it
            piece = bytes([65 + i]) * (i + 1)
            payload += piece
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, payload))

    def test_chunked_response_with_trailers_forwarded_intact(self):
        wire = (b"4;ext=1\r\nWiki\r\n"
                b"6\r\npedia \r\n"
                b"E\r\nin \r\n\r\nchunks.\r\n"
                b"0\r\nX-Checksum: abc123\r\nX-Other: 2\r\n\r\n")

        def respond(req):
            head = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                    "Trailer: X-Checksum, X-Other\r\nX-Served-By: chunky\r\n\r\n").encode()
            return head + wire

        upstream = self.start_server(ScriptedUpstream, respond)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        for _ in range(2):  # twice on one connection: the framing was understood
            c.send(request(target="/chunked", headers=(("Host", "h"), ("TE", "trailers"))))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.framing, "chunked", r)
            self.assertEqual(r.wire_body, wire, "the chunked response must be forwarded unchanged")
            self.assertEqual(r.body, b"Wikipedia in \r\n\r\nchunks.")
            self.assertEqual(r.trailers, [("X-Checksum", "abc123"), ("X-Other", "2")])
        # the TE request header is hop-by-hop: the app never sees it
        for req in upstream.complete_requests():
            self.assertIsNone(req.header("TE"), req)
        # http.client decodes it too
        conn = http.client.HTTPConnection(LOOPBACK, dp.listen_port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", "/chunked")
        resp = conn.getresponse()
        self.assertEqual(resp.read(), b"Wikipedia in \r\n\r\nchunks.")

    # ---------------------------------------------------------- 100-continue

    def test_expect_100_continue_raw(self):
        _, dp = self.demo_and_proxy()
        c = self.client(dp)
        body = b"continue-me-" * 1000
        c.send(request("POST", "/echo", (("Host", "h"), ("Content-Length", str(len(body))),
                                         ("Expect", "100-continue"))))
        interim = c.read_response(timeout=3.0)
        self.assertEqual(interim.head, b"HTTP/1.1 100 Continue\r\n\r\n")
        c.send(body)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, body))
        # keep-alive still works after it
        c.send(request())
        self.assertEqual(c.read_response().body, HELLO)

    def test_expect_100_continue_is_stripped_upstream(self):
        upstream = self.start_server(RecordingUpstream)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        c.send(request("PUT", "/x", (("Host", "h"), ("Content-Length", "3"),
                                     ("Expect", "100-continue"))))
        self.assertEqual(c.read_response(timeout=3.0).status, 100)
        c.send(b"abc")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        reqs = upstream.complete_requests()
        self.assertEqual(len(reqs), 1)
        self.assertIsNone(reqs[0].header("Expect"), reqs[0])
        self.assertEqual(reqs[0].body, b"abc")

    # ------------------------------------------------------------------ HEAD

    def head_app(self):
        """An app that knows HEAD: Content-Length of the GET body, no body."""
        def respond(req):
            body = b"b" * 12345
            if req.method == "HEAD":
                return build_response(200, b"", [("Content-Length", "12345")], content_length=False)
            return build_response(200, body if req.target.startswith("/big") else b"ok\n")
        return self.start_server(ScriptedUpstream, respond)

    def test_head_has_no_body_and_keeps_length(self):
        upstream = self.head_app()
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        # HEAD then GET pipelined: if the proxy sent (or waited for) a body for HEAD,
        # the GET answer would be wrong or late
        c.send(request("HEAD", "/big") + request(target="/small"))
        r = c.read_response(method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "12345")
        r2 = c.read_response()
        self.assertEqual((r2.status, r2.body), (200, b"ok\n"))
        c.send(request("GET", "/big"))
        self.assertEqual(len(c.read_response().body), 12345)

    # ------------------------------------------------------------- HTTP/1.0

    def test_http10_client_closes_by_default(self):
        _, dp = self.demo_and_proxy()
        c = self.client(dp)
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, HELLO))
        self.assertNotEqual(r.framing, "chunked")
        self.assertClosedAfter(c)

    def test_last_response_survives_bytes_sent_after_it(self):
        """A client that said this request is its last sends more anyway, while the app
        is still answering. Closing at once with those bytes unread would reset the
        connection and lose the response; the proxy must deliver it, then close."""
        got_request, extra_sent = threading.Event(), threading.Event()

        class WaitingApp(HttpUpstream):
            def serve(self, conn, rd, req):
                self.read_body(rd, req)
                got_request.set()
                extra_sent.wait(5.0)
                conn.sendall(build_response(200, b"last\n"))
                return True

        upstream = self.start_server(WaitingApp)
        dp = self.proxy_for(upstream.port, "--workers", "1")
        for head in (b"GET /a HTTP/1.0\r\n\r\n", b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):
            with self.subTest(head=head):
                got_request.clear()
                extra_sent.clear()
                c = self.client(dp)
                c.send(head)
                self.assertTrue(got_request.wait(5.0))
                # On loopback these bytes are in the proxy's receive queue once sent.
                c.send(b"GET /unwanted HTTP/1.1\r\nHost: a\r\n\r\n")
                extra_sent.set()
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"last\n"))
                self.assertClosedAfter(c)
        self.assertEqual([q.target for q in upstream.complete_requests()], ["/a", "/b"])

    def test_http10_keepalive_client(self):
        _, dp = self.demo_and_proxy()
        c = self.client(dp)
        for path in ("/", "/bytes?n=777", "/"):
            c.send(request(target=path, headers=(("Connection", "keep-alive"),), version="HTTP/1.0"))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertNotEqual(r.framing, "chunked", r)
            self.assertTrue(r.has_token("Connection", "keep-alive"), r)
        self.assertEqual(len(r.body), len(HELLO))
        self.assertEqual(dp.metric("drainproxy_connections_total"), 1.0)

    def test_http10_client_gets_unchunked_body_from_chunking_app(self):
        """The app chunks for HTTP/1.1 only; for a 1.0 client the proxy asks the app as 1.0."""
        def respond(req):
            if req.version == "HTTP/1.1":
                return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\n\r\n")
            return b"HTTP/1.0 200 OK\r\n\r\nabc", False

        upstream = self.start_server(ScriptedUpstream, respond)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abc"))
        self.assertNotEqual(r.framing, "chunked")
        self.assertClosedAfter(c)
        self.assertEqual(upstream.complete_requests()[0].version, "HTTP/1.0")

    # ------------------------------------------------- hop-by-hop, X-Forwarded

    def test_hop_by_hop_removed_and_forwarded_headers_added(self):
        def respond(req):
            return build_response(200, b"ok\n", [("Keep-Alive", "timeout=5"),
                                                 ("Connection", "X-Resp-Hop"),
                                                 ("X-Resp-Hop", "secret"),
                                                 ("Proxy-Connection", "keep-alive"),
                                                 ("X-End-To-End", "kept")])

        upstream = self.start_server(ScriptedUpstream, respond)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        c.send(request("GET", "/hop?x=1", (
            ("Host", "shop.example:8443"),
            ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
            ("Keep-Alive", "timeout=30"),
            ("X-Hop-A", "1"), ("X-Hop-B", "2"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("User-Agent", "it-test"),
            ("X-End-To-End", "kept"))))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        for name in ("Keep-Alive", "X-Resp-Hop", "Proxy-Connection"):
            self.assertIsNone(r.header(name), "%s must not reach the client: %r" % (name, r))
        self.assertEqual(r.header("X-End-To-End"), "kept")

        reqs = upstream.complete_requests()
        self.assertEqual(len(reqs), 1)
        q = reqs[0]
        self.assertEqual(q.start_line, "GET /hop?x=1 HTTP/1.1")
        for name in ("Keep-Alive", "X-Hop-A", "X-Hop-B", "Proxy-Connection", "TE"):
            self.assertIsNone(q.header(name), "%s must not reach the app: %r" % (name, q.headers))
        self.assertEqual(q.header_all("Host"), ["shop.example:8443"])
        self.assertEqual(q.header_all("X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"])
        self.assertEqual(q.header_all("X-Forwarded-Proto"), ["http"])
        self.assertEqual(q.header_all("X-Forwarded-Host"), ["shop.example:8443"])
        self.assertEqual(q.header_all("Connection"), ["keep-alive"])
        self.assertEqual(q.header("User-Agent"), "it-test")
        self.assertEqual(q.header("X-End-To-End"), "kept")

        # an existing X-Forwarded-Host is kept; without X-Forwarded-For one is created
        c.send(request(headers=(("Host", "inner"), ("X-Forwarded-Host", "outer.example"))))
        self.assertEqual(c.read_response().status, 200)
        q2 = upstream.complete_requests()[1]
        self.assertEqual(q2.header_all("X-Forwarded-Host"), ["outer.example"])
        self.assertEqual(q2.header_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(q2.header_all("Host"), ["inner"])

    def test_h2c_upgrade_is_dropped(self):
        upstream = self.start_server(RecordingUpstream)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        c.send(request(headers=(("Host", "h"), ("Connection", "Upgrade, HTTP2-Settings"),
                                ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"))))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        q = upstream.complete_requests()[0]
        for name in ("Upgrade", "HTTP2-Settings"):
            self.assertIsNone(q.header(name), q.headers)
        self.assertEqual(q.header_all("Connection"), ["keep-alive"])

    # ------------------------------------------------ the app's Connection: close

    def test_app_connection_close_reaches_client(self):
        def respond(req):
            if req.target == "/close":
                return build_response(200, b"bye\n", [("Connection", "close")]), False
            return build_response(200, b"ok\n")

        upstream = self.start_server(ScriptedUpstream, respond)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        c.send(request(target="/keep"))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("Connection"))
        c.send(request(target="/close"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"bye\n"))
        self.assertEqual(r.header("Connection"), "close")
        self.assertClosedAfter(c)
        # http.client sees it as will_close
        conn = http.client.HTTPConnection(LOOPBACK, dp.listen_port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", "/close")
        resp = conn.getresponse()
        self.assertEqual(resp.read(), b"bye\n")
        self.assertTrue(resp.will_close)

    def test_stray_bytes_from_app_never_reach_another_client(self):
        """The app wrongly sends a body after its HEAD response, once the proxy pooled the
        connection. The next request must not be answered with those stray bytes."""
        sent_stray = threading.Event()

        class BadHeadApp(HttpUpstream):
            def serve(self, conn, rd, req):
                self.read_body(rd, req)
                if req.method == "HEAD":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n")
                    time.sleep(0.05)   # the proxy has pooled the connection by now
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")
                    sent_stray.set()
                    return True
                conn.sendall(build_response(200, b"fine\n"))
                return True

        upstream = self.start_server(BadHeadApp)
        dp = self.proxy_for(upstream.port, "--workers", "1")
        c = self.client(dp)
        c.send(request("HEAD", "/"))
        self.assertEqual(c.read_response(method="HEAD").status, 200)
        self.assertTrue(sent_stray.wait(5.0))
        for i in range(3):
            c2 = self.client(dp)
            c2.send(request(target="/victim%d" % i))
            r = c2.read_response()
            self.assertEqual((r.status, r.body), (200, b"fine\n"))
        self.assertEqual([q.target for q in upstream.complete_requests()],
                         ["/", "/victim0", "/victim1", "/victim2"])

    # --------------------------------------------------------------- WebSocket

    def test_websocket_tunnel(self):
        class WsUpstream(HttpUpstream):
            def serve(self, conn, rd, req):
                self.read_body(rd, req)
                if req.has_token("Upgrade", "websocket") and req.has_token("Connection", "upgrade"):
                    accept = websocket_accept(req.header("Sec-WebSocket-Key"))
                    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                                  % accept).encode() + b"server-hello|")
                    # from now on: echo raw bytes until EOF
                    if rd.buf:
                        conn.sendall(bytes(rd.buf))
                        rd.buf.clear()
                    while True:
                        data = rd.read_some(65536)
                        if not data:
                            return False
                        conn.sendall(data)
                conn.sendall(build_response(426, b"upgrade required\n"))
                return True

        upstream = self.start_server(WsUpstream)
        dp = self.proxy_for(upstream.port)
        c = self.client(dp)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        c.send(request(target="/ws", headers=(("Host", "h"), ("Upgrade", "websocket"),
                                              ("Connection", "Upgrade"),
                                              ("Sec-WebSocket-Key", key),
                                              ("Sec-WebSocket-Version", "13"))))
        r = c.read_response()
        self.assertEqual(r.status, 101, r)
        self.assertEqual(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(r.header("Sec-WebSocket-Accept"), websocket_accept(key))
        self.assertTrue(r.has_token("Upgrade", "websocket"), r)
        self.assertTrue(r.has_token("Connection", "upgrade"), r)
        q = upstream.complete_requests()[0]
        self.assertTrue(q.has_token("Upgrade", "websocket"), q)
        self.assertEqual(q.header("Sec-WebSocket-Key"), key)
        # bytes the app sent right behind the 101 come through
        self.assertEqual(c.reader.read_exact(len(b"server-hello|"), time.monotonic() + 5),
                         b"server-hello|")
        # a masked text frame and arbitrary binary bytes are echoed unchanged
        frame = bytes([0x81, 0x85, 1, 2, 3, 4]) + bytes(b ^ m for b, m in zip(b"hello", b"\x01\x02\x03\x04\x01"))
        for payload in (frame, bytes(range(256)) * 64, b"GET / HTTP/1.1\r\n\r\n"):
            c.send(payload)
            self.assertEqual(c.reader.read_exact(len(payload), time.monotonic() + 5), payload)
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 2.0, desc="tunnel active")
        # the client closes its side: the tunnel ends
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.closed_state(3.0), "eof")
        dp.wait_for(lambda: dp.status()["connections_active"] == 0, 3.0,
                    desc="tunnel closed after client EOF")


if __name__ == "__main__":
    harness.main()
