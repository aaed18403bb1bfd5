#!/usr/bin/env python3
"""Readiness follows the phase and the upstream's health; liveness stays green.

- upstream down at start: phase `starting`, /ready 503, /live 200
- upstream comes up: phase `serving`, /ready 200
- upstream dies (its port refuses connections): /ready 503 at once, /live 200
- upstream back: /ready 200 again
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest, EchoServer, free_port, http_get  # noqa: E402


class ReadinessTest(IntegrationTest):

    def assert_live(self, dp):
        code, body = dp.get("/live")
        self.assertEqual(code, 200, "/live must stay 200, got %s %r" % (code, body))

    def test_ready_follows_upstream_health(self):
        up_port = free_port()                       # nothing listens there yet
        # 250ms probes: "at once" (first failed probe, <= ~0.3s) is then clearly
        # distinguishable from "after the unhealthy threshold of 3" (>= 0.5s).
        dp = self.start_proxy(up_port, "--health-interval", "250ms", "--health-timeout", "200ms",
                              "--propagation-delay", "1s", "--drain-timeout", "3s")

        # --- upstream down at start: starting, 503, for a while (several probe intervals)
        deadline = time.monotonic() + 0.6
        polls = 0
        while time.monotonic() < deadline and polls < 200:
            code, body = dp.get("/ready")
            self.assertEqual(code, 503, "/ready with the upstream down: %s %r" % (code, body))
            self.assert_live(dp)
            polls += 1
            time.sleep(0.05)
        st = dp.status()
        self.assertEqual(st["phase"], "starting", st)
        self.assertFalse(st["ready"], st)
        self.assertFalse(st["upstream_healthy"], st)
        m = dp.metrics()
        self.assertEqual(harness.metric(m, "drainproxy_ready"), 0)
        self.assertEqual(harness.metric(m, "drainproxy_phase", phase="starting"), 1)
        self.assertEqual(harness.metric(m, "drainproxy_upstream_healthy"), 0)

        # --- upstream comes up: serving, 200
        upstream = self.start_echo(port=up_port)
        t0 = time.monotonic()
        dp.wait_ready(timeout=3.0)
        self.assertLess(time.monotonic() - t0, 3.0)
        code, body = dp.get("/ready")
        self.assertEqual(code, 200)
        st = dp.status()
        self.assertEqual(st["phase"], "serving", st)
        self.assertTrue(st["ready"], st)
        self.assertTrue(st["upstream_healthy"], st)
        self.assert_live(dp)
        m = dp.metrics()
        self.assertEqual(harness.metric(m, "drainproxy_ready"), 1)
        self.assertEqual(harness.metric(m, "drainproxy_upstream_healthy"), 1)
        self.assertEqual(harness.metric(m, "drainproxy_phase", phase="serving"), 1)
        self.assertEqual(harness.metric(m, "drainproxy_phase", phase="starting"), 0)

        # --- upstream dies: connection refused => unhealthy at once (next probe),
        # not after --health-unhealthy-threshold (3) probes.
        upstream.stop()
        t0 = time.monotonic()
        dp.wait_for(lambda: dp.try_get("/ready")[0] == 503, 2.0,
                    desc="/ready == 503 after the upstream went away")
        took = time.monotonic() - t0
        # one probe interval (250ms) plus slack; three probes would take >= 500ms
        self.assertLess(took, 0.45, "ECONNREFUSED must mark the upstream unhealthy at the "
                                    "first failed probe; /ready turned 503 only after %.3fs" % took)
        self.assert_live(dp)
        st = dp.status()
        self.assertEqual(st["phase"], "serving", "an unhealthy upstream is not a drain: %s" % st)
        self.assertFalse(st["ready"], st)
        self.assertFalse(st["upstream_healthy"], st)
        dp.wait_for(lambda: dp.metric("drainproxy_ready") == 0, 2.0, desc="drainproxy_ready 0")
        self.assertEqual(dp.metric("drainproxy_upstream_healthy"), 0)

        # --- upstream back: 200 again
        upstream.start()
        dp.wait_ready(timeout=3.0)
        self.assert_live(dp)
        self.assertEqual(dp.phase(), "serving")

    def test_live_status_and_unknown_path(self):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST,
                              "--propagation-delay", "1s", "--drain-timeout", "3s")
        dp.wait_ready(timeout=3.0)
        code, body = dp.get("/ready")
        self.assertEqual((code, body.strip()), (200, "ready"))
        code, _ = dp.get("/no-such-endpoint")
        self.assertEqual(code, 404)
        st = dp.status()
        self.assertEqual(st["mode"], "tcp")
        self.assertEqual(st["connections_active"], 0)
        self.assertEqual(st["upstream"], upstream.addr)
        self.assertIn(str(dp.listen_port), st["listen"])
        for key in ("propagation_delay_seconds", "drain_timeout_seconds",
                    "termination_grace_period_seconds"):
            self.assertIn(key, st["timings"])
        self.assertGreaterEqual(st["seconds_in_phase"], 0)

    def test_malformed_admin_requests_are_answered(self):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, "--propagation-delay", "1s", "--drain-timeout", "3s")
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /ready HTTP/9.9\r\n\r\n", 400),
            (b"GET /ready HTTP/1.1\r\nBad Field: x\r\n\r\n", 400),
            (b"GET /ready HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
            (b"POST /drain HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413),
        ]
        for raw, status in cases:
            with self.subTest(raw=raw[:30]):
                s = harness.connect(dp.admin_port)
                try:
                    s.sendall(raw)
                    s.shutdown(socket.SHUT_WR)
                    got = harness.recv_until_eof(s, timeout=5.0)
                finally:
                    s.close()
                self.assertTrue(got.startswith(b"HTTP/1.1 %d " % status), got[:200])
                self.assertIn(b"Connection: close", got)
        # the admin server still answers, and the phase is untouched
        self.assertEqual(dp.get("/live")[0], 200)
        self.assertEqual(dp.phase(), "serving")

    def test_http_health_check_with_demo_app(self):
        up_port = free_port()
        dp = self.start_proxy(up_port, *self.FAST, "--health-check", "http:/",
                              "--propagation-delay", "1s", "--drain-timeout", "3s")
        code, _ = dp.get("/ready")
        self.assertEqual(code, 503)
        self.assertEqual(dp.phase(), "starting")
        app = self.start_demo(name="readiness", port=up_port)
        dp.wait_ready(timeout=3.0)
        self.assertEqual(dp.phase(), "serving")
        # TCP mode relays the HTTP exchange byte for byte
        code, body = http_get(dp.listen_port, "/")
        self.assertEqual(code, 200)
        self.assertIn("hello from readiness", body)
        app.stop()
        dp.wait_for(lambda: dp.try_get("/ready")[0] == 503, 2.0,
                    desc="/ready == 503 after the demo app was killed")
        self.assert_live(dp)


if __name__ == "__main__":
    harness.main()
