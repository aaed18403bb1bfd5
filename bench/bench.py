#!/usr/bin/env python3
"""drainproxy benchmark driver (called by bench/run.sh; stdlib only, matplotlib optional).

Starts an nginx upstream app, drainproxy (http, tcp), HAProxy (http, tcp) and
nginx (http proxy, stream proxy) in front of it, runs wrk scenarios with the
systems interleaved over several rounds, then an idle-connection memory test,
and writes results.json, a Markdown table (stdout + results.md) and chart.png.

Configuration comes from the environment (run.sh sets the paths):
  BENCH_TMP        temp folder for configs, logs, pids (required; removed by run.sh)
  BENCH_RESULTS    results folder (required)
  DRAINPROXY_BIN   drainproxy binary (required)
  QUICK=1          smoke mode: 1 round, short runs, 1 worker, 1000 idle connections
  ROUNDS, DURATION, BULK_DURATION, WORKERS ("1 2"), IDLE_CONNS, APP_WORKERS,
  CONNS, THREADS, BULK_CONNS, LIGHT_CONNS, SYSTEMS (space separated subset of system names;
  floor-uring-tcp, the io_uring floor relay, runs only when named here; see bench/floor/;
  drainproxy-syscalls-http/-tcp are drainproxy with --io-uring off),
  DRAINPROXY_EXTRA_ARGS (extra drainproxy flags, for experiments); QUICK leaves the
  -syscalls systems out unless SYSTEMS names them
  LAYOUT=shared    (default) every process may run on every core
  LAYOUT=isolated  the proxy under test gets the first core to itself; wrk and the
                   app share the others (1 worker only; see bench/README.md)
"""
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk_report.lua")
IDLE_HELPER = os.path.join(HERE, "idle_conns.py")
HOST = "127.0.0.1"
SMALL_BYTES = 1024
BIG_BYTES = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_KINDS = ["drainproxy-http", "drainproxy-tcp", "haproxy-http", "haproxy-tcp",
               "nginx-http", "nginx-tcp"]
# The least a user-space TCP relay can cost here (bench/floor/), measured beside the
# proxies. One thread each, so only with 1 worker, and not in the idle test. The
# io_uring one runs only when SYSTEMS names it: it needs liburing-dev.
FLOOR_KINDS = {"floor-tcp": ("relay_epoll.c", []), "floor-uring-tcp": ("relay_uring.c", ["-luring"])}
# drainproxy with --io-uring off: what runs where a seccomp profile refuses io_uring
# (RuntimeDefault). 1 worker only, and not in the idle test: memory is the same.
SYSCALLS_KINDS = ["drainproxy-syscalls-http", "drainproxy-syscalls-tcp"]
ONE_WORKER_KINDS = list(FLOOR_KINDS) + SYSCALLS_KINDS
ALL_KINDS = PROXY_KINDS + SYSCALLS_KINDS + list(FLOOR_KINDS)
DEFAULT_SYSTEMS = ["direct"] + PROXY_KINDS + SYSCALLS_KINDS + ["floor-tcp"]
SCENARIOS = {
    # name: (path, extra wrk args, connections key, duration key, unit)
    "keepalive-small": ("/small", [], "CONNS", "DURATION", "req/s"),
    "close-small": ("/small", ["-H", "Connection: close"], "CONNS", "DURATION", "req/s"),
    "bulk-1MiB": ("/big", [], "BULK_CONNS", "BULK_DURATION", "MB/s"),
    # A sidecar mostly sees a few requests at a time: here each wake-up carries one or
    # two requests, so the loop's fixed cost per wake-up shows, which -c64 amortises.
    "keepalive-light": ("/small", [], "LIGHT_CONNS", "DURATION", "req/s"),
}
SCENARIO_TITLES = {
    "keepalive-small": "(a) keep-alive, 1 KiB responses",
    "close-small": "(b) new connection per request (Connection: close), 1 KiB responses",
    "bulk-1MiB": "(c) keep-alive, 1 MiB responses",
    "keepalive-light": "(e) keep-alive at light load, 1 KiB responses",
}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- configuration

def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def load_config():
    quick = os.environ.get("QUICK", "0") not in ("", "0", "false", "no")
    cfg = {
        "quick": quick,
        "tmp": os.environ["BENCH_TMP"],
        "results": os.environ["BENCH_RESULTS"],
        "drainproxy_bin": os.environ["DRAINPROXY_BIN"],
        "ROUNDS": env_int("ROUNDS", 1 if quick else 5),
        "DURATION": env_int("DURATION", 2 if quick else 5),
        "BULK_DURATION": env_int("BULK_DURATION", 2 if quick else 5),
        "WARMUP": env_int("WARMUP", 0 if quick else 1),
        "CONNS": env_int("CONNS", 64),
        "THREADS": env_int("THREADS", 2),
        "BULK_CONNS": env_int("BULK_CONNS", 16),
        "LIGHT_CONNS": env_int("LIGHT_CONNS", 8),
        "IDLE_CONNS": env_int("IDLE_CONNS", 1000 if quick else 5000),
        "APP_WORKERS": env_int("APP_WORKERS", 1),
        "IDLE_SETTLE": env_int("IDLE_SETTLE", 1 if quick else 3),
        "LAYOUT": os.environ.get("LAYOUT", "shared").strip() or "shared",
    }
    isolated = cfg["LAYOUT"] == "isolated"
    cfg["WORKERS"] = [int(w) for w in os.environ.get("WORKERS", "1" if quick or isolated else "1 2").split()]
    if cfg["LAYOUT"] not in ("shared", "isolated"):
        raise BenchError("LAYOUT must be 'shared' or 'isolated', not %r" % cfg["LAYOUT"])
    if isolated:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise BenchError("LAYOUT=isolated needs at least 2 usable cores (have %d)" % len(cpus))
        if any(w != 1 for w in cfg["WORKERS"]):
            raise BenchError("LAYOUT=isolated gives the proxy one core: WORKERS must be 1")
        cfg["proxy_cpus"], cfg["load_cpus"] = {cpus[0]}, set(cpus[1:])
    cfg["DRAINPROXY_EXTRA_ARGS"] = os.environ.get("DRAINPROXY_EXTRA_ARGS", "")
    systems = os.environ.get("SYSTEMS", "").split()
    # The smoke run leaves out the --io-uring off systems to stay near 90 s; name them in
    # SYSTEMS to include them.
    cfg["SYSTEMS"] = systems or [s for s in DEFAULT_SYSTEMS if not (quick and s in SYSCALLS_KINDS)]
    for s in cfg["SYSTEMS"]:
        if s != "direct" and s not in ALL_KINDS:
            raise BenchError("unknown system %r in SYSTEMS (known: direct %s)" % (s, " ".join(ALL_KINDS)))
    if cfg["ROUNDS"] < 1:
        raise BenchError("ROUNDS must be >= 1")
    # Each idle connection costs up to 2 fds in a TCP proxy (client + app side) and
    # one in the app and one in the helper: keep well inside the fd limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = (min(soft, hard) - 2000) // 2
    if cfg["IDLE_CONNS"] > cap:
        log("WARNING: open-files limit %d allows only %d idle connections (asked %d)"
            % (soft, cap, cfg["IDLE_CONNS"]))
        cfg["IDLE_CONNS"] = max(cap, 100)
    cfg["nofile"] = soft
    return cfg


# ---------------------------------------------------------------- /proc helpers

def pin_proxy(cfg, proc):
    """LAYOUT=isolated: move every thread of a started proxy onto the proxy core.

    Called once the proxy has answered a request, so its worker threads and
    processes exist; anything they create later inherits the mask.
    """
    if "proxy_cpus" not in cfg:
        return
    for pid in proc.pids():
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                os.sched_setaffinity(int(tid), cfg["proxy_cpus"])
        except (FileNotFoundError, ProcessLookupError):
            pass


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rindex(")") + 2] != "Z"
    except (OSError, ValueError):
        return False


def proc_children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return sorted(kids)


def cpu_ticks(pids):
    """utime+stime (clock ticks) summed over pids (all threads of each)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # fields 14,15 of stat(5)
    return total


def status_value(path, field):
    """The number after `field:` in a /proc status file (0 when the process is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def preemptions(pids):
    """Involuntary context switches summed over all threads of pids: how often the
    scheduler took the CPU away from a proxy that still had work."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        total += sum(status_value("/proc/%d/task/%s/status" % (pid, t), "nonvoluntary_ctxt_switches")
                     for t in tasks)
    return total


def rss_kib(pids):
    return sum(status_value("/proc/%d/status" % pid, "VmRSS") for pid in pids)


def system_busy_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals[:8]) - idle


def listen_queue(port):
    """Pending (not yet accepted) connections on listening sockets of HOST:port."""
    want = "0100007F:%04X" % port
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want and p[3] == "0A":
                total += int(p[4].split(":")[1], 16)
    return total


# ---------------------------------------------------------------- processes

class Proc:
    """A started server process; stopped by PID."""

    def __init__(self, name, argv, tmp, stop_signals=(signal.SIGTERM,)):
        self.name = name
        self.argv = argv
        self.logpath = os.path.join(tmp, "logs", name + ".log")
        os.makedirs(os.path.dirname(self.logpath), exist_ok=True)
        self.logf = open(self.logpath, "ab")
        self.stop_signals = stop_signals
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.p.pid
        with open(os.path.join(tmp, "pids"), "a") as f:
            f.write("%d %s\n" % (self.pid, os.path.realpath(argv[0])))
        self.tmp = tmp

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        """The PIDs whose CPU/RSS count: the process plus its children (nginx workers)."""
        kids = proc_children(self.pid)
        if kids:
            with open(os.path.join(self.tmp, "pids"), "a") as f:
                for k in kids:
                    f.write("%d %s\n" % (k, os.path.realpath(self.argv[0])))
        return [self.pid] + kids

    def log_tail(self, n=20):
        try:
            with open(self.logpath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if not self.alive():
            return
        for sig in self.stop_signals:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            for pid in [self.pid] + proc_children(self.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.p.wait(timeout=5)
        self.logf.close()


class Ports:
    def __init__(self):
        self.used = set()

    def get(self):
        for _ in range(100):
            s = socket.socket()
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            s.close()
            if port not in self.used:
                self.used.add(port)
                return port
        raise BenchError("no free port")


def wait_listen(proc, port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise BenchError("%s exited (code %s) before listening on %d; log:\n%s"
                             % (proc.name, proc.p.returncode, port, proc.log_tail()))
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("%s: nothing listens on %s:%d after %.0fs; log:\n%s"
                     % (proc.name if proc else "?", HOST, port, timeout, proc.log_tail() if proc else ""))


def http_get(port, path, timeout=10.0):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": "bench.local"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def check_answers(name, port):
    for path, size in (("/small", SMALL_BYTES), ("/big", BIG_BYTES)):
        try:
            status, body = http_get(port, path)
        except (OSError, http.client.HTTPException) as e:
            raise BenchError("%s on port %d does not answer GET %s: %s" % (name, port, path, e))
        if status != 200 or len(body) != size:
            raise BenchError("%s on port %d: GET %s gave status %d with %d bytes (want 200, %d bytes)"
                             % (name, port, path, status, len(body), size))


# ---------------------------------------------------------------- configs

def nginx_common(d, workers, nofile):
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return (
        "%sworker_processes %d;\nworker_rlimit_nofile %d;\ndaemon off;\nmaster_process on;\n"
        "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
        "events { worker_connections %d; use epoll; }\n"
    ) % (user, workers, nofile, d, d, min(16000, nofile - 100))


def nginx_http_temp(d):
    return "".join("%s_temp_path %s/%s;\n" % (k, d, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def start_nginx(name, d, conf, tmp):
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return Proc(name, ["nginx", "-p", d + "/", "-c", path, "-e", d + "/error.log"], tmp,
                stop_signals=(signal.SIGTERM,))


def start_app(cfg, port):
    d = os.path.join(cfg["tmp"], "app")
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "big"), "wb") as f:
        f.write(os.urandom(BIG_BYTES))
    body = "x" * (SMALL_BYTES - 1) + "\\n"  # nginx expands \n: 1024 bytes total
    conf = nginx_common(d, cfg["APP_WORKERS"], cfg["nofile"]) + (
        "http {\n" + nginx_http_temp(d) +
        "  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n"
        "  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n  client_header_timeout 300s;\n"
        "  default_type application/octet-stream;\n"
        "  server {\n    listen %s:%d backlog=4096;\n"
        "    location = /small { default_type text/plain; return 200 \"%s\"; }\n"
        "    location = /big { root %s/www; }\n"
        "    location = /nginx_status { stub_status; }\n"
        "    location / { return 404; }\n  }\n}\n"
    ) % (HOST, port, body, d)
    return start_nginx("app-nginx", d, conf, cfg["tmp"])


def drainproxy_io(system):
    """How a drainproxy instance moves socket bytes ("io_uring" or "syscalls", from
    /status); None for the other systems."""
    procs = system["procs"]
    if not system["kind"].startswith("drainproxy") or not procs:
        return None
    conn = http.client.HTTPConnection(HOST, procs[0].admin_port, timeout=5)
    try:
        conn.request("GET", "/status")
        return json.loads(conn.getresponse().read()).get("io")
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def start_proxy(cfg, kind, workers, port, app_port, tag, idle=False):
    """Start one proxy instance; returns Proc."""
    tmp = cfg["tmp"]
    name = "%s-w%d-%s" % (kind, workers, tag)
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    if kind in FLOOR_KINDS:
        return Proc(name, [build_floor(cfg, kind), str(port), str(app_port)], tmp)
    if kind.startswith("drainproxy"):
        mode = kind.split("-")[-1]
        admin = cfg["ports"].get()
        argv = [cfg["drainproxy_bin"], "--mode", mode, "--listen", "%s:%d" % (HOST, port),
                "--upstream", "%s:%d" % (HOST, app_port), "--admin", "%s:%d" % (HOST, admin),
                "--health-check", "none", "--workers", str(workers), "--log-level", "warn"]
        if kind in SYSCALLS_KINDS:
            argv += ["--io-uring", "off"]
        argv += os.environ.get("DRAINPROXY_EXTRA_ARGS", "").split()
        if idle:
            # Hold idle connections for the whole memory test (like the peers' 300s timeouts).
            argv += ["--idle-timeout", "300s", "--header-timeout", "300s"]
        # SIGINT twice = immediate exit (no propagation delay / drain wait at teardown).
        p = Proc(name, argv, tmp, stop_signals=(signal.SIGINT, signal.SIGINT))
        p.admin_port = admin
        return p
    if kind.startswith("haproxy"):
        mode = kind.split("-")[1]
        conf = (
            "global\n  nbthread %d\n  maxconn %d\n\n"
            "defaults\n  mode %s\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n"
            "  timeout http-request 300s\n  timeout http-keep-alive 300s\n  timeout tunnel 300s\n"
            % (workers, min(16000, (cfg["nofile"] - 200) // 2), mode))
        if mode == "http":
            conf += "  option http-keep-alive\n  option forwardfor\n  http-reuse always\n"
        conf += ("\nfrontend fe\n  bind %s:%d\n  default_backend be\n\n"
                 "backend be\n  server app %s:%d\n" % (HOST, port, HOST, app_port))
        path = os.path.join(d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        return Proc(name, ["haproxy", "-f", path, "-db"], tmp, stop_signals=(signal.SIGTERM,))
    if kind == "nginx-http":
        conf = nginx_common(d, workers, cfg["nofile"]) + (
            "http {\n" + nginx_http_temp(d) +
            "  access_log off;\n  tcp_nodelay on;\n"
            "  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n  client_header_timeout 300s;\n"
            "  upstream app {\n    server %s:%d;\n    keepalive 64;\n"
            "    keepalive_requests 10000000;\n    keepalive_timeout 300s;\n  }\n"
            "  server {\n    listen %s:%d backlog=4096;\n"
            "    location / {\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n"
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "      proxy_max_temp_file_size 0;\n    }\n  }\n}\n"
        ) % (HOST, app_port, HOST, port)
        return start_nginx(name, d, conf, tmp)
    if kind == "nginx-tcp":
        conf = ("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                + nginx_common(d, workers, cfg["nofile"]) +
                "http {\n" + nginx_http_temp(d) + "}\n"
                "stream {\n  upstream app { server %s:%d; }\n"
                "  server {\n    listen %s:%d backlog=4096;\n    proxy_pass app;\n"
                "    proxy_timeout 300s;\n    proxy_connect_timeout 5s;\n  }\n}\n"
                ) % (HOST, app_port, HOST, port)
        return start_nginx(name, d, conf, tmp)
    raise BenchError("unknown proxy kind " + kind)


def build_floor(cfg, kind):
    """Compiles a floor relay into the temp folder (once per run); returns its path."""
    src, libs = FLOOR_KINDS[kind]
    out = os.path.join(cfg["tmp"], src[:-2])
    if not os.path.exists(out):
        cc = os.environ.get("CC", "cc")
        r = subprocess.run([cc, "-O2", "-Wall", "-o", out, os.path.join(HERE, "floor", src)] + libs,
                           capture_output=True, text=True)
        if r.returncode != 0:
            hint = " (it needs liburing-dev: apt-get install liburing-dev)" if "uring" in src else ""
            raise BenchError("cannot build %s for %s%s:\n%s" % (src, kind, hint, r.stderr.strip()))
    return out


# ---------------------------------------------------------------- wrk

def app_accepts(app_port):
    try:
        _, body = http_get(app_port, "/nginx_status", timeout=5)
        m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
        return int(m.group(1)) if m else None
    except (OSError, http.client.HTTPException):
        return None


def run_wrk(cfg, system, scenario, duration=None):
    path, extra, conns_key, dur_key, unit = SCENARIOS[scenario]
    duration = duration or cfg[dur_key]
    conns = cfg[conns_key]
    url = "http://%s:%d%s" % (HOST, system["port"], path)
    argv = ["wrk", "-t", str(cfg["THREADS"]), "-c", str(conns), "-d", "%ds" % duration,
            "--latency", "--timeout", "10s", "-s", LUA] + extra + [url]
    for p in system["procs"]:
        if not p.alive():
            raise BenchError("%s died (code %s); log:\n%s" % (p.name, p.p.returncode, p.log_tail()))
    proxy_pids = [pid for p in system["procs"] for pid in p.pids()]
    app_pids = cfg["app"].pids()
    acc0 = app_accepts(cfg["app_port"])
    c0, a0, b0 = cpu_ticks(proxy_pids), cpu_ticks(app_pids), system_busy_ticks()
    n0 = preemptions(proxy_pids)
    t0 = time.monotonic()
    wp = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = wp.stdout.read().decode("utf-8", "replace")
    _, status, ru = os.wait4(wp.pid, 0)
    wp.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    c1, a1, b1 = cpu_ticks(proxy_pids), cpu_ticks(app_pids), system_busy_ticks()
    n1 = preemptions(proxy_pids)
    acc1 = app_accepts(cfg["app_port"])
    m = re.search(r"^WRKJSON (\{.*\})$", out, re.M)
    if wp.returncode != 0 or not m:
        raise BenchError("wrk failed for %s %s (exit %s):\n%s" % (system["label"], scenario, wp.returncode, out))
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    reqs = r["requests"]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    res = {
        "system": system["kind"], "workers": system["workers"], "label": system["label"],
        "scenario": scenario, "connections": conns, "threads": cfg["THREADS"],
        "duration_s": secs, "requests": reqs, "bytes": r["bytes"],
        "rps": reqs / secs if secs else 0.0,
        "mbps": r["bytes"] / secs / 1e6 if secs else 0.0,
        "p50_ms": r["p50_us"] / 1000.0, "p90_ms": r["p90_us"] / 1000.0,
        "p99_ms": r["p99_us"] / 1000.0, "max_ms": r["max_us"] / 1000.0,
        "errors": {k[4:]: r[k] for k in r if k.startswith("err_")},
        "non2xx": int(non2xx.group(1)) if non2xx else r["err_status"],
        "proxy_pids": proxy_pids,
        "proxy_cpu_s": (c1 - c0) / CLK_TCK,
        "proxy_cpu_us_per_req": (c1 - c0) / CLK_TCK * 1e6 / reqs if (reqs and proxy_pids) else None,
        "app_cpu_us_per_req": (a1 - a0) / CLK_TCK * 1e6 / reqs if reqs else None,
        "proxy_preempted_per_1k_req": 1000.0 * (n1 - n0) / reqs if (reqs and proxy_pids) else None,
        "wrk_cpu_s": ru.ru_utime + ru.ru_stime,
        "machine_busy_cpu_s": (b1 - b0) / CLK_TCK,
        "wall_s": wall,
        "loadavg": os.getloadavg(),
        "app_conns_opened": (acc1 - acc0 - 1) if (acc0 is not None and acc1 is not None) else None,
        "wrk_output": out,
    }
    # CPU used on the machine by anything but wrk, the app and the measured proxy
    # (other jobs on the box): a drift/interference indicator.
    res["other_cpu_s"] = max(0.0, res["machine_busy_cpu_s"] - res["proxy_cpu_s"]
                             - (a1 - a0) / CLK_TCK - res["wrk_cpu_s"])
    return res


# ---------------------------------------------------------------- idle memory test

def idle_test(cfg, kind, workers, variant):
    ports = cfg["ports"]
    port = ports.get()
    proc = start_proxy(cfg, kind, workers, port, cfg["app_port"], "idle-" + variant, idle=True)
    helper = None
    try:
        wait_listen(proc, port)
        check_answers(proc.name, port)
        pin_proxy(cfg, proc)
        time.sleep(0.5)
        pids = proc.pids()
        rss0 = rss_kib(pids)
        n = cfg["IDLE_CONNS"]
        helper = subprocess.Popen([sys.executable, IDLE_HELPER, HOST, str(port), str(n), variant],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = helper.stdout.readline().split()
        if not line or line[0] != "OPENED":
            raise BenchError("idle helper failed for %s: %r" % (proc.name, line))
        opened, failed, open_s = int(line[1]), int(line[2]), float(line[3])
        # Wait until the proxy has accepted everything (and, in TCP mode, the app has
        # accepted the proxy's upstream connections), then until RSS stops growing.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if listen_queue(port) == 0 and listen_queue(cfg["app_port"]) == 0:
                break
            time.sleep(0.2)
        # Idle means idle for a while: every proxy gets IDLE_SETTLE seconds (default 3, QUICK 1)
        # for its periodic housekeeping (drainproxy hands burst memory back once a
        # second), then RSS must have stayed put for 2 s. Two samples 0.5 s apart could
        # both fall between two of those once-a-second trims and call a full pool idle.
        settle_until = time.monotonic() + cfg["IDLE_SETTLE"]
        samples = [(time.monotonic(), rss_kib(pids))]
        stable_deadline = settle_until + 10
        while time.monotonic() < stable_deadline:
            time.sleep(0.5)
            now = time.monotonic()
            samples.append((now, rss_kib(pids)))
            window = [v for t, v in samples if t >= now - 2.0]
            if (now >= settle_until and samples[0][0] <= now - 2.0
                    and max(window) - min(window) <= max(64, window[-1] // 200)):
                break
        rss1 = rss_kib(proc.pids())
        helper.stdin.write("check\n")
        helper.stdin.flush()
        alive_line = helper.stdout.readline().split()
        alive = int(alive_line[1]) if alive_line and alive_line[0] == "ALIVE" else 0
        helper.stdin.write("exit\n")
        helper.stdin.flush()
        helper.wait(timeout=30)
        helper = None
        still_running = proc.alive()
        res = {
            "system": kind, "workers": workers, "variant": variant, "label": "%s/w%d" % (kind, workers),
            "requested": n, "opened": opened, "failed": failed, "alive": alive, "open_seconds": open_s,
            "rss_start_kib": rss0, "rss_loaded_kib": rss1, "pids": pids,
            "kib_per_conn": (rss1 - rss0) / alive if alive else None,
            "proxy_survived": still_running,
        }
        return res
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()
        proc.stop()


# ---------------------------------------------------------------- reporting

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(cfg, runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["label"], r["scenario"]), []).append(r)
    summary = []
    for (label, scen), rs in groups.items():
        unit = SCENARIOS[scen][4]
        key = "mbps" if unit == "MB/s" else "rps"
        errs = {}
        for r in rs:
            for k, v in r["errors"].items():
                errs[k] = errs.get(k, 0) + v
        summary.append({
            "label": label, "system": rs[0]["system"], "workers": rs[0]["workers"], "scenario": scen,
            "unit": unit, "rounds": len(rs), "value": med([r[key] for r in rs]),
            "values": [r[key] for r in rs],
            "p50_ms": med([r["p50_ms"] for r in rs]), "p99_ms": med([r["p99_ms"] for r in rs]),
            "proxy_cpu_us_per_req": med([r["proxy_cpu_us_per_req"] for r in rs]),
            "app_cpu_us_per_req": med([r["app_cpu_us_per_req"] for r in rs]),
            "proxy_preempted_per_1k_req": med([r.get("proxy_preempted_per_1k_req") for r in rs]),
            "requests": sum(r["requests"] for r in rs),
            "non2xx": sum(r["non2xx"] for r in rs),
            "socket_errors": {k: v for k, v in errs.items() if k != "status"},
            "app_conns_per_1k_req": med([1000.0 * r["app_conns_opened"] / r["requests"]
                                         for r in rs if r["app_conns_opened"] is not None and r["requests"]]),
            "other_cpu_pct": med([100.0 * r["other_cpu_s"] / r["wall_s"] for r in rs]),
        })
    by = {(s["label"], s["scenario"]): s for s in summary}
    cpu = {}  # (label, scenario) -> {round: proxy CPU µs per request}
    for r in runs:
        if r["proxy_cpu_us_per_req"]:
            cpu.setdefault((r["label"], r["scenario"]), {})[r["round"]] = r["proxy_cpu_us_per_req"]
    for s in summary:
        d = by.get(("direct", s["scenario"]))
        s["ratio_direct"] = s["value"] / d["value"] if d and d["value"] and s["value"] is not None else None
        mode = s["system"].split("-")[-1] if s["system"] != "direct" else None
        h = by.get(("haproxy-%s/w%d" % (mode, s["workers"]), s["scenario"])) if mode else None
        s["ratio_haproxy"] = s["value"] / h["value"] if h and h["value"] and s["value"] is not None else None
        # Paired: each round's ratio to the HAProxy run next to it in time, then the
        # median. Drift between rounds cancels out, unlike in a ratio of two medians.
        s["ratio_haproxy_paired"] = None
        if h:
            key = "mbps" if s["unit"] == "MB/s" else "rps"
            mine = {r["round"]: r[key] for r in runs if r["label"] == s["label"] and r["scenario"] == s["scenario"]}
            theirs = {r["round"]: r[key] for r in runs if r["label"] == h["label"] and r["scenario"] == s["scenario"]}
            s["ratio_haproxy_paired"] = med([mine[k] / theirs[k] for k in mine if theirs.get(k)])
        # The CPU targets compare against the better (cheaper) of HAProxy and nginx in
        # the same mode: as a ratio of medians, and paired round by round like req/s.
        s["cpu_ratio_best_peer"] = s["cpu_ratio_best_peer_paired"] = None
        peers = [by.get(("%s-%s/w%d" % (p, mode, s["workers"]), s["scenario"])) for p in ("haproxy", "nginx")]
        peers = [p for p in peers if p and p["proxy_cpu_us_per_req"]]
        if mode and peers and not s["system"].startswith(("haproxy", "nginx")) and s["proxy_cpu_us_per_req"]:
            s["cpu_ratio_best_peer"] = s["proxy_cpu_us_per_req"] / min(p["proxy_cpu_us_per_req"] for p in peers)
            ratios = []
            for rnd, v in cpu.get((s["label"], s["scenario"]), {}).items():
                theirs = [cpu.get((p["label"], s["scenario"]), {}).get(rnd) for p in peers]
                if all(theirs):
                    ratios.append(v / min(theirs))
            s["cpu_ratio_best_peer_paired"] = med(ratios)
    order = {l: i for i, l in enumerate(cfg["labels"])}
    summary.sort(key=lambda s: (list(SCENARIOS).index(s["scenario"]), order.get(s["label"], 99)))
    return summary


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def cpu_cell(s):
    cell = fmt(s["proxy_cpu_us_per_req"], "%.1f")
    if s.get("cpu_ratio_best_peer") is not None:
        cell += " (%s; %s)" % (fmt(s["cpu_ratio_best_peer"], "%.2f"), fmt(s.get("cpu_ratio_best_peer_paired"), "%.2f"))
    return cell


def markdown(cfg, summary, idle, meta):
    out = []
    out.append("## drainproxy benchmark (%s)\n" % ("QUICK smoke run" if cfg["quick"] else "full run"))
    out.append("Layout: %s.\n" % meta.get("layout", "shared"))
    if meta.get("drainproxy_io"):
        out.append("drainproxy socket I/O (`--io-uring`; `-syscalls` systems run with `off`): %s.\n" % ", ".join(
            "%s %s" % (label, io) for label, io in meta["drainproxy_io"].items()))
    out.append("%s; %d round(s) interleaved; wrk -t%d -c%d (bulk -c%d, light -c%d), %ds per run (bulk %ds); "
               "app: nginx %d worker(s). Values are medians over rounds; CPU µs/req = proxy utime+stime "
               "(all its processes/threads) / requests; paired = median of each round's ratio to the HAProxy "
               "run beside it; preempted = the proxy's involuntary context switches.\n"
               % (meta["machine"], cfg["ROUNDS"], cfg["THREADS"], cfg["CONNS"], cfg["BULK_CONNS"],
                  cfg["LIGHT_CONNS"], cfg["DURATION"], cfg["BULK_DURATION"], cfg["APP_WORKERS"]))
    for scen in SCENARIOS:
        rows = [s for s in summary if s["scenario"] == scen]
        if not rows:
            continue
        unit = SCENARIOS[scen][4]
        out.append("### %s\n" % SCENARIO_TITLES[scen])
        out.append("| system | workers | %s | × direct | × HAProxy | × HAProxy, paired | p50 ms | p99 ms "
                   "| proxy CPU µs/req | proxy preempted / 1k req | app conns / 1k req | non-2xx | socket errors |"
                   % unit)
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in rows:
            sock = ", ".join("%s %d" % (k, v) for k, v in sorted(s["socket_errors"].items()) if v) or "0"
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
                s["system"], "–" if s["system"] == "direct" else s["workers"],
                fmt(s["value"], "%.0f" if unit == "req/s" else "%.1f"),
                fmt(s["ratio_direct"], "%.2f"), fmt(s["ratio_haproxy"], "%.2f"),
                fmt(s.get("ratio_haproxy_paired"), "%.2f"),
                fmt(s["p50_ms"], "%.2f"), fmt(s["p99_ms"], "%.2f"),
                fmt(s["proxy_cpu_us_per_req"], "%.1f"), fmt(s.get("proxy_preempted_per_1k_req"), "%.0f"),
                fmt(s["app_conns_per_1k_req"], "%.1f"), s["non2xx"], sock))
        out.append("")
    # Compact view: proxy CPU per request per scenario, and memory per idle connection.
    labels = [l for l in cfg["labels"] if l != "direct"]
    if labels:
        scen = [sc for sc in SCENARIOS if any(s["scenario"] == sc for s in summary)]
        out.append("### Proxy CPU µs per request (median) and KiB per idle connection\n")
        out.append("In brackets: × the better of HAProxy and nginx in the same mode, as a ratio of "
                   "medians and paired (the median of each round's ratio).\n")
        out.append("| system | workers | " + " | ".join("CPU µs/req %s" % sc for sc in scen)
                   + " | KiB/idle conn (connect) | KiB/idle conn (1 request) |")
        out.append("|---|---:|" + "---:|" * (len(scen) + 2))
        by = {(s["label"], s["scenario"]): s for s in summary}
        iby = {(r["label"], r["variant"]): r for r in idle}
        for l in labels:
            sysname, w = l.rsplit("/w", 1)
            cells = [cpu_cell(by[(l, sc)]) if (l, sc) in by else "–" for sc in scen]
            cells += [fmt(iby[(l, v)]["kib_per_conn"], "%.2f") if (l, v) in iby else "–"
                      for v in ("connect", "request")]
            out.append("| %s | %s | %s |" % (sysname, w, " | ".join(cells)))
        out.append("")
    if idle:
        out.append("### (d) idle connections: %d held per fresh proxy process (RSS = VmRSS, summed over "
                   "the proxy's processes)\n" % cfg["IDLE_CONNS"])
        out.append("| system | workers | variant | RSS at start MiB | RSS with conns MiB | KiB / idle conn "
                   "| held alive / opened |")
        out.append("|---|---:|---|---:|---:|---:|---:|")
        for r in idle:
            out.append("| %s | %d | %s | %.1f | %.1f | %s | %d / %d%s |" % (
                r["system"], r["workers"],
                "connect, send nothing" if r["variant"] == "connect" else "1 request, then idle",
                r["rss_start_kib"] / 1024.0, r["rss_loaded_kib"] / 1024.0,
                fmt(r["kib_per_conn"], "%.2f"), r["alive"], r["opened"],
                "" if r["proxy_survived"] else " (proxy died!)"))
        out.append("")
    other = med([s["other_cpu_pct"] for s in summary])
    if other is not None:
        out.append("Other load on the machine during runs (CPU not used by wrk/app/proxy, median): %.0f%% "
                   "of one core.\n" % other)
    return "\n".join(out)


def chart(cfg, summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not available: skipping the chart (install python3-matplotlib)")
        return False
    scen = [s for s in SCENARIOS if any(x["scenario"] == s for x in summary)]
    fig, axes = plt.subplots(2, len(scen), figsize=(6 * len(scen), 9), squeeze=False)
    for j, sc in enumerate(scen):
        rows = [s for s in summary if s["scenario"] == sc and s["system"] != "direct"]
        labels = [s["label"] for s in rows]
        for i, (key, title) in enumerate((("ratio_direct", "× direct"), ("ratio_haproxy", "× HAProxy (same mode, workers)"))):
            ax = axes[i][j]
            vals = [s[key] or 0 for s in rows]
            colors = ["#d62728" if l.startswith("drainproxy") else "#1f77b4" if l.startswith("haproxy")
                      else "#2ca02c" for l in labels]
            ax.barh(range(len(rows)), vals, color=colors)
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels(labels, fontsize=8)
            ax.invert_yaxis()
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_title("%s %s\n%s" % (SCENARIO_TITLES[sc][:3], sc, title), fontsize=9)
            for k, v in enumerate(vals):
                ax.text(v, k, " %.2f" % v, va="center", fontsize=7)
            ax.set_xlim(0, max(vals + [1.0]) * 1.2)
    fig.suptitle("drainproxy benchmark: throughput ratio (median of rounds)%s" % (" [QUICK]" if cfg["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ---------------------------------------------------------------- main

def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def congestion_control():
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def main():
    cfg = load_config()
    os.makedirs(cfg["results"], exist_ok=True)
    cfg["ports"] = Ports()
    started = []
    t_start = time.monotonic()
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # Congestion control decides how senders pace on loopback, so it is part of the set-up.
        "machine": "%s, %d cores, kernel %s, TCP congestion control %s" % (
            platform.node(), os.cpu_count(), platform.release(), congestion_control()),
        "versions": {
            "drainproxy": tool_version([cfg["drainproxy_bin"], "--version"]),
            "haproxy": tool_version(["haproxy", "-v"]),
            "nginx": tool_version(["nginx", "-v"]),
            "wrk": tool_version(["wrk", "-v"]),
        },
        "loadavg_start": os.getloadavg(),
    }
    try:
        gitrev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        meta["git_rev"] = gitrev
    except OSError:
        pass
    runs, idle = [], []
    if "load_cpus" in cfg:
        # Everything this driver starts (app, wrk, idle helper) inherits the load
        # cores; each proxy is moved to its own core once it answers.
        os.sched_setaffinity(0, cfg["load_cpus"])
        meta["layout"] = "isolated: proxy on core %s, app and wrk on %s" % (
            ",".join(map(str, sorted(cfg["proxy_cpus"]))), ",".join(map(str, sorted(cfg["load_cpus"]))))
    else:
        meta["layout"] = "shared: every process on every core"
    try:
        cfg["app_port"] = cfg["ports"].get()
        app = start_app(cfg, cfg["app_port"])
        started.append(app)
        cfg["app"] = app
        wait_listen(app, cfg["app_port"])
        check_answers("app (nginx)", cfg["app_port"])
        log("app nginx on %s:%d (pid %d)" % (HOST, cfg["app_port"], app.pid))

        systems = []
        if "direct" in cfg["SYSTEMS"]:
            systems.append({"kind": "direct", "workers": 0, "label": "direct", "port": cfg["app_port"],
                            "procs": []})
        for w in cfg["WORKERS"]:
            for kind in ALL_KINDS:
                if kind not in cfg["SYSTEMS"] or (kind in ONE_WORKER_KINDS and w != 1):
                    continue
                port = cfg["ports"].get()
                p = start_proxy(cfg, kind, w, port, cfg["app_port"], "load")
                started.append(p)
                systems.append({"kind": kind, "workers": w, "label": "%s/w%d" % (kind, w), "port": port,
                                "procs": [p]})
        for s in systems:
            for p in s["procs"]:
                wait_listen(p, s["port"])
            check_answers(s["label"], s["port"])
            for p in s["procs"]:
                pin_proxy(cfg, p)
            io = drainproxy_io(s)
            if io:
                s["io"] = io
            log("%-20s answers on port %d (pids %s)%s" % (
                s["label"], s["port"], ",".join(str(x) for p in s["procs"] for x in p.pids()) or "-",
                ", io %s" % io if io else ""))
        cfg["labels"] = [s["label"] for s in systems]
        meta["drainproxy_io"] = {s["label"]: s["io"] for s in systems if s.get("io")}

        if cfg["WARMUP"]:
            log("warm-up: %ds keep-alive run per system" % cfg["WARMUP"])
            for s in systems:
                run_wrk(cfg, s, "keepalive-small", duration=cfg["WARMUP"])

        scen_names = list(SCENARIOS)
        total = cfg["ROUNDS"] * len(scen_names) * len(systems)
        k = 0
        for rnd in range(cfg["ROUNDS"]):
            for si, scen in enumerate(scen_names):
                shift = (rnd * len(scen_names) + si) % len(systems)
                order = systems[shift:] + systems[:shift]
                for s in order:
                    k += 1
                    r = run_wrk(cfg, s, scen)
                    r["round"] = rnd + 1
                    runs.append(r)
                    unit = SCENARIOS[scen][4]
                    log("[%3d/%d] round %d %-15s %-20s %10.1f %s  p99 %.2f ms  proxy CPU %s µs/req%s" % (
                        k, total, rnd + 1, scen, s["label"], r["mbps"] if unit == "MB/s" else r["rps"], unit,
                        r["p99_ms"], fmt(r["proxy_cpu_us_per_req"], "%.1f"),
                        "  ERRORS %s non2xx %d" % (r["errors"], r["non2xx"])
                        if (r["non2xx"] or any(v for kk, v in r["errors"].items() if kk != "status")) else ""))
        # Free the load instances before the memory test (fresh processes are used there).
        for s in systems:
            for p in s["procs"]:
                p.stop()

        for w in cfg["WORKERS"]:
            for kind in PROXY_KINDS:
                if kind not in cfg["SYSTEMS"]:
                    continue
                for variant in ("connect", "request"):
                    r = idle_test(cfg, kind, w, variant)
                    idle.append(r)
                    log("idle %-20s %-8s start %.1f MiB, %d/%d alive, %s KiB/conn" % (
                        r["label"], variant, r["rss_start_kib"] / 1024.0, r["alive"], r["opened"],
                        fmt(r["kib_per_conn"], "%.2f")))
    finally:
        for p in reversed(started):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (p.name, e))

    summary = summarize(cfg, runs)
    meta["elapsed_s"] = time.monotonic() - t_start
    meta["loadavg_end"] = os.getloadavg()
    public_cfg = {k: v for k, v in cfg.items() if k not in ("ports", "app", "tmp")}
    doc = {"meta": meta, "config": public_cfg, "summary": summary, "idle": idle, "runs": runs}
    with open(os.path.join(cfg["results"], "results.json"), "w") as f:
        json.dump(doc, f, indent=1, default=str)
    md = markdown(cfg, summary, idle, meta)
    with open(os.path.join(cfg["results"], "results.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    png = os.path.join(cfg["results"], "chart.png")
    if chart(cfg, summary, png):
        log("chart: %s" % png)
    log("results: %s (%.0fs)" % (os.path.join(cfg["results"], "results.json"), meta["elapsed_s"]))

    problems = [s for s in summary if s["non2xx"] or any(s["socket_errors"].values())]
    problems += [r for r in idle if not r["proxy_survived"] or r["alive"] < r["opened"] or r["failed"]]
    if problems:
        log("NOTE: errors/non-2xx or dropped idle connections were seen for: %s"
            % ", ".join(sorted({"%s %s" % (p["label"], p.get("scenario", p.get("variant"))) for p in problems})))


def _on_term(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        main()
    except BenchError as e:
        log("FAILED: %s" % e)
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
