# Two commands on a fresh clone: `make demo` and `make test`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ascend-sim demo

test: $(STAMP)
	$(PY) -m pytest -q

# The front-door fuzz test, longer than in `make test` (600 calls there): FUZZ_CALLS calls from
# FUZZ_SEED, each under a FUZZ_CALL_SECONDS time bound, huge meta shapes of every size up to 2**40
# elements (tests/test_fuzz_front_door.py).
FUZZ_CALLS ?= 10000
FUZZ_SEED ?= 1104
fuzz: $(STAMP)
	FUZZ_CALLS=$(FUZZ_CALLS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_HUGE=all $(PY) -m pytest -q -s tests/test_fuzz_front_door.py

bench: $(STAMP)
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) build *.egg-info
