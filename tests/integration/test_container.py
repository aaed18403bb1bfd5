#!/usr/bin/env python3
"""The container image: built without a Docker daemon, run with podman.

1. Builds the image with tests/container/build_and_run.sh (buildah bud --isolation chroot; the
   base image debian:bookworm-slim is debootstrapped once per machine and cached; layers and a
   ccache cache mount make a rebuild cheap).
2. Checks the image config: entrypoint drainproxy, non-root user 10001, EXPOSE 8000 9901.
3. Runs the image twice, like a pod's two containers: the demo app as the upstream (same image,
   --entrypoint drainproxy-demo-app) and drainproxy in front of it. Both use the host network and
   listen on free 127.0.0.1 ports, so no bridge/port-forwarding setup is needed.
4. /ready turns 200 (bounded poll), a request through the proxy returns "hello from ...".
5. drainproxy is PID 1 of its container and runs as uid 10001.
6. SIGTERM to the proxy container with a request in flight: the request completes, drainproxy
   exits 0 ("drain complete" in its log).
7. Prints the image size and the time each stage took.

Skips (exit 0, message says why) when DRAINPROXY_SKIP_CONTAINER=1, when buildah / podman / an
OCI runtime (runc or crun) is missing, or when containers cannot be started on this machine
(no root and no user namespaces, ...). Install the tools with:
    apt-get install -y buildah podman runc debootstrap

Environment:
  DRAINPROXY_SKIP_CONTAINER=1          skip this test
  DRAINPROXY_CONTAINER_BUILD_TIMEOUT   seconds the build may take (default 540; a cold build
                                       with no cache at all takes ~12 min on 2 cores)
  DRAINPROXY_CONTAINER_NO_BUILD=1      use the already built image as it is
  DRAINPROXY_IMAGE                     image tag (default drainproxy:test)
  DRAINPROXY_CONTAINER_CACHE           where the debootstrapped base rootfs is kept
                                       (default ~/.cache/drainproxy-container)
  DRAINPROXY_CONTAINER_MAX_MB          fail when the image is larger (default 150)
Containers are named drainproxy-ctest-app / drainproxy-ctest-proxy and removed by name.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD_SCRIPT = os.path.join(ROOT, "tests", "container", "build_and_run.sh")
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
APP_NAME = "drainproxy-ctest-app"
PROXY_NAME = "drainproxy-ctest-proxy"
LOOPBACK = "127.0.0.1"


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


IMAGE = os.environ.get("DRAINPROXY_IMAGE", "drainproxy:test")
BUILD_TIMEOUT = env_int("DRAINPROXY_CONTAINER_BUILD_TIMEOUT", 540)
MAX_MB = env_int("DRAINPROXY_CONTAINER_MAX_MB", 150)


def say(msg):
    print("[container] " + msg, file=sys.stderr, flush=True)


def run(args, timeout=60, check=True):
    """Runs a command, bounded; returns CompletedProcess with text stdout/stderr."""
    try:
        cp = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("timed out after %ss: %s" % (timeout, " ".join(args))) from e
    if check and cp.returncode != 0:
        raise AssertionError("%s -> exit %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), cp.returncode, cp.stdout[-2000:], cp.stderr[-2000:]))
    return cp


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=2.0):
    """(status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (LOOPBACK, port, path), timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return None, str(e)


def ulimit_args():
    """Explicit rlimits no higher than this process's own. podman's defaults for root (nofile
    1048576, a high nproc) need CAP_SYS_RESOURCE to raise the hard limits; sandboxes and CI runners
    may lack it (this machine does), and runc then fails: "error setting rlimit type 7"."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    return ["--ulimit", "nofile=%d:%d" % (nofile, nofile), "--ulimit", "nproc=4096:4096"]


def oci_runtime():
    for name in ("runc", "crun"):
        if shutil.which(name) or os.path.exists("/usr/sbin/" + name):
            return name
    return None


def why_unusable():
    """None when buildah/podman can work here, else the reason to skip."""
    if os.environ.get("DRAINPROXY_SKIP_CONTAINER", "") not in ("", "0"):
        return "DRAINPROXY_SKIP_CONTAINER is set"
    missing = [t for t in ("buildah", "podman") if not shutil.which(t)]
    if not oci_runtime():
        missing.append("runc (or crun)")
    if missing:
        return ("missing %s (apt-get install -y buildah podman runc debootstrap)"
                % ", ".join(missing))
    if os.geteuid() != 0:
        try:
            with open("/proc/sys/user/max_user_namespaces") as f:
                if int(f.read().strip() or 0) == 0:
                    return "not root and user namespaces are disabled (max_user_namespaces=0)"
        except OSError:
            pass
        try:
            ok = subprocess.run(["unshare", "--user", "--map-root-user", "true"], timeout=30,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            return "not root and cannot create a user namespace (unshare --user fails)"
    try:
        cp = run(["podman", "info", "--format", "{{.Store.GraphDriverName}}"], timeout=60, check=False)
    except AssertionError as e:
        return "podman info hangs: %s" % e
    if cp.returncode != 0:
        return "podman cannot work here: %s" % cp.stderr.strip()[-500:]
    return None


def image_exists(name):
    return run(["podman", "image", "exists", name], check=False).returncode == 0


class ContainerImageTest(unittest.TestCase):

    def setUp(self):
        reason = why_unusable()
        if reason:
            say("SKIP: " + reason)
            self.skipTest(reason)
        self.runtime = oci_runtime()
        self.timings = {}
        self.failed = False
        self.remove_containers()

    def tearDown(self):
        if self.failed:
            for name in (PROXY_NAME, APP_NAME):
                cp = run(["podman", "logs", name], check=False)
                if cp.returncode == 0:
                    say("logs of %s:\n%s%s" % (name, cp.stdout[-3000:], cp.stderr[-3000:]))
        self.remove_containers()

    @staticmethod
    def remove_containers():
        for name in (PROXY_NAME, APP_NAME):
            run(["podman", "rm", "--force", "--ignore", "--time", "0", name], timeout=60, check=False)

    # ------------------------------------------------------------------ steps

    def build(self):
        if os.environ.get("DRAINPROXY_CONTAINER_NO_BUILD", "") not in ("", "0"):
            if not image_exists(IMAGE):
                self.fail("DRAINPROXY_CONTAINER_NO_BUILD is set but %s does not exist" % IMAGE)
            say("using the existing image %s (DRAINPROXY_CONTAINER_NO_BUILD)" % IMAGE)
            return
        base_cached = image_exists(BASE_IMAGE)
        if not base_cached and not shutil.which("debootstrap"):
            cache = os.environ.get("DRAINPROXY_CONTAINER_CACHE") or os.path.join(
                os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                "drainproxy-container")
            if not os.path.exists(os.path.join(cache, "debian-bookworm-slim-rootfs.tar")):
                raise unittest.SkipTest("no base image %s, no cached rootfs and no debootstrap to "
                                        "make one (apt-get install -y debootstrap)" % BASE_IMAGE)
        say("building %s with %s (base image %s; timeout %ds)"
            % (IMAGE, os.path.relpath(BUILD_SCRIPT, ROOT),
               "cached" if base_cached else "missing: debootstrap first", BUILD_TIMEOUT))
        t0 = time.monotonic()
        log_path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                "drainproxy-container-build-%d.log" % os.getpid())
        with open(log_path, "w+") as log:
            # Own process group, so a timeout ends buildah and its children too.
            p = subprocess.Popen(["bash", BUILD_SCRIPT], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = p.wait(timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                rc = None
            log.seek(0)
            out = log.read()
        os.unlink(log_path)
        took = time.monotonic() - t0
        self.timings["build"] = took
        if rc != 0:
            self.fail("image build %s after %.0fs (a build with no cache at all takes ~12 min: warm "
                      "it with tests/container/build_and_run.sh or raise "
                      "DRAINPROXY_CONTAINER_BUILD_TIMEOUT)\n--- last build output:\n%s"
                      % ("timed out" if rc is None else "failed (exit %d)" % rc, took, out[-6000:]))
        for line in out.splitlines():
            stripped = line.strip()
            if (line.startswith("build_and_run:") or stripped.startswith(("Hits:", "Misses:"))
                    or "PASSED" in line or "FAILED" in line):
                say("  " + stripped)
        say("  %d build steps taken from the layer cache" % out.count("--> Using cache"))
        say("built in %.1fs" % took)

    def check_image_config(self):
        cp = run(["podman", "image", "inspect", IMAGE])
        info = json.loads(cp.stdout)[0]
        cfg = info.get("Config", {})
        self.assertEqual(cfg.get("Entrypoint"), ["/usr/local/bin/drainproxy"], cfg)
        self.assertIn(cfg.get("User"), ("10001", "10001:10001"), "runtime user must be 10001: %s" % cfg)
        self.assertEqual(sorted(cfg.get("ExposedPorts", {})), ["8000/tcp", "9901/tcp"], cfg)
        size = int(info["Size"])
        self.image_size = size
        say("image %s: %.1f MB (%d bytes), id %s" % (IMAGE, size / 1e6, size, info["Id"][:12]))
        base = run(["podman", "image", "inspect", "--format", "{{.Size}}", BASE_IMAGE], check=False)
        if base.returncode == 0 and base.stdout.strip().isdigit():
            say("base %s: %.1f MB; the runtime stage adds %.1f MB"
                % (BASE_IMAGE, int(base.stdout) / 1e6, (size - int(base.stdout)) / 1e6))
        self.assertLess(size, MAX_MB * 1_000_000,
                        "image is %.1f MB, over DRAINPROXY_CONTAINER_MAX_MB=%d: is the build stage "
                        "leaking into the runtime stage?" % (size / 1e6, MAX_MB))

    def run_args(self):
        return ["--runtime", self.runtime, "--network", "host", "--pull", "never", *ulimit_args()]

    def probe_runtime(self):
        """Skips when no container can start here at all (no namespaces, seccomp, cgroups...).
        /bin/true comes from the base image, so an image of ours that is broken still fails."""
        cp = run(["podman", "run", "--rm", *self.run_args(), "--entrypoint", "/bin/true", IMAGE],
                 timeout=90, check=False)
        if cp.returncode != 0:
            err = cp.stderr.strip()
            say("SKIP: containers cannot be started here (runtime %s): %s" % (self.runtime, err[-500:]))
            raise unittest.SkipTest("containers cannot be started here (runtime %s): %s"
                                    % (self.runtime, err[-500:]))

    def podman_run(self, name, *args):
        t0 = time.monotonic()
        run(["podman", "run", "--detach", "--name", name, *self.run_args(), *args], timeout=90)
        return time.monotonic() - t0

    def container_state(self, name):
        cp = run(["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name],
                 check=False)
        status, _, code = cp.stdout.strip().partition(" ")
        return status, int(code) if code.lstrip("-").isdigit() else None

    def wait_exit(self, name, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, code = self.container_state(name)
            if status in ("exited", "stopped"):
                return code
            time.sleep(0.1)
        self.fail("%s did not exit within %ss (state %s)" % (name, timeout, self.container_state(name)))

    # ------------------------------------------------------------------ test

    def test_image_builds_serves_and_drains(self):
        try:
            self.build_serve_drain()
        except unittest.SkipTest:
            raise
        except BaseException:
            self.failed = True
            raise

    def build_serve_drain(self):
        t_start = time.monotonic()
        self.build()
        self.check_image_config()
        self.probe_runtime()

        app_port, proxy_port, admin_port = free_port(), free_port(), free_port()
        started = self.podman_run(APP_NAME, "--entrypoint", "/usr/local/bin/drainproxy-demo-app", IMAGE,
                                  "--listen", "%s:%d" % (LOOPBACK, app_port), "--name", "container-app")
        say("demo app container started in %.2fs (127.0.0.1:%d)" % (started, app_port))
        started = self.podman_run(PROXY_NAME, IMAGE,
                                  "--listen", "%s:%d" % (LOOPBACK, proxy_port),
                                  "--admin", "%s:%d" % (LOOPBACK, admin_port),
                                  "--upstream", "%s:%d" % (LOOPBACK, app_port),
                                  "--health-interval", "250ms",
                                  "--propagation-delay", "1s", "--drain-timeout", "3s",
                                  "--termination-grace-period", "10s")
        say("proxy container started in %.2fs (listen 127.0.0.1:%d, admin 127.0.0.1:%d)"
            % (started, proxy_port, admin_port))

        # /ready: 200 once the proxy listens and has probed the app healthy.
        t0 = time.monotonic()
        deadline = t0 + 30
        code, body = None, ""
        while time.monotonic() < deadline:
            code, body = http_get(admin_port, "/ready", timeout=1.0)
            if code == 200:
                break
            status, _ = self.container_state(PROXY_NAME)
            if status not in ("running", "created", "configured", "initialized"):
                self.fail("the proxy container is %s before getting ready" % status)
            time.sleep(0.1)
        self.assertEqual(code, 200, "/ready never turned 200 within 30s: %s %r" % (code, body))
        self.assertEqual(body, "ready\n")
        say("/ready 200 after %.2fs" % (time.monotonic() - t0))

        code, body = http_get(proxy_port, "/", timeout=5.0)
        self.assertEqual(code, 200, "proxied GET /: %s %r" % (code, body))
        self.assertTrue(body.startswith("hello from container-app"), body)
        say("proxied GET / -> %d %r" % (code, body.strip()))

        code, body = http_get(admin_port, "/status")
        self.assertEqual(code, 200, body)
        status = json.loads(body)
        self.assertEqual(status["phase"], "serving", status)

        # PID 1 of the container (drainproxy itself: exec-form ENTRYPOINT) runs as 10001.
        cp = run(["podman", "exec", PROXY_NAME, "/bin/grep", "^Uid:", "/proc/1/status"])
        self.assertEqual(cp.stdout.split()[1:3], ["10001", "10001"], cp.stdout)

        # SIGTERM while a request is in flight: the request completes, then drainproxy exits 0
        # (propagation 1s, the request ends at ~1.5s, then no connection is left).
        slow = {}
        t_slow = threading.Thread(target=lambda: slow.update(r=http_get(proxy_port, "/delay?ms=1500",
                                                                        timeout=10.0)))
        t_slow.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        run(["podman", "kill", "--signal", "TERM", PROXY_NAME])
        rc = self.wait_exit(PROXY_NAME, timeout=20)
        took = time.monotonic() - t0
        t_slow.join(timeout=15)
        self.assertEqual(slow.get("r"), (200, "slept 1500 ms\n"),
                         "a request in flight at SIGTERM must complete")
        logs = run(["podman", "logs", PROXY_NAME], check=False)
        log_text = logs.stdout + logs.stderr
        self.assertEqual(rc, 0, "drainproxy exit code after SIGTERM: %s\n%s" % (rc, log_text[-3000:]))
        self.assertIn("drain complete", log_text)
        say("SIGTERM with a request in flight -> the request completed, exit 0 after %.2fs" % took)

        run(["podman", "kill", "--signal", "TERM", APP_NAME], check=False)
        app_rc = self.wait_exit(APP_NAME, timeout=20)
        say("demo app exit code after SIGTERM: %s" % app_rc)

        say("summary: build %.1fs, total %.1fs, image %.1f MB"
            % (self.timings.get("build", 0.0), time.monotonic() - t_start, self.image_size / 1e6))


if __name__ == "__main__":
    unittest.main(verbosity=2)
