"""Unzip the training pairs (see device_train.sh) and write subset.csv: the train rows of the groups whose
crc32 % 6 == 0 (about 1/6 of the real faces) plus every validation row; rest.csv: the other train rows
(the '5x more real faces' for ablation (d)) plus the validation rows.

    python tools/ablation_subset.py faces.zip DATA_DIR      (or a folder that holds pairs.csv already)
"""

import argparse
import csv
import zipfile
import zlib
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("src", type=Path, help="faces.zip of tools/device_carry.py, or a folder holding pairs.csv")
ap.add_argument("data", type=Path, help="the folder to unzip into; subset.csv and rest.csv are written there")
args = ap.parse_args()
src, data = args.src, args.data
if src.suffix == ".zip" and not src.is_file():
    ap.error(f"{src}: no such file")
if not (data / "pairs.csv").is_file() and src.suffix != ".zip":
    ap.error(f"{src}: not a .zip, and {data} holds no pairs.csv")
if src.suffix == ".zip":
    zipfile.ZipFile(src).extractall(data)
rows = list(csv.DictReader(open(data / "pairs.csv")))
val = [r for r in rows if r["split"] != "train"]
train = [r for r in rows if r["split"] == "train"]
inside = [r for r in train if zlib.crc32(r["group"].encode()) % 6 == 0]
outside = [r for r in train if zlib.crc32(r["group"].encode()) % 6 != 0]
for name, part in (("subset.csv", inside), ("rest.csv", outside)):
    with open(data / name, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(part + val)
print(f"subset: {len(inside)} train rows ({len({r['group'] for r in inside})} groups); rest: {len(outside)}; val: {len(val)}")
