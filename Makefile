# Developer and CI entry points. `make test` is all a fresh clone needs (cargo + python3).
PYTHON ?= python3
VENV := .venv
# Touched after a successful install, so a second `make venv` does nothing until
# requirements-dev.txt changes.
VENV_STAMP := $(VENV)/.requirements-dev.stamp

.PHONY: venv test lint bench-copy

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

# Copy engine vs its floor (slower of a plain download and a plain upload to moto) for 10 MiB,
# 100 MiB and 1 GiB: one markdown table of throughput and peak RSS, a few minutes on 2 cores.
# BENCH_MIB=10,100 for other sizes, BENCH_ROUNDS=n for n runs of each.
bench-copy: venv
	cargo bench --bench copy_memory
