# Developer and CI entry points. `make test` is all a fresh clone needs (cargo + python3);
# `make run` / `make demo` add cargo-lambda, the template targets the AWS SAM CLI. Every tool
# comes from PyPI into a project-local virtualenv; nothing is installed system-wide.
PYTHON ?= python3
VENV := .venv
# Touched after a successful install, so a second `make venv` does nothing until
# requirements-dev.txt changes.
VENV_STAMP := $(VENV)/.requirements-dev.stamp
# cargo-lambda (and zig) for local runs and Lambda builds.
LAMBDA_VENV := .venv-lambda
LAMBDA_STAMP := $(LAMBDA_VENV)/.requirements.stamp
# AWS SAM CLI and cfn-lint: template checks and `sam build`.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.requirements.stamp

# `make demo MODE=stream` runs the copier from the table's stream instead of inline copies.
MODE ?= inline
DEMO_ARGS ?=
# cargo-lambda and sam find each other, cargo and zig on PATH; no telemetry leaves the machine.
TOOLS_PATH := $(CURDIR)/$(LAMBDA_VENV)/bin:$(CURDIR)/$(SAM_VENV)/bin:$(PATH)
SAM := env PATH="$(TOOLS_PATH)" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

.PHONY: venv venv-lambda venv-sam test lint lint-test run demo show \
	lambda-build template-check sam-binaries sam-build bench bench-copy bench-ingest bench-cold-start \
	bench-stream

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv-lambda: $(LAMBDA_STAMP)

$(LAMBDA_STAMP): requirements-lambda.txt
	$(PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-lambda.txt
	touch $@

venv-sam: $(SAM_STAMP)

$(SAM_STAMP): requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

# The tests find moto_server in .venv by themselves (tests/support/mod.rs).
test: venv
	cargo test --all-targets

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# `make lint` and `make test` in one build, for CI: the same lints and `-D warnings`, but
# clippy-driver is the workspace's rustc wrapper (as `cargo clippy` sets it up for itself) in
# the test build, instead of a `cargo clippy` that type-checks every dependency a second time
# (check mode) only to lint this crate. Dependencies are compiled once, by plain rustc.
CLIPPY_DRIVER = $(shell rustc --print sysroot)/bin/clippy-driver
lint-test: venv
	cargo fmt --check
	RUSTC_WORKSPACE_WRAPPER="$(CLIPPY_DRIVER)" \
		CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" cargo test --all-targets

# Benchmarks (figures in docs/benchmarks.md): `make bench` runs them all (each prints its own detailed
# tables as it goes) and ends with one table of every headline figure, its floor and target.
BENCH_SUMMARY := $(CURDIR)/target/bench-summary.jsonl
bench: venv venv-lambda
	mkdir -p target
	rm -f $(BENCH_SUMMARY)
	BENCH_SUMMARY=$(BENCH_SUMMARY) $(MAKE) --no-print-directory bench-ingest bench-cold-start bench-copy bench-stream
	$(PYTHON) scripts/bench_summary.py $(BENCH_SUMMARY)

# Copy engine vs its floor (slower of a plain download and a plain upload of the same bytes
# to moto with as many parts in flight) and the boto3 peer (benches/peer_boto3.py, same moto)
# for 10 MiB, 100 MiB and 1 GiB: one markdown table of throughput and peak RSS, then a 1-byte
# copy round trip by round trip; a few minutes on 2 cores. BENCH_MIB=10,100 for other sizes,
# BENCH_ROUNDS=n for n runs of each, BENCH_PARTS_IN_FLIGHT / BENCH_PART_MIB for other parts.
bench-copy: venv
	cargo bench --bench copy_memory

# Callback -> file stored through the stream path on the local stack (scripts/local_stack.py:
# moto, the functions under `cargo lambda watch`, the stream pump): BENCH_STREAM_TASKS (10)
# distinct 5 MiB files, one at a time, p50/p95 next to the copier's own elapsed_ms. A debug
# build, as `make demo` runs; BENCH_STREAM_RELEASE=1 for a release one.
bench-stream: venv venv-lambda
	$(VENV)/bin/python scripts/bench_stream.py

# Ingest and cold start print a markdown table each, start moto from .venv themselves and
# run for under two minutes once built. Timings need a quiet machine.
bench-ingest: venv
	cargo bench --bench ingest

# The plain release build is what Lambda runs, so that is the binary measured. It gets its
# own target directory because `cargo bench` relinks target/release/webhook with the
# dev-dependencies' features; the bench refuses a binary older than the sources.
COLD_START_TARGET := target/cold-start
bench-cold-start: venv
	cargo build --release --bin webhook --target-dir $(COLD_START_TARGET)
	WEBHOOK_BIN=$(COLD_START_TARGET)/release/webhook cargo bench --bench cold_start

# The local stack: moto, a stand-in for MusicGPT's buckets, the functions under
# `cargo lambda watch` (inline copies); prints the webhook URL and a curl line. Ctrl-C stops it.
run: venv venv-lambda
	$(VENV)/bin/python scripts/run.py --mode $(MODE)

# The same, end to end by itself: posts a whole Music AI task, waits for the copies, prints
# items and objects with SHA-256, exits non-zero if anything is missing. Leaves nothing running.
demo: venv venv-lambda
	$(VENV)/bin/python scripts/demo.py --mode $(MODE) $(DEMO_ARGS)

# The items and objects of the stack `make run` is running (from another terminal).
show: venv
	$(VENV)/bin/python scripts/show.py

# Release binaries for Lambda (Graviton): target/lambda/{webhook,copier}/bootstrap.
lambda-build: venv-lambda
	rustup target add aarch64-unknown-linux-gnu
	env PATH="$(TOOLS_PATH)" cargo lambda build --release --arm64

# Offline checks of template.yaml: SAM's own validation with its linter, and cfn-lint.
template-check: venv-sam
	$(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml

# The artifacts `sam deploy` uploads (.aws-sam/build), built by cargo-lambda with no Docker.
# `sam build` runs `cargo lambda build --release --arm64 --bin <name>` once per function, one
# after the other, and each links its binary (thin LTO, codegen-units=1) by itself. So
# sam-binaries first builds the functions' binaries (BuildProperties: Binary in template.yaml)
# in one cargo-lambda run, which links them in parallel; sam's runs, with the same flags and
# target directory, then find them fresh and only copy target/lambda/<name>/bootstrap
# (check_artifacts.py says so, or warns that sam compiled one again). CI starts sam-binaries
# early, in the background (.ci/run).
SAM_STAMP_BUILT := target/lambda/.built-before-sam-build
sam-binaries: venv-lambda
	rustup target add aarch64-unknown-linux-gnu
	bins="$$($(PYTHON) scripts/check_artifacts.py --binaries)" && \
		env PATH="$(TOOLS_PATH)" cargo lambda build --release --arm64 $$(printf -- '--bin %s ' $$bins)

sam-build: venv-sam sam-binaries
	touch $(SAM_STAMP_BUILT)
	$(SAM) build
	$(PYTHON) scripts/check_artifacts.py --built-before $(SAM_STAMP_BUILT)
