#!/usr/bin/env python3
"""Reproduces the exit-status race: drainproxy killed by a SIGTERM that arrives after the drain.

This is kubelet's order of events: the preStop `drainproxy drain` returns as soon as the drain
is over, and SIGTERM follows at once. drainproxy is then tearing down. When its asio
signal_set is destroyed, the SIGTERM handler goes back to SIG_DFL. A SIGTERM that arrives
after that moment kills the process: status -15 here, exit code 143 in Kubernetes. It should
have exited 0.

    python3 tests/e2e/repro_sigterm_after_drain.py [--runs 60] [--burn 3] [--mode tcp|http]

Each run starts a proxy on 127.0.0.1 and calls `drainproxy drain`. Then it sends SIGTERM
every 0.5 ms until the process is gone. `--burn N` starts N busy-loop processes (killed by
PID at the end); they slow the teardown down, as a loaded node does. Prints the exit
statuses. Expected: all 0.
"""

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import rollout  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--burn", type=int, default=3)
    ap.add_argument("--mode", default="tcp")
    a = ap.parse_args()
    env = rollout.child_env()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.burn)]
    app_port = free_port()
    app = subprocess.Popen([rollout.demo_bin(), "--listen", "127.0.0.1:%d" % app_port,
                            "--name", "x"], stderr=subprocess.DEVNULL)
    codes = collections.Counter()
    try:
        time.sleep(0.3)
        for _ in range(a.runs):
            admin = free_port()
            p = subprocess.Popen([rollout.proxy_bin(), "--mode", a.mode,
                                  "--listen", "127.0.0.1:%d" % free_port(),
                                  "--upstream", "127.0.0.1:%d" % app_port,
                                  "--admin", "127.0.0.1:%d" % admin,
                                  "--propagation-delay", "0", "--drain-timeout", "1s",
                                  "--termination-grace-period", "5s"],
                                 stderr=subprocess.DEVNULL, env=env)
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", admin), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            subprocess.run([rollout.proxy_bin(), "drain", "--admin", "127.0.0.1:%d" % admin],
                           capture_output=True, env=env, timeout=10)
            deadline = time.monotonic() + 10
            while p.poll() is None and time.monotonic() < deadline:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0005)
            if p.poll() is None:
                p.kill()
            codes[p.wait(5)] += 1
    finally:
        for proc in burners + [app]:
            proc.kill()
            proc.wait()
    print("exit statuses after `drainproxy drain` + SIGTERM: %s (want only 0)" % dict(codes))
    return 0 if set(codes) == {0} else 1


if __name__ == "__main__":
    sys.exit(main())
