#!/usr/bin/env bash
# Install the benchmark's peers from Debian (idempotent; silent when all are present).
set -euo pipefail

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx   >/dev/null 2>&1 || need+=(nginx)
# nginx stream module (dynamic module in Debian)
if ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then need+=(libnginx-mod-stream); fi
command -v wrk     >/dev/null 2>&1 || need+=(wrk)
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${need[*]} (run as root: apt-get install -y ${need[*]})" >&2
  exit 1
fi

echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts the packaged services on install; the benchmark runs its own instances only.
# We do not touch the system nginx/haproxy services beyond what the package postinst did.
echo "install-deps: done" >&2
