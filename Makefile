# cdrq — `make demo` and `make test` work on a machine that has never seen
# this repo: they create .venv, install the pinned tools, build the extension
# once in release mode and reuse that build until a source changes.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BUILT     := $(VENV)/.built
RUST_SRC  := $(shell find rust/src -name '*.rs') Cargo.toml rust/Cargo.toml
# Release everywhere: the extension ships optimised, and `cargo test
# --release` shares its dependency artifacts instead of compiling them twice.
CARGO_TEST := cargo test --release

.PHONY: help demo test test-rust test-python bench lint format build clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PYTHON):
	python3 -m venv $(VENV)

$(INSTALLED): requirements-dev.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(BUILT): $(INSTALLED) $(RUST_SRC) pyproject.toml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release --quiet
	touch $@

build: $(BUILT) ## build the extension (release) into .venv

demo: $(BUILT) ## read the bundled samples and a generated 1 M-record archive
	$(PYTHON) examples/demo.py

test: test-rust test-python ## cargo test and pytest

test-rust: $(BUILT)
	$(CARGO_TEST)

test-python: $(BUILT)
	$(PYTHON) -m pytest -q tests

bench: $(BUILT) ## benchmarks (set CDRQ_BENCH_MB for the archive size)
	$(PYTHON) -m pytest -q -s benches --benchmark-columns=min,median,max,rounds --benchmark-sort=name

lint: $(INSTALLED) ## rustfmt, clippy, ruff
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples

format: $(INSTALLED) ## rustfmt and ruff format
	cargo fmt
	$(VENV)/bin/ruff format python tests benches examples
	$(VENV)/bin/ruff check --fix python tests benches examples

clean:
	rm -rf $(VENV) target
