# Developer and CI entry points. `make test` is all a fresh clone needs (cargo + python3).
PYTHON ?= python3
VENV := .venv
# Touched after a successful install, so a second `make venv` does nothing until
# requirements-dev.txt changes.
VENV_STAMP := $(VENV)/.requirements-dev.stamp

.PHONY: venv test lint bench bench-copy bench-ingest bench-cold-start

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The tests find moto_server in .venv by themselves (tests/support/mod.rs).
test: venv
	cargo test --all-targets

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# Benchmarks (issue 5, part 3): `make bench` runs them all; each prints a markdown table.
bench: bench-ingest bench-cold-start bench-copy

# Copies a generated 1 GiB file into moto's S3; prints throughput and peak RSS (BENCH_MIB=n for another size).
bench-copy: venv
	cargo bench --bench copy_memory

# Benchmarks (issue 5, part 3). Each prints a markdown table and runs for well under two
# minutes once built; they start moto from .venv themselves. Timings need a quiet machine.
bench-ingest: venv
	cargo bench --bench ingest

# The plain release build is what Lambda runs, so that is the binary measured. It gets its
# own target directory because `cargo bench` relinks target/release/webhook with the
# dev-dependencies' features; the bench refuses a binary older than the sources.
LAMBDA_TARGET := target/lambda
bench-cold-start: venv
	cargo build --release --bin webhook --target-dir $(LAMBDA_TARGET)
	WEBHOOK_BIN=$(LAMBDA_TARGET)/release/webhook cargo bench --bench cold_start
