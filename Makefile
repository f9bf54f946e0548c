# The commands a person types. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck unit format bench clean vendor

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("closeloop needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install  ## simulate a company, run a job with a holdout, measure it
	$(BIN)/closeloop demo

test: install lint typecheck  ## every check: ruff, mypy, the whole pytest suite
	$(BIN)/pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check closeloop tests bench
	$(BIN)/ruff format --check closeloop tests bench

typecheck: install
	$(BIN)/mypy

unit: install  ## the fast tests only
	$(BIN)/pytest tests/unit

format: install
	$(BIN)/ruff format closeloop tests bench
	$(BIN)/ruff check --fix closeloop tests bench

ASSETS := closeloop/web/assets
VENDOR := closeloop/web/static/vendor
vendor:  ## re-vendor the dashboard's browser libraries from npm (the copies are committed)
	cd $(ASSETS) && npm ci --no-audit --no-fund
	mkdir -p $(VENDOR)
	cp $(ASSETS)/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx.min.js
	cp $(ASSETS)/node_modules/vega/build/vega.min.js $(VENDOR)/vega.min.js
	cp $(ASSETS)/node_modules/vega-lite/build/vega-lite.min.js $(VENDOR)/vega-lite.min.js
	cp $(ASSETS)/node_modules/vega-embed/build/vega-embed.min.js $(VENDOR)/vega-embed.min.js
	for package in htmx.org vega vega-lite vega-embed; do \
	  cp $(ASSETS)/node_modules/$$package/LICENSE $(VENDOR)/$$package.LICENSE; done
	rm -rf $(ASSETS)/node_modules

bench: install  ## every benchmark of bench/README.md, one after another (about 45 min; quiet machine)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) closeloop-demo .pytest_cache .mypy_cache .ruff_cache
