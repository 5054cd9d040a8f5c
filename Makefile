# Two commands do all set-up on a fresh machine:
#   make run   -> create .venv if missing, install, run the workflow on config/config.yaml
#   make test  -> create .venv if missing, install, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
CORES ?= 2
CONFIG ?= config/config.yaml
SNAKEMAKE = $(VENV)/bin/snakemake
STAMP = $(VENV)/.installed

.PHONY: run test dryrun lint clean-results

$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

run: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) --configfile $(CONFIG) --printshellcmds --show-failed-logs
	$(SNAKEMAKE) --cores $(CORES) --configfile $(CONFIG) --report results/report.html

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

dryrun: $(STAMP)
	$(SNAKEMAKE) -n --cores $(CORES) --configfile $(CONFIG)

lint: $(STAMP)
	$(SNAKEMAKE) --lint --configfile $(CONFIG)

clean-results:
	rm -rf results .snakemake/metadata .snakemake/incomplete
