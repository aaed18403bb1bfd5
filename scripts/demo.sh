#!/usr/bin/env bash
# Builds drainproxy and runs it in front of the demo app:
#   clients -> 0.0.0.0:8000 (drainproxy) -> 127.0.0.1:8080 (demo app)
#   admin   -> 0.0.0.0:9901 (/ready /live /metrics /status /drain)
# Try `curl localhost:8000/`, then press Ctrl-C to watch the drain (twice to quit at once).
# Extra arguments go to drainproxy, e.g. scripts/demo.sh --log-format json
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/build.sh release drainproxy drainproxy-demo-app

# Its own session: Ctrl-C in this terminal must reach the proxy, not the app,
# so the app keeps serving until the proxy has drained, as in a pod.
setsid ./build/drainproxy-demo-app --listen 127.0.0.1:8080 --name demo &
app=$!
trap 'kill "$app" 2>/dev/null || true' EXIT

echo "demo: try  curl -s localhost:8000/  and  curl -s localhost:9901/status ; Ctrl-C drains" >&2
set +e
./build/drainproxy --listen 0.0.0.0:8000 --upstream 127.0.0.1:8080 --admin 0.0.0.0:9901 \
  --propagation-delay 3s --drain-timeout 10s "$@" &
proxy=$!
# The terminal delivers Ctrl-C to the proxy itself; this script just keeps waiting.
trap ':' INT
trap 'kill -TERM "$proxy" 2>/dev/null' TERM
status=0
while kill -0 "$proxy" 2>/dev/null; do
  wait "$proxy"
  status=$?
done
echo "demo: drainproxy exited with code $status" >&2
exit "$status"
