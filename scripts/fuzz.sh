#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with ASan and UBSan) of the HTTP request and response
# parsers, the head writer and the chunked framer, against the properties in
# tests/http/properties.hpp. The unit tests run the same properties over a fixed set of
# inputs; this searches for new ones for as long as it is given.
#
#   scripts/fuzz.sh [request|response|chunked|all] [seconds per target, default 60]
#
# Findings are saved as build-fuzz/<target>/crash-*; replay one with
#   build-fuzz/fuzz_<target> build-fuzz/<target>/crash-<sha1>
# The corpus grows in build-fuzz/<target>/corpus and is reused by the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
seconds=${2:-60}
case "$which" in
  request|response|chunked) targets=("$which") ;;
  all) targets=(request response chunked) ;;
  *) echo "fuzz.sh: unknown target '$which' (request, response, chunked or all)" >&2; exit 2 ;;
esac
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: seconds must be a positive integer, not '$seconds'" >&2; exit 2; }

./scripts/install-deps.sh
if ! command -v clang++ >/dev/null; then
  # libFuzzer ships with clang; g++ has no equivalent.
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "fuzz.sh: installing clang (libFuzzer)" >&2
  # env after sudo: sudo resets the environment. The package lists may never have been fetched.
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang >/dev/null
fi

out=build-fuzz
mkdir -p "$out"
sources=(fuzz/fuzz_http.cpp tests/http/properties.cpp http/message.cpp http/parser.cpp http/head_writer.cpp http/chunked.cpp)
status=0
for t in "${targets[@]}"; do
  case "$t" in request) id=1 ;; response) id=2 ;; chunked) id=3 ;; esac
  bin="$out/fuzz_$t"
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DDRAINPROXY_FUZZ_TARGET=$id -I. -Itests/http "${sources[@]}" -o "$bin"
  mkdir -p "$out/$t/corpus"
  echo "== fuzz $t for ${seconds}s"
  if ! (cd "$out/$t" && "../fuzz_$t" -dict=../../fuzz/http.dict -max_len=1024 -max_total_time="$seconds" \
          -print_final_stats=1 corpus "../../fuzz/seeds/$t" 2>&1 | tail -n 8); then
    status=1
  fi
  if compgen -G "$out/$t/crash-*" >/dev/null; then
    echo "fuzz.sh: $t found inputs that break a property:" "$out/$t"/crash-* >&2
    status=1
  fi
done
exit $status
