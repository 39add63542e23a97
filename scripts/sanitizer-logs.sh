#!/usr/bin/env bash
# `make test-asan` / `make test-tsan`: the sanitizers write every report to DIR/<tool>.<pid>
# (log_path), from the test binaries and from the proxies and apps they start, whose stderr a
# passing test does not show. Prints each report; fails when there is any.
set -euo pipefail
dir=$1
shopt -s nullglob
logs=("$dir"/*)
if ((${#logs[@]} == 0)); then
  echo "sanitizer-logs: no reports in $dir"
  exit 0
fi
for log in "${logs[@]}"; do
  echo "=== $log"
  cat "$log"
done
echo "sanitizer-logs: ${#logs[@]} report file(s) in $dir" >&2
exit 1
