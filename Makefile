# Two commands do everything on a fresh machine:
#   make book     build the HTML book from the committed, stamped outputs (minutes; creates .venv
#                 from requirements.txt on first use)
#   make test     run every test: nodelib unit tests, book checks (including the outputs' nodelib
#                 stamps), nbval re-executing every chapter
# and one more for authors:
#   make outputs  execute chapters in place and stamp them with the nodelib that produced them
#                 (NB=chapters/NN_slug.ipynb for one chapter)
# See README.md.

VENV           ?= .venv
PYTHON3        ?= python3
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=

PY    := $(VENV)/bin/python
PIP   := $(PY) -m pip
STAMP := $(VENV)/.deps-installed

.PHONY: book test lint outputs check-outputs browser-check sync check-sync env clean help

help:
	@echo "make book           build the book into _build/html from the committed outputs"
	@echo "make test           run all tests (lint, then pytest: unit tests + book checks + nbval)"
	@echo "make lint           ruff and mypy on nodelib/ (configured in pyproject.toml)"
	@echo "make outputs        execute every chapter in place and stamp it (NB=... for one)"
	@echo "make browser-check  check the built book in headless Chromium"
	@echo "make sync           re-stamp Colab badges and setup cells from _config.yml"
	@echo "make clean          remove _build and caches"

# The environment: torch first (pinned), then the requirements, then nodelib itself (editable).
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -r requirements.txt
	$(PIP) install -e .
	@touch $@

env: $(STAMP)

book: $(STAMP)
	@start=$$(date +%s); \
	$(VENV)/bin/jupyter-book build . -W -n --keep-going || exit $$?; \
	echo "Book built in $$(( $$(date +%s) - start )) s:"; \
	echo "  $(CURDIR)/_build/html/index.html"

test: $(STAMP) lint
	$(VENV)/bin/pytest

# ruff and mypy on the package (configured in pyproject.toml; versions pinned in requirements.txt)
lint: $(STAMP)
	$(VENV)/bin/ruff check nodelib
	$(VENV)/bin/mypy

NB ?=
outputs: $(STAMP)
	$(PY) tools/outputs.py $(NB)

check-outputs: $(STAMP)
	$(PY) tools/outputs.py --check

browser-check: $(STAMP)
	$(PY) tools/browser_check.py --html _build/html

sync: $(STAMP)
	$(PY) tools/sync_colab.py

check-sync: $(STAMP)
	$(PY) tools/sync_colab.py --check

clean:
	rm -rf _build .pytest_cache .jupyter_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
