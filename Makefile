# cdrq — `make demo` and `make test` work on a machine that has never seen
# this repo: they create .venv, install the pinned tools, build the extension
# once in release mode and reuse that build until a source changes.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BUILT     := $(VENV)/.built
RUST_SRC  := $(shell find rust/src -name '*.rs') Cargo.toml rust/Cargo.toml
PY_SRC    := $(shell find python/cdrq -name '*.py' -o -name '*.pyi' -o -name '*.lark' -o -name py.typed)
# `make wheel`: the abi3 wheel (CPython >= 3.10) in target/wheels, built from
# the cargo artifacts `make build` left (so only packaging when they are
# current), and the wheels of its runtime dependencies (plus sqlglot for the
# README's to_sql example), so tests/test_wheel.py installs it offline.
WHEELS     := target/wheels
WHEEL      := $(WHEELS)/.built
WHEELHOUSE := $(VENV)/wheelhouse
WHEEL_DEPS := $(WHEELHOUSE)/.downloaded
# Release everywhere: the extension ships optimised, and `cargo test
# --release` shares its dependency artifacts instead of compiling them twice.
CARGO_TEST := cargo test --release

.PHONY: help demo test test-rust test-python bench lint format build wheel clean chromium

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PYTHON):
	python3 -m venv $(VENV)

$(INSTALLED): requirements-dev.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The extension is abi3 (_core.abi3.so); a version-tagged one left by an
# older build would shadow it on import.
$(BUILT): $(INSTALLED) $(RUST_SRC) pyproject.toml
	rm -f python/cdrq/_core.cpython-*.so
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release --quiet
	touch $@

build: $(BUILT) ## build the extension (release) into .venv

$(WHEEL): $(BUILT) $(PY_SRC) Cargo.lock README.md
	rm -f $(WHEELS)/cdrq-*.whl
	PATH=$(abspath $(VENV))/bin:$$PATH maturin build --release --quiet --out $(WHEELS)
	touch $@

$(WHEEL_DEPS): requirements-dev.txt | $(INSTALLED)
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --only-binary=:all: --dest $(WHEELHOUSE) \
		$$(grep -E '^(polars|tqdm|sqlglot)==' requirements-dev.txt)
	touch $@

wheel: $(WHEEL) $(WHEEL_DEPS) ## build the abi3 wheel into target/wheels (pip install target/wheels/cdrq-*.whl)

demo: $(BUILT) ## read the bundled samples and a generated 1 M-record archive
	$(PYTHON) examples/demo.py

test: test-rust test-python ## cargo test and pytest

test-rust: $(BUILT)
	$(CARGO_TEST)

# tests/test_report.py opens the HTML report in headless Chromium: Debian's
# package (the distribution's build: no browser download), installed once.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The doctests (python/cdrq's docstrings, docs/, README) and the wheel test
# (a fresh venv, no Rust toolchain on PATH) run in tests/ too.
test-python: $(BUILT) $(WHEEL) $(WHEEL_DEPS) chromium
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
