# hybridc developer entry points. `make demo` and `make test` are all a fresh machine needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Find a working Python 3.10: pyenv's installs first, then python3.10 on PATH
# (a pyenv shim on PATH may exist without a selected 3.10, so each candidate is run).
PYTHON310 := $(shell for c in $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python python3.10; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo "$$c"; break; }; done)

.PHONY: setup demo test test-fast lint test-readme test-all fuzz bench measurements docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py hybridc/runtime/kernels.pyx
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "hybridc needs Python 3.10 (lava-nc and lava-dl support nothing else)."; \
	  echo "Install it (for example 'pyenv install 3.10') and run 'make setup' again."; \
	  exit 1; fi
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/hybridc compile examples/dvs_gesture/model.py --target loihi+jetson -o build/demo --force --verify

test: setup
	$(PY) -m pytest -q

# The tests that do not start Lava's simulator (about a minute): the inner loop.
test-fast: setup
	$(PY) -m pytest -q -m 'not lava'

# Unused names and import order (ruff's F and I rules; settings in pyproject.toml).
lint: setup
	$(PY) -m ruff check hybridc tests benchmarks docs examples

# Every command block of the README, in order, on a fresh clone (minutes; CI runs it).
test-readme: setup
	$(PY) -m pytest -q -s -m slow tests/test_readme.py

# Regenerate the docs' figures and pictures (docs/make_docs.py says what each came from).
docs: setup
	$(PY) docs/make_docs.py

test-all: setup
	$(PY) -m pytest -q -m ''

# Long fuzzing profiles: 1000 random hybrids and 500 random NIR graphs (counts in fuzz_report.json),
# then 1000 mutated build directories (counts in fuzz_builds_report.json).
fuzz: setup
	HYBRIDC_FUZZ_EXAMPLES=1000 HYBRIDC_FUZZ_REPORT=fuzz_report.json $(PY) -m pytest -q tests/test_fuzz.py
	@cat fuzz_report.json
	HYBRIDC_FUZZ_BUILD_EXAMPLES=1000 HYBRIDC_FUZZ_BUILD_REPORT=fuzz_builds_report.json \
	  $(PY) -m pytest -q tests/test_fuzz_builds.py
	@cat fuzz_builds_report.json

# Rerun the benchmarks/ scripts with the arguments docs/measurements.md records and write
# their output back into it (docs/make_measurements.py; hours of CPU: Lava runs).
bench: setup
	$(PY) docs/make_measurements.py --benchmarks

# Every figure in docs/measurements.md: the benchmarks, parity runs, fuzzing, the test suite.
measurements: setup
	$(PY) docs/make_measurements.py

clean:
	rm -rf build .pytest_cache hybridc/runtime/kernels.c hybridc/runtime/kernels.*.so $(STAMP)
