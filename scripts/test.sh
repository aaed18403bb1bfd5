#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: once in a normal build and
# once with AddressSanitizer + UBSan.   QUICK=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

run_suite() {
  local flavour=$1 dir=$2
  shift 2
  echo "== $flavour build"
  ./scripts/build.sh "$flavour"
  echo "== $flavour tests"
  (cd "$dir" && ctest --output-on-failure "$@")
}

# Sanitizer reports fail the run: the tests assert exit code 0 of every process they start.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The container image is built before ctest runs: cold (debootstrap plus a full compile
# inside the image) it takes longer than a test should, warm it takes seconds.
# DRAINPROXY_SKIP_CONTAINER=1 skips the image and its test.
prebuild_image() {
  [ "${DRAINPROXY_SKIP_CONTAINER:-0}" = 1 ] && return 0
  command -v buildah >/dev/null && command -v podman >/dev/null || return 0
  echo "== container image"
  if ! tests/container/build_and_run.sh > build/container-image.log 2>&1; then
    echo "container image build failed; its test will report it (build/container-image.log):"
    tail -20 build/container-image.log
  fi
}

start=$(date +%s)
./scripts/build.sh release
prebuild_image
run_suite release build
if [ "${QUICK:-0}" != 1 ]; then
  # Manifest, image and rollout tests don't exercise new C++ paths: once is enough.
  run_suite asan build-asan -LE once
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
