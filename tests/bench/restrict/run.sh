#!/bin/sh
# Restriction cost per RCPT (`tests/bench/restrict/run.sh [BUILD_DIR]`),
# not part of CI: the in-process cost of a Lua policy call, then the
# server-side cost per RCPT of a 5-rule chain and of chain + Lua. Use a
# release build; prints Markdown.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
cmake --build "$build" --target mod_restrict postern_core >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -n '/^POLICY = """/,/^"""/p' "$here/bench.py" | sed '1d;$d' > "$work/policy.lua"
cc -O2 -I"$src/include" -I"$src/modules" $(pkg-config --cflags lua5.4) "$here/lua_call_bench.c" \
  -o "$work/lua_call_bench" -Wl,--start-group "$build/libmod_restrict.a" "$build/libpostern_core.a" \
  -Wl,--end-group $(pkg-config --libs lua5.4) -lssl -lcrypto -lcrypt -lpam -ldl -lpthread -lm
"$work/lua_call_bench" "$work/policy.lua" 500000
POSTERN_BIN="$build/bin/postern" POSTERN_MODULES="$build/modules" POSTERN_SRC="$src" \
  /usr/bin/python3 "$here/bench.py" "$@"
