#!/bin/sh
# Restriction cost per RCPT, Postern against Postfix (`make bench`, not CI):
# the in-process cost of a check_lua_policy call (lua_call_bench.c), then
# bench.py (5-rule chain and policy per RCPT over SMTP, both servers; the
# Postfix side needs root and installs Postfix through scripts/deps.sh).
# Usage: tests/bench/restrict/run.sh [BUILD_DIR] [bench.py args]; use a
# release build on a quiet machine. Prints Markdown.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
[ -x "$build/bin/postern" ] || { echo "run.sh: build first (make)" >&2; exit 1; }
[ "$(id -u)" = 0 ] && "$src/scripts/deps.sh" bench
cmake --build "$build" --target mod_restrict postern_core >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -I"$src/include" -I"$src/modules" $(pkg-config --cflags lua5.4) "$here/lua_call_bench.c" \
  -o "$work/lua_call_bench" -Wl,--start-group "$build/libmod_restrict.a" "$build/libpostern_core.a" \
  -Wl,--end-group $(pkg-config --libs lua5.4) -lssl -lcrypto -lcrypt -lpam -ldl -lpthread -lm
POSTERN_BIN="$build/bin/postern" POSTERN_MODULES="$build/modules" POSTERN_SRC="$src" \
  /usr/bin/python3 "$here/bench.py" --lua-call-bench "$work/lua_call_bench" \
  --out /var/tmp/postern-bench/restrict-last-run.md "$@"
