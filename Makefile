# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PY    ?= python3
VENV  ?= .venv
TORCH ?= torch==2.13.0
BIN   := $(VENV)/bin
DATA  ?= data
RUN   ?= runs/demo
STUDY ?= runs/study
SHARED ?= ../shared/data

.PHONY: setup demo study test test-slow bench mutate clean chromium

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch only when missing: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Train the cpu preset on tiny-shakespeare with attention tracking, then measure every checkpoint
# (weight spectra, attention probe with head-type scores), sample, analyse and draw the report.
demo: setup
	$(BIN)/attnlife prepare shakespeare_char --out $(DATA) \
	  $(if $(wildcard $(SHARED)/shakespeare/input.txt),--source $(SHARED)/shakespeare/input.txt,)
	$(BIN)/attnlife train --preset cpu --dataset shakespeare_char --data-dir $(DATA) --out $(RUN)
	$(BIN)/attnlife spectra $(RUN)
	$(BIN)/attnlife track $(RUN)
	$(BIN)/attnlife sample $(RUN) --tokens 200
	$(BIN)/attnlife analyze $(RUN)
	$(BIN)/attnlife report $(RUN) --quiet
	@echo "results: $(RUN)  (python: attnlife.load_run('$(RUN)').metrics() / .spectra() / .analysis())"
	@echo "dashboard: $(RUN)/report/dashboard.html"

# The lifecycle study: the demo's model at peak rate 3e-3 (decaying to 3e-4) instead of 1e-3, where
# a previous-token head emerges (at 1e-3 only local heads do in 2000 steps; docs/analysis.md).
study: setup
	$(BIN)/attnlife prepare shakespeare_char --out $(DATA) \
	  $(if $(wildcard $(SHARED)/shakespeare/input.txt),--source $(SHARED)/shakespeare/input.txt,)
	$(BIN)/attnlife train --preset cpu --dataset shakespeare_char --data-dir $(DATA) --out $(STUDY) \
	  --lr 3e-3 --set train.min_lr=3e-4
	$(BIN)/attnlife spectra $(STUDY)
	$(BIN)/attnlife track $(STUDY)
	$(BIN)/attnlife sample $(STUDY) --tokens 200
	$(BIN)/attnlife analyze $(STUDY)
	$(BIN)/attnlife report $(STUDY) --quiet
	@echo "dashboard: $(STUDY)/report/dashboard.html"

test: setup chromium
	$(BIN)/python -m pytest -q

# The dashboard's browser test drives Debian's Chromium: installed here when missing and root.
chromium:
	@test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  else echo "make test needs Chromium for the dashboard browser test: run 'sudo apt-get install chromium'" >&2; \
	  exit 1; fi; }

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# Mutation testing of the modules in tests/mutation/modules.toml (15.7 min on 2 quiet cores; not part
# of `make test`). MODULES narrows it: make mutate MODULES="attnlife/measures.py attnlife/analysis".
MODULES ?=
mutate: setup
	$(BIN)/python tests/mutation/run.py $(MODULES)

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(RUN) mutants
