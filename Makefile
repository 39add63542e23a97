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
        test-tsan check-thread-safety demo bench fuzz format format-check clean

all: build

## deps: install the Debian packages needed to build, test and run the demo (idempotent)
deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DK8SHMIR_BUILD_TESTS=ON

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
SAN_SUPP   := $(abspath test/sanitizers)
ASAN_DIR   ?= build-asan
TSAN_DIR   ?= build-tsan
ASAN_LOGS  := $(abspath $(ASAN_DIR))/sanitizer-logs
TSAN_LOGS  := $(abspath $(TSAN_DIR))/sanitizer-logs
ASAN_OPTS  := detect_leaks=1
LSAN_OPTS  := suppressions=$(SAN_SUPP)/lsan.supp:print_suppressions=0
UBSAN_OPTS := print_stacktrace=1:halt_on_error=1
TSAN_OPTS  := suppressions=$(SAN_SUPP)/tsan.supp:ignore_noninstrumented_modules=1
ASAN_ENV   := ASAN_OPTIONS=$(ASAN_OPTS) LSAN_OPTIONS=$(LSAN_OPTS) UBSAN_OPTIONS=$(UBSAN_OPTS)
TSAN_ENV   := TSAN_OPTIONS=$(TSAN_OPTS)
# While the tests run, every report also goes to <build>/sanitizer-logs/<tool>.<pid>, the
# children's too (a passing test does not show their stderr): scripts/sanitizer-logs.sh prints
# them and fails the target when there is any.
ASAN_RUN   := ASAN_OPTIONS=$(ASAN_OPTS):log_path=$(ASAN_LOGS)/asan LSAN_OPTIONS=$(LSAN_OPTS) \
              UBSAN_OPTIONS=$(UBSAN_OPTS):log_path=$(ASAN_LOGS)/ubsan
TSAN_RUN   := TSAN_OPTIONS=$(TSAN_OPTS):log_path=$(TSAN_LOGS)/tsan
SAN_CTEST  := ctest --output-on-failure -j2 --timeout 900 --no-tests=error
# AcceptLoopTest holds every descriptor of the process for a second (accept must fail with
# EMFILE). UBSan's vptr check then reports false positives: on a miss of its type cache it probes
# the vtable's memory with pipe(2), which fails, and it cannot even open its log or suppression
# file. That test runs in `make test` and under TSan; ASan+UBSan leaves it out.
ASAN_EXCLUDE := -E '^AcceptLoopTest[.]'
# -O1 -g1 rather than RelWithDebInfo's -O2 -g: the sanitizers' own guidance (fast enough, exact
# stacks) at about two thirds of the compile time, which is what bounds these targets in CI; -g1
# keeps the line tables the reports' stacks need.
SAN_CMAKE  := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
              -DK8SHMIR_BUILD_BENCH=OFF

## check-thread-safety: clang++-14 -Wthread-safety -Werror over src/log (syntax only; the CMake
## target of that name, CMakeLists.txt)
check-thread-safety: configure
	cmake --build $(BUILD_DIR) --target check-thread-safety

## test-asan: AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/; unit + integration
test-asan: deps
	cmake -S . -B $(ASAN_DIR) $(SAN_CMAKE) -DK8SHMIR_SANITIZE=address,undefined
	$(ASAN_ENV) cmake --build $(ASAN_DIR) -j $(JOBS) --target tests-unit tests-integration
	rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	rc=0; $(ASAN_RUN) $(SAN_CTEST) --test-dir $(ASAN_DIR) -L 'unit|integration' $(ASAN_EXCLUDE) \
	  $(CTEST_ARGS) || \
	  rc=$$?; bash scripts/sanitizer-logs.sh $(ASAN_LOGS) || rc=1; exit $$rc

## test-tsan: ThreadSanitizer build in build-tsan/; the unit label
test-tsan: deps
	cmake -S . -B $(TSAN_DIR) $(SAN_CMAKE) -DK8SHMIR_SANITIZE=thread
	$(TSAN_ENV) cmake --build $(TSAN_DIR) -j $(JOBS) --target tests-unit
	rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	rc=0; $(TSAN_RUN) $(SAN_CTEST) --test-dir $(TSAN_DIR) -L unit $(CTEST_ARGS) || rc=$$?; \
	  bash scripts/sanitizer-logs.sh $(TSAN_LOGS) || rc=1; exit $$rc

## demo: 3 etcd members, 3 counter apps, 3 proxies on loopback; a workload; replicas compared.
## Installs and builds only what it runs (the proxy and the counter app; no test dependencies).
demo:
	@bash scripts/install-deps.sh --demo
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DK8SHMIR_BUILD_TESTS=OFF
	cmake --build $(BUILD_DIR) -j $(JOBS) --target k8shmir-proxy counter-app
	BUILD_DIR="$(abspath $(BUILD_DIR))" bash scripts/demo.sh

## bench: build k8shmir-bench, then run it (about 5 minutes): direct / raw log / replicated on
## loopback, a Markdown table and PASS/FAIL per target on stdout, bench/results/latest.{json,png};
## then the retention soak (about 4 minutes, 600,000 requests; bench/results/soak.json), then
## the reads that skip the log (about 2 minutes; bench/results/reads.{json,png}).
## BENCH_ARGS passes more flags (k8shmir-bench --help), e.g. BENCH_ARGS="--rounds 1";
## SOAK_ARGS to the soak, e.g. SOAK_ARGS="--soak-requests 100000"; READS_ARGS to the reads.
BENCH_ARGS ?=
SOAK_ARGS ?=
READS_ARGS ?=
bench: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target k8shmir-bench
	rc=0; $(BUILD_DIR)/bench/k8shmir-bench --results-dir bench/results $(BENCH_ARGS) || rc=$$?; \
	  $(BUILD_DIR)/bench/k8shmir-bench --only-soak --results-dir bench/results $(SOAK_ARGS) || rc=$$?; \
	  $(BUILD_DIR)/bench/k8shmir-bench --only-reads --results-dir bench/results $(READS_ARGS) || rc=$$?; \
	  exit $$rc

## fuzz: build the libFuzzer targets (fuzz/) with clang into build-fuzz/ and run each for
## FUZZ_SECONDS (60) on its corpus fuzz/corpus/<target>/; fails on any crash (input in
## build-fuzz/artifacts/).
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) bash scripts/fuzz.sh

## format / format-check: clang-format (.clang-format) on *.cc *.h under src include test examples bench
format: deps
	@CLANG_FORMAT="$(CLANG_FORMAT)" bash scripts/format.sh

format-check: deps
	@CLANG_FORMAT="$(CLANG_FORMAT)" bash scripts/format.sh --check

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)
