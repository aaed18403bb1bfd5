#!/usr/bin/env python3
"""TCP mode is a faithful byte stream: half-close both ways, byte-exact bulk.

- client half-closes (SHUT_WR): the upstream sees EOF, its reply still reaches
  the client completely, then the client sees EOF
- upstream half-closes first: the client sees EOF and can still send
- 100 MiB client -> upstream, sha256 checked at the upstream
- 100 MiB upstream -> client, sha256 checked at the client
- 100 MiB both ways at once through an echo upstream
"""

import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (IntegrationTest, ReplyAfterEofServer, BannerThenHalfCloseServer,  # noqa: E402
                     MiB, pattern_chunks, pattern_sha256)

BULK = 100 * MiB
BULK_DEADLINE = 60.0


class PausedReaderServer(ReplyAfterEofServer):
    """Does not read until `release` is set (bounded wait), then behaves like
    ReplyAfterEofServer with no extra reply bytes."""

    def __init__(self, port=0, start=True):
        self.release = threading.Event()
        super().__init__(reply_bytes=0, port=port, start=start)

    def handle(self, conn, record):
        self.release.wait(timeout=40.0)
        super().handle(conn, record)


class HalfCloseBulkTest(IntegrationTest):

    def proxy_for(self, upstream):
        dp = self.start_proxy(upstream.port, *self.FAST,
                              "--propagation-delay", "1s", "--drain-timeout", "3s")
        dp.wait_ready(timeout=3.0)
        return dp

    def read_line(self, sock, deadline, limit=200):
        buf = bytearray()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise harness.WaitTimeout("no complete line; got %r" % bytes(buf))
            sock.settimeout(left)
            b = sock.recv(1)
            if not b:
                raise EOFError("EOF before end of line; got %r" % bytes(buf))
            buf += b
            if len(buf) > limit:
                raise AssertionError("line too long: %r" % bytes(buf[:80]))
        return bytes(buf[:-1])

    def hash_until_eof(self, sock, deadline, limit):
        h = hashlib.sha256()
        buf = bytearray(MiB)
        view = memoryview(buf)
        total = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise harness.WaitTimeout("no EOF after %d bytes" % total)
            sock.settimeout(min(left, 30.0))
            n = sock.recv_into(buf)
            if n == 0:
                return total, h.hexdigest()
            h.update(view[:n])
            total += n
            if total > limit:
                raise AssertionError("received more than %d bytes" % limit)

    def wait_upstream_record(self, upstream, received, timeout=5.0):
        return harness.wait_for(
            lambda: [r for r in upstream.data_records() if r["eof"].is_set()
                     and r["received"] == received],
            timeout, desc="an upstream connection that got EOF after %d bytes" % received)

    # --- half-close ------------------------------------------------------

    def test_client_half_close_reply_still_arrives(self):
        reply = 256 * 1024
        upstream = self.start_server(ReplyAfterEofServer, reply_bytes=reply)
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp)
        payload = b"request body that ends with a half-close\n" * 100
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10.0
        digest = self.read_line(s, deadline)
        self.assertEqual(digest.decode(), hashlib.sha256(payload).hexdigest())
        total, got = self.hash_until_eof(s, deadline, reply + 1)
        self.assertEqual(total, reply, "reply after the client's half-close was truncated")
        self.assertEqual(got, pattern_sha256(reply))
        recs = self.wait_upstream_record(upstream, len(payload))
        self.assertTrue(recs[0]["eof"].is_set(), "upstream never saw the client's EOF")
        s.close()
        dp.wait_for(lambda: dp.status()["connections_active"] == 0, 3.0,
                    desc="connections_active back to 0")

    def test_client_half_close_with_echo(self):
        upstream = self.start_echo()
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp)
        payload = bytes(range(256)) * 4096          # 1 MiB
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        got = harness.recv_until_eof(s, timeout=20.0, limit=2 * MiB)
        sender.join(timeout=5.0)
        self.assertEqual(len(got), len(payload))
        self.assertEqual(got, payload)

    def test_upstream_half_close_client_can_still_send(self):
        upstream = self.start_server(BannerThenHalfCloseServer, banner=b"hello, then FIN\n")
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp)
        self.assertEqual(harness.recv_until_eof(s, timeout=5.0), b"hello, then FIN\n",
                         "client must see the banner and then EOF")
        # our direction must still be open
        payload = b"data after the upstream's FIN\n" * 1000
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        recs = self.wait_upstream_record(upstream, len(payload))
        self.assertEqual(recs[0]["digest"], hashlib.sha256(payload).hexdigest())
        s.close()
        dp.wait_for(lambda: dp.status()["connections_active"] == 0, 3.0,
                    desc="connections_active back to 0")

    def test_backpressure_bounds_buffering(self):
        """An upstream that does not read stalls the client (the proxy does not buffer
        without bound); once it reads, every byte arrives intact."""
        upstream = self.start_server(PausedReaderServer)
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp, timeout=30.0)
        chunk = bytes(range(256)) * 256             # 64 KiB
        h = hashlib.sha256()
        sent = 0
        limit = 256 * MiB
        s.settimeout(1.0)
        deadline = time.monotonic() + 30.0
        while sent < limit and time.monotonic() < deadline:
            try:
                n = s.send(chunk)
            except socket.timeout:
                break                                # no progress for 1s: back-pressure
            h.update(chunk[:n])
            sent += n
        self.assertLess(sent, 64 * MiB, "the client could push %d MiB into a proxy whose "
                        "upstream does not read: unbounded buffering" % (sent // MiB))
        if os.path.exists("/proc/%d/status" % dp.pid):
            with open("/proc/%d/status" % dp.pid) as f:
                rss = [ln for ln in f if ln.startswith("VmRSS:")]
            if rss:
                rss_kib = int(rss[0].split()[1])
                self.assertLess(rss_kib, 256 * 1024, "proxy RSS %d KiB while stalled" % rss_kib)
        upstream.release.set()
        s.settimeout(30.0)
        s.shutdown(socket.SHUT_WR)
        digest = self.read_line(s, time.monotonic() + 30.0).decode()
        self.assertEqual(digest, h.hexdigest(), "bytes lost or changed under back-pressure "
                                                "(%d bytes sent)" % sent)

    # --- bulk ------------------------------------------------------------

    def test_bulk_client_to_upstream_100MiB(self):
        upstream = self.start_server(ReplyAfterEofServer, reply_bytes=0)
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp, timeout=30.0)
        deadline = time.monotonic() + BULK_DEADLINE
        for chunk in pattern_chunks(BULK):
            if time.monotonic() > deadline:
                self.fail("sending 100 MiB took longer than %ds" % BULK_DEADLINE)
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        digest = self.read_line(s, deadline).decode()
        self.assertEqual(digest, pattern_sha256(BULK), "upstream received different bytes")
        self.assertEqual(harness.recv_until_eof(s, timeout=5.0), b"")
        recs = self.wait_upstream_record(upstream, BULK)
        self.assertEqual(recs[0]["digest"], pattern_sha256(BULK))

    def test_bulk_upstream_to_client_100MiB(self):
        upstream = self.start_server(ReplyAfterEofServer, reply_bytes=BULK)
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp, timeout=30.0)
        deadline = time.monotonic() + BULK_DEADLINE
        s.sendall(b"GO\n")
        s.shutdown(socket.SHUT_WR)
        digest = self.read_line(s, deadline).decode()
        self.assertEqual(digest, hashlib.sha256(b"GO\n").hexdigest())
        total, got = self.hash_until_eof(s, deadline, BULK + 1)
        self.assertEqual(total, BULK)
        self.assertEqual(got, pattern_sha256(BULK), "client received different bytes")

    def test_bulk_both_directions_at_once_100MiB(self):
        upstream = self.start_echo()
        dp = self.proxy_for(upstream)
        s = self.connect_proxy(dp, timeout=30.0)
        deadline = time.monotonic() + BULK_DEADLINE
        send_error = []

        def send():
            try:
                for chunk in pattern_chunks(BULK):
                    if time.monotonic() > deadline:
                        raise harness.WaitTimeout("sender past deadline")
                    s.sendall(chunk)
                s.shutdown(socket.SHUT_WR)
            except Exception as exc:  # noqa: BLE001
                send_error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        total, got = self.hash_until_eof(s, deadline, BULK + 1)
        sender.join(timeout=5.0)
        self.assertEqual(send_error, [])
        self.assertEqual(total, BULK)
        self.assertEqual(got, pattern_sha256(BULK), "echoed stream differs")
        s.close()
        dp.wait_for(lambda: dp.status()["connections_active"] == 0, 5.0,
                    desc="connections_active back to 0")
        dp.wait_for(lambda: dp.metric("drainproxy_bytes_total", direction="rx") == BULK, 3.0,
                    desc="bytes_total{direction=rx} == 100 MiB")
        dp.wait_for(lambda: dp.metric("drainproxy_bytes_total", direction="tx") == BULK, 3.0,
                    desc="bytes_total{direction=tx} == 100 MiB")


if __name__ == "__main__":
    harness.main()
