#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: once in a normal build and
# once with AddressSanitizer + UBSan.   QUICK=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

run_suite() {
  local flavour=$1 dir=$2
  echo "== $flavour build"
  ./scripts/build.sh "$flavour"
  echo "== $flavour tests"
  (cd "$dir" && ctest --output-on-failure --timeout 300)
}

# Leak checking needs ptrace-free /proc access that some sandboxes lack; the
# address and UB checks are what these runs are for.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_suite release build
if [ "${QUICK:-0}" != 1 ]; then
  run_suite asan build-asan
fi
