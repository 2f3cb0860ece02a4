#!/bin/sh
# Formats the native sources in place with the pinned clang-format from node_modules,
# or with --check lists the files that differ and exits 1 (used by `npm run lint`).
# Files: native/*.cc native/*.h bench/*.c bench/loadgen/*.c (style in .clang-format).

set -eu

cd "$(dirname "$0")/.."

bin=node_modules/.bin/clang-format
if [ ! -x "$bin" ]; then
  echo "clang-format.sh: $bin not found; run npm ci" >&2
  exit 1
fi

check=0
case "${1:-}" in
  --check) check=1 ;;
  '') ;;
  *)
    echo "usage: sh scripts/clang-format.sh [--check]" >&2
    exit 2
    ;;
esac

# Collect existing files only: an unmatched glob stays literal in sh.
files=""
for f in native/*.cc native/*.h bench/*.c bench/loadgen/*.c; do
  [ -f "$f" ] && files="$files $f"
done
if [ -z "$files" ]; then
  exit 0
fi

if [ "$check" -eq 0 ]; then
  # shellcheck disable=SC2086 # the list holds plain repository paths without spaces
  "$bin" -i --style=file $files
  exit 0
fi

bad=0
for f in $files; do
  # --dry-run -Werror makes clang-format exit non-zero when it would change the file.
  if ! "$bin" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "clang-format.sh: needs formatting: $f" >&2
    bad=1
  fi
done
exit "$bad"
