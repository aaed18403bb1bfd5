#!/usr/bin/env python3
"""SIGTERM / SIGINT start the drain sequence.

serving --SIGTERM--> propagating (ready 503, new connections still proxied)
        --propagation-delay--> draining (listeners closed, open connections keep working)
        --last connection closed--> exit 0 at once (long before drain-timeout)
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest, probe_new_connection  # noqa: E402

PROPAGATION = 1.0
DRAIN_TIMEOUT = 10.0


class SigtermDrainTest(IntegrationTest):

    def start(self):
        return self.start_echo_and_proxy(PROPAGATION, DRAIN_TIMEOUT)

    def drain_with_open_connection(self, sig, trigger_name):
        upstream, dp = self.start()

        a = self.connect_proxy(dp)
        self.assertEcho(a, b"hello before the drain\n")
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 2.0,
                    desc="connections_active == 1")

        # --- trigger: readiness off at once
        t_sig = time.monotonic()
        dp.send_signal(sig)
        dp.wait_for(lambda: dp.try_get("/ready")[0] == 503, 1.0,
                    desc="/ready == 503 within 1s of %s" % trigger_name, interval=0.005)
        self.assertLess(time.monotonic() - t_sig, 1.0)
        st = dp.status()
        self.assertEqual(st["phase"], "propagating", st)
        self.assertEqual(dp.get("/live")[0], 200)

        # --- propagating: kube-proxy may still send new connections; they must work
        b = self.connect_proxy(dp)
        self.assertEcho(b, b"new connection during propagating\n")
        self.assertLess(time.monotonic() - t_sig, PROPAGATION,
                        "test too slow: the connection was not made during propagating")
        b.shutdown(socket.SHUT_WR)
        self.assertEqual(harness.recv_until_eof(b, timeout=3.0), b"",
                         "after half-closing, the echo upstream's FIN must reach the client")
        b.close()
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 2.0,
                    desc="connections_active back to 1 after closing the propagating conn")

        # --- draining: listeners closed, new connections refused
        dp.wait_phase("draining", PROPAGATION + 1.5)
        t_draining = time.monotonic() - t_sig
        self.assertGreaterEqual(t_draining, PROPAGATION - 0.15,
                                "propagating ended after %.3fs, before propagation-delay"
                                % t_draining)
        self.assertEqual(dp.try_get("/ready")[0], 503)
        outcome = probe_new_connection(dp.listen_port)
        self.assertIn(outcome, ("refused", "reset", "eof"),
                      "a new connection during draining must be refused, got %r" % outcome)
        listening = harness.port_is_listening(dp.listen_port)
        if listening is not None:
            self.assertFalse(listening, "the listen port is still in LISTEN state while draining")

        # --- the open connection keeps working
        for i in range(3):
            self.assertEcho(a, b"still here %d\n" % i)
        self.assertEqual(dp.status()["connections_active"], 1)
        self.assertTrue(dp.running())

        # --- client closes: the process exits 0 promptly
        t_close = time.monotonic()
        a.close()
        rc = dp.wait_exit(timeout=DRAIN_TIMEOUT + 2.0)
        elapsed = time.monotonic() - t_close
        self.assertEqual(rc, 0, "exit code after %s drain" % trigger_name)
        self.assertLess(elapsed, 1.5, "exit %.3fs after the last connection closed "
                                      "(drain-timeout %gs)" % (elapsed, DRAIN_TIMEOUT))
        self.assertIn("drain complete", dp.stderr_text())

    def test_sigterm_drain_sequence(self):
        self.drain_with_open_connection(signal.SIGTERM, "SIGTERM")

    def test_sigint_once_behaves_like_sigterm(self):
        self.drain_with_open_connection(signal.SIGINT, "SIGINT")

    def test_sigterm_without_connections_exits_after_propagation(self):
        _, dp = self.start()
        t_sig = time.monotonic()
        dp.send_signal(signal.SIGTERM)
        rc = dp.wait_exit(timeout=PROPAGATION + 3.0)
        elapsed = time.monotonic() - t_sig
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(elapsed, PROPAGATION - 0.15,
                                "exited before propagation-delay had passed")
        self.assertLess(elapsed, PROPAGATION + 1.0)

    def test_sigterm_while_starting(self):
        """An upstream that never became healthy does not block the shutdown."""
        dp = self.start_proxy(harness.free_port(), *self.FAST,
                              "--propagation-delay", "%gs" % PROPAGATION,
                              "--drain-timeout", "%gs" % DRAIN_TIMEOUT)
        self.assertEqual(dp.phase(), "starting")
        t_sig = time.monotonic()
        dp.send_signal(signal.SIGTERM)
        dp.wait_for(lambda: dp.phase() == "propagating", 1.0, desc="phase propagating")
        rc = dp.wait_exit(timeout=PROPAGATION + 3.0)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t_sig, PROPAGATION + 1.0)

    def test_idle_admin_connections_do_not_hold_the_drain(self):
        """Admin/probe/metrics connections never count as active connections."""
        _, dp = self.start()
        # an idle raw connection to the admin port, and a scrape loop during the drain
        idle_admin = harness.connect(dp.admin_port)
        self.addCleanup(idle_admin.close)
        self.assertEqual(dp.status()["connections_active"], 0)
        t_sig = time.monotonic()
        dp.send_signal(signal.SIGTERM)
        scrapes = 0
        last_metrics = None
        while dp.running() and time.monotonic() - t_sig < PROPAGATION + 3.0 and scrapes < 1000:
            code, body = dp.try_get("/metrics", timeout=1.0)
            if code == 200:
                last_metrics = body
                scrapes += 1
            time.sleep(0.05)
        rc = dp.wait_exit(timeout=PROPAGATION + 3.0)
        elapsed = time.monotonic() - t_sig
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, PROPAGATION + 1.0,
                        "an idle admin connection / scrapes held the drain open (%.2fs)" % elapsed)
        self.assertGreater(scrapes, 5, "/metrics must keep answering during the drain")
        self.assertIsNotNone(last_metrics)

    def test_second_sigint_exits_at_once(self):
        upstream, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"x")
        dp.send_signal(signal.SIGINT)
        dp.wait_phase("propagating", 1.0)
        t = time.monotonic()
        dp.send_signal(signal.SIGINT)
        rc = dp.wait_exit(timeout=2.0)
        self.assertLess(time.monotonic() - t, 1.0, "second SIGINT must exit at once")
        self.assertEqual(rc, 130, "second SIGINT exit code (contract: 130)")


if __name__ == "__main__":
    harness.main()
