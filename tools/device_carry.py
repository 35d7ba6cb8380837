"""Pack what tools/device_train.sh and tools/device_ablation.sh read from $CARRY, within the device machine's carry
limit (64 MiB in all): faces.zip, the faces of a pairs.csv as WebP with the pairs.csv beside them, and each
backbone's packaged ImageNet weights as an fp16 safetensors file.

    python tools/device_carry.py PAIRS.csv OUT_DIR [--max-mb 20] [--backbones tf_efficientnet_lite0,...] [--quality 90]

Where the faces do not fit in --max-mb, whole groups (people, videos) are taken in a seeded random order, each one
that still fits, so the splits keep about their shares; the rows kept and the size are printed. Train rows whose
fakes are made online carry their real face only, as in the pairs.csv. Every file in the zip is named by its row,
so two folders' crops of the same name cannot collide. `.dev/` is git-ignored, so a carry there is never
committed: name it in the device call's carry list.

A dry run on this CPU before a device session (the smoke test, a minute of training, the epoch end and the export;
3.3 min for lite0 on 2 cores, 9 min for DINOv2 ViT-S/14 with TUNE=norm, 2026-12-06):
    python tools/device_carry.py runs/base_pairs/pairs.csv .dev/carry --max-mb 20 --backbones tf_efficientnet_lite0
    PATH=$PWD/.venv/bin:$PATH CARRY=.dev/carry OUTDIR=/tmp/out MINUTES=1 WORKERS=1 DEVICE=cpu \\
        BACKBONES=tf_efficientnet_lite0 bash tools/device_train.sh
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.io import atomic_write, read_image
from forgerydet.pairs.table import PAIRS_COLUMNS, format_landmarks, read_pairs

CARRY_LIMIT = 64 * 2**20  # what the device machine takes with a command (the `run` tool's carry)
ZIP_ENTRY = 100  # bytes a stored zip entry adds besides its data and twice its name (local + central header)


def webp(path: Path, quality: int) -> bytes:
    ok, buf = cv2.imencode(".webp", cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ForgeryDetError(f"cannot encode {path} as WebP")
    return buf.tobytes()


def pack_faces(pairs_csv: Path, out: Path, max_bytes: int, quality: int = 90, seed: int = 0) -> dict:
    """Write out (a zip: pairs.csv + faces/*.webp) with whole groups at random until max_bytes; returns counts."""
    table = read_pairs(pairs_csv, need_splits=())
    groups: dict[str, list] = {}
    for r in table.rows:
        groups.setdefault(r.group, []).append(r)
    order = list(np.random.default_rng(seed).permutation(sorted(groups)))
    rows, files, size = [], {}, 0
    for g in order:
        encoded, new_rows = {}, []
        for r in groups[g]:
            k = len(rows) + len(new_rows)
            real = f"faces/{k:06d}_r.webp"
            encoded[real] = webp(r.real, quality)
            fake = ""
            if r.fake is not None:
                fake = f"faces/{k:06d}_f.webp"
                encoded[fake] = webp(r.fake, quality)
            new_rows.append({"real": real, "fake": fake, "group": r.group, "split": r.split, "method": r.method,
                             "landmarks": format_landmarks(r.landmarks)})
        extra = sum(len(b) + ZIP_ENTRY + 2 * len(n) for n, b in encoded.items()) \
            + sum(len(",".join(map(str, r.values()))) + 1 for r in new_rows)  # and the rows' lines of pairs.csv
        if size + extra > max_bytes:
            continue  # a smaller group later may still fit
        rows += new_rows
        files |= encoded
        size += extra
    if not rows:
        raise ForgeryDetError(f"no group of {pairs_csv} fits in {max_bytes / 2**20:.1f} MB")
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=PAIRS_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # WebP does not compress further
        z.writestr("pairs.csv", text.getvalue())
        for name, data in files.items():
            z.writestr(name, data)
    atomic_write(out, buf.getvalue())
    return {"rows": len(rows), "of_rows": len(table.rows), "groups": len({r["group"] for r in rows}),
            "of_groups": len(groups), "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
            "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-mb", type=float, default=20.0, help="faces.zip at most this many MiB (default 20)")
    ap.add_argument("--backbones", default="tf_efficientnet_lite0,tf_efficientnet_lite2")
    ap.add_argument("--quality", type=int, default=90, help="WebP quality (default 90)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from forgerydet.model.weights import export_packaged

    try:
        a.out.mkdir(parents=True, exist_ok=True)
        got = pack_faces(a.pairs, a.out / "faces.zip", int(a.max_mb * 2**20), a.quality, a.seed)
        print(f"faces.zip: {got['rows']} of {got['of_rows']} rows, {got['groups']} of {got['of_groups']} groups "
              f"{got['splits']}, {got['bytes'] / 2**20:.1f} MiB")
        for name in filter(None, a.backbones.split(",")):
            path = a.out / f"{name}.safetensors"
            export_packaged(name, path, "fp16")
            print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    except ForgeryDetError as e:
        raise SystemExit(f"error: {e}") from None
    total = sum(p.stat().st_size for p in a.out.iterdir() if p.is_file())
    print(f"carry {a.out}: {total / 2**20:.1f} MiB in all (the device machine takes {CARRY_LIMIT / 2**20:.0f} MiB)")
    if total > CARRY_LIMIT:
        raise SystemExit(f"error: {a.out} is over the carry limit: lower --max-mb or carry fewer --backbones")


if __name__ == "__main__":
    main()
