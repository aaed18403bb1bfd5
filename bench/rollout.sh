#!/usr/bin/env bash
# Rolling-update picture: runs the e2e rollout scenarios (tests/e2e/rollout.py: app alone,
# preStop sleep, drainproxy HTTP mode, drainproxy TCP mode) and draws their timelines.
#
#   sudo bench/rollout.sh                  all scenarios, E2E_ROUNDS rollouts each (default 2)
#   SCENARIOS=drainproxy-http bench/rollout.sh
#
# Needs root (it creates a network namespace and iptables rules inside it; nothing outside
# the namespace is touched). Output: bench/results/rollout-<timestamp>/ (per-request JSON
# timelines, pod logs, summary.json) and docs/rollout-timeline.png (needs python3-matplotlib;
# skipped with a message without it). Exit code: that of rollout.py (0 = every check passed).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
cd "$ROOT"

if [ -z "${DRAINPROXY_BIN:-}" ] || [ -z "${DRAINPROXY_DEMO_BIN:-}" ]; then
  if [ -z "${SKIP_BUILD:-}" ]; then
    cmake -S . -B build-e2e -G Ninja >/dev/null
    cmake --build build-e2e --target drainproxy drainproxy-demo-app
  fi
  export DRAINPROXY_BIN="${DRAINPROXY_BIN:-$ROOT/build-e2e/drainproxy}"
  export DRAINPROXY_DEMO_BIN="${DRAINPROXY_DEMO_BIN:-$ROOT/build-e2e/drainproxy-demo-app}"
fi

OUT="${OUT:-$ROOT/bench/results/rollout-$(date +%Y%m%d-%H%M%S)}"
PNG="${PNG:-$ROOT/docs/rollout-timeline.png}"
mkdir -p "$OUT"

rc=0
python3 tests/e2e/rollout.py --scenarios "${SCENARIOS:-all}" --out "$OUT" || rc=$?
if [ "$rc" -eq 77 ]; then
  echo "rollout: skipped (see the message above)"
  exit 0
fi
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
  echo "rollout: rollout.py failed with exit code $rc; no picture" >&2
  exit "$rc"
fi

# The picture: Debian's python3 has python3-matplotlib; another python3 may not.
PY=""
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import matplotlib' 2>/dev/null; then
    PY="$cand"; break
  fi
done
if [ -z "$PY" ]; then
  echo "rollout: matplotlib not found (apt-get install -y python3-matplotlib): no picture"
else
  "$PY" bench/rollout_timeline.py "$OUT" -o "$PNG"
fi
echo "rollout: results in $OUT"
exit "$rc"
