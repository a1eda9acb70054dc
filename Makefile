# spstudy: two commands do all set-up on a fresh machine with Python 3.11+ and make.
#   make packs   every borough's evaluation pack (and NCL's) from the shipped data into outputs/
#   make test    the whole test suite, notebooks included
# Both create the pinned environment in .venv first if it is missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spstudy-installed
JOBS   ?= 2
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg
# One BLAS thread per process: packs and tests already run two processes on two cores, and
# multithreaded BLAS in each made the model fits 3-4x slower under that load.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1

.PHONY: env packs test test-fast lint lab notebooks lock schema browser benchmark synth clean help

help:
	@echo "make packs | make test | make lab | make benchmark | make synth | make lock | make clean"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "spstudy needs Python 3.11 or newer (found %s)" % sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name spstudy --display-name "spstudy (Python 3)" >/dev/null
	touch $(STAMP)

env: $(STAMP)

packs: env
	$(BIN)/spstudy packs --jobs $(JOBS) --out outputs
	$(BIN)/spstudy audit outputs

test: env browser lint
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

lint: env
	$(BIN)/ruff check spstudy tests benchmarks notebooks .ci

test-fast: env
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow and not browser"

# Headless Chromium for the browser test of a pack (Debian's package; needs root, as in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: chromium not installed; the browser test will be skipped"; }

notebooks: env
	$(BIN)/jupytext --sync notebooks/*.py >/dev/null 2>&1 || $(BIN)/jupytext --set-formats ipynb,py:percent notebooks/*.py

lab: notebooks
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

synth: env
	$(BIN)/spstudy synth --seed 7 --out data/extracts --truth data/truth

schema: env
	$(BIN)/spstudy params --schema > parameters/schema.json

benchmark: env
	$(BIN)/python benchmarks/run.py

# Re-pin every dependency after changing pyproject.toml (then commit requirements.lock and environment.yml).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e ".[test]"
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^spstudy' > requirements.lock
	rm -rf .venv-lock
	$(PYTHON) .ci/pin_environment.py
	@echo "requirements.lock and environment.yml updated (tests/unit/test_environment.py checks they agree)"

clean:
	rm -rf outputs/*/ .pytest_cache
