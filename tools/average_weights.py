"""Weight-space interpolation of two checkpoints of the same model (WiSE-FT, Wortsman et al. 2022: averaging a
fine-tuned model with the model it started from often keeps the robustness of both).

    python tools/average_weights.py A.safetensors B.safetensors OUT.safetensors [--alpha 0.5]

OUT holds (1 - alpha) x A + alpha x B for every floating-point weight (encoder, head, key encoder), A's
integer buffers, A's config and history, and an EMPTY memory bank with no calibration: the averaged key
encoder writes features the old banks were not made with; it lists both inputs' training faces (and their
earlier ones) as `earlier_faces`, so tools/unseen_photos.py never offers them for calibration. Refill and calibrate
it as an imported model is:

    forgerydet rebuild-bank --checkpoint OUT --pairs PAIRS.csv --select random
    forgerydet calibrate --checkpoint OUT --pairs CALIB_PAIRS.csv --tta flip
"""

from __future__ import annotations

import argparse

import torch

from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.detector import Detector


def average(a_path: str, b_path: str, out: str, alpha: float) -> None:
    a = load_checkpoint(a_path, "cpu", check_bank=False)
    b = load_checkpoint(b_path, "cpu", check_bank=False)
    if a.model.cfg.to_dict() != b.model.cfg.to_dict():
        raise SystemExit(f"{a_path} and {b_path} are different models (configs differ): cannot average them")
    model = Detector(a.model.cfg, pretrained="none")
    model.pretrained_source = a.model.pretrained_source
    sa, sb, own = a.model.state_dict(), b.model.state_dict(), model.state_dict()
    state = {}
    for k, v in own.items():
        if k.startswith("bank."):
            state[k] = v  # empty: rebuild-bank fills it with the averaged key encoder
        elif sa[k].is_floating_point():
            state[k] = torch.lerp(sa[k].float(), sb[k].float(), alpha).to(v.dtype)
        else:
            state[k] = sa[k]
    model.load_state_dict(state, strict=True)
    # both parents' training faces stay "seen" (tools/unseen_photos.py), though rebuild-bank lists only its own
    extra = {"averaged": {"a": a_path, "b": b_path, "alpha": alpha},
             "earlier_faces": sorted(a.training_faces | b.training_faces)}
    save_checkpoint(out, model, history=a.meta.get("history"), extra=extra)
    print(f"wrote {out}: {1 - alpha:g} x {a_path} + {alpha:g} x {b_path} (bank empty, not calibrated)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of B (0: A, 1: B)")
    args = ap.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit(f"--alpha {args.alpha} must be in [0, 1]")
    average(args.a, args.b, args.out, args.alpha)
