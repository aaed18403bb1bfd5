#!/usr/bin/env python3
"""ctest entry for the rolling-update end-to-end test (tests/e2e/rollout.py).

Runs the four scenarios once (app alone, preStop sleep, drainproxy HTTP mode, drainproxy
TCP mode with the preStop recipe), each a full rolling update under load inside a network
namespace of its own, then checks the verdict per scenario:

  1 app alone       failures are printed; there must be some (else the emulation is broken)
  2 preStop sleep   failures are printed
  3 drainproxy http ZERO failed requests for every client kind, clean exits, nothing forced
  4 drainproxy tcp  ZERO for new-connection clients; pooled clients: zero failures other
                    than the app's own idle-close race (see tests/e2e/README.md)

Skips (with the reason) only when no network namespace can be created (not root) or
iptables / iproute2 is missing. E2E_ROUNDS (default 2) sets the number of rollouts.
The result folder (per-request timelines, phase marks, pod logs) is kept when a check
fails, or always with E2E_KEEP=1.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import rollout  # noqa: E402

RUN_TIMEOUT = 270          # ctest gives the file 300 s
SKIP_RC = rollout.SKIP_RC


class RolloutTest(unittest.TestCase):
    results = None
    out = None
    failed = False

    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="drainproxy-rollout-")
        cmd = [sys.executable, os.path.join(ROOT, "tests", "e2e", "rollout.py"),
               "--scenarios", "all", "--out", cls.out, "--max-seconds", str(RUN_TIMEOUT - 15)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        try:
            output, _ = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGTERM lets rollout.py delete its namespace; SIGKILL only if it hangs.
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            raise AssertionError("rollout.py did not finish in %ds:\n%s" % (RUN_TIMEOUT, output))
        sys.stdout.write(output)
        sys.stdout.flush()
        if proc.returncode == SKIP_RC:
            shutil.rmtree(cls.out, ignore_errors=True)
            reason = [l for l in output.splitlines() if l.startswith("SKIP")]
            raise unittest.SkipTest(reason[-1] if reason else "rollout e2e cannot run here")
        if proc.returncode not in (0, 1):
            cls.failed = True
            raise AssertionError("rollout.py exited %d (emulation broken?); results in %s"
                                 % (proc.returncode, cls.out))
        cls.results = {}
        for name in rollout.ORDER:
            with open(os.path.join(cls.out, name + ".json")) as f:
                res = json.load(f)
            res.pop("requests", None)      # the timeline is for the picture, not needed here
            cls.results[name] = res

    @classmethod
    def tearDownClass(cls):
        if cls.out is None:
            return
        if cls.failed or os.environ.get("E2E_KEEP") == "1":
            print("\nrollout results kept in %s" % cls.out)
        else:
            shutil.rmtree(cls.out, ignore_errors=True)

    def check(self, name):
        res = self.results[name]
        checks = rollout.verdict({name: res})
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            type(self).failed = True
            for f in [f for f in res["failures"] if not f.get("app_close_race")][:10]:
                print("  failure: %s" % json.dumps(f))
        self.assertEqual(bad, [], "%s: %d check(s) failed (results in %s)" % (name, len(bad),
                                                                              self.out))
        return res

    def report(self, res):
        print("\n%s: %d requests, %d failed, by class %s" % (
            res["title"], res["requests_total"], res["failures_total"],
            {c: n for c, n in res["by_class"].items() if n}))
        for k in rollout.KINDS:
            d = res["per_kind"][k]
            print("   %-16s %6d requests %4d failed %s" % (
                k, d["requests"], d["failures"], {c: n for c, n in d["by_class"].items() if n}))

    def test_1_app_alone_shows_the_problem(self):
        res = self.check("app-alone")
        self.report(res)

    def test_2_prestop_sleep_is_reported(self):
        res = self.check("prestop-sleep")
        self.report(res)

    def test_3_drainproxy_http_zero_failures(self):
        res = self.check("drainproxy-http")
        self.report(res)
        self.assertEqual(res["failures_total"], 0)

    def test_4_drainproxy_tcp_recipe(self):
        res = self.check("drainproxy-tcp")
        self.report(res)
        race = [f for f in res["failures"] if f["app_close_race"]]
        if race:
            print("   %d failures attributed to the app's own idle-close race on SIGTERM "
                  "(reused connections, %s)" % (len(race), sorted({f["kind"] for f in race})))


if __name__ == "__main__":
    unittest.main(verbosity=2)
