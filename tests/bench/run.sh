#!/bin/sh
# `make bench`: every benchmark under tests/bench/*/run.sh against build/,
# one after the other (none of them is part of CI).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)/build}
for b in "$here"/*/run.sh; do
  echo "== $(basename "$(dirname "$b")")"
  sh "$b" "$build"
done
