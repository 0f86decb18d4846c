#!/bin/sh
# Runs every libFuzzer target in DIR for RUNS inputs each, seeded from
# tests/fuzz/corpus/NAME when present; fails on the first finding.
set -e
dir=$1; runs=${2:-1000000}
top=$(cd "$(dirname "$0")/.." && pwd)
for f in "$dir"/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds="$top/tests/fuzz/corpus/$name"
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
  # The example policies are seeds for the policy fuzzer as they are.
  [ "$name" = fuzz_lua_policy ] && cp "$top"/lua/examples/*.lua "$work"/ 2>/dev/null || true
  echo "== $name: $runs runs"
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$f" -runs="$runs" -max_len=4096 -timeout=10 \
    -artifact_prefix="$work/../$name-" "$work" > "$work.log" 2>&1 || rc=$?
  tail -n 3 "$work.log"
  if [ "$rc" != 0 ]; then
    echo "fuzz.sh: $name found a problem (exit $rc); input kept as $(dirname "$work")/$name-*" >&2
    grep -E "ERROR|SUMMARY" "$work.log" | head -n 5 >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
