"""For each backbone with packaged ImageNet weights: parameter count, CPU forward time for a batch of 32 at its
default input size, and the ImageNet top-1 class on skimage's cat photo (chelsea), to choose the default backbone.

    .venv/bin/python bench/pretrained_probe.py [--batch 32] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from PIL import Image
from skimage.data import chelsea
from timm.data import ImageNetInfo

from forgerydet.model.weights import load_pretrained, packaged_backbones


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards after one warm-up; the median is shown")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = ImageNetInfo()
    photo = Image.fromarray(chelsea())
    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} CPU threads, batch {args.batch}")
    print(f"{'backbone':<24}{'params (M)':>11}{'input':>8}{'fwd s/batch (min-max)':>23}{'img/s':>8}  top-1 on chelsea (p)  weights")
    for name in packaged_backbones():
        model = timm.create_model(name, pretrained=False).eval()
        source = load_pretrained(model, name, "packaged")
        cfg = timm.data.resolve_model_data_config(model)
        n_params = sum(p.numel() for p in model.parameters())
        x = torch.randn(args.batch, *cfg["input_size"])  # (B,3,H,W)
        with torch.inference_mode():
            model(x)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(x)  # (B,1000)
                times.append(time.perf_counter() - t0)
            img = timm.data.create_transform(**cfg)(photo)[None]  # (1,3,H,W) with the model's mean/std
            probs = model(img).softmax(-1)[0]  # (1000,)
        sec = statistics.median(times)
        fwd = f"{sec:.2f} ({min(times):.2f}-{max(times):.2f})"
        top = int(probs.argmax())
        label = f"{top} {info.index_to_description(top)} ({probs[top]:.2f})"
        size = "x".join(map(str, cfg["input_size"][1:]))
        print(f"{name:<24}{n_params / 1e6:>11.2f}{size:>8}{fwd:>23}{args.batch / sec:>8.1f}  {label}  {source}")


if __name__ == "__main__":
    main()
