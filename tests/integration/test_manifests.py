#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/kubernetes/ validate offline.

Runs tests/manifests/validate.mjs (Node.js): every document is checked against the
Kubernetes / Prometheus Operator schemas of the npm package kubernetes-models, for
unknown fields, and against drainproxy's rules (timing budget, probes, preStop hooks,
ports). Then copies of the manifests are broken on purpose, one way at a time, and
each copy must be rejected with a message that names the problem.

ManifestRuntimeTest then runs the real drainproxy binary with each Deployment's
DRAINPROXY_* settings (only the addresses moved to free loopback ports) and runs the
Deployment's preStop hooks against it, as kubelet would: drainproxy must accept the
settings, both hooks must block until the drain has finished, and drainproxy must exit 0.
It also checks that the validator's timing rule and drainproxy's own start-up check
agree at the boundary, and that the validator knows exactly drainproxy's flags.

The npm packages are installed with `npm ci` into tests/manifests/node_modules when
that is missing or older than package-lock.json. The tests are skipped (not failed)
only when node/npm are missing or npm cannot reach the registry.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
VALIDATOR_DIR = os.path.join(REPO, "tests", "manifests")
VALIDATOR = os.path.join(VALIDATOR_DIR, "validate.mjs")
DEPLOY_DIR = os.path.join(REPO, "deploy", "kubernetes")

NPM_CI_TIMEOUT = 200      # seconds; ctest gives each file 300
VALIDATE_TIMEOUT = 60

# npm's ways of saying "I could not reach the registry".
NETWORK_FAILURE = re.compile(
    r"npm (?:error|ERR!) network"
    r"|\b(?:ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH"
    r"|ESOCKETTIMEDOUT|ERR_SOCKET_TIMEOUT|ENOTCACHED|UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
    r"|SELF_SIGNED_CERT_IN_CHAIN|E407|E50[234])\b")

NODE = None


def _tool_or_skip():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise unittest.SkipTest("Node.js and npm are needed to validate the Kubernetes manifests "
                                "(missing: %s)" % ", ".join(n for n, p in (("node", node), ("npm", npm)) if not p))
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", out)
    if not m or int(m.group(1)) < 18:
        raise unittest.SkipTest("Node.js >= 18 is needed to validate the Kubernetes manifests (found %r)" % out)
    return node, npm


def _install_needed():
    marker = os.path.join(VALIDATOR_DIR, "node_modules", ".package-lock.json")  # written last by npm
    lock = os.path.join(VALIDATOR_DIR, "package-lock.json")
    return not os.path.exists(marker) or os.path.getmtime(marker) < os.path.getmtime(lock)


def _npm_ci(npm):
    """npm ci in tests/manifests (one process at a time), unless node_modules is current."""
    lock_path = os.path.join(tempfile.gettempdir(), "drainproxy-npm-ci-%s.lock"
                             % hashlib.sha1(VALIDATOR_DIR.encode()).hexdigest()[:12])
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _install_needed():
            return
        env = dict(os.environ, npm_config_update_notifier="false", npm_config_fetch_retries="2",
                   npm_config_fetch_timeout="30000", npm_config_fetch_retry_maxtimeout="10000")
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            res = subprocess.run(cmd, cwd=VALIDATOR_DIR, env=env, capture_output=True, text=True,
                                 timeout=NPM_CI_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise unittest.SkipTest("`npm ci` did not finish within %d s: the npm registry seems "
                                    "unreachable" % NPM_CI_TIMEOUT)
        output = res.stdout + res.stderr
        if res.returncode != 0:
            if NETWORK_FAILURE.search(output):
                why = [line for line in output.splitlines()
                       if re.search(r"\bcode\b|network|request to", line)]
                raise unittest.SkipTest("npm cannot reach the registry, so the validator's packages "
                                        "can't be installed: " + " | ".join(why[:4]))
            raise AssertionError("`npm ci` failed in %s (exit %d):\n%s"
                                 % (VALIDATOR_DIR, res.returncode, output[-4000:]))


def setUpModule():
    global NODE
    NODE, npm = _tool_or_skip()
    _npm_ci(npm)


def run_validator(*targets):
    res = subprocess.run([NODE, VALIDATOR, *targets], cwd=REPO, capture_output=True, text=True,
                         timeout=VALIDATE_TIMEOUT)
    return res.returncode, res.stdout + res.stderr


class ManifestTest(unittest.TestCase):

    maxDiff = None

    def test_manifests_are_valid(self):
        rc, out = run_validator()
        print(out, end="")
        self.assertEqual(rc, 0, "validate.mjs rejected deploy/kubernetes:\n" + out)
        files = sorted(f for f in os.listdir(DEPLOY_DIR) if f.endswith((".yaml", ".yml")))
        for want in ("deployment-sidecar.yaml", "deployment-native-sidecar.yaml", "service.yaml",
                     "podmonitor.yaml"):
            self.assertIn(want, files)
        for f in files:
            self.assertRegex(out, r"(?m)^ok   deploy/kubernetes/%s#0 " % re.escape(f),
                             "%s was not validated" % f)
        # the built-in self-test ran and each broken document was rejected
        self.assertGreaterEqual(out.count("self-test ok:"), 5, out)
        self.assertIn('Deployment with replicas: "two" is rejected', out)

    def test_broken_copies_are_rejected(self):
        # (file, regex to break it, replacement, message the validator must print);
        # the regexes match YAML lines, not the comments that quote the same settings.
        cases = [
            ("deployment-sidecar.yaml", r"(?m)^(\s+)replicas: 3$", r'\1replicas: "two"',
             r"schema: data/spec/replicas must be integer"),
            ("deployment-sidecar.yaml", r"(?m)^(\s+)terminationGracePeriodSeconds: 30$",
             r"\1terminationGracePeriodSeconds: 25",
             r"timing budget: propagation-delay 5s \+ drain-timeout 20s \+ margin 3s = 28s exceeds "
             r"terminationGracePeriodSeconds 25s"),
            ("deployment-sidecar.yaml", r'DRAINPROXY_DRAIN_TIMEOUT\n(\s+)value: "20s"',
             r'DRAINPROXY_DRAIN_TIMEOUT\n\1value: "20"', r'"20" is not a duration'),
            ("deployment-native-sidecar.yaml", r"(?m)^(\s+)readOnlyRootFilesystem: true$",
             r"\1readOnlyRootFileSystem: true",
             r'unknown field "spec\.template\.spec\.initContainers\[0\]\.securityContext\.readOnlyRootFileSystem"'),
            ("deployment-native-sidecar.yaml", r"(startupProbe:\n\s+httpGet:\n\s+path:) /live", r"\1 /ready",
             r'startupProbe .* path is "/ready", expected "/live"'),
            ("deployment-native-sidecar.yaml", r"(?m)^(\s+)restartPolicy: Always$", r"\1restartPolicy: Never",
             r"without restartPolicy: Always"),
            ("deployment-sidecar.yaml", r"(?m)^(\s+)url=http://127\.0\.0\.1:9901/drain$",
             r"\1url=http://127.0.0.1:9901/drain?wait=false",
             r'container "app": lifecycle.preStop must block until drainproxy has drained'),
            ("deployment-sidecar.yaml", r'(?m)^(\s+)- name: DRAINPROXY_MODE\n(\s+)value: "http"$',
             r'\1- name: DRAINPROXY_MODE\n\2value: "http"\n\1- name: DRAINPROXY_IO_URING\n\2value: "on"',
             r"--io-uring on \(env DRAINPROXY_IO_URING\) with seccompProfile RuntimeDefault"),
            ("service.yaml", r"(?m)^(\s+)targetPort: http$", r"\1targetPort: 8080", r"bypasses drainproxy"),
            ("podmonitor.yaml", r"(?m)^(\s+)- port: admin$", r"\1- port: http",
             r"not drainproxy's admin port 9901"),
        ]
        for name, pattern, replacement, expect in cases:
            with self.subTest(file=name, change=replacement), tempfile.TemporaryDirectory() as tmp:
                copy = os.path.join(tmp, "kubernetes")
                shutil.copytree(DEPLOY_DIR, copy)
                path = os.path.join(copy, name)
                with open(path) as f:
                    text = f.read()
                broken, n = re.subn(pattern, replacement, text, count=1)
                self.assertEqual(n, 1, "pattern %r not found in %s: update this test" % (pattern, name))
                with open(path, "w") as f:
                    f.write(broken)
                rc, out = run_validator(copy)
                self.assertEqual(rc, 1, "a broken %s was accepted (%s):\n%s" % (name, replacement, out))
                self.assertRegex(out, r"(?m)^FAIL .*%s#0 " % re.escape(name), out)
                self.assertRegex(out, expect, out)
                # only the broken file fails
                self.assertRegex(out, r": 1 invalid", out)


def duration_s(text):
    """drainproxy duration ("5s", "250ms", "1m", "0") -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if text == "0":
        return 0.0
    if not m:
        raise ValueError("not a duration: %r" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def dump_pods(target=None):
    args = [NODE, VALIDATOR, "--dump-pods"] + ([target] if target else [])
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT)
    if res.returncode != 0:
        raise AssertionError("validate.mjs --dump-pods failed:\n" + res.stdout + res.stderr)
    return json.loads(res.stdout)


class ManifestRuntimeTest(harness.IntegrationTest):
    """The Deployments' drainproxy settings and preStop hooks, run for real on loopback."""

    def address_flags(self):
        return ["--listen", "127.0.0.1:%d" % harness.free_port(),
                "--admin", "127.0.0.1:%d" % harness.free_port(),
                "--upstream", "127.0.0.1:%d" % harness.free_port()]

    def kill_later(self, proc):
        def kill():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.addCleanup(kill)

    def test_validator_knows_exactly_drainproxys_flags(self):
        res = harness.run_proxy_cli(["--help"])
        self.assertEqual(res.returncode, 0, res.stderr)
        offered = set(re.findall(r"(?m)^\s+--([a-z][a-z-]*)", res.stdout + res.stderr)) - {"help", "version"}
        self.assertGreater(len(offered), 10, "could not read the flags from drainproxy --help:\n" + res.stdout)
        known = subprocess.run([NODE, VALIDATOR, "--known-flags"], capture_output=True, text=True,
                               timeout=VALIDATE_TIMEOUT)
        known = set(json.loads(known.stdout))
        self.assertEqual(sorted(offered - known), [],
                         "drainproxy has flags that KNOWN_FLAGS in tests/manifests/validate.mjs lacks")
        self.assertEqual(sorted(known - offered), [],
                         "KNOWN_FLAGS in tests/manifests/validate.mjs lists flags drainproxy does not have")

    def test_prestop_hooks_drain_with_the_manifest_settings(self):
        pods = dump_pods()
        self.assertEqual(sorted(p["native"] for p in pods), [False, True], pods)
        for pod in pods:
            with self.subTest(pod["where"]):
                self.run_termination(pod)

    def run_termination(self, pod):
        env = dict(pod["drainproxy"]["env"])
        propagation = duration_s(env.get("DRAINPROXY_PROPAGATION_DELAY", "5s"))
        drain_timeout = duration_s(env.get("DRAINPROXY_DRAIN_TIMEOUT", "20s"))
        manifest_admin = env.get("DRAINPROXY_ADMIN", "0.0.0.0:9901")
        manifest_admin_port = int(manifest_admin.rsplit(":", 1)[1])

        # the app: the demo HTTP app if it was built, else a TCP echo server (the
        # manifests' health check only connects)
        if harness.DemoApp.available():
            app = self.start_demo("manifest")
        else:
            app = self.start_echo()
        # the manifest's settings; only the addresses move to free loopback ports
        # (flags win over the environment)
        dp = self.start_proxy(app.port, *pod["drainproxy"]["args"], env=env, mode=None,
                              workers=int(env.get("DRAINPROXY_WORKERS", "2")))
        dp.wait_ready(timeout=10.0)
        status = dp.status()
        self.assertEqual(status["mode"], env.get("DRAINPROXY_MODE", "http"))
        self.assertAlmostEqual(status["timings"]["propagation_delay_seconds"], propagation)
        self.assertAlmostEqual(status["timings"]["drain_timeout_seconds"], drain_timeout)
        self.assertAlmostEqual(status["timings"]["termination_grace_period_seconds"],
                               pod["terminationGracePeriodSeconds"])
        if harness.DemoApp.available():
            code, body = harness.http_get(dp.listen_port, "/")
            self.assertEqual(code, 200, body)

        # the hooks, started together as kubelet does when the pod starts terminating
        dp_hook = list(pod["drainproxy"]["preStop"] or [])
        self.assertEqual(dp_hook[:2], ["drainproxy", "drain"])
        dp_hook[0] = harness.proxy_bin()
        hook_env = harness.child_env(dict(env, DRAINPROXY_ADMIN=dp.admin_addr))
        app_hooks = []
        for a in pod["apps"]:
            cmd = [arg.replace("127.0.0.1:%d" % manifest_admin_port, dp.admin_addr) for arg in a["preStop"]]
            self.assertNotEqual(cmd, a["preStop"], "app hook does not call 127.0.0.1:%d" % manifest_admin_port)
            app_hooks.append((a["name"], cmd))
        if not (shutil.which("wget") or shutil.which("curl")):
            self.skipTest("neither wget nor curl is installed: the app's preStop would take its sleep fallback")

        t0 = time.monotonic()
        procs = [("drainproxy", subprocess.Popen(dp_hook, env=hook_env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))]
        for name, cmd in app_hooks:
            procs.append((name, subprocess.Popen(cmd, env=harness.child_env(), stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for _, p in procs:
            self.kill_later(p)
        finished = {}
        deadline = t0 + propagation + drain_timeout + 10
        while len(finished) < len(procs) and time.monotonic() < deadline:
            for name, p in procs:
                if name not in finished and p.poll() is not None:
                    finished[name] = time.monotonic() - t0
            time.sleep(0.02)
        self.assertEqual(len(finished), len(procs), "hooks still running after %.0fs: %s"
                         % (deadline - t0, [n for n, _ in procs if n not in finished]))

        out, err = procs[0][1].communicate()
        self.assertEqual(procs[0][1].returncode, 0, "drainproxy drain failed: %s %s" % (out, err))
        summary = json.loads(out)
        self.assertEqual(summary["phase"], "stopped", summary)
        for name, p in procs[1:]:
            out, err = p.communicate()
            self.assertEqual(p.returncode, 0, "%s preStop failed: %s %s" % (name, out, err))
            # blocked until the drain was over: propagating alone lasts `propagation`
            self.assertGreaterEqual(finished[name], propagation - 0.3,
                                    "%s preStop returned before the drain finished" % name)
            self.assertLess(finished[name], propagation + drain_timeout,
                            "%s preStop took its sleep fallback instead of waiting on /drain" % name)
        self.assertEqual(dp.wait_exit(10.0), 0, dp.stderr_text()[-3000:])
        print("%s: hooks returned after %s; drainproxy exited 0"
              % (pod["where"], ", ".join("%s %.2fs" % (n, t) for n, t in sorted(finished.items()))))

        # once drainproxy is gone, the app's hook must not hang
        for name, cmd in app_hooks:
            t1 = time.monotonic()
            res = subprocess.run(cmd, env=harness.child_env(), capture_output=True, text=True, timeout=30)
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertLess(time.monotonic() - t1, 3.0, "%s preStop waits although drainproxy is gone" % name)

    def test_timing_rule_agrees_with_drainproxy(self):
        """At the edge of the budget the validator and drainproxy's start-up check agree."""
        pod = dump_pods()[0]
        env = dict(pod["drainproxy"]["env"])
        grace = pod["terminationGracePeriodSeconds"]
        propagation = duration_s(env["DRAINPROXY_PROPAGATION_DELAY"])
        margin = max(1.0, grace / 10.0)
        fits = grace - propagation - margin          # the longest drain-timeout that fits
        file_name = pod["where"].split("#")[0]
        for drain_timeout, ok in ((fits, True), (fits + 1, False)):
            value = "%gs" % drain_timeout
            with self.subTest(drain_timeout=value):
                # drainproxy
                trial = dict(env, DRAINPROXY_DRAIN_TIMEOUT=value)
                if ok:
                    dp = self.start_proxy(harness.free_port(), env=trial, mode=None)
                    self.assertTrue(dp.running())
                    dp.close()
                else:
                    res = harness.run_proxy_cli(self.address_flags(), env=trial)
                    self.assertEqual(res.returncode, 2, res.stderr)
                    self.assertRegex(res.stderr, r"--drain-timeout|--termination-grace-period")
                # the validator, on a copy of the manifests with the same change
                with tempfile.TemporaryDirectory() as tmp:
                    copy = os.path.join(tmp, "kubernetes")
                    shutil.copytree(DEPLOY_DIR, copy)
                    path = os.path.join(copy, os.path.basename(file_name))
                    with open(path) as f:
                        text = f.read()
                    text, n = re.subn(r'(DRAINPROXY_DRAIN_TIMEOUT\n\s+value:) "[^"]*"', r'\1 "%s"' % value, text)
                    self.assertEqual(n, 1)
                    # the app hook's shell-less fallback sleeps for the whole budget
                    text = re.sub(r"(?m)^(\s+)sleep \d+$", r"\g<1>sleep %d" % (propagation + drain_timeout), text)
                    with open(path, "w") as f:
                        f.write(text)
                    rc, out = run_validator(copy)
                    if ok:
                        self.assertEqual(rc, 0, out)
                    else:
                        self.assertEqual(rc, 1, out)
                        self.assertIn("timing budget", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
