#!/usr/bin/env bash
# Installs what drainproxy needs to build and test, from Debian bookworm packages.
# Idempotent: when every package is present it prints nothing and touches nothing.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config
  libboost-dev libboost-system-dev libboost-program-options-dev
  libssl-dev libspdlog-dev prometheus-cpp-dev libgtest-dev liburing-dev
  curl python3 prometheus iptables iproute2
  buildah podman runc debootstrap
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
# env after sudo: sudo resets the environment, and a package must not stop to ask.
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
