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

.PHONY: all deps configure build test test-unit test-integration test-fault test-e2e demo bench fuzz format format-check clean

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
	rm -rf $(BUILD_DIR)
