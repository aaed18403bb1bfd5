#!/usr/bin/env python3
"""THE keep-alive drain test: a rolling update seen from pooled HTTP clients.

One app, two drainproxy "pods" A and B in front of it (--propagation-delay 2s,
--drain-timeout 8s). Client threads each keep one pooled http.client keep-alive
connection: reuse while open; after a response with "Connection: close", or when
the idle connection was closed by the server (checked before reuse, like urllib3
does), open a new one to A or B picked at random, as kube-proxy would.

After a warm-up A gets SIGTERM. For LAG (shorter than A's propagation delay: the
iptables lag) new connections still go to A or B at random, then only to B.
Across the whole drain ZERO requests may fail (exception, non-200, wrong body),
and A must exit 0 before propagation-delay + drain-timeout.

Clients also retire a connection after a random number of requests (a pool's
max-requests-per-connection), so new connections keep arriving during the lag.

Variants: back-to-back requests; random idle gaps of 50-500 ms between requests;
and idle gaps of 0.5-2.5 s that straddle --drain-idle-grace (1 s), so idle
connections are closed by A while their clients may be about to reuse them.
"""

import collections
import http.client
import os
import random
import select
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, IntegrationTest  # noqa: E402

PROPAGATION = 2.0
DRAIN_TIMEOUT = 8.0
LAG = 1.0              # kube-proxy lag: A still gets new connections this long after SIGTERM
WARMUP = 1.5
AFTER_EXIT = 1.0       # keep going this long on B after A exited
MAX_TEST_SECONDS = 30.0
MAX_REQUESTS_PER_CLIENT = 20000
HELLO = b"hello from app\n"


class Pods:
    """Routing state shared by the clients: which proxies take new connections."""

    def __init__(self, a, b, lag):
        self.a, self.b = a, b
        self.lag = lag
        self.sigterm_at = None
        self.lock = threading.Lock()

    def choose(self, rng):
        now = time.monotonic()
        with self.lock:
            t = self.sigterm_at
        if t is not None and now >= t + self.lag:
            return "B"
        return rng.choice("AB")

    def port(self, name):
        return (self.a if name == "A" else self.b).listen_port

    def phase_of(self, now):
        t = self.sigterm_at
        if t is None:
            return "before"
        if now < t + self.lag:
            return "lag"
        return "after-lag"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()          # (pod, phase) -> count
        self.new_conns = collections.Counter()         # (pod, phase) -> count
        self.conn_close_responses = collections.Counter()  # pod -> responses with Connection: close
        self.dropped_before_reuse = collections.Counter()  # pod -> idle conns found closed before reuse
        self.failures = []

    def total_requests(self):
        with self.lock:
            return sum(self.requests.values())


def sock_dropped(sock):
    """urllib3's is_connection_dropped(): an idle keep-alive socket that is readable
    has been closed (or reset) by the server."""
    if sock is None:
        return True
    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)


def client_loop(idx, pods, stats, stop, gap, churn, t_end):
    rng = random.Random(1000 + idx)
    conn = None
    pod = None
    reqs_on_conn = 0
    conn_budget = 0
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.is_set() or time.monotonic() > t_end:
            break
        now = time.monotonic()
        phase = pods.phase_of(now)
        if conn is not None and sock_dropped(conn.sock):
            with stats.lock:
                stats.dropped_before_reuse[pod] += 1
            conn.close()
            conn = None
        if conn is None:
            pod = pods.choose(rng)
            conn = http.client.HTTPConnection(LOOPBACK, pods.port(pod), timeout=5)
            reqs_on_conn = 0
            conn_budget = rng.randint(*churn)
            try:
                conn.connect()
            except OSError as exc:
                with stats.lock:
                    stats.failures.append((round(now - (pods.sigterm_at or now), 3), pod, phase,
                                           "connect", type(exc).__name__, str(exc), 0))
                conn.close()
                conn = None
                continue
            with stats.lock:
                stats.new_conns[(pod, phase)] += 1
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            reqs_on_conn += 1
            closing = resp.will_close
            with stats.lock:
                stats.requests[(pod, phase)] += 1
                if closing:
                    stats.conn_close_responses[pod] += 1
            if resp.status != 200 or body != HELLO:
                with stats.lock:
                    stats.failures.append((round(now - (pods.sigterm_at or now), 3), pod, phase,
                                           "response", str(resp.status), repr(body[:80]), reqs_on_conn))
            if closing or reqs_on_conn >= conn_budget:
                # the server asked to close, or the pool retires the connection
                # (max requests per connection): the next request opens a new one
                conn.close()
                conn = None
        except Exception as exc:  # noqa: BLE001 - every failure counts
            with stats.lock:
                stats.requests[(pod, phase)] += 1
                stats.failures.append((round(now - (pods.sigterm_at or now), 3), pod, phase,
                                       "request", type(exc).__name__, str(exc), reqs_on_conn))
            conn.close()
            conn = None
        if gap is not None:
            stop.wait(rng.uniform(*gap))   # the client's think time (pacing, bounded)
    if conn is not None:
        conn.close()


class KeepAliveDrainTest(IntegrationTest):

    def run_rolling_update(self, n_clients, gap, churn, label, require_lag_conns=True,
                           propagation=PROPAGATION, lag=LAG):
        app = self.start_demo(name="app")
        flags = (*self.FAST, "--propagation-delay", "%gs" % propagation,
                 "--drain-timeout", "%gs" % DRAIN_TIMEOUT)
        a = self.start_http_proxy(app.port, *flags)
        b = self.start_http_proxy(app.port, *flags)
        a.wait_ready(5.0)
        b.wait_ready(5.0)
        pods = Pods(a, b, lag)
        stats = Stats()
        stop = threading.Event()
        t_start = time.monotonic()
        t_end = t_start + MAX_TEST_SECONDS
        threads = [threading.Thread(target=client_loop, args=(i, pods, stats, stop, gap, churn, t_end),
                                    name="client-%d" % i, daemon=True) for i in range(n_clients)]
        for t in threads:
            t.start()
        try:
            # warm-up: both pods carry traffic
            min_warm = 50 if gap is None else n_clients * 2
            harness.wait_for(lambda: time.monotonic() - t_start >= WARMUP
                             and stats.total_requests() >= min_warm, WARMUP + 10.0,
                             desc="warm-up traffic")
            with stats.lock:
                warm = dict(stats.requests)
            self.assertTrue(warm.get(("A", "before")) and warm.get(("B", "before")),
                            "both pods must carry traffic before the drain: %r" % warm)

            with pods.lock:
                pods.sigterm_at = time.monotonic()
            a.send_signal(signal.SIGTERM)
            t_sig = pods.sigterm_at
            code = a.wait_exit(propagation + DRAIN_TIMEOUT + 3.0)
            a_exit = time.monotonic() - t_sig
            # B keeps serving after A is gone (bounded by the stop event)
            stop.wait(AFTER_EXIT)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        alive = [t.name for t in threads if t.is_alive()]
        total = stats.total_requests()
        with stats.lock:
            req = dict(stats.requests)
            conns = dict(stats.new_conns)
            failures = list(stats.failures)
            cc = dict(stats.conn_close_responses)
            dropped = dict(stats.dropped_before_reuse)
        summary = [l for l in a.stderr_text().splitlines() if "drain complete" in l]
        print("\n  [%s] %d clients, %d requests, %d failures; A exited %d after %.2fs "
              "(propagation %gs + drain-timeout %gs)"
              % (label, n_clients, total, len(failures), code, a_exit, propagation, DRAIN_TIMEOUT))
        print("  requests by (pod, phase): %s" % sorted(req.items()))
        print("  new connections by (pod, phase): %s" % sorted(conns.items()))
        print("  responses with Connection: close: %s; idle conns found closed before reuse: %s"
              % (sorted(cc.items()), sorted(dropped.items())))
        print("  A: %s" % (summary[-1].split("] ", 1)[-1] if summary else "(no summary line)"))
        for f in failures[:20]:
            print("  FAILURE t=%+.3fs pod=%s phase=%s %s %s %s (request #%d on its connection)" % f)

        self.assertEqual(alive, [], "client threads did not stop")
        self.assertEqual(code, 0, "A must exit 0")
        self.assertLess(a_exit, propagation + DRAIN_TIMEOUT,
                        "A must exit before propagation-delay + drain-timeout")
        if require_lag_conns:
            self.assertGreater(conns.get(("A", "lag"), 0), 0,
                               "new connections must have reached A during the lag")
        if lag > 0:
            self.assertGreater(req.get(("A", "lag"), 0), 0)
        self.assertGreater(req.get(("B", "after-lag"), 0), 0)
        self.assertTrue(summary, "A logs its drain summary")
        self.assertIn("connections_forced=0", summary[-1])
        self.assertEqual(failures, [], "%d of %d requests failed during the drain (first: %r)"
                         % (len(failures), total, failures[:3]))
        return req, failures

    def test_back_to_back_requests(self):
        self.run_rolling_update(n_clients=8, gap=None, churn=(20, 200), label="back-to-back")

    def test_random_idle_gaps_50_500ms(self):
        self.run_rolling_update(n_clients=16, gap=(0.05, 0.5), churn=(2, 10),
                                label="idle gaps 50-500ms")

    def test_idle_gaps_straddling_drain_idle_grace(self):
        """Gaps of 0.5-2.5 s: some connections sit idle through propagating and are
        closed by A's idle-close while draining; their clients must notice before reuse."""
        self.run_rolling_update(n_clients=24, gap=(0.5, 2.5), churn=(2, 6),
                                label="idle gaps 0.5-2.5s", require_lag_conns=False)

    def test_short_propagation_exercises_drain_idle_grace(self):
        """--propagation-delay 200ms (< --drain-idle-grace 1s) and no lag: connections that
        were idle less than the grace when draining starts are left open; a request that
        arrives on one is served (with Connection: close); the others are closed once idle
        for the grace. Gaps of 50 ms-1.5 s put requests on both sides of that line."""
        self.run_rolling_update(n_clients=24, gap=(0.05, 1.5), churn=(5, 20),
                                label="propagation 200ms, gaps 50ms-1.5s", propagation=0.2, lag=0.0,
                                require_lag_conns=False)


if __name__ == "__main__":
    harness.main()

