# Drives CMake. `make` builds into build/; `make test` and `make run`
# install what they lack first (Debian packages, as root).
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all build deps test asan test-asan fuzz bench run deb clean

all: build

build:
	@command -v cmake >/dev/null && pkg-config --exists lua5.4 || scripts/deps.sh build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	cmake --build build -j $(JOBS)

deps:
	scripts/deps.sh test

test: deps build
	rm -rf build/skipped
	ctest --test-dir build --output-on-failure -j $(JOBS); rc=$$?; scripts/skip-report.sh build; exit $$rc

asan:
	scripts/deps.sh build
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPOSTERN_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

test-asan: deps asan
	rm -rf build-asan/skipped
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS); rc=$$?; scripts/skip-report.sh build-asan; exit $$rc

FUZZ_RUNS ?= 1000000
fuzz:
	scripts/deps.sh fuzz
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOSTERN_FUZZ=ON -DPOSTERN_SANITIZE=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target $$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$$//')
	scripts/fuzz.sh build-fuzz/fuzz $(FUZZ_RUNS)

bench: build
	scripts/deps.sh bench
	tests/bench/run.sh

# The demo builds the product alone (no CMocka, no test binaries) in its
# own build-run/, so it installs and compiles only what it runs.
run:
	scripts/deps.sh run
	cmake -S . -B build-run -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPOSTERN_TESTS=OFF -DPOSTERN_LDAP=OFF -DPOSTERN_PGSQL=OFF >/dev/null
	cmake --build build-run -j $(JOBS)
	POSTERN_BIN=build-run/bin/postern scripts/run-demo.sh

deb:
	scripts/deps.sh deb
	scripts/build-deb.sh

clean:
	rm -rf build build-asan build-fuzz build-deb build-run run
