#!/usr/bin/env python3
"""A connection that never closes is force-closed at drain-timeout.

The client sees EOF or a reset at about propagation-delay + drain-timeout after
the trigger; the outcome is counted (drain_forced metric, /drain JSON, final
log summary) and the exit code is still 0.
"""

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest  # noqa: E402

PROPAGATION = 1.0
DRAIN_TIMEOUT = 3.0


class ClientWatcher(threading.Thread):
    """Blocks in recv() on a proxied connection and records when/how it ended."""

    def __init__(self, sock, timeout):
        super().__init__(daemon=True)
        self.sock = sock
        self.timeout = timeout
        self.ended_at = None
        self.how = None
        self.unexpected = b""

    def run(self):
        self.sock.settimeout(self.timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.how = "eof"
                    break
                self.unexpected += data
        except ConnectionResetError:
            self.how = "reset"
        except OSError as exc:
            self.how = "error: %s" % exc
        self.ended_at = time.monotonic()


class DrainWaiter(threading.Thread):
    """GET /drain (blocking) in the background."""

    def __init__(self, dp, path="/drain", timeout=30.0):
        super().__init__(daemon=True)
        self.dp, self.path, self.timeout = dp, path, timeout
        self.result = None
        self.error = None
        self.answered_at = None

    def run(self):
        try:
            self.result = self.dp.get(self.path, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            self.error = "%s: %s" % (type(exc).__name__, exc)
        self.answered_at = time.monotonic()


class ForceCloseTest(IntegrationTest):

    def start(self):
        return self.start_echo_and_proxy(PROPAGATION, DRAIN_TIMEOUT)

    def run_force_close(self, trigger):
        upstream, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"I will never close\n")
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 2.0,
                    desc="connections_active == 1")

        bound = PROPAGATION + DRAIN_TIMEOUT + 1.0
        watcher = ClientWatcher(a, timeout=bound + 5.0)
        watcher.start()

        t0 = time.monotonic()
        if trigger == "SIGTERM":
            dp.send_signal(signal.SIGTERM)
            dp.wait_for(lambda: dp.try_get("/ready")[0] == 503, 1.0, desc="/ready 503")
            waiter = DrainWaiter(dp, timeout=bound + 5.0)     # joins the running drain
        else:
            waiter = DrainWaiter(dp, timeout=bound + 5.0)     # starts the drain
        waiter.start()

        # scrape /metrics during the drain; keep the last successful scrape
        last = None
        scrapes = 0
        saw_draining = False
        active_while_draining = []
        while dp.running() and time.monotonic() - t0 < bound + 2.0 and scrapes < 2000:
            code, body = dp.try_get("/metrics", timeout=1.0)
            if code == 200:
                last = harness.parse_metrics(body)
                scrapes += 1
                if harness.metric(last, "drainproxy_phase", phase="draining") == 1:
                    saw_draining = True
                    active_while_draining.append(
                        harness.metric(last, "drainproxy_connections_active"))
            time.sleep(0.02)

        rc = dp.wait_exit(timeout=max(0.1, t0 + bound - time.monotonic()) + 0.5)
        t_exit = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit code after a forced drain")
        self.assertLess(t_exit, bound, "exit %.2fs after the trigger, bound %.1fs" % (t_exit, bound))

        # the client saw EOF/reset at about propagation-delay + drain-timeout
        watcher.join(timeout=5.0)
        self.assertIsNotNone(watcher.ended_at, "client never saw the connection end")
        self.assertIn(watcher.how, ("eof", "reset"))
        self.assertEqual(watcher.unexpected, b"")
        t_end = watcher.ended_at - t0
        self.assertGreaterEqual(t_end, PROPAGATION + DRAIN_TIMEOUT - 0.25,
                                "connection force-closed too early (%.2fs after trigger)" % t_end)
        self.assertLess(t_end, PROPAGATION + DRAIN_TIMEOUT + 1.0,
                        "connection force-closed too late (%.2fs after trigger)" % t_end)

        # the /drain caller got the summary
        waiter.join(timeout=5.0)
        self.assertIsNone(waiter.error, "blocking /drain failed: %s" % waiter.error)
        self.assertIsNotNone(waiter.result, "blocking /drain never answered")
        code, body = waiter.result
        self.assertEqual(code, 200, body)
        summary = json.loads(body)
        self.assertEqual(summary["phase"], "stopped", summary)
        self.assertEqual(summary["connections_forced"], 1, summary)
        self.assertEqual(summary["connections_drained"], 0, summary)
        self.assertEqual(summary["trigger"], "SIGTERM" if trigger == "SIGTERM" else "admin",
                         summary)
        self.assertGreaterEqual(summary["drain_seconds"], PROPAGATION + DRAIN_TIMEOUT - 0.25,
                                summary)
        self.assertLess(summary["drain_seconds"], bound, summary)

        # the last scrape saw the drain
        self.assertTrue(saw_draining, "no /metrics scrape showed phase draining")
        self.assertEqual(active_while_draining[0], 1,
                         "connections_active during draining: %r" % active_while_draining)
        self.assertIsNotNone(last)
        self.assertGreater(harness.metric(last, "drainproxy_drain_started_timestamp_seconds"), 0)
        forced = harness.metric(last, "drainproxy_connections_closed_total", reason="drain_forced")
        self.assertIn(forced, (None, 0.0, 1.0), "drain_forced counter: %r" % forced)

        # the final log summary says forced=1
        err = dp.stderr_text()
        lines = [ln for ln in err.splitlines() if "drain complete" in ln]
        self.assertTrue(lines, "no 'drain complete' summary line in stderr:\n%s" % err[-3000:])
        self.assertRegex(lines[-1], r"forced\W{0,3}1\b",
                         "final summary must report one forced connection")

    def test_force_close_after_sigterm(self):
        self.run_force_close("SIGTERM")

    def test_force_close_after_blocking_drain(self):
        self.run_force_close("admin")

    def test_busy_connection_is_force_closed_too(self):
        """A connection that keeps talking during draining is still force-closed."""
        upstream, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"busy\n")
        t0 = time.monotonic()
        dp.send_signal(signal.SIGTERM)
        ended = None
        rounds = 0
        bound = PROPAGATION + DRAIN_TIMEOUT + 1.0
        while time.monotonic() - t0 < bound and rounds < 10000:
            rounds += 1
            try:
                a.sendall(b"ping\n")
                data = a.recv(65536)
                if not data:
                    ended = time.monotonic() - t0
                    break
            except OSError:
                ended = time.monotonic() - t0
                break
            time.sleep(0.05)
        self.assertIsNotNone(ended, "busy connection was not closed by the drain-timeout")
        self.assertGreaterEqual(ended, PROPAGATION + DRAIN_TIMEOUT - 0.25)
        rc = dp.wait_exit(timeout=2.0)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, bound)


if __name__ == "__main__":
    harness.main()
