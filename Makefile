# The two commands of the README: `make pretrain` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On these machines torch==2.13.0 (CPU build) installs from a local file in seconds; an
# unpinned torch would pull a multi-GB CUDA build. Elsewhere, an already installed torch
# satisfying the project's range is kept.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: pretrain test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Pretrain a small GPT on the built-in corpus (CPU, a few minutes), save a Hugging Face
# checkpoint, show what it learned, then the built-in suite's zero-shot score card (CORE).
pretrain: $(STAMP)
	$(PY) -m plmlab pretrain --preset gpt-mini --out runs/gpt-mini --overwrite
	$(PY) -m plmlab evaluate --model runs/gpt-mini --suite builtin

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

# The whole speed bench (training step, decode + int8, batched decode, tokenizer, speedrun):
# a Markdown table and JSON in bench/results/ (latest.* and <commit>.*); about 10 minutes.
bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf runs .pytest_cache
