# Two commands do all the set-up on a fresh Linux machine with Python >= 3.10 and pip:
#   make demo   -- creates .venv when missing, synthesises gestures, trains, evaluates, predicts
#   make test   -- creates .venv when missing, runs the whole test suite
# and `make lint` runs ruff (configured in pyproject.toml; installed with the dev extra).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torchvision first: it pins the torch build it was compiled against.
	$(PY) -m pip install --quiet torchvision
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videoseq demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/videoseq bench heads

clean:
	rm -rf $(VENV) demo_out .pytest_cache
