"""Does the detector use its memory bank, and would another retrieval serve it better? (issue 10, "why")

On held-out real forgeries (../shared/data/faces: the FF++ crops, 20 real / 20 Deepfakes, and the DFDC crops,
11 / 6; never trained on), one backbone pass per face, then the same head with six references:

- nearest:  what `scan` does: the online encoder's pooled query, cosine top-k over the bank (k = the model's);
- key:      the same top-k, but queried with the EMA key encoder (the encoder that wrote the bank);
- random:   k random filled slots (seeded), as if retrieval knew nothing about the face;
- farthest: the k least similar slots;
- self:     the face's own key-encoder tokens (difference ~ 0: "this face is its own real reference");
- zero:     reference 0, so the head sees the face's tokens themselves.

If the head used the reference, random/farthest would move the scores and the AUC; if retrieval found what
the method needs, nearest would beat random. It also prints the nearest-neighbour cosine similarity on real
and fake faces (is a fake farther from the bank of real faces?) and that similarity's own AUC as a fake score.

    .venv/bin/python bench/bank_use.py CHECKPOINT [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, print_figures  # noqa: E402

DATA = SHARED_DATA / "faces"
VARIANTS = ("nearest", "key", "random", "farthest", "self", "zero")


def held_out_sets() -> dict[str, list[tuple[Path, int]]]:
    ffpp = [(p, int(p.stem.endswith("_fake"))) for p in sorted((DATA / "ffpp").glob("*.png"))]
    dfdc = [(p, 0) for p in sorted((DATA / "dfdc" / "real").glob("*.png"))] + \
           [(p, 1) for p in sorted((DATA / "dfdc" / "fake").glob("*.png"))]
    return {"ffpp": ffpp, "dfdc": dfdc}


def references(model, q, keys, variant: str, k: int, gen):
    """Reference tokens (B,N,D) for one variant; also the top-1 similarity (B,) for 'nearest'."""
    import torch
    import torch.nn.functional as F

    from forgerydet.model.backbone import pooled

    bank = model.bank
    n = bank.filled
    if variant == "nearest":
        ref, _, sims = bank.retrieve(pooled(q), k)
        return ref, sims[:, 0]
    if variant == "key":
        return bank.retrieve(pooled(keys), k)[0], None
    if variant == "self":
        return keys, None
    if variant == "zero":
        return torch.zeros_like(q), None
    if variant == "random":
        idx = torch.randint(0, n, (q.shape[0], k), generator=gen)
    else:  # farthest
        sims = F.normalize(pooled(q), dim=-1) @ bank.keys[:n].T  # (B,F)
        idx = sims.topk(k, dim=-1, largest=False).indices
    return F.normalize(bank.values[idx].float().mean(dim=1), dim=-1), None


def score_set(model, items: list[tuple[Path, int]], temperature: float) -> dict[str, dict]:
    import torch

    from forgerydet.metrics import binary_metrics
    from forgerydet.model.calibration import sigmoid
    from forgerydet.model.inputs import load_image, to_tensor

    x = torch.stack([to_tensor(load_image(p, model.img_size)) for p, _ in items])  # (B,3,S,S)
    y = np.array([lab for _, lab in items])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        q, keys = model.encode(x), model.encode_keys(x)  # (B,N,D) each
        probs, top1 = {}, None
        for v in VARIANTS:
            ref, sim = references(model, q, keys, v, model.cfg.topk, gen)
            logits, _ = model.classify(q, ref)
            probs[v] = sigmoid(logits.numpy(), temperature)
            top1 = sim.numpy() if sim is not None else top1
    out = {v: {"auc": binary_metrics(y, p)["auc"],
               "mean_abs_change": float(np.abs(p - probs["nearest"]).mean())} for v, p in probs.items()}
    out["similarity"] = {
        "real_median": float(np.median(top1[y == 0])), "fake_median": float(np.median(top1[y == 1])),
        "real_iqr": [float(v) for v in np.percentile(top1[y == 0], [25, 75])],
        "fake_iqr": [float(v) for v in np.percentile(top1[y == 1], [25, 75])],
        "auc_of_dissimilarity": binary_metrics(y, 1.0 - top1)["auc"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this bench needs ../shared/data (or FORGERYDET_SHARED_DATA)")
    import torch

    from forgerydet.model.checkpoint import load_checkpoint

    torch.manual_seed(0)
    ck = load_checkpoint(a.checkpoint)
    model = ck.model.eval()
    res = {"checkpoint": a.checkpoint, "bank_filled": model.bank.filled, "topk": model.cfg.topk,
           "sets": {name: score_set(model, items, ck.temperature) for name, items in held_out_sets().items()}}
    figures = []
    for name, r in res["sets"].items():
        for v in VARIANTS:
            figures.append(figure(f"{name} AUC, reference={v}", r[v]["auc"],
                                  note=f"mean |p - p(nearest)| {r[v]['mean_abs_change']:.3f}"))
        s = r["similarity"]
        figures.append(figure(f"{name} nearest cosine, real median", s["real_median"],
                              note=f"IQR {s['real_iqr'][0]:.3f}-{s['real_iqr'][1]:.3f}"))
        figures.append(figure(f"{name} nearest cosine, fake median", s["fake_median"],
                              note=f"IQR {s['fake_iqr'][0]:.3f}-{s['fake_iqr'][1]:.3f}"))
        figures.append(figure(f"{name} AUC of (1 - nearest cosine) alone", s["auc_of_dissimilarity"]))
    if not a.json:
        print(f"{a.checkpoint}: bank of {res['bank_filled']} entries, top-{res['topk']} averaged")
        print_figures(figures)
    finish(res, figures, a.json)


if __name__ == "__main__":
    main()
