"""Does the report's heatmap show where a face was forged? Held-out self-blends, whose blend masks are known, scored
on the token grid the heatmap is drawn from (7x7 for the shipped model).

Two sets from a pairs.csv's 'val' split (`--n` of each, seeded; for the shipped file, `make shipped-calib`'s pairs,
which it never trained on): its stored whole-face self-blends, and local self-blends (one facial part, off the
crop's centre: `train --sbi-local`) made now from its reals. For each face and map, the AUC of the map's cells at
telling (a) the blended cells (mask > half its peak, area-averaged to the grid) from the untouched ones, and (b)
the blend's boundary band (5-95 % of the peak) from the rest; the mean over faces. Maps:
- attention: the DifferenceAttention saliency that `scan --report` draws;
- Grad-CAM (Selvaraju et al. 2017) on the face tokens: ReLU of the tokens weighted by the mean gradient of the
  'single'-mode logit, and gradient x input per token;
- a fixed centre prior (minus the distance to the grid's centre): what a map that knows nothing about the face
  gets, since a face crop holds its face, and so the blend, in the middle;
- with --occlusion, occlusion sensitivity (Zeiler & Fergus 2014): the drop of the 'single'-mode logit when one
  cell of the face is replaced, by the face's mean colour or by a blurred copy of itself (Gaussian sigma 3 px);
  one model pass per cell (49 per face at 7x7), so a few minutes at --n 200.

    .venv/bin/python bench/heatmaps.py CHECKPOINT --pairs runs/shipped_calib_pairs/pairs.csv [--n 200] [--occlusion]
                                       [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoints_and_pairs_args, figure, finish, print_figures, val_faces  # noqa: E402

MAPS = ("attention", "Grad-CAM", "gradient x input", "centre prior")
OCCLUSION = ("occlusion, mean colour", "occlusion, blurred")


def whole_face(pairs_csv: Path, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fake crop RGB, its blend mask) of n stored 'val' self-blends at random (seeded)."""
    from forgerydet.io import read_image
    from forgerydet.pairs.table import read_pairs

    rows = [r for r in read_pairs(pairs_csv, need_splits=("val",)).rows if r.split == "val" and r.fake is not None]
    found = [(r.fake, r.fake.with_name(r.fake.stem + "_mask.png")) for r in rows]
    found = [(f, m) for f, m in found if m.is_file()]
    if not found:
        sys.exit(f"{pairs_csv}: no 'val' fakes with a stored mask (make them with `pairs --self-blend --val ...`)")
    pick = np.random.default_rng(seed).permutation(len(found))[:n]
    return [(read_image(found[i][0]), cv2.imread(str(found[i][1]), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255)
            for i in sorted(pick)]


def local(pairs_csv: Path, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fake, mask) of n local self-blends (one facial part, `train --sbi-local`) made now from 'val' reals."""
    from forgerydet.io import read_image
    from forgerydet.pairs.sbi import SBIConfig, self_blend

    cfg = SBIConfig(mask_probs=(0.0, 0.0, 0.0, 1.0))
    return [self_blend(read_image(real), lm, np.random.default_rng([seed, j]), cfg)
            for j, (real, lm) in enumerate(val_faces(pairs_csv, n, seed))]


def maps(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each map (B,g,g) for faces x (B,3,S,S) in 'single' mode against the model's bank."""
    from forgerydet.model.attention import DifferenceAttention
    from forgerydet.model.backbone import pooled

    g = model.cfg.grid
    q = model.encode(x).detach().requires_grad_(True)  # (B,N,D)
    ref, _, _ = model.bank.retrieve(pooled(q.detach()), model.cfg.topk, None)
    logits, attn = model.classify(q, ref)
    (grad,) = torch.autograd.grad(logits.sum(), q)  # (B,N,D)
    cam = torch.relu((q * grad.mean(1, keepdim=True)).sum(-1))  # (B,N)
    gxi = torch.relu((q * grad).sum(-1))  # (B,N)
    cy, cx = np.mgrid[0:g, 0:g]
    centre = -((cy - (g - 1) / 2) ** 2 + (cx - (g - 1) / 2) ** 2).astype(np.float64)
    B = x.shape[0]
    return {"attention": DifferenceAttention.saliency(attn).reshape(B, g, g).detach().numpy(),
            "Grad-CAM": cam.reshape(B, g, g).detach().numpy(), "gradient x input": gxi.reshape(B, g, g).detach().numpy(),
            "centre prior": np.broadcast_to(centre, (B, g, g))}


def occlusion(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each occlusion map (B,g,g): the 'single'-mode logit of each face minus its logit with one grid cell replaced
    by the face's mean colour, or by the same cell of the face blurred (sigma 3 px)."""
    g, S = model.cfg.grid, x.shape[-1]
    edges = np.linspace(0, S, g + 1).round().astype(int)
    out = {name: np.zeros((x.shape[0], g, g)) for name in OCCLUSION}
    with torch.inference_mode():
        base = model(x, "single")["logits"].float()  # (B,)
        for b in range(x.shape[0]):
            face = x[b].numpy().transpose(1, 2, 0)  # (S,S,3)
            for name, alt in zip(OCCLUSION, (np.broadcast_to(face.reshape(-1, 3).mean(0), face.shape),
                                             cv2.GaussianBlur(face, (0, 0), 3))):
                views = []
                for i in range(g):
                    for j in range(g):
                        v = face.copy()
                        rows, cols = slice(edges[i], edges[i + 1]), slice(edges[j], edges[j + 1])
                        v[rows, cols] = alt[rows, cols]
                        views.append(v)
                batch = torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).copy())  # (g*g,3,S,S)
                out[name][b] = (base[b] - model(batch, "single")["logits"].float()).reshape(g, g).numpy()
    return out


def main() -> None:
    a = checkpoints_and_pairs_args(__doc__, 200, "blended faces to score",
                                   flags={"--occlusion": "also occlusion maps (49 model passes a face at 7x7)"})
    names = MAPS + (OCCLUSION if a.occlusion else ())
    from sklearn.metrics import roc_auc_score

    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.model.inputs import resize_face, to_tensor

    torch.manual_seed(a.seed)
    jitter = np.random.default_rng(a.seed)  # breaks ties in the flat centre prior the same way for every map
    figures, res = [], {"n": a.n, "seed": a.seed, "checkpoints": {}}
    sets = {"whole-face blends": whole_face(Path(a.pairs), a.n, a.seed), "local blends": local(Path(a.pairs), a.n, a.seed)}
    for ck in a.checkpoints:
        model = load_checkpoint(ck, "cpu").model.eval()
        g, S = model.cfg.grid, model.img_size
        res["checkpoints"][str(ck)] = row = {}
        for set_name, items in sets.items():
            auc: dict[str, dict[str, list[float]]] = {m: {"blended": [], "boundary": []} for m in names}
            for i in range(0, len(items), 16):
                batch = items[i : i + 16]
                x = torch.stack([to_tensor(resize_face(f, S)) for f, _ in batch])
                got = maps(model, x) | (occlusion(model, x) if a.occlusion else {})
                for j, (_, mask) in enumerate(batch):
                    cells = cv2.resize(mask / max(float(mask.max()), 1e-6), (g, g), interpolation=cv2.INTER_AREA).ravel()
                    noise = 1e-9 * jitter.random(g * g)
                    truths = {"blended": cells > 0.5, "boundary": (cells > 0.05) & (cells < 0.95)}
                    for name, m in got.items():
                        for kind, t in truths.items():
                            if 0 < t.sum() < t.size:
                                auc[name][kind].append(float(roc_auc_score(t, m[j].ravel() + noise)))
            row[set_name] = {}
            for name in names:
                row[set_name][name] = {kind: float(np.mean(v)) for kind, v in auc[name].items()} | {
                    f"faces_{kind}": len(v) for kind, v in auc[name].items()}
                for kind in ("blended", "boundary"):
                    r = row[set_name][name]
                    figures.append(figure(f"{Path(ck).name}, {set_name}: {name} -> {kind} cells", r[kind], "AUC",
                                          note=f"mean over {r['faces_' + kind]} held-out faces, {g}x{g} grid"))
    if not a.json:
        print_figures(figures)
    finish(res, figures, a.json)


if __name__ == "__main__":
    main()
