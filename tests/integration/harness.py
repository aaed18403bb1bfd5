"""Shared helpers for the drainproxy integration tests (Python 3 stdlib only).

Everything here runs on 127.0.0.1 only. Every wait is bounded in time and in
iterations; every process started here is killed by its PID on cleanup.

Environment:
  DRAINPROXY_BIN        path of the proxy binary   (default /work/main/build/drainproxy)
  DRAINPROXY_DEMO_BIN   path of the demo HTTP app  (default /work/main/build/drainproxy-demo-app)
  DRAINPROXY_IT_KEEP_LOGS=1   keep the proxies' stderr files instead of deleting them
  DRAINPROXY_IT_VERBOSE=1     always print the proxies' stderr at cleanup
  DRAINPROXY_IT_TEST_TIMEOUT  per-test hard limit in seconds (default 90)
  DRAINPROXY_IT_IO_URING      --io-uring for every proxy that does not pass its own
                              (the suites run with the binary's default, auto, and
                              a second time with off)
  DRAINPROXY_DENY_IO_URING_BIN  tests/tools/deny_io_uring.cpp, built: runs a program
                              with io_uring refused by seccomp

The DRAINPROXY_* variables above are the test suite's own; they are removed from
the environment of every child process, because drainproxy maps DRAINPROXY_<FLAG>
environment variables onto its flags.
"""

import atexit
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

DEFAULT_BIN = "/work/main/build/drainproxy"
DEFAULT_DEMO_BIN = "/work/main/build/drainproxy-demo-app"
LOOPBACK = "127.0.0.1"

MiB = 1024 * 1024


def proxy_bin():
    return os.environ.get("DRAINPROXY_BIN", DEFAULT_BIN)


def demo_bin():
    return os.environ.get("DRAINPROXY_DEMO_BIN", DEFAULT_DEMO_BIN)


def child_env(extra=None):
    """os.environ without any DRAINPROXY_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINPROXY_")}
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------
# process bookkeeping: whatever we started is killed by PID, even on a crash
# --------------------------------------------------------------------------

_live_procs = set()
_live_lock = threading.Lock()


def _register(proc):
    with _live_lock:
        _live_procs.add(proc)


def _unregister(proc):
    with _live_lock:
        _live_procs.discard(proc)


def _kill_proc(proc):
    """Kill one process we started (by its PID) and reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _unregister(proc)


@atexit.register
def _kill_leftovers():
    with _live_lock:
        procs = list(_live_procs)
    for p in procs:
        _kill_proc(p)


# --------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------

_issued_ports = set()
_port_lock = threading.Lock()
_port_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process
    has not handed out before.

    Ports come from below the kernel's ephemeral range when there is room: a
    port from bind(0) can be handed to the next outgoing connect() (the
    proxy's own upstream connections, for one) before the proxy binds it, and
    two bind(0) calls in a row can return the same port.
    """
    lo, _ = _ephemeral_range()
    with _port_lock:
        if lo - 20000 >= 2000:
            for _ in range(500):
                port = _port_rng.randrange(20000, lo)
                if port not in _issued_ports and _bindable(port):
                    _issued_ports.add(port)
                    return port
        for _ in range(500):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, 0))
                port = s.getsockname()[1]
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise RuntimeError("no free TCP port on %s" % LOOPBACK)


class WaitTimeout(AssertionError):
    pass


def wait_for(predicate, timeout, interval=0.02, desc=None, max_iterations=100000):
    """Poll predicate() until it returns a truthy value; return that value.

    Exceptions raised by predicate count as "not yet" (and are remembered for
    the failure message). Bounded by `timeout` seconds and `max_iterations`.
    """
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(max_iterations):
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - polling: any error means "not yet"
            last = "%s: %s" % (type(exc).__name__, exc)
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise WaitTimeout("timed out after %.2fs waiting for %s (last: %r)"
                      % (timeout, desc or getattr(predicate, "__name__", "condition"), last))


def port_is_listening(port):
    """True if some socket on this host is in LISTEN state on TCP `port`.

    Reads /proc/net/tcp (and tcp6); returns None when they are not readable
    (non-Linux), so callers can skip the check. Does not create any connection.
    """
    found_any_file = False
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        found_any_file = True
        for line in lines:
            parts = line.split()
            if len(parts) < 4:
                continue
            local, state = parts[1], parts[3]
            try:
                lport = int(local.rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if lport == port and state == "0A":  # 0A == TCP_LISTEN
                return True
    return False if found_any_file else None


# --------------------------------------------------------------------------
# deterministic byte pattern for the byte-exact bulk tests
# --------------------------------------------------------------------------

PATTERN_CHUNK = MiB
_PATTERN_BASE = random.Random(0xD5A1).randbytes(PATTERN_CHUNK)


def pattern_chunks(total):
    """Yield `total` bytes of a deterministic pattern in chunks of <= 1 MiB.

    Every chunk starts with its 8-byte big-endian index, so reordered or
    duplicated chunks change the digest.
    """
    index = 0
    remaining = total
    while remaining > 0:
        chunk = struct.pack(">Q", index) + _PATTERN_BASE[8:]
        if remaining < len(chunk):
            chunk = chunk[:remaining]
        yield chunk
        remaining -= len(chunk)
        index += 1


_pattern_digest_cache = {}


def pattern_sha256(total):
    if total not in _pattern_digest_cache:
        h = hashlib.sha256()
        for chunk in pattern_chunks(total):
            h.update(chunk)
        _pattern_digest_cache[total] = h.hexdigest()
    return _pattern_digest_cache[total]


# --------------------------------------------------------------------------
# client-side socket helpers
# --------------------------------------------------------------------------

def connect(port, timeout=5.0):
    s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock, n, timeout=5.0):
    """Read exactly n bytes (or raise). Bounded by `timeout` overall."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout("recv_exact: got %d of %d bytes before timeout" % (len(buf), n))
        sock.settimeout(left)
        data = sock.recv(n - len(buf))
        if not data:
            raise EOFError("recv_exact: EOF after %d of %d bytes" % (len(buf), n))
        buf += data
    return bytes(buf)


def recv_until_eof(sock, timeout=10.0, limit=64 * MiB):
    """Read until EOF; return the bytes. Bounded by time and size."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout("recv_until_eof: no EOF after %d bytes" % len(buf))
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            return bytes(buf)
        buf += data
        if len(buf) > limit:
            raise AssertionError("recv_until_eof: more than %d bytes" % limit)


def echo_roundtrip(sock, data, timeout=5.0):
    sock.sendall(data)
    return recv_exact(sock, len(data), timeout=timeout)


def probe_new_connection(port, payload=b"probe\n", timeout=2.0):
    """Open a fresh connection, send `payload`, classify what happens.

    Returns one of:
      'refused' - connect() got ECONNREFUSED
      'reset'   - the connection was reset (on send or recv)
      'eof'     - the connection was closed without any data coming back
      'echoed'  - data came back (the proxy forwarded it)
      'timeout' - nothing happened within `timeout` (neither data nor close)
    """
    try:
        s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    try:
        s.settimeout(timeout)
        try:
            s.sendall(payload)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "timeout"
        return "echoed" if data else "eof"
    finally:
        s.close()


def http_get(port, path="/", timeout=5.0, headers=None):
    """GET http://127.0.0.1:port/path -> (status, body text)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, body
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape_label(v):
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse_metrics(text):
    """Parse Prometheus text exposition into {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError("unparsable metrics line: %r" % line)
        name, _, labeltext, value = m.group(1), m.group(2), m.group(3), m.group(4)
        labels = {}
        if labeltext:
            pos = 0
            while pos < len(labeltext):
                lm = _LABEL_RE.match(labeltext, pos)
                if not lm or lm.end() == pos:
                    raise ValueError("unparsable labels in line: %r" % line)
                labels[lm.group(1)] = _unescape_label(lm.group(2))
                pos = lm.end()
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(metrics, name, **labels):
    """Sum of all series `name` whose labels include `labels`; None if there is none."""
    total = None
    want = set(labels.items())
    for (n, lbls), value in metrics.items():
        if n == name and want <= set(lbls):
            total = (total or 0.0) + value
    return total


def series(metrics, name):
    """[(labels dict, value)] of every series called `name`."""
    return [(dict(lbls), v) for (n, lbls), v in metrics.items() if n == name]


# --------------------------------------------------------------------------
# the proxy under test
# --------------------------------------------------------------------------

class Drainproxy:
    """One drainproxy process.

    Always passes --workers 2, --listen 127.0.0.1:<free> and
    --admin 127.0.0.1:<free> unless the caller passes them explicitly.
    `mode` ("tcp" by default, "http", or None for the binary's own default)
    becomes --mode unless --mode is among the flags.
    """

    def __init__(self, upstream_port, *flags, env=None, workers=2, listen_port=None,
                 admin_port=None, start=True, wait_started=True, start_timeout=10.0,
                 mode="tcp", wrapper=()):
        self.upstream_port = upstream_port
        self.wrapper = list(wrapper)  # a program that runs the proxy (argv prefix)
        self.mode = mode
        self._ports_picked = listen_port is None and admin_port is None
        self._set_ports(listen_port or free_port(), admin_port or free_port())
        self.flags = list(flags)
        self.env = env or {}
        self.workers = workers
        self.proc = None
        self.returncode = None
        self._stderr_file = None
        self._stdout_file = None
        if start:
            self.start(wait_started=wait_started, timeout=start_timeout)

    def _set_ports(self, listen_port, admin_port):
        self.listen_port = listen_port
        self.admin_port = admin_port
        self.listen_addr = "%s:%d" % (LOOPBACK, self.listen_port)
        self.admin_addr = "%s:%d" % (LOOPBACK, self.admin_port)

    def _given_flags(self):
        return set(a.split("=", 1)[0] for a in self.flags if a.startswith("--"))

    def argv(self):
        args = [proxy_bin()]
        given = self._given_flags()
        if "--listen" not in given:
            args += ["--listen", self.listen_addr]
        if "--admin" not in given:
            args += ["--admin", self.admin_addr]
        if "--upstream" not in given and self.upstream_port is not None:
            args += ["--upstream", "%s:%d" % (LOOPBACK, self.upstream_port)]
        if "--workers" not in given:
            args += ["--workers", str(self.workers)]
        if "--mode" not in given and self.mode is not None:
            args += ["--mode", self.mode]
        if "--io-uring" not in given and os.environ.get("DRAINPROXY_IT_IO_URING"):
            args += ["--io-uring", os.environ["DRAINPROXY_IT_IO_URING"]]
        return self.wrapper + args + self.flags

    def start(self, wait_started=True, timeout=10.0):
        # Another process may take a port between free_port() and the proxy's
        # bind; when the ports were ours to pick, pick again (bounded).
        for attempt in range(3):
            self._spawn()
            if not wait_started:
                return self
            try:
                self.wait_started(timeout)
                return self
            except AssertionError:
                lost_port = (self.proc.poll() is not None
                             and "Address already in use" in self.stderr_text())
                given = self._given_flags()
                if (attempt == 2 or not lost_port or not self._ports_picked
                        or "--listen" in given or "--admin" in given):
                    raise
                self.close()
                self._set_ports(free_port(), free_port())
        return self

    def _spawn(self):
        self._stderr_file = tempfile.NamedTemporaryFile(
            prefix="drainproxy-it-", suffix=".stderr", delete=False)
        self._stdout_file = tempfile.NamedTemporaryFile(
            prefix="drainproxy-it-", suffix=".stdout", delete=False)
        self.cmdline = self.argv()
        self.proc = subprocess.Popen(self.cmdline, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout_file, stderr=self._stderr_file,
                                     env=child_env(self.env))
        _register(self.proc)

    def wait_started(self, timeout=10.0):
        """Wait until /live answers 200 and the listener is in LISTEN state."""
        def live():
            if self.proc.poll() is not None:
                raise AssertionError("drainproxy exited with %s during start-up:\n%s"
                                     % (self.proc.returncode, self.stderr_text()[-4000:]))
            return self.try_get("/live")[0] == 200
        try:
            wait_for(live, timeout, desc="/live == 200 after start")
            if port_is_listening(self.listen_port) is not None:
                wait_for(lambda: port_is_listening(self.listen_port), timeout,
                         desc="listener 127.0.0.1:%d in LISTEN state" % self.listen_port)
        except AssertionError as exc:
            raise AssertionError("%s\ncommand: %s\nstderr:\n%s"
                                 % (exc, " ".join(self.cmdline), self.stderr_text()[-4000:]))

    # --- admin endpoints -------------------------------------------------

    def get(self, path, timeout=5.0, method="GET", headers=None):
        """HTTP request to the admin port -> (status, body text). Raises on I/O errors."""
        conn = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return resp.status, body
        finally:
            conn.close()

    def try_get(self, path, timeout=2.0):
        """Like get(), but (None, error text) instead of raising on I/O errors."""
        try:
            return self.get(path, timeout=timeout)
        except (OSError, http.client.HTTPException) as exc:
            return None, "%s: %s" % (type(exc).__name__, exc)

    def status(self, timeout=5.0):
        code, body = self.get("/status", timeout=timeout)
        if code != 200:
            raise AssertionError("/status answered %s: %s" % (code, body))
        return json.loads(body)

    def phase(self):
        return self.status()["phase"]

    def metrics_text(self, timeout=5.0):
        code, body = self.get("/metrics", timeout=timeout)
        if code != 200:
            raise AssertionError("/metrics answered %s: %s" % (code, body[:500]))
        return body

    def metrics(self, timeout=5.0):
        return parse_metrics(self.metrics_text(timeout))

    def metric(self, name, **labels):
        return metric(self.metrics(), name, **labels)

    def wait_for(self, predicate, timeout, desc=None, interval=0.02):
        """wait_for() that adds the proxy's stderr tail to the failure message."""
        try:
            return wait_for(predicate, timeout, interval=interval, desc=desc)
        except WaitTimeout as exc:
            raise WaitTimeout("%s\nproxy exit code: %s\nproxy stderr (tail):\n%s"
                              % (exc, self.proc.poll(), self.stderr_text()[-3000:]))

    def wait_ready(self, timeout=5.0):
        return self.wait_for(lambda: self.try_get("/ready")[0] == 200, timeout,
                             desc="/ready == 200")

    def wait_phase(self, phase, timeout):
        return self.wait_for(lambda: self.phase() == phase, timeout,
                             desc="/status phase == %r" % phase, interval=0.01)

    # --- process control -------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait for the process to exit; return its code. Raises WaitTimeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout("drainproxy (pid %d) did not exit within %.2fs\nstderr tail:\n%s"
                              % (self.proc.pid, timeout, self.stderr_text()[-3000:]))
        return self.returncode

    def stderr_text(self):
        if self._stderr_file is None:
            return ""
        try:
            with open(self._stderr_file.name, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stdout_text(self):
        if self._stdout_file is None:
            return ""
        try:
            with open(self._stdout_file.name, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self, dump_logs=False):
        """Kill the process (by PID) if still running; remove temp files."""
        _kill_proc(self.proc)
        if dump_logs or os.environ.get("DRAINPROXY_IT_VERBOSE"):
            sys.stderr.write("\n----- drainproxy %s stderr -----\n%s\n-----\n"
                             % (" ".join(getattr(self, "cmdline", [])), self.stderr_text()[-6000:]))
        for f in (self._stderr_file, self._stdout_file):
            if f is None:
                continue
            try:
                f.close()
            except OSError:
                pass
            if not os.environ.get("DRAINPROXY_IT_KEEP_LOGS"):
                try:
                    os.unlink(f.name)
                except OSError:
                    pass
        self._stderr_file = self._stdout_file = None


def run_proxy_cli(args, env=None, timeout=10.0, wrapper=()):
    """Run drainproxy with `args` (under `wrapper`, an argv prefix) to completion
    -> CompletedProcess (text).

    Raises AssertionError if it does not exit within `timeout` (the child is killed).
    """
    proc = subprocess.Popen(list(wrapper) + [proxy_bin()] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(env), text=True, errors="replace")
    _register(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_proc(proc)
        out, err = proc.communicate()
        raise AssertionError("`drainproxy %s` did not exit within %.1fs\nstderr:\n%s"
                             % (" ".join(args), timeout, (err or "")[-3000:]))
    finally:
        _kill_proc(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --------------------------------------------------------------------------
# upstream servers (Python threads on 127.0.0.1)
# --------------------------------------------------------------------------

class TcpServer:
    """Threaded TCP server on 127.0.0.1; subclasses implement handle(conn, record).

    stop() closes the listener (new connects are refused at once) and, by
    default, the open connections; start() re-binds on the same port.
    """

    conn_timeout = 60.0

    def __init__(self, port=0, start=True):
        self.port = port
        self._lsock = None
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self._conns = set()
        self.records = []   # one dict per accepted connection
        if start:
            self.start()

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def start(self):
        if self._lsock is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, self.port))
        s.listen(128)
        s.settimeout(0.05)
        self.port = s.getsockname()[1]
        self._lsock = s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, args=(s, self._stop),
                                        name="upstream-accept-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self, lsock, stop):
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(self.conn_timeout)
            record = {"received": 0, "eof": threading.Event(), "done": threading.Event(),
                      "error": None, "digest": None}
            with self._lock:
                self._conns.add(conn)
                self.records.append(record)
            threading.Thread(target=self._run_handler, args=(conn, record),
                             daemon=True).start()

    def _run_handler(self, conn, record):
        try:
            self.handle(conn, record)
        except Exception as exc:  # noqa: BLE001 - peers may vanish at any time
            record["error"] = "%s: %s" % (type(exc).__name__, exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
            record["done"].set()

    def handle(self, conn, record):
        raise NotImplementedError

    def stop(self, close_connections=True):
        if self._lsock is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self._lsock.close()
        except OSError:
            pass
        self._lsock = None
        if close_connections:
            with self._lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def open_connections(self):
        with self._lock:
            return len(self._conns)

    def data_records(self):
        """Records of connections that carried at least one byte (not health probes)."""
        with self._lock:
            return [r for r in self.records if r["received"] > 0]


class EchoServer(TcpServer):
    """Echoes bytes. On client EOF: sends what is left, then shuts down its write side
    (half-close), then waits (bounded) for the peer to go away."""

    def handle(self, conn, record):
        while True:
            data = conn.recv(256 * 1024)
            if not data:
                break
            record["received"] += len(data)
            conn.sendall(data)
        record["eof"].set()
        conn.shutdown(socket.SHUT_WR)
        # Linger until the peer closes (or a bounded time passes) so the
        # proxy sees a clean FIN from us instead of a reset.
        conn.settimeout(5.0)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


class ReplyAfterEofServer(TcpServer):
    """Reads until EOF, hashing what it got. Then, if it got at least one byte,
    sends '<sha256 hex>\\n' followed by `reply_bytes` bytes of pattern_chunks(),
    and closes. (Connections that carry nothing - health probes - get nothing.)"""

    def __init__(self, reply_bytes=0, port=0, start=True):
        self.reply_bytes = reply_bytes
        super().__init__(port=port, start=start)

    def handle(self, conn, record):
        h = hashlib.sha256()
        buf = bytearray(MiB)
        view = memoryview(buf)
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            h.update(view[:n])
            record["received"] += n
        record["eof"].set()
        record["digest"] = h.hexdigest()
        if record["received"] == 0:
            return
        conn.sendall(record["digest"].encode() + b"\n")
        for chunk in pattern_chunks(self.reply_bytes):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)


class BannerThenHalfCloseServer(TcpServer):
    """Sends `banner`, shuts down its write side at once, then keeps reading
    until the client's EOF and records how many bytes arrived."""

    def __init__(self, banner=b"banner\n", port=0, start=True):
        self.banner = banner
        super().__init__(port=port, start=start)

    def handle(self, conn, record):
        conn.sendall(self.banner)
        conn.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        while True:
            data = conn.recv(65536)
            if not data:
                break
            h.update(data)
            record["received"] += len(data)
        record["digest"] = h.hexdigest()
        record["eof"].set()


class DemoApp:
    """The project's demo HTTP/1.1 app (GET / -> 'hello from NAME')."""

    def __init__(self, name="demo", port=None, start=True):
        self.name = name
        self.port = port or free_port()
        self.proc = None
        if start:
            self.start()

    @staticmethod
    def available():
        return os.access(demo_bin(), os.X_OK)

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([demo_bin(), "--listen", "%s:%d" % (LOOPBACK, self.port),
                                      "--name", self.name],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=child_env())
        _register(self.proc)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("demo app exited with %s" % self.proc.returncode)
            return http_get(self.port, "/", timeout=1.0)[0] == 200
        wait_for(up, timeout, desc="demo app answering on port %d" % self.port)
        return self

    def stop(self):
        _kill_proc(self.proc)
        self.proc = None


# --------------------------------------------------------------------------
# unittest base class
# --------------------------------------------------------------------------

def _test_timeout():
    try:
        return int(os.environ.get("DRAINPROXY_IT_TEST_TIMEOUT", "90"))
    except ValueError:
        return 90


class _HardTimeout(Exception):
    pass


class IntegrationTest(unittest.TestCase):
    """Base: skips when the binary is missing, puts a hard SIGALRM limit on every
    test, and cleans up every process/server it started."""

    # the common short timings
    FAST = ("--health-interval", "100ms", "--health-timeout", "100ms")

    @classmethod
    def setUpClass(cls):
        if not os.access(proxy_bin(), os.X_OK):
            raise unittest.SkipTest("drainproxy binary not found at %s (set DRAINPROXY_BIN)"
                                    % proxy_bin())

    def setUp(self):
        self._proxies = []
        if threading.current_thread() is threading.main_thread():
            def on_alarm(signum, frame):
                raise _HardTimeout("test exceeded the hard limit of %ds" % _test_timeout())
            old = signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(_test_timeout())
            self.addCleanup(signal.signal, signal.SIGALRM, old)
            self.addCleanup(signal.alarm, 0)

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        return not getattr(outcome, "success", True)

    def start_proxy(self, upstream_port, *flags, **kw):
        dp = Drainproxy(upstream_port, *flags, start=False, **{k: v for k, v in kw.items()
                                                              if k in ("env", "workers",
                                                                       "listen_port",
                                                                       "admin_port",
                                                                       "mode", "wrapper")})
        self._proxies.append(dp)
        self.addCleanup(lambda: dp.close(dump_logs=self._failed()))
        dp.start(wait_started=kw.get("wait_started", True),
                 timeout=kw.get("start_timeout", 10.0))
        return dp

    def start_http_proxy(self, upstream_port, *flags, **kw):
        """start_proxy() in HTTP mode (--mode http)."""
        kw.setdefault("mode", "http")
        return self.start_proxy(upstream_port, *flags, **kw)

    def start_echo(self, port=0):
        srv = EchoServer(port=port)
        self.addCleanup(srv.stop)
        return srv

    def start_echo_and_proxy(self, propagation, drain_timeout):
        """An echo upstream and a ready drainproxy (tcp mode) in front of it."""
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST,
                              "--propagation-delay", "%gs" % propagation,
                              "--drain-timeout", "%gs" % drain_timeout)
        dp.wait_ready(timeout=3.0)
        return upstream, dp

    def start_server(self, cls, *args, **kwargs):
        srv = cls(*args, **kwargs)
        self.addCleanup(srv.stop)
        return srv

    def start_demo(self, name="demo", port=None):
        if not DemoApp.available():
            self.skipTest("demo app not found at %s (set DRAINPROXY_DEMO_BIN)" % demo_bin())
        app = DemoApp(name=name, port=port)
        self.addCleanup(app.stop)
        return app

    def connect_proxy(self, dp, timeout=5.0):
        s = connect(dp.listen_port, timeout=timeout)
        self.addCleanup(s.close)
        return s

    def assertEcho(self, sock, data, timeout=5.0):
        got = echo_roundtrip(sock, data, timeout=timeout)
        self.assertEqual(got, data, "echo through the proxy returned different bytes")


def main():
    unittest.main(verbosity=2)
