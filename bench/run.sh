#!/usr/bin/env bash
# drainproxy benchmark: drainproxy (http, tcp) vs HAProxy and nginx (http, tcp) vs direct,
# on loopback, in front of an nginx app. See bench/README.md.
#
#   bench/run.sh            full run (5 rounds, workers 1 and 2, 5,000 idle connections; ~25 min)
#   QUICK=1 bench/run.sh    smoke run (~90 s)
#   LAYOUT=isolated bench/run.sh   the proxy gets a core of its own, wrk and the app share
#                           the other (1 worker; ~15 min)
#
# Output: Markdown table on stdout; bench/results/<timestamp>/{results.json,results.md,chart.png}.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

die() { echo "bench: $*" >&2; exit 1; }

# ---- peers present?
missing=()
for cmd in haproxy nginx wrk; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=("nginx stream module (libnginx-mod-stream)")
if [ ${#missing[@]} -gt 0 ]; then
  die "missing: ${missing[*]}. Install them with: $BENCH_DIR/install-deps.sh"
fi
haproxy_version="$(haproxy -v 2>/dev/null || true)"
case "$haproxy_version" in
  *"version 2.6."*) ;;
  *) echo "bench: note: HAProxy is not 2.6: ${haproxy_version%%$'\n'*}" >&2 ;;
esac

# Python: prefer Debian's (it has python3-matplotlib); the driver itself needs only the stdlib.
PY=""
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    PY="$(command -v "$cand")"; break
  fi
done
[ -n "$PY" ] || die "python3 >= 3.9 not found"

# ---- drainproxy binary
if [ -n "${DRAINPROXY_BIN:-}" ]; then
  [ -x "$DRAINPROXY_BIN" ] || die "DRAINPROXY_BIN=$DRAINPROXY_BIN is not executable"
else
  DRAINPROXY_BIN="$ROOT/build-bench/drainproxy"
  if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$DRAINPROXY_BIN" ]; then
    echo "bench: building drainproxy (RelWithDebInfo, build-bench/)" >&2
    buildlog="$(mktemp)"
    if ! { cmake -S "$ROOT" -B "$ROOT/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
           && cmake --build "$ROOT/build-bench" --target drainproxy; } >"$buildlog" 2>&1; then
      tail -30 "$buildlog" >&2; rm -f "$buildlog"; die "drainproxy build failed"
    fi
    rm -f "$buildlog"
  fi
fi
export DRAINPROXY_BIN

# ---- limits: idle test needs many descriptors (raise the soft limit to the hard one)
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ]; then hard=1048576; fi
ulimit -n "$hard" 2>/dev/null || true
need=$(( 2 * ${IDLE_CONNS:-5000} + 2000 ))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "bench: note: open-files limit $(ulimit -n) < $need; the idle test will use fewer connections" >&2
fi

# ---- temp folder, results folder, cleanup by PID
BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/drainproxy-bench.XXXXXX")"
export BENCH_TMP
stamp="$(date +%Y%m%d-%H%M%S)"
[ "${QUICK:-0}" != 0 ] && stamp="$stamp-quick"
[ "${LAYOUT:-shared}" = isolated ] && stamp="$stamp-isolated"
BENCH_RESULTS="${BENCH_RESULTS:-$BENCH_DIR/results/$stamp}"
export BENCH_RESULTS
driver_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  # Everything the driver started is listed as "<pid> <exe>"; stop what is still ours.
  if [ -f "$BENCH_TMP/pids" ]; then
    local left=()
    while read -r pid exe; do
      [ -n "$pid" ] || continue
      if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]; then
        kill -TERM "$pid" 2>/dev/null && left+=("$pid")
      fi
    done <"$BENCH_TMP/pids"
    if [ ${#left[@]} -gt 0 ]; then
      sleep 1
      for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  fi
  rm -rf "$BENCH_TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" "$BENCH_DIR/bench.py" &
driver_pid=$!
wait "$driver_pid"
rc=$?
driver_pid=""
exit "$rc"
