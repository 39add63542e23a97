# k8shmir: see README.md. As root on a fresh Debian bookworm machine, `make demo` and `make test`
# install whatever is missing (scripts/install-deps.sh), build, and run.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
# Targets run their prerequisites in the order written (deps, format-check, build, ...); the
# compiler and ctest are parallel on their own.
.NOTPARALLEL:

BUILD_DIR    ?= build
BUILD_TYPE   ?= RelWithDebInfo
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
CLANG_FORMAT ?= clang-format
CTEST        := ctest --test-dir $(BUILD_DIR) --output-on-failure -j2 --timeout 600 --no-tests=error
CTEST_ARGS   ?=

.PHONY: all deps configure build test test-unit test-integration test-fault test-e2e test-asan \
        test-tsan check-thread-safety demo bench format format-check clean

all: build

## deps: install the Debian packages needed to build, test and run the demo (idempotent)
deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

## build: configure (CMake, $(BUILD_TYPE)) and build everything in $(BUILD_DIR)/
build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

## test: check formatting, build, run every test (unit, integration, fault, e2e)
test: deps format-check build
	$(CTEST) $(CTEST_ARGS)

test-unit: build
	$(CTEST) -L unit $(CTEST_ARGS)

test-integration: build
	$(CTEST) -L integration $(CTEST_ARGS)

## test-fault: the fault suite (SIGKILL/SIGSTOP of apps, proxies, etcd members; bad input), ~1 min
test-fault: build
	$(CTEST) -L fault $(CTEST_ARGS)

## test-e2e: the container test (Docker engine, images from the Dockerfiles, 3 emulated pods)
test-e2e: build
	$(CTEST) -L e2e $(CTEST_ARGS)

# --- Sanitizers (README, Testing) ---------------------------------------------------------------
# Separate build directories (g++ 12, RelWithDebInfo plus -fsanitize=...): ASan+UBSan runs the unit
# and integration labels, TSan the unit label. Only those labels' tests and the programs they start
# are built (CMake targets tests-<label>); the proxies and apps the integration tests start are this
# build's, instrumented too. The runtime options go to the build as well: test discovery runs the
# test binaries. Suppressions (test/sanitizers/) name third-party libraries only, never our code.
SAN_SUPP  := $(abspath test/sanitizers)
ASAN_DIR  ?= build-asan
TSAN_DIR  ?= build-tsan
ASAN_ENV  := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
             LSAN_OPTIONS=suppressions=$(SAN_SUPP)/lsan.supp:print_suppressions=0 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV  := TSAN_OPTIONS=suppressions=$(SAN_SUPP)/tsan.supp:second_deadlock_stack=1:history_size=4
SAN_CTEST  = ctest --output-on-failure -j2 --timeout 900 --no-tests=error

## test-asan: AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/; unit + integration
test-asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DK8SHMIR_SANITIZE=address,undefined \
	  -DK8SHMIR_BUILD_BENCH=OFF
	$(ASAN_ENV) cmake --build $(ASAN_DIR) -j $(JOBS) --target tests-unit tests-integration
	$(ASAN_ENV) $(SAN_CTEST) --test-dir $(ASAN_DIR) -L 'unit|integration' $(CTEST_ARGS)

## test-tsan: ThreadSanitizer build in build-tsan/; the unit label
test-tsan: deps
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DK8SHMIR_SANITIZE=thread \
	  -DK8SHMIR_BUILD_BENCH=OFF
	$(TSAN_ENV) cmake --build $(TSAN_DIR) -j $(JOBS) --target tests-unit
	$(TSAN_ENV) $(SAN_CTEST) --test-dir $(TSAN_DIR) -L unit $(CTEST_ARGS)

## check-thread-safety: clang++-14 -Wthread-safety -Werror over src/log (syntax only, ~1 min)
check-thread-safety: configure
	cmake --build $(BUILD_DIR) --target check-thread-safety

## demo: 3 etcd members, 3 counter apps, 3 proxies on loopback; a workload; replicas compared
demo: build
	BUILD_DIR="$(abspath $(BUILD_DIR))" bash scripts/demo.sh

## bench: build k8shmir-bench, then run it (about 5 minutes): direct / raw log / replicated on
## loopback, a Markdown table and PASS/FAIL per target on stdout, bench/results/latest.{json,png}.
## BENCH_ARGS passes more flags (k8shmir-bench --help), e.g. BENCH_ARGS="--rounds 1".
BENCH_ARGS ?=
bench: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target k8shmir-bench
	$(BUILD_DIR)/bench/k8shmir-bench --results-dir bench/results $(BENCH_ARGS)

## format / format-check: clang-format (.clang-format) on *.cc *.h under src include test examples bench
format: deps
	@CLANG_FORMAT="$(CLANG_FORMAT)" bash scripts/format.sh

format-check: deps
	@CLANG_FORMAT="$(CLANG_FORMAT)" bash scripts/format.sh --check

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)
