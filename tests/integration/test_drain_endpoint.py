#!/usr/bin/env python3
"""The /drain admin endpoint and the `drainproxy drain` sub-command.

- GET /drain blocks until the drain finished, then 200 + JSON (phase stopped)
- /drain?wait=false answers 202 at once (phase propagating)
- a second trigger neither restarts nor extends the sequence
- `drainproxy drain --admin ...` triggers the drain and exits 0
- /live, /metrics and /status keep answering during draining
"""

import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest  # noqa: E402

PROPAGATION = 1.0
DRAIN_TIMEOUT = 3.0


class DrainWaiter(threading.Thread):
    def __init__(self, dp, path="/drain", method="GET", timeout=20.0):
        super().__init__(daemon=True)
        self.dp, self.path, self.method, self.timeout = dp, path, method, timeout
        self.result = None
        self.error = None
        self.answered_at = None

    def run(self):
        try:
            self.result = self.dp.get(self.path, timeout=self.timeout, method=self.method)
        except Exception as exc:  # noqa: BLE001
            self.error = "%s: %s" % (type(exc).__name__, exc)
        self.answered_at = time.monotonic()


class DrainEndpointTest(IntegrationTest):

    def start(self, propagation=PROPAGATION, drain_timeout=DRAIN_TIMEOUT):
        return self.start_echo_and_proxy(propagation, drain_timeout)

    def test_blocking_drain_without_connections(self):
        _, dp = self.start()
        t0 = time.monotonic()
        code, body = dp.get("/drain", timeout=PROPAGATION + DRAIN_TIMEOUT + 5.0)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 200, body)
        summary = json.loads(body)
        self.assertEqual(summary["phase"], "stopped", summary)
        self.assertEqual(summary["trigger"], "admin", summary)
        self.assertEqual(summary["connections_forced"], 0, summary)
        self.assertEqual(summary["connections_drained"], 0, summary)
        self.assertGreaterEqual(elapsed, PROPAGATION - 0.15, "/drain answered before "
                                "propagation-delay had passed (%.2fs)" % elapsed)
        self.assertLess(elapsed, PROPAGATION + 1.0)
        rc = dp.wait_exit(timeout=2.0)
        self.assertEqual(rc, 0)

    def test_blocking_drain_waits_for_open_connection(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"open\n")
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 2.0,
                    desc="connections_active == 1")
        t0 = time.monotonic()
        waiter = DrainWaiter(dp, method="POST")
        waiter.start()
        dp.wait_phase("draining", PROPAGATION + 1.5)
        # the drain is held open by the connection; admin endpoints still answer
        for _ in range(3):
            self.assertEqual(dp.get("/live")[0], 200)
            self.assertEqual(dp.get("/ready")[0], 503)
            m = dp.metrics()
            self.assertEqual(harness.metric(m, "drainproxy_phase", phase="draining"), 1)
            self.assertEqual(harness.metric(m, "drainproxy_connections_active"), 1)
            self.assertGreater(harness.metric(m, "drainproxy_drain_started_timestamp_seconds"), 0)
            self.assertEqual(dp.status()["phase"], "draining")
        self.assertIsNone(waiter.answered_at, "/drain answered while still draining")
        self.assertEcho(a, b"still working\n")
        time_before_close = time.monotonic()
        a.close()
        waiter.join(timeout=DRAIN_TIMEOUT + 3.0)
        self.assertIsNotNone(waiter.answered_at, "/drain did not answer")
        self.assertIsNone(waiter.error, waiter.error)
        self.assertLess(waiter.answered_at - time_before_close, 1.5,
                        "/drain answered %.2fs after the last connection closed"
                        % (waiter.answered_at - time_before_close))
        code, body = waiter.result
        self.assertEqual(code, 200, body)
        summary = json.loads(body)
        self.assertEqual(summary["phase"], "stopped", summary)
        self.assertEqual(summary["connections_drained"], 1, summary)
        self.assertEqual(summary["connections_forced"], 0, summary)
        self.assertLess(abs(summary["drain_seconds"] - (waiter.answered_at - t0)), 0.5, summary)
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_no_wait_answers_202_at_once(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"open\n")
        t0 = time.monotonic()
        code, body = dp.get("/drain?wait=false", timeout=2.0)
        took = time.monotonic() - t0
        self.assertEqual(code, 202, body)
        self.assertLess(took, 0.5, "/drain?wait=false took %.2fs" % took)
        self.assertEqual(json.loads(body)["phase"], "propagating", body)
        self.assertEqual(dp.phase(), "propagating")
        self.assertEqual(dp.get("/ready")[0], 503)
        self.assertEqual(dp.get("/live")[0], 200)
        dp.wait_phase("draining", PROPAGATION + 1.5)
        self.assertEqual(dp.get("/live")[0], 200)
        self.assertEqual(dp.get("/metrics")[0], 200)
        a.close()
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_second_trigger_does_not_extend_propagation(self):
        prop = 2.0
        _, dp = self.start(propagation=prop)
        t0 = time.monotonic()
        code, body = dp.get("/drain?wait=false", timeout=2.0)
        self.assertEqual(code, 202, body)
        # wait until we are well inside `propagating`, then trigger again twice
        dp.wait_for(lambda: dp.status()["seconds_in_phase"] >= 1.0, prop + 1.0,
                    desc="1s into propagating")
        self.assertEqual(dp.phase(), "propagating")
        dp.send_signal(signal.SIGTERM)
        code, body = dp.get("/drain?wait=false", timeout=2.0)
        self.assertIn(code, (200, 202), body)
        self.assertEqual(dp.phase(), "propagating")
        rc = dp.wait_exit(timeout=prop + 3.0)
        total = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(total, prop - 0.15)
        self.assertLess(total, prop + 0.8,
                        "a second trigger extended/restarted the sequence: exit after %.2fs "
                        "(propagation-delay %gs, no connections)" % (total, prop))

    def test_second_trigger_during_draining_keeps_draining(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"open\n")
        t0 = time.monotonic()
        dp.send_signal(signal.SIGTERM)
        dp.wait_phase("draining", PROPAGATION + 1.5)
        code, body = dp.get("/drain?wait=false", timeout=2.0)
        self.assertIn(code, (200, 202), body)
        dp.send_signal(signal.SIGTERM)
        # still draining, not back to propagating; listener still closed
        st = dp.status()
        self.assertEqual(st["phase"], "draining", st)
        self.assertIn(harness.probe_new_connection(dp.listen_port), ("refused", "reset", "eof"))
        self.assertEcho(a, b"still\n")
        a.close()
        rc = dp.wait_exit(timeout=2.0)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, PROPAGATION + DRAIN_TIMEOUT)

    def test_two_blocking_drain_callers_both_answered(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"open\n")
        w1 = DrainWaiter(dp)
        w1.start()
        dp.wait_phase("propagating", 1.0)
        w2 = DrainWaiter(dp, method="POST")
        w2.start()
        dp.wait_phase("draining", PROPAGATION + 1.5)
        a.close()
        for w in (w1, w2):
            w.join(timeout=DRAIN_TIMEOUT + 3.0)
            self.assertIsNone(w.error, w.error)
            self.assertIsNotNone(w.result, "a blocking /drain caller was not answered")
            code, body = w.result
            self.assertEqual(code, 200, body)
            self.assertEqual(json.loads(body)["phase"], "stopped", body)
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_loopback_drain_allowed_when_token_set(self):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, "--propagation-delay", "1s",
                              "--drain-timeout", "3s", "--drain-token", "s3cret")
        dp.wait_ready(timeout=3.0)
        code, body = dp.get("/drain?wait=false")
        self.assertEqual(code, 202, "loopback /drain must be accepted even with a token set: %s"
                         % body)
        self.assertEqual(dp.wait_exit(timeout=3.0), 0)

    def test_drain_subcommand_with_token(self):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, "--propagation-delay", "1s",
                              "--drain-timeout", "3s", "--drain-token", "s3cret")
        dp.wait_ready(timeout=3.0)
        res = harness.run_proxy_cli(["drain", "--admin", dp.admin_addr, "--drain-token", "s3cret"],
                                    timeout=8.0)
        self.assertEqual(res.returncode, 0, "stdout=%r stderr=%r" % (res.stdout, res.stderr))
        self.assertEqual(json.loads(res.stdout)["phase"], "stopped", res.stdout)
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_drain_subcommand(self):
        _, dp = self.start()
        t0 = time.monotonic()
        res = harness.run_proxy_cli(["drain", "--admin", dp.admin_addr],
                                    timeout=PROPAGATION + DRAIN_TIMEOUT + 5.0)
        elapsed = time.monotonic() - t0
        self.assertEqual(res.returncode, 0, "stdout=%r stderr=%r" % (res.stdout, res.stderr))
        summary = json.loads(res.stdout)
        self.assertEqual(summary["phase"], "stopped", summary)
        self.assertGreaterEqual(elapsed, PROPAGATION - 0.15,
                                "`drainproxy drain` returned before the drain finished")
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_drain_subcommand_no_wait(self):
        _, dp = self.start()
        a = self.connect_proxy(dp)
        self.assertEcho(a, b"open\n")
        t0 = time.monotonic()
        res = harness.run_proxy_cli(["drain", "--admin", dp.admin_addr, "--no-wait"], timeout=5.0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(res.returncode, 0, "stdout=%r stderr=%r" % (res.stdout, res.stderr))
        self.assertEqual(json.loads(res.stdout)["phase"], "propagating", res.stdout)
        self.assertEqual(dp.get("/ready")[0], 503)
        dp.wait_phase("draining", PROPAGATION + 1.5)
        a.shutdown(socket.SHUT_WR)
        self.assertEqual(harness.recv_until_eof(a, timeout=3.0), b"")
        a.close()
        self.assertEqual(dp.wait_exit(timeout=2.0), 0)

    def test_drain_subcommand_unreachable_admin_fails(self):
        port = harness.free_port()   # nothing listens there
        res = harness.run_proxy_cli(["drain", "--admin", "127.0.0.1:%d" % port,
                                     "--timeout", "2s"], timeout=10.0)
        self.assertNotEqual(res.returncode, 0,
                            "`drainproxy drain` against a dead admin port must fail")


if __name__ == "__main__":
    harness.main()
