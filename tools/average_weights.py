"""Weight-space averages of checkpoints of the same model: WiSE-FT (Wortsman et al. 2022: averaging a fine-tuned
model with the model it started from often keeps the robustness of both) and uniform model soups (Wortsman et al.
2022: averaging several fine-tunes of one start cuts the variance of any one seed).

    python tools/average_weights.py A.safetensors B.safetensors OUT.safetensors [--alpha 0.5]
    python tools/average_weights.py A.safetensors B.safetensors C.safetensors ... OUT.safetensors

With two inputs OUT holds (1 - alpha) x A + alpha x B; with more, their uniform mean (--alpha is refused), for every
floating-point weight (encoder, head, key encoder), with the first input's integer buffers, config and history, and
an EMPTY memory bank with no calibration: the averaged key encoder writes features the old banks were not made
with. It lists every input's training faces (and their earlier ones) as `earlier_faces`, so tools/unseen_photos.py
never offers them for calibration. Refill and calibrate it as an imported model is:

    forgerydet rebuild-bank --checkpoint OUT --pairs PAIRS.csv --select random
    forgerydet calibrate --checkpoint OUT --pairs CALIB_PAIRS.csv --tta flip
"""

from __future__ import annotations

import argparse
import sys

import torch

from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.detector import Detector
from forgerydet.paths import check_checkpoint_out, check_not_input, check_output


def average(a_path: str, b_path: str, out: str, alpha: float) -> None:
    """(1 - alpha) x A + alpha x B (WiSE-FT)."""
    _weighted([a_path, b_path], [1.0 - alpha, alpha], out, record={"a": a_path, "b": b_path, "alpha": alpha})


def soup(paths: list[str], out: str) -> None:
    """The uniform mean of every input (a uniform model soup)."""
    if len(paths) < 2:
        raise SystemExit("a soup needs at least two checkpoints")
    _weighted(paths, [1.0 / len(paths)] * len(paths), out, record={"inputs": list(paths)})


def _weighted(paths: list[str], weights: list[float], out: str, record: dict) -> None:
    cks = [load_checkpoint(p, "cpu", check_bank=False) for p in paths]
    first = cks[0]
    for p, ck in zip(paths[1:], cks[1:]):
        if ck.model.cfg.to_dict() != first.model.cfg.to_dict():
            raise SystemExit(f"{paths[0]} and {p} are different models (configs differ): cannot average them")
    model = Detector(first.model.cfg, pretrained="none")
    model.pretrained_source = first.model.pretrained_source
    states, own = [ck.model.state_dict() for ck in cks], model.state_dict()
    state = {}
    for k, v in own.items():
        if k.startswith("bank."):
            state[k] = v  # empty: rebuild-bank fills it with the averaged key encoder
        elif states[0][k].is_floating_point():
            acc = torch.zeros_like(states[0][k], dtype=torch.float64)
            for w, s in zip(weights, states):
                acc += w * s[k].double()
            state[k] = acc.to(v.dtype)
        else:
            state[k] = states[0][k]
    model.load_state_dict(state, strict=True)
    # every parent's training faces stay "seen" (tools/unseen_photos.py), though rebuild-bank lists only its own
    extra = {"averaged": record, "earlier_faces": sorted(set().union(*(ck.training_faces for ck in cks)))}
    save_checkpoint(out, model, history=first.meta.get("history"), extra=extra)
    terms = " + ".join(f"{w:.4g} x {p}" for w, p in zip(weights, paths))
    print(f"wrote {out}: {terms} (bank empty, not calibrated)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", metavar="IN", help="two checkpoints (WiSE-FT) or more (a uniform soup)")
    ap.add_argument("out", metavar="OUT")
    ap.add_argument("--alpha", type=float, default=None, help="two inputs only: weight of the second (0: A, 1: B; default 0.5)")
    args = ap.parse_args(argv)
    if len(args.inputs) < 2:
        raise SystemExit("give at least two checkpoints to average, then the output file")
    try:  # OUT checked before the inputs load: one of them given as OUT too would be replaced by the average
        check_not_input(args.out, "OUT", [("one of the checkpoints to average", p) for p in args.inputs])
        check_output(args.out, "OUT")
        check_checkpoint_out(args.out, "OUT")
        if len(args.inputs) == 2:
            alpha = 0.5 if args.alpha is None else args.alpha
            if not 0.0 <= alpha <= 1.0:
                raise SystemExit(f"--alpha {alpha} must be in [0, 1]")
            average(args.inputs[0], args.inputs[1], args.out, alpha)
        elif args.alpha is not None:
            raise SystemExit(f"--alpha weights two checkpoints; {len(args.inputs)} are averaged uniformly")
        else:
            soup(args.inputs, args.out)
    except ForgeryDetError as e:
        sys.exit(f"Error: {e}")


if __name__ == "__main__":
    main()
