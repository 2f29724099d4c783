# The two commands of the README, and a few more. Each target creates and reuses .venv by itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick

.PHONY: reports screenshots test lab bench sync clean-runs

# Installed once, again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $@

reports: $(VENV)/.installed   ## run every notebook headless (PROFILE=quick) and write reports/
	$(PY) -m helpers.runner --profile $(PROFILE)

screenshots: $(VENV)/.installed   ## docs/index.png and docs/report-page.png from reports/$(PROFILE)/ (after make reports)
	$(PY) -m helpers.runner --screenshots docs --profile $(PROFILE)

test: $(VENV)/.installed      ## the test suite (smoke-profile notebooks included)
	$(PY) -m pytest

lab: $(VENV)/.installed       ## open the notebooks in JupyterLab with the same environment and kernel
	$(PY) -m helpers.runner --install-kernel
	JUPYTER_PREFER_ENV_PATH=1 $(PY) -m jupyter lab notebooks/

bench: $(VENV)/.installed     ## benchmark suite: prints a table, writes benchmarks/results/latest.json
	$(PY) -m benchmarks.run

clean-runs:                   ## forget every trained run (they retrain on the next use)
	rm -rf "$${HELPERS_DATA:-data}/runs"   # HELPERS_DATA moves data/ (see README)
