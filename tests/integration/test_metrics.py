#!/usr/bin/env python3
"""/metrics: valid Prometheus text (promtool) and the right values after traffic.

Scenarios: N connections with known byte counts closed by their clients;
--max-connections overload; upstream down => connect errors; the phase gauge
and drain timestamp during a drain.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest, metric, free_port  # noqa: E402

PHASES = ("starting", "serving", "propagating", "draining", "stopped")
REASONS = ("client", "upstream", "idle_timeout", "drain_idle", "drain_forced", "error", "overload")


class MetricsTest(IntegrationTest):

    def start(self, *extra, upstream=None):
        upstream = upstream or self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, "--propagation-delay", "1s",
                              "--drain-timeout", "3s", *extra)
        dp.wait_ready(timeout=3.0)
        return upstream, dp

    def promtool_check(self, text, when):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not found on PATH: `promtool check metrics` not run "
                          "(install the prometheus package)")
        res = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=20)
        self.assertEqual(res.returncode, 0, "promtool check metrics (%s) failed:\n%s%s\n--- "
                         "metrics ---\n%s" % (when, res.stdout, res.stderr, text[:4000]))

    def assert_phase_gauge(self, m, current):
        for ph in PHASES:
            v = metric(m, "drainproxy_phase", phase=ph)
            self.assertIsNotNone(v, "drainproxy_phase{phase=%r} missing" % ph)
            self.assertEqual(v, 1.0 if ph == current else 0.0,
                             "drainproxy_phase{phase=%r} while %s" % (ph, current))

    # --------------------------------------------------------------------

    def test_promtool_check_metrics(self):
        upstream, dp = self.start()
        self.promtool_check(dp.metrics_text(), "idle")
        # after some traffic (labelled series appear) and during a drain
        s = self.connect_proxy(dp)
        self.assertEcho(s, b"hello")
        s.close()
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active 0")
        self.promtool_check(dp.metrics_text(), "after traffic")
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"hold")
        dp.send_signal(signal.SIGTERM)
        dp.wait_phase("draining", 3.0)
        self.promtool_check(dp.metrics_text(), "draining")
        a.close()
        self.assertEqual(dp.wait_exit(timeout=3.0), 0)

    def test_idle_values(self):
        _, dp = self.start()
        m = dp.metrics()
        self.assert_phase_gauge(m, "serving")
        self.assertEqual(metric(m, "drainproxy_ready"), 1)
        self.assertEqual(metric(m, "drainproxy_upstream_healthy"), 1)
        self.assertEqual(metric(m, "drainproxy_drain_started_timestamp_seconds"), 0)
        self.assertEqual(metric(m, "drainproxy_connections_active") or 0, 0)
        self.assertEqual(metric(m, "drainproxy_connections_total") or 0, 0,
                         "health probes/admin requests must not count as connections")

    def test_traffic_counters(self):
        _, dp = self.start()
        sizes = [1, 100, 4096, 65536, 300000]
        socks = []
        for i, n in enumerate(sizes):
            s = self.connect_proxy(dp)
            self.assertEcho(s, bytes([65 + i]) * n)
            socks.append(s)
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == len(sizes), 3.0,
                    desc="connections_active == %d" % len(sizes))
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_connections_total"), len(sizes))
        # the listener label is the listen address as given
        labels = [lbl for lbl, _ in harness.series(m, "drainproxy_connections_active")]
        self.assertIn(dp.listen_addr, [lbl.get("listener") for lbl in labels], labels)
        for s in socks:
            s.close()                                   # clients close first
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active back to 0")
        total = sum(sizes)
        dp.wait_for(lambda: dp.metric("drainproxy_bytes_total", direction="rx") == total, 3.0,
                    desc="bytes_total{direction=rx} == %d" % total)
        dp.wait_for(lambda: dp.metric("drainproxy_bytes_total", direction="tx") == total, 3.0,
                    desc="bytes_total{direction=tx} == %d" % total)
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_connections_total"), len(sizes))
        self.assertEqual(metric(m, "drainproxy_connections_closed_total", reason="client"),
                         len(sizes), harness.series(m, "drainproxy_connections_closed_total"))
        self.assertEqual(metric(m, "drainproxy_connections_closed_total"), len(sizes),
                         "every closed connection has exactly one reason")
        self.assertEqual(metric(m, "drainproxy_upstream_connect_errors_total") or 0, 0)
        self.assert_phase_gauge(m, "serving")
        self.assertEqual(metric(m, "drainproxy_ready"), 1)
        self.assertEqual(metric(m, "drainproxy_drain_started_timestamp_seconds"), 0)

    def test_upstream_close_reason(self):
        upstream, dp = self.start()
        s = self.connect_proxy(dp)
        self.assertEcho(s, b"x")
        upstream.stop(close_connections=True)          # upstream closes the connection
        self.assertEqual(harness.recv_until_eof(s, timeout=3.0), b"")
        s.close()
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active back to 0")
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_connections_closed_total", reason="upstream"), 1,
                         harness.series(m, "drainproxy_connections_closed_total"))

    def test_overload(self):
        _, dp = self.start("--max-connections", "2")
        a = self.connect_proxy(dp)
        b = self.connect_proxy(dp)
        self.assertEcho(a, b"a")
        self.assertEcho(b, b"b")
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 2, 3.0,
                    desc="connections_active == 2")
        outcome = harness.probe_new_connection(dp.listen_port)
        self.assertIn(outcome, ("refused", "reset", "eof"),
                      "third connection with --max-connections 2: %r" % outcome)
        dp.wait_for(lambda: dp.metric("drainproxy_connections_closed_total",
                                      reason="overload") == 1, 3.0,
                    desc="connections_closed_total{reason=overload} == 1")
        self.assertEqual(dp.metric("drainproxy_connections_active"), 2)
        # the two good connections are unaffected; a slot frees up after a close
        self.assertEcho(a, b"still a")
        a.close()
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 1, 3.0,
                    desc="connections_active == 1")
        c = self.connect_proxy(dp)
        self.assertEcho(c, b"c fits now")
        b.close()
        c.close()
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active back to 0")
        self.assertEqual(dp.metric("drainproxy_connections_closed_total", reason="overload"), 1)

    def test_upstream_down_counts_connect_error(self):
        dead = free_port()
        dp = self.start_proxy(dead, *self.FAST, "--propagation-delay", "1s",
                              "--drain-timeout", "3s", "--connect-timeout", "1s")
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_upstream_healthy"), 0)
        self.assertEqual(metric(m, "drainproxy_ready"), 0)
        outcome = harness.probe_new_connection(dp.listen_port, timeout=3.0)
        self.assertIn(outcome, ("reset", "eof"),
                      "client of a proxy whose upstream refuses: %r" % outcome)
        dp.wait_for(lambda: dp.metric("drainproxy_upstream_connect_errors_total") == 1, 3.0,
                    desc="upstream_connect_errors_total == 1")
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active back to 0")

    def test_many_concurrent_connections_accounting(self):
        """Counters stay exact with connections spread over both workers."""
        _, dp = self.start()
        n = 100
        socks = []
        for i in range(n):
            socks.append(self.connect_proxy(dp))
        for i, s in enumerate(socks):
            s.sendall(b"%05d" % i)
        for i, s in enumerate(socks):
            self.assertEqual(harness.recv_exact(s, 5), b"%05d" % i)
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == n, 5.0,
                    desc="connections_active == %d" % n)
        self.assertEqual(dp.status()["connections_active"], n)
        for s in socks:
            s.close()
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 5.0,
                    desc="connections_active back to 0")
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_connections_total"), n)
        self.assertEqual(metric(m, "drainproxy_connections_closed_total", reason="client"), n)
        self.assertEqual(metric(m, "drainproxy_bytes_total", direction="rx"), 5 * n)
        self.assertEqual(metric(m, "drainproxy_bytes_total", direction="tx"), 5 * n)

    def test_client_reset_is_cleaned_up(self):
        """An abortive close (RST) from the client frees the connection; the proxy keeps going."""
        _, dp = self.start()
        s = harness.connect(dp.listen_port)
        self.assertEcho(s, b"about to reset")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                        # sends RST
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 0, 3.0,
                    desc="connections_active back to 0 after a client RST")
        m = dp.metrics()
        self.assertEqual(metric(m, "drainproxy_connections_closed_total"), 1,
                         harness.series(m, "drainproxy_connections_closed_total"))
        t = self.connect_proxy(dp)
        self.assertEcho(t, b"proxy still fine")
        self.assertEqual(dp.get("/live")[0], 200)

    def test_idle_timeout(self):
        _, dp = self.start("--idle-timeout", "500ms")
        s = self.connect_proxy(dp)
        self.assertEcho(s, b"then silence")
        t0 = time.monotonic()
        self.assertEqual(harness.recv_until_eof(s, timeout=5.0), b"",
                         "an idle connection must be closed by --idle-timeout")
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 0.4, "idle connection closed after %.2fs < 500ms" % took)
        self.assertLess(took, 2.0, "idle connection closed after %.2fs" % took)
        dp.wait_for(lambda: dp.metric("drainproxy_connections_closed_total",
                                      reason="idle_timeout") == 1, 3.0,
                    desc="connections_closed_total{reason=idle_timeout} == 1")
        self.assertEqual(dp.metric("drainproxy_connections_active"), 0)

    def test_activity_resets_idle_timeout(self):
        _, dp = self.start("--idle-timeout", "600ms")
        s = self.connect_proxy(dp)
        t0 = time.monotonic()
        for i in range(8):                               # ~1.6s of activity, 200ms apart
            self.assertEcho(s, b"tick %d" % i)
            time.sleep(0.2)
        self.assertGreater(time.monotonic() - t0, 1.2)
        self.assertEcho(s, b"still open")

    def test_phase_gauge_during_drain(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"hold the drain open")
        wall_before = time.time()
        dp.send_signal(signal.SIGTERM)
        dp.wait_for(lambda: dp.metric("drainproxy_phase", phase="propagating") == 1, 1.0,
                    desc="drainproxy_phase{phase=propagating} == 1")
        m = dp.metrics()
        self.assert_phase_gauge(m, "propagating")
        self.assertEqual(metric(m, "drainproxy_ready"), 0)
        started = metric(m, "drainproxy_drain_started_timestamp_seconds")
        self.assertGreater(started, 0)
        self.assertLess(abs(started - wall_before), 2.0,
                        "drain_started_timestamp_seconds %r is not the trigger time %r"
                        % (started, wall_before))
        dp.wait_for(lambda: dp.metric("drainproxy_phase", phase="draining") == 1, 2.5,
                    desc="drainproxy_phase{phase=draining} == 1")
        m = dp.metrics()
        self.assert_phase_gauge(m, "draining")
        self.assertEqual(metric(m, "drainproxy_connections_active"), 1)
        self.assertEqual(metric(m, "drainproxy_drain_started_timestamp_seconds"), started)
        d1 = metric(m, "drainproxy_drain_duration_seconds")
        self.assertIsNotNone(d1)
        dp.wait_for(lambda: dp.metric("drainproxy_drain_duration_seconds") > d1 + 0.1, 2.0,
                    desc="drain_duration_seconds updated live while draining")
        a.close()
        self.assertEqual(dp.wait_exit(timeout=3.0), 0)


if __name__ == "__main__":
    harness.main()
