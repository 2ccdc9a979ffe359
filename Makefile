# pgtwist developer entry points.  `make demo` and `make test` are all you need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test unit integration bench lint fuzz clean distclean

venv: $(VENV)/.stamp

# editable_mode=compat puts the repo itself on sys.path, which twisted's plugin
# discovery needs to find twisted/plugins/pgtwist_dropin.py
$(VENV)/.stamp: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,fast]' --config-settings editable_mode=compat
	touch $@

demo: venv
	$(BIN)/python -m pgtwist.dev.demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -q -ra

unit: venv
	$(BIN)/pytest -q -ra -m 'not integration'

integration: venv
	$(BIN)/pytest -q -ra -m integration

# Protocol fuzzing at scale: FUZZ_INPUTS in all, 90% to the in-process codec fuzzer and
# 10% to generated client sessions against a real twistd (half per pool mode).
FUZZ_INPUTS ?= 1000000
FUZZ_SEED   ?= 1
FUZZ_OUT    ?= fuzz-out

fuzz: venv
	$(BIN)/python -m tests.fuzz.run --inputs $(FUZZ_INPUTS) --seed $(FUZZ_SEED) --out $(FUZZ_OUT)

bench: venv
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache _trial_temp .demo fuzz-out
	rm -f twistd.pid twistd.log twisted/plugins/dropin.cache plugins/dropin.cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
