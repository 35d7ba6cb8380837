#!/usr/bin/env bash
# How the shipped default model (models/forgerydet-base.safetensors) was trained: on a one-GPU machine,
# from a zip of the self-blend pairs folder made by `make model-data` (WebP crops) and the packaged ImageNet
# weights as fp16 safetensors files (what `forgerydet weights export NAME FILE --dtype fp16`
# writes). Trains the candidate backbones side by side under one wall-clock budget (the CPU data pipeline is
# shared, so each gets half of it), then exports each run's best checkpoint as fp16 weight files small enough
# to copy back (tools/transfer_weights.py).
#
#   python tools/device_carry.py PAIRS.csv .dev/carry --max-mb 20 --backbones tf_efficientnet_lite0,tf_efficientnet_lite2
#   CARRY=.dev/carry OUTDIR=/tmp/out MINUTES=7 bash tools/device_train.sh
# (tools/device_carry.py packs $CARRY within the machine's 64 MiB; its docstring has a CPU dry run of this script.)
# TUNE=norm trains only the backbone's normalisation layers (the LN-tuning recipe for a ViT such as
# vit_small_patch14_dinov2; `train --tune`), TUNE=none freezes the backbone whole; the default trains all of it.
# Mind the 64 MiB carry: DINOv2 ViT-S/14 alone is ~44 MB as fp16, so its faces.zip must stay under ~20 MB.
# Files come back at most 16 MiB each and 64 MiB together: with TUNE=norm or none the export leaves out the
# backbone tensors still equal to the carried weights (`transfer_weights.py export --by-reference`: 0.27 MB for an
# LN-tuned ViT-S/14 instead of 2 x 43 MB), and `import ... --reference packaged` puts them back here.
# PAIR_REF=other or reaugmented: `train --pair-reference` (misaligned 'pair' references for both classes; the
# default `source` keeps the alignment cue README "Training so that scanning works" measures).
MINUTES=${MINUTES:-7}
TUNE=${TUNE:-all}
PAIR_REF=${PAIR_REF:-source}
WORKERS=${WORKERS:-7}
BACKBONES=${BACKBONES:-"tf_efficientnet_lite0 tf_efficientnet_lite2"}
RUNS=${RUNS:-/tmp/fd_runs}
source "$(dirname "$0")/device_env.sh"

say "machine: $(nvidia-smi -L 2>/dev/null | head -1); $(nproc) cores"
python3 - "$CARRY/faces.zip" "$DATA" <<'PY'
import csv, io, sys, zipfile
import cv2, numpy as np
z = zipfile.ZipFile(sys.argv[1]); z.extractall(sys.argv[2])
first = next(n for n in z.namelist() if n.endswith(".webp"))
ok = cv2.imdecode(np.frombuffer(z.read(first), np.uint8), cv2.IMREAD_COLOR) is not None
print("unzipped", len(z.namelist()), "files; OpenCV decodes WebP:", ok)
if not ok:
    sys.exit("this OpenCV cannot decode WebP")
rows = list(csv.DictReader(open(f"{sys.argv[2]}/pairs.csv")))
small = [r for r in rows if r["split"] == "train"][:64] + [r for r in rows if r["split"] == "val"][:32]
with open(f"{sys.argv[2]}/smoke.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(small)
PY
python3 -c "import torch, timm, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'cv2', cv2.__version__)"

EXPORT_BY=$([ "$TUNE" = all ] || echo --by-reference)  # frozen backbone tensors stay behind (see above)
SMOKE=${BACKBONES%% *}  # the first backbone: the carry holds its weights (tools/device_carry.py --backbones)
say "smoke test ($SMOKE): 4 steps + epoch end (bank rebuild, validation, calibration, checkpoint) on 96 rows"
python3 -m forgerydet train --pairs $DATA/smoke.csv --out $RUNS/smoke --backbone "$SMOKE" \
  --pretrained "$CARRY/$SMOKE.safetensors" --img-size 224 --epochs 1 --steps-per-epoch 4 \
  --batch-size 16 --workers 4 --bank-size 256 --device "$DEVICE" --tune "$TUNE" --overwrite 2>&1 | grep -v "━" | tail -4
python3 tools/transfer_weights.py export $RUNS/smoke/best.safetensors /tmp/smoke_export $EXPORT_BY
say "smoke test passed"

for bb in $BACKBONES; do
  python3 -m forgerydet train --pairs $DATA/pairs.csv --out $RUNS/$bb --backbone $bb \
    --pretrained "$CARRY/$bb.safetensors" --img-size 224 --epochs 100 --max-minutes "$MINUTES" \
    --batch-size 64 --lr 3e-4 --workers "$WORKERS" --bank-size 4096 --device "$DEVICE" --seed 0 --tune "$TUNE" --pair-reference "$PAIR_REF" --overwrite \
    > $RUNS/$bb.log 2>&1 &
done
wait || true
say "training finished"
for bb in $BACKBONES; do
  echo "== $bb"; grep -v "━" $RUNS/$bb.log | grep -E "^(training|epoch|time|checkpoints|Error|error)|Traceback|Error" | cut -c1-400 || true
  if [ -f $RUNS/$bb/best.safetensors ]; then
    python3 tools/transfer_weights.py export $RUNS/$bb/best.safetensors "$OUTDIR/$bb" $EXPORT_BY
  fi
done
for bb in $BACKBONES; do grep -v "━" $RUNS/$bb.log | tail -30; done > "$OUTDIR/logs.txt"
say "exported: $(ls $OUTDIR | tr '\n' ' ')"
