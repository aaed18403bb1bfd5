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

start=$(date +%s)
run_suite release build
if [ "${QUICK:-0}" != 1 ]; then
  # Manifest, image and rollout tests don't exercise new C++ paths: once is enough.
  run_suite asan build-asan -LE once
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
