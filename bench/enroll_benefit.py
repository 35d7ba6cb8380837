"""Does a person's own reference bank beat the global bank? (issue 12, measured benefit)

For every real talking-head video in ../shared/data/train/videos (12 people, d*.mp4):
1. sample --frames frames evenly, detect faces (MTCNN, as scan) and keep the main track (as `enroll`);
2. enrol the first half of those frames as that person's references (key encoder, as `enroll`);
3. score the second half (held-out real frames) and self-blended forgeries of them (forgerydet.pairs.sbi.self_blend
   with the MTCNN landmarks, one per held-out face, seeded) in 'single' mode against
   (a) that person's references (`scan --reference` does exactly this), and
   (b) the checkpoint's global bank (plain `scan`);
   and, as a control, (c) the references of another person (the next video's), which shows whether any gain
   comes from the identity and not from the mere size or make-up of the reference set.
4. report frame-level AUC (fake = positive) and the real/fake score gap (mean p(fake) of the forgeries minus
   mean p(fake) of the held-out reals), pooled over all people, for (a), (b) and (c); also the mean cosine
   similarity of the retrieved neighbours (how close the reference was).
5. two diagnostics for the "why": the same neighbour similarity with the KEY encoder on both sides (is the
   person's own footage nearer in the bank's own space? retrieval uses the online encoder's query), and the
   mean |p(a) - p(c)| per face (does the head's output depend on which reference it is given at all?).

The checkpoint must have a filled global bank. Its bank may contain these videos' frames if it was trained on
them: the script says whether any bank source is one of the videos (that would favour (b)).

    .venv/bin/python bench/enroll_benefit.py [--checkpoint CK] [--videos DIR] [--frames 32] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, figure, finish, machine, print_figures  # noqa: E402

DEFAULT_VIDEOS = SHARED_DATA / "train" / "videos"


def collect(videos: list[Path], frames: int, device: str, cache: Path | None) -> dict[str, list[tuple]]:
    """Main-track faces of each video in frame order, as (frame_index, crop, landmarks_crop); with --cache, kept
    in an .npz keyed by the settings so a rerun (another checkpoint) skips the face detection."""
    from forgerydet.faces.detect import DetectorConfig, FaceDetector
    from forgerydet.faces.pipeline import ExtractConfig, detect_source
    from forgerydet.scan.enroll import choose_faces

    tag = f"{frames}:" + ",".join(f"{v.name}:{v.stat().st_size}" for v in videos)
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if str(z["tag"]) == tag:
            return {v.stem: [(int(i), c, lm) for i, c, lm in zip(z[f"{v.stem}.idx"], z[f"{v.stem}.crops"], z[f"{v.stem}.lm"])]
                    for v in videos}
    det = FaceDetector(DetectorConfig(device=device))
    xcfg = ExtractConfig(num_frames=frames, detector=det.config)
    out = {}
    for v in videos:
        faces, _ = choose_faces(detect_source(v, xcfg, det), "main-track")
        out[v.stem] = [(f.frame_index, f.crop, f.landmarks_crop) for f in sorted(faces, key=lambda f: f.frame_index)]
    if cache is not None:
        arrays = {"tag": np.array(tag)}
        for k, fs in out.items():
            arrays[f"{k}.idx"] = np.array([f[0] for f in fs], np.int64)
            arrays[f"{k}.crops"] = np.stack([f[1] for f in fs]) if fs else np.zeros((0, 224, 224, 3), np.uint8)
            arrays[f"{k}.lm"] = np.stack([f[2] for f in fs]) if fs else np.zeros((0, 5, 2), np.float32)
        np.savez(cache, **arrays)
    return out


def score(model, crops: list[np.ndarray], bank, device, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """p(fake) and the mean neighbour similarity of each face, 'single' mode against `bank` (None: global)."""
    import torch

    from forgerydet.model.inputs import resize_face, to_tensor

    ps, sims = [], []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.stack([to_tensor(resize_face(c, model.img_size)) for c in crops[i : i + batch]]).to(device)
            o = model(x, "single", bank=bank)
            ps.append(torch.sigmoid(o["logits"].float()).cpu().numpy())
            sims.append(o["similarities"].float().mean(dim=1).cpu().numpy())
    return np.concatenate(ps), np.concatenate(sims)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: models/default.safetensors")
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--frames", type=int, default=32, help="frames sampled per video (half enrolled, half held out)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="keep the detected faces in this .npz for reruns")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from forgerydet.metrics import binary_metrics
    from forgerydet.model.bank import MemoryBank
    from forgerydet.model.checkpoint import load_checkpoint
    from forgerydet.pairs.sbi import self_blend
    from forgerydet.scan.enroll import encode_faces
    from forgerydet.scan.scanner import find_default_checkpoint

    t0 = time.perf_counter()
    ck_path = args.checkpoint or find_default_checkpoint()
    ck = load_checkpoint(ck_path, args.device)
    model = ck.model.eval()
    if model.bank.filled == 0:
        raise SystemExit(f"{ck_path}: the global bank is empty; (b) needs it: run `forgerydet rebuild-bank` first")
    videos = sorted(args.videos.glob("d*.mp4"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else 0)
    if len(videos) < 2:
        raise SystemExit(f"need at least two videos in {args.videos}")
    faces = collect(videos, args.frames, args.device, args.cache)
    t_detect = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    people = [k for k, v in faces.items() if len(v) >= 4]
    banks, held = {}, {}
    for name in people:
        fs = faces[name]
        half = len(fs) // 2
        enrol, rest = fs[:half], fs[half:]
        vals = encode_faces(model, [f[1] for f in enrol], torch.device(args.device))  # (R,N,D)
        bank = MemoryBank(len(enrol), vals.shape[1], vals.shape[2]).to(args.device)
        bank.rebuild(vals.to(args.device), model.key_fingerprint())
        banks[name] = bank
        reals = [f[1] for f in rest]
        fakes = [self_blend(f[1], f[2], rng)[0] for f in rest]
        held[name] = (reals, fakes)

    rows = {m: {"y": [], "p": [], "sim": []} for m in ("reference", "global", "other")}
    key_sim = {"reference": [], "global": []}  # key encoder on both sides: held-out reals vs own refs / global bank
    per_person = {}
    for i, name in enumerate(people):
        reals, fakes = held[name]
        crops = reals + fakes
        y = [0] * len(reals) + [1] * len(fakes)
        other = people[(i + 1) % len(people)]
        pp = {}
        for mode, bank in (("reference", banks[name]), ("global", None), ("other", banks[other])):
            p, sim = score(model, crops, bank, args.device)
            rows[mode]["y"] += y
            rows[mode]["p"] += p.tolist()
            rows[mode]["sim"] += sim.tolist()
            pp[mode] = {"gap": float(p[len(reals):].mean() - p[: len(reals)].mean())}
        per_person[name] = {"enrolled": len(faces[name]) // 2, "held_out": len(reals), **pp}
        kq = MemoryBank._keys_of(encode_faces(model, reals, torch.device(args.device)).to(args.device))  # (R,D)
        for mode, bank in (("reference", banks[name]), ("global", model.bank)):
            _, _, sims = bank.retrieve(kq, model.cfg.topk)  # (R,k)
            key_sim[mode] += sims.mean(dim=1).cpu().tolist()

    res: dict = {"checkpoint": str(ck_path), "backbone": model.cfg.backbone, "global_bank_entries": model.bank.filled,
                 "people": len(people), "frames_per_video": args.frames, "seconds_detect": round(t_detect, 1)}
    sources = {str(Path(s).resolve()) for s in ck.bank_sources}
    res["global_bank_holds_these_videos"] = any(str(v.resolve()) in s or v.stem + "_" in Path(s).name for v in videos for s in sources)
    summary = {}
    for mode, r in rows.items():
        y, p = np.array(r["y"]), np.array(r["p"])
        m = binary_metrics(y, p)
        summary[mode] = {"auc": m["auc"], "gap": float(p[y == 1].mean() - p[y == 0].mean()),
                         "real_mean": float(p[y == 0].mean()), "fake_mean": float(p[y == 1].mean()),
                         "neighbour_similarity": float(np.mean(r["sim"])), "n_real": m["n_real"], "n_fake": m["n_fake"]}
    res["summary"], res["per_person"] = summary, per_person
    pa, pc = np.array(rows["reference"]["p"]), np.array(rows["other"]["p"])
    res["mean_abs_dp_own_vs_other_refs"] = float(np.abs(pa - pc).mean())
    res["key_space_similarity"] = {k: float(np.mean(v)) for k, v in key_sim.items()}
    res["reference_gap_wins"] = sum(1 for v in per_person.values() if v["reference"]["gap"] > v["global"]["gap"])
    a, b, c = summary["reference"], summary["global"], summary["other"]
    figures = [
        figure("AUC, own references (a)", a["auc"], "", "> global (b)", a["auc"] > b["auc"]),
        figure("AUC, global bank (b)", b["auc"]),
        figure("AUC, another person's references (c)", c["auc"]),
        figure("real/fake gap, own references (a)", a["gap"], "", "> global (b)", a["gap"] > b["gap"]),
        figure("real/fake gap, global bank (b)", b["gap"]),
        figure("real/fake gap, another person's references (c)", c["gap"]),
        figure("neighbour similarity, own references (a)", a["neighbour_similarity"]),
        figure("neighbour similarity, global bank (b)", b["neighbour_similarity"]),
        figure("neighbour similarity, key encoder both sides, own references", res["key_space_similarity"]["reference"]),
        figure("neighbour similarity, key encoder both sides, global bank", res["key_space_similarity"]["global"]),
        figure("mean |p(fake) own refs - p(fake) other person's refs| per face", res["mean_abs_dp_own_vs_other_refs"]),
        figure("people whose gap is larger with own references", res["reference_gap_wins"], "", note=f"of {len(people)}"),
    ]
    res["machine"] = machine(args.device)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.json:
        print(f"checkpoint {ck_path} ({model.cfg.backbone}), global bank {model.bank.filled} entries"
              f"{' (holds frames of these videos!)' if res['global_bank_holds_these_videos'] else ''}; "
              f"{len(people)} people, {a['n_real']} held-out real + {a['n_fake']} self-blended faces")
        print(f"{'':<28}{'AUC':>7}{'gap':>8}{'p real':>8}{'p fake':>8}{'nb sim':>8}")
        for mode, label in (("reference", "(a) own references"), ("global", "(b) global bank"), ("other", "(c) other person's refs")):
            s = summary[mode]
            print(f"{label:<28}{s['auc']:>7.3f}{s['gap']:>8.3f}{s['real_mean']:>8.3f}{s['fake_mean']:>8.3f}"
                  f"{s['neighbour_similarity']:>8.3f}")
        print_figures(figures)
    return finish(res, figures, args.json, args.device)


if __name__ == "__main__":
    main()
