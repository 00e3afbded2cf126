# `make run` and `make test` work on a machine that has only Python 3.11+: they build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= sqlite:///data/crm.db
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export DASK_LOGGING__DISTRIBUTED := warning
export MPLBACKEND := Agg

.PHONY: run test install chromium bench clean

install: $(STAMP)

# constraints.txt pins every package (pip freeze of a working install) so a new release cannot break a clean one.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# bytecode of the project's own modules (where PYTHONDONTWRITEBYTECODE is set, every run compiled them again)
	$(BIN)/python -m compileall -q crm matchers scoring merge_rules pipelines review
	touch $(STAMP)

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

run: $(STAMP)
	$(BIN)/crm-dedup demo --db $(DB) --replace
	$(BIN)/crm-dedup run --db $(DB)

test: $(STAMP) chromium
	$(BIN)/pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .prefect data/crm.db data/runs
