# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PY    ?= python3
VENV  ?= .venv
TORCH ?= torch==2.13.0
BIN   := $(VENV)/bin
DATA  ?= data
RUN   ?= runs/demo
SHARED ?= ../shared/data

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch only when missing: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Train the cpu preset on tiny-shakespeare with attention tracking; prints where results are.
demo: setup
	$(BIN)/attnlife prepare shakespeare_char --out $(DATA) \
	  $(if $(wildcard $(SHARED)/shakespeare/input.txt),--source $(SHARED)/shakespeare/input.txt,)
	$(BIN)/attnlife train --preset cpu --dataset shakespeare_char --data-dir $(DATA) --out $(RUN)
	$(BIN)/attnlife spectra $(RUN)
	$(BIN)/attnlife sample $(RUN) --tokens 200
	@echo "results: $(RUN)  (python: attnlife.load_run('$(RUN)').metrics() / .spectra(); attnlife summary $(RUN))"

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(RUN)
