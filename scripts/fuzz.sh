#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang into build-fuzz/ and runs each for a bounded
# time on its committed corpus (fuzz/corpus/<target>/). New inputs the fuzzer finds go to a
# scratch corpus under build-fuzz/, never into the repository; a crash leaves its input in
# build-fuzz/artifacts/ and fails the run. Used by `make fuzz`.
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_TARGETS  targets to run (default: all)
#   FUZZ_JOBS     build parallelism (default 2)
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=(${FUZZ_TARGETS:-entry_decoder_fuzz request_head_fuzz})
CXX=${FUZZ_CXX:-clang++-14}
CC=${FUZZ_CC:-clang-14}

command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (apt-get install clang-14)" >&2; exit 1; }

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_C_COMPILER="$CC" -DK8SHMIR_BUILD_FUZZ=ON -DK8SHMIR_BUILD_TESTS=OFF \
  -DK8SHMIR_BUILD_EXAMPLES=OFF -DK8SHMIR_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target "${TARGETS[@]}"

mkdir -p "$BUILD/artifacts"
status=0
for t in "${TARGETS[@]}"; do
  scratch="$BUILD/corpus/$t"
  mkdir -p "$scratch"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s (corpus fuzz/corpus/$t)"
  # The scratch corpus first: libFuzzer writes what it finds into the first directory only.
  if ! "$BUILD/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
    "$scratch" "fuzz/corpus/$t" 2>"$BUILD/$t.log"; then
    echo "fuzz: $t FAILED; see $BUILD/$t.log and $BUILD/artifacts/" >&2
    tail -40 "$BUILD/$t.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$BUILD/$t.log" | sed "s/^/fuzz: $t /"
  fi
done
exit $status
