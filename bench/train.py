"""Training speed of the full method against a plain classifier, and the cost of a bank rebuild (issue 4).

1. img/s of one training step of the full method: forgerydet.training.loop.train_step, which train() calls ('pair':
   BCE + InfoNCE against a full bank, enqueue; 'single': bank retrieval, BCE; both: backward, clip, AdamW
   step, momentum update),
   against a plain timm classifier with the same backbone, batch and image size (BCE, backward, AdamW step).
   The 50/50 mix (TrainConfig.single_share = 0.5) is the mean of the two step times.
   Target: full method (mix) >= 0.6x the plain classifier's img/s.
   Inputs are random tensors already on the device: data loading is excluded from both sides.
2. One bank rebuild (forgerydet.training.bankfill.rebuild_bank over N real face PNGs in a temp folder) against plain
   no-grad inference of the key encoder over the same files, loaded by the same FaceList/DataLoader.
   Image loading is INCLUDED on both sides. Target: rebuild <= 1.1x the plain inference.

Steps are timed round-robin (the order rotates every round) after warm-up rounds, and medians are shown, so a
shared machine's load hits every variant alike. Default run: about 2-3 minutes on 2 CPU cores.

    .venv/bin/python bench/train.py [--batch 32] [--repeats 3] [--rebuild-images 128] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import astronaut_faces, figure, finish, interleaved, machine, median, print_figures  # noqa: E402

from forgerydet.model.backbone import create_backbone
from forgerydet.model.config import DEFAULT_BACKBONE, ModelConfig
from forgerydet.model.detector import Detector
from forgerydet.training.bankfill import rebuild_bank
from forgerydet.training.config import TrainConfig
from forgerydet.training.data import FaceList
from forgerydet.training.distributed import Dist, autocast
from forgerydet.training.loop import StepContext, cosine_lr, train_step

MIX_TARGET = 0.6
REBUILD_TARGET = 1.1


class FullStep:
    """One training step of the full method: forgerydet.training.loop.train_step, the very function train() calls,
    with the same optimizer groups and a cosine learning rate (single process: gather_rows is the identity)."""

    def __init__(self, model: Detector, tcfg: TrainConfig, device: torch.device, real_group: torch.Tensor):
        params = model.trainable_parameters()
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tcfg.amp == "fp16")
        self.ctx = StepContext(model, model, opt, scaler, params, real_group, tcfg, Dist(device=device))
        self.step, self.total = 0, 1000

    def __call__(self, batch: dict[str, torch.Tensor], single: bool) -> float:
        lr = cosine_lr(self.step, self.total, self.ctx.tcfg.lr, self.ctx.tcfg.warmup)
        r = train_step(self.ctx, batch, single, lr, self.step)
        self.step += 1
        return r["loss"]


class PlainStep:
    """A plain timm classifier's step: timm.create_model(backbone, num_classes=1), BCE, backward, AdamW step.
    Same normalisation and autocast policy as the detector; no clipping, no EMA, no bank."""

    def __init__(self, backbone: str, img_size: int | None, mean: torch.Tensor, std: torch.Tensor,
                 tcfg: TrainConfig, device: torch.device):
        net = create_backbone(backbone, img_size)  # timm.create_model(name, pretrained=False, ...)
        net.reset_classifier(1)  # num_classes=1 (weights do not change the speed)
        # the memory layout the detector's encoder uses (model/backbone.py), so the ratio is like for like
        self.net = net.to(device, memory_format=torch.channels_last).train()
        self.mean, self.std, self.tcfg, self.device = mean, std, tcfg, device
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        x, y = batch["x"].to(self.device), batch["label"].to(self.device)
        with autocast(self.device, self.tcfg.amp):
            x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
            logits = self.net(x).squeeze(-1)  # (B,1) -> (B,)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def make_batch(B: int, S: int, n_reals: int, device: torch.device, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch shaped like TrainPairs' (fake, real, fake, real, ...), random pixels."""
    label = torch.tensor([1.0, 0.0] * (B // 2) + [1.0] * (B % 2))  # (B,)
    ref_id = torch.randint(0, n_reals, (B,), generator=g)  # (B,)
    batch = {"x": torch.rand(B, 3, S, S, generator=g), "ref": torch.rand(B, 3, S, S, generator=g), "label": label,
             "ref_id": ref_id}
    return {k: v.to(device) for k, v in batch.items()}


def fill_bank(model: Detector, n_reals: int, n_groups: int, g: torch.Generator) -> torch.Tensor:
    """Fill every bank slot (steady state of training) with random unit tokens from n_reals real faces;
    returns real_group (R,) as train() builds it."""
    bank = model.bank
    v = F.normalize(torch.randn(bank.size, bank.num_tokens, bank.dim, generator=g), dim=-1)  # (K,N,D)
    src = torch.randint(0, n_reals, (bank.size,), generator=g)  # (K,)
    dev = bank.keys.device
    bank.rebuild(v.to(dev), model.key_fingerprint().to(dev), source=src.to(dev))
    return torch.randint(0, n_groups, (n_reals,), generator=g).to(dev)  # (R,)


def bench_steps(args, device: torch.device) -> tuple[list[dict], dict]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    tcfg = TrainConfig(batch_size=args.batch, device=str(device))
    model = Detector(ModelConfig(backbone=args.backbone, img_size=args.img_size)).to(device)
    model.train()
    S = model.img_size
    real_group = fill_bank(model, args.reals, max(1, args.reals // 10), g)
    full = FullStep(model, tcfg, device, real_group)
    # the same model with its encoders in NCHW, to measure what channels-last storage buys
    nchw = Detector(ModelConfig(backbone=args.backbone, img_size=args.img_size)).to(device)
    nchw.load_state_dict(model.state_dict())
    for enc in (nchw.encoder, nchw.key_encoder):
        enc.set_memory_format(torch.contiguous_format)
    nchw.train()
    full_nchw = FullStep(nchw, tcfg, device, real_group)
    plain = PlainStep(args.backbone, args.img_size, model.mean, model.std, tcfg, device)
    batch = make_batch(args.batch, S, args.reals, device, g)
    cpu: dict[str, list[float]] = {}

    @torch.no_grad()
    def infer(m: Detector) -> None:
        m.eval()
        m.encode(batch["x"])
        m.train()

    times = interleaved({
        "plain": lambda: plain(batch),
        "pair": lambda: full(batch, single=False),
        "single": lambda: full(batch, single=True),
        "pair_nchw": lambda: full_nchw(batch, single=False),
        "infer": lambda: infer(model),
        "infer_nchw": lambda: infer(nchw),
    }, args.repeats, args.warmup, str(device), cpu)
    B = args.batch
    t = {k: median(v) for k, v in times.items()}
    t["mix"] = 0.5 * (t["pair"] + t["single"])
    ips = {k: B / v for k, v in t.items()}
    ratio = ips["mix"] / ips["plain"]
    c = {k: median(v) for k, v in cpu.items()}
    cpu_ratio = c["plain"] / (0.5 * (c["pair"] + c["single"]))
    figs = [
        figure("train step: plain timm classifier", ips["plain"], "img/s", note=f"{t['plain']:.2f} s/step"),
        figure("train step: full method, 'pair'", ips["pair"], "img/s",
               note=f"{t['pair']:.2f} s/step, {ips['pair'] / ips['plain']:.2f}x plain"),
        figure("train step: full method, 'single'", ips["single"], "img/s",
               note=f"{t['single']:.2f} s/step, {ips['single'] / ips['plain']:.2f}x plain"),
        figure("train step: full method, 50/50 mix", ips["mix"], "img/s", note=f"{t['mix']:.2f} s/step"),
        figure("train: full (mix) / plain img/s", ratio, "x", f"≥ {MIX_TARGET}", ratio >= MIX_TARGET,
               note=f"same ratio in process CPU time: {cpu_ratio:.2f}x"),
        figure("train step 'pair': encoders NCHW / channels-last time", t["pair_nchw"] / t["pair"], "x",
               note=f"{t['pair_nchw']:.2f} against {t['pair']:.2f} s/step"),
        figure("encoder inference: NCHW / channels-last time", t["infer_nchw"] / t["infer"], "x",
               note=f"batch {B}: {t['infer_nchw']:.3f} against {t['infer']:.3f} s"),
    ]
    detail = {"backbone": args.backbone, "img_size": S, "batch": B, "bank_entries": model.bank.filled,
              "pretrained": model.pretrained_source, "step_seconds": {k: sorted(v) for k, v in times.items()},
              "step_cpu_seconds": {k: sorted(v) for k, v in cpu.items()}, "ratio_mix_cpu_time": cpu_ratio,
              "img_s": ips, "ratio_mix": ratio}
    return figs, detail


def bench_rebuild(args, device: torch.device) -> tuple[list[dict], dict]:
    torch.manual_seed(0)
    model = Detector(ModelConfig(backbone=args.backbone, img_size=args.img_size)).to(device)
    with tempfile.TemporaryDirectory(prefix="fdet_bench_rebuild_") as tmp:
        import cv2

        paths = []
        for i, img in enumerate(astronaut_faces(args.rebuild_images, size=model.img_size, seed=1)):
            p = Path(tmp) / f"real_{i:04d}.png"
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            paths.append(p)

        @torch.no_grad()
        def plain_inference() -> None:
            """The key encoder over the same files, read by the same FaceList + DataLoader as rebuild_bank."""
            model.eval()
            loader = torch.utils.data.DataLoader(FaceList(paths, [0] * len(paths), model.img_size),
                                                 batch_size=args.rebuild_batch, shuffle=False,
                                                 num_workers=args.workers, drop_last=False, pin_memory=False)
            for b in loader:
                model.encode_keys(b["x"].to(device))  # (B,N,D)

        def rebuild() -> None:
            rebuild_bank(model, paths, batch_size=args.rebuild_batch, workers=args.workers)

        cpu: dict[str, list[float]] = {}
        times = interleaved({"inference": plain_inference, "rebuild": rebuild},
                            args.rebuild_repeats, 1, str(device), cpu)
    t = {k: median(v) for k, v in times.items()}
    ratio = t["rebuild"] / t["inference"]
    cpu_ratio = median(cpu["rebuild"]) / median(cpu["inference"])
    n = args.rebuild_images
    figs = [
        figure(f"key-encoder inference, {n} PNGs", t["inference"], "s", note=f"{n / t['inference']:.1f} img/s, loading included"),
        figure(f"bank rebuild, {n} PNGs", t["rebuild"], "s", note=f"{n / t['rebuild']:.1f} img/s, loading included"),
        figure("rebuild / plain inference time", ratio, "x", f"≤ {REBUILD_TARGET}", ratio <= REBUILD_TARGET,
               note=f"same ratio in process CPU time: {cpu_ratio:.2f}x"),
    ]
    detail = {"rebuild_images": n, "rebuild_seconds": {k: sorted(v) for k, v in times.items()},
              "rebuild_cpu_seconds": {k: sorted(v) for k, v in cpu.items()}, "ratio_rebuild_cpu_time": cpu_ratio,
              "ratio_rebuild": ratio, "bank_entries": model.bank.filled}
    return figs, detail


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE, help="timm backbone (default: %(default)s)")
    ap.add_argument("--img-size", type=int, default=None, help="face size (default: the backbone's own)")
    ap.add_argument("--batch", type=int, default=TrainConfig().batch_size, help="batch size (default: %(default)s, TrainConfig's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of every step variant (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    ap.add_argument("--reals", type=int, default=2000, help="distinct real faces behind the bank's entries")
    ap.add_argument("--rebuild-images", type=int, default=128, help="real face PNGs for the rebuild (default: %(default)s)")
    ap.add_argument("--rebuild-batch", type=int, default=TrainConfig().val_batch_size,
                    help="rebuild batch size (default: %(default)s, as train() uses)")
    ap.add_argument("--rebuild-repeats", type=int, default=3, help="timed rebuilds (after one warm-up)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for rebuild and inference")
    ap.add_argument("--skip-steps", action="store_true", help="only the rebuild part")
    ap.add_argument("--skip-rebuild", action="store_true", help="only the step part")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object (for bench/run_all.py)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA GPU here")
    device = torch.device(args.device)
    info = machine(args.device)
    if not args.json:
        print(f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, device {args.device}, "
              f"load average {info['loadavg']}")
        print(f"backbone {args.backbone}, batch {args.batch}; medians of {args.repeats} rounds after {args.warmup} warm-up")
    figs: list[dict] = []
    res: dict = {"script": "train", "machine": info}
    if not args.skip_steps:
        f, d = bench_steps(args, device)
        figs += f
        res["steps"] = d
        if not args.json:
            print_figures(f)
    if not args.skip_rebuild:
        f, d = bench_rebuild(args, device)
        figs += f
        res["rebuild"] = d
        if not args.json:
            print_figures(f)
    return finish(res, figs, args.json, args.device)


if __name__ == "__main__":
    main()
