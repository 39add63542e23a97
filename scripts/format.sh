#!/usr/bin/env bash
# Formats (default) or checks (--check) every *.cc and *.h under src include test examples bench fuzz
# with clang-format and the repository's .clang-format. Used by `make format` / `make format-check`.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
DIRS=(src include test examples bench fuzz)

command -v "$CLANG_FORMAT" >/dev/null 2>&1 ||
  { echo "format: $CLANG_FORMAT not found; run scripts/install-deps.sh" >&2; exit 1; }

existing=()
for d in "${DIRS[@]}"; do [[ -d "$d" ]] && existing+=("$d"); done
files=()
if ((${#existing[@]})); then
  mapfile -d '' -t files < <(find "${existing[@]}" -type f \( -name '*.cc' -o -name '*.h' \) -print0 |
    sort -z)
fi

if [[ "${1:-}" != "--check" ]]; then
  ((${#files[@]} == 0)) || "$CLANG_FORMAT" -i "${files[@]}"
  echo "format: ${#files[@]} files formatted"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  "$CLANG_FORMAT" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "format-check: ${#bad[@]} of ${#files[@]} files are not clang-formatted:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "first differences (clang-format --dry-run ${bad[0]}):" >&2
  "$CLANG_FORMAT" --dry-run "${bad[0]}" 2>&1 | head -n 20 | sed 's/^/  | /' >&2
  echo "format-check: run 'make format' (or scripts/format.sh) and commit the result" >&2
  exit 1
fi
echo "format-check: ${#files[@]} files ok"
