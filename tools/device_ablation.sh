#!/usr/bin/env bash
# The ablation of README "Does the method earn its place?": on a GPU machine, the same data subset,
# backbone, budget and CPU share for (a) a plain classifier (--reference none: no bank, no difference),
# (b) 'pair'-only training (--single-share 0, scanned in 'single' mode), (c) the full method. (d) is (c)
# with its bank rebuilt from 5x more real faces than it was trained on, done afterwards on any machine.
# Training uses the groups whose crc32 % 6 == 0 (about 1/6 of the real faces), validation the usual split.
#
#   CARRY=.dev/carry OUTDIR=/tmp/out MINUTES=2.5 bash tools/device_ablation.sh
MINUTES=${MINUTES:-2.5}
WORKERS=${WORKERS:-5}
BACKBONE=${BACKBONE:-tf_efficientnet_lite0}
RUNS=${RUNS:-/tmp/fd_ablation}
source "$(dirname "$0")/device_env.sh"
python3 tools/ablation_subset.py "$CARRY/faces.zip" "$DATA"
declare -A OPTS=([a_plain]="--reference none" [b_pair_only]="--single-share 0" [c_full]="")
for run in a_plain b_pair_only c_full; do
  python3 -m forgerydet train --pairs $DATA/subset.csv --out $RUNS/$run --backbone $BACKBONE \
    --pretrained "$CARRY/$BACKBONE.safetensors" --img-size 224 --epochs 200 --max-minutes "$MINUTES" \
    --batch-size 64 --lr 3e-4 --workers "$WORKERS" --bank-size 4096 --device "$DEVICE" --seed 0 --overwrite ${OPTS[$run]} \
    > $RUNS/$run.log 2>&1 &
done
wait || true
say "training finished"
for run in a_plain b_pair_only c_full; do
  echo "== $run"; grep -v "━" $RUNS/$run.log | grep -E "^(training|epoch .: train|time)|Traceback|Error" | cut -c1-200 | tail -6 || true
  grep -v "━" $RUNS/$run.log | grep -A1 "^epoch .*: train" | tail -2 || true
  [ -f $RUNS/$run/best.safetensors ] && python3 tools/transfer_weights.py export $RUNS/$run/best.safetensors "$OUTDIR/$run"
done
for run in a_plain b_pair_only c_full; do echo "== $run"; grep -v "━" $RUNS/$run.log | tail -40; done > "$OUTDIR/logs.txt"
say "exported: $(ls $OUTDIR | tr '\n' ' ')"
