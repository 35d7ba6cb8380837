"""The visual scan report: one static HTML page plus PNGs, readable offline in any browser.

Per file: verdict and counts, per-track scores, a score-over-time plot (videos), and a grid of sampled
faces, each with its DifferenceAttention heatmap and the real bank faces it was compared against.
No external URLs; every string is HTML-escaped; every file is written atomically (temp + os.replace).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import cv2
import numpy as np

from .atomic import write_bytes_atomic
from .errors import ForgeryDetError, path_text
from .metrics import save_figure
from .video import read_image

MAX_FACES = 24  # faces shown per file
THUMB = 160  # longest side of a face thumbnail (px)
NEIGHBOUR_THUMB = 64  # longest side of a neighbour thumbnail (px)
HEAT_ALPHA = 0.45  # heatmap weight in the overlay

ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------- files

def _as_rgb(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 HxWx3 image
        raise RuntimeError(f"could not encode {path.name} as PNG")
    write_bytes_atomic(path, buf.tobytes())


def heatmap_overlay(crop: Any, attention: Any, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """The g x g attention map upsampled to the crop (cv2.resize), JET-coloured and alpha-blended on it.

    The map is scaled by its own maximum, so colours show where this face's attention went, not how much.
    """
    rgb = _as_rgb(crop)
    h, w = rgb.shape[:2]
    a = np.asarray(attention, dtype=np.float32)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = float(a.max()) if a.size else 0.0
    a = a / peak if peak > 0 else np.zeros_like(a)
    up = cv2.resize(a, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)  # (g,g) -> (H,W)
    heat = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)  # (H,W,3) BGR
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


# ----------------------------------------------------------------------------- choices

def select_faces(faces: list[dict], max_faces: int = MAX_FACES) -> list[int]:
    """Indices of at most `max_faces` faces, in time order: the highest-scoring quarter, the rest spread
    evenly over time."""
    n = len(faces)
    order = sorted(range(n), key=lambda i: (faces[i].get("frame_index", 0), faces[i].get("track_id", 0)))
    if n <= max_faces:
        return order
    n_top = max(1, max_faces // 4)
    top = set(sorted(range(n), key=lambda i: -float(faces[i].get("score") or 0.0))[:n_top])
    rest = [i for i in order if i not in top]
    picks = np.unique(np.round(np.linspace(0, len(rest) - 1, max_faces - n_top)).astype(int))
    chosen = top | {rest[p] for p in picks}
    return [i for i in order if i in chosen]


# ----------------------------------------------------------------------------- plots

def _timeline(result: dict, path: Path) -> Path:
    """Score over time, one line per track, with the decision threshold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=100)
    ax = fig.add_subplot()
    use_time = all(f.get("time") is not None for f in result["faces"])
    by_track: dict[int, list[tuple[float, float]]] = {}
    for f in result["faces"]:
        x = float(f["time"]) if use_time else float(f.get("frame_index", 0))
        by_track.setdefault(int(f.get("track_id", 0)), []).append((x, float(f["score"])))
    for tid, pts in sorted(by_track.items()):
        pts.sort()
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, label=f"track {tid}")
    thr = float(result.get("threshold", 0.5))
    ax.axhline(thr, color="crimson", linestyle="--", linewidth=1, label=f"threshold {thr:g}")
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)" if use_time else "frame", ylabel="fake probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{margin:0 0 4px} h2{margin:0;font-size:1.15em;word-break:break-all}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.file{background:#fff;border:1px solid #ddd;border-radius:8px;padding:14px 16px;margin:18px 0}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700;margin-right:8px}
.v-fake{background:#c62828}.v-real{background:#2e7d32}.v-none{background:#757575}.v-error{background:#6a1b9a}
.notice{padding:8px 12px;border-radius:4px;background:#fff3e0;border-left:4px solid #ef6c00}
.notice.error{background:#f3e5f5;border-left-color:#6a1b9a}
.meta{color:#555;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.face{margin:0;border:1px solid #e0e0e0;border-radius:6px;padding:6px;width:252px;background:#fcfcfc}
.face img.crop{width:120px;height:120px;object-fit:cover}
.face figcaption{font-size:.8em;margin-top:3px}
.s-fake{color:#c62828;font-weight:700}.s-real{color:#2e7d32;font-weight:700}
.nbrs{display:flex;flex-wrap:wrap;gap:4px;margin-top:4px}
.nb{font-size:.7em;width:56px;text-align:center;overflow-wrap:anywhere}
.nb img{width:56px;height:56px;object-fit:cover;display:block}
.nb .name{display:block;width:56px;height:56px;background:#eee;overflow:hidden;font-size:.85em}
.timeline{max-width:100%}
"""


def _e(x: Any) -> str:
    return html.escape(path_text(x), quote=True)


def _num(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(float(x), fmt)


def _count(n: Any, word: str) -> str:
    return f"{_e(n)} {word}" + ("" if n == 1 else "s")


def _src(out_dir: Path, path: Path) -> str:
    return _e(quote(path.relative_to(out_dir).as_posix()))


def _setting_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _verdict_badge(r: dict) -> str:
    status = r.get("status", "ok")
    if status == "error":
        return '<span class="verdict v-error">ERROR</span>'
    if status == "no_face":
        return '<span class="verdict v-none">NO FACE</span>'
    if status == "not_scanned":
        return '<span class="verdict v-none">NOT SCANNED</span>'
    v = r.get("verdict")
    cls = {"FAKE": "v-fake", "REAL": "v-real"}.get(v, "v-none")
    return f'<span class="verdict {cls}">{_e(v or "?")}</span>'


class _Images:
    """Writes the report's PNGs under out_dir/img and hands back their relative src."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.root = out_dir / "img"
        self._neighbours: dict[str, str | None] = {}

    def png(self, rel: str, rgb: np.ndarray) -> str:
        path = self.root / rel
        _write_png(path, rgb)
        return _src(self.out_dir, path)

    def reference(self, slot: int, thumb: np.ndarray) -> str:
        """The stored picture of an enrolled reference face (written once per report)."""
        key = f"ref:{slot}"
        if key not in self._neighbours:
            self._neighbours[key] = self.png(f"refs/r{slot:05d}.png", _as_rgb(thumb))
        return self._neighbours[key]  # type: ignore[return-value]

    def neighbour(self, source: str) -> str | None:
        """Thumbnail of a bank face's source image, or None when it is not readable here."""
        if source not in self._neighbours:
            try:
                rgb = read_image(source) if Path(source).is_file() else None
            except ForgeryDetError:
                rgb = None
            if rgb is None:
                self._neighbours[source] = None
            else:
                rgb = _shrink(rgb, NEIGHBOUR_THUMB)
                self._neighbours[source] = self.png(f"bank/n{len(self._neighbours):05d}.png", rgb)
        return self._neighbours[source]


def _face_html(imgs: _Images, key: str, face: dict, thr: float) -> str:
    score = face.get("score")
    cls = "s-fake" if score is not None and score >= thr else "s-real"
    parts = ['<figure class="face">', "<div>"]
    crop = face.get("crop")
    if crop is not None:
        rgb = _as_rgb(crop)
        alt = f"face, frame {face.get('frame_index')}"
        parts.append(f'<img class="crop" src="{imgs.png(key + "_face.png", _shrink(rgb, THUMB))}" alt="{_e(alt)}"> ')
        if face.get("attention") is not None:
            heat = _shrink(heatmap_overlay(rgb, face["attention"]), THUMB)
            parts.append(f'<img class="crop" src="{imgs.png(key + "_heat.png", heat)}" alt="attention heatmap">')
    else:
        parts.append('<span class="meta">(no crop stored)</span>')
    parts.append("</div>")
    t = face.get("time")
    when = f"frame {_e(face.get('frame_index', '?'))}" + (f" ({float(t):.2f} s)" if t is not None else "")
    parts.append(
        f'<figcaption><span class="{cls}">score {_num(score)}</span> · {when} · track {_e(face.get("track_id", "?"))}'
        f' · det {_num(face.get("confidence"), ".2f")}</figcaption>'
    )
    nbs = face.get("neighbours") or []
    if nbs:
        person = nbs[0].get("person")
        what = f"nearest enrolled real faces of {person}" if person else "nearest real faces in the memory bank"
        parts.append(f'<div class="nbrs" title="{_e(what)}">')
        for nb in nbs:
            source = nb.get("source")
            if nb.get("thumb") is not None:  # an enrolled reference face: its stored picture
                src = imgs.reference(int(nb.get("slot", 0)), nb["thumb"])
            else:
                src = imgs.neighbour(str(source)) if source else None
            label = Path(str(source)).name if source else f"slot {nb.get('slot', '?')}"
            if person:
                label = f"{person}: {label} frame {nb.get('frame_index', '?')}"
            sim = f"sim {_num(nb.get('similarity'), '.2f')}"
            if src:
                pic = f'<img src="{src}" alt="{_e(label)}" title="{_e(label if person else source)}">'
            else:
                pic = f'<span class="name" title="{_e(source or label)}">{_e(label)}</span>'
            parts.append(f'<div class="nb">{pic}{_e(sim)}</div>')
        parts.append("</div>")
    parts.append("</figure>")
    return "".join(parts)


def _file_html(imgs: _Images, idx: int, r: dict, max_faces: int) -> str:
    anchor = f"file-{idx:03d}"
    out = [f'<section class="file" id="{anchor}">', f"<h2>{_verdict_badge(r)}{_e(r.get('path', '?'))}</h2>"]
    status = r.get("status", "ok")
    kind = r.get("kind", "?")
    sampled = r.get("frames_sampled", 0)
    if status == "not_scanned":
        out.append(f'<p class="notice">{_e(r.get("error") or "not scanned")}</p>')
        out.append("</section>")
        return "".join(out)
    if status == "error":
        why = _e(r.get("error") or "unknown error")
        out.append(f'<p class="notice error"><b>Could not scan this file:</b> {why}</p>')
        out.append("</section>")
        return "".join(out)
    if status == "no_face":
        what = f"{_e(sampled)} sampled frames" if kind == "video" else "the image"
        out.append(f'<p class="notice"><b>No face found</b> in {what}: there is nothing to judge, so no verdict.'
                   + (f" {_e(r['error'])}" if r.get("error") else "") + "</p>")
        out.append("</section>")
        return "".join(out)

    thr = float(r.get("threshold", 0.5))
    fps = r.get("fps")
    meta = [f"fake probability <b>{_num(r.get('score'))}</b> (threshold {thr:g})", _e(kind)]
    if kind == "video":
        meta.append(f"{_e(r.get('frames_with_face', 0))} of {_e(sampled)} sampled frames with a face")
        if fps:
            meta.append(f"{float(fps):.2f} fps")
    meta.append(f"{_count(r.get('n_faces', 0), 'face')} in {_count(r.get('n_tracks', 0), 'track')}")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')

    tracks = r.get("tracks") or []
    if tracks:
        out.append("<table><tr><th>track</th><th>faces</th><th>score</th></tr>")
        for t in tracks:
            s = t.get("score")
            cls = "s-fake" if s is not None and s >= thr else "s-real"
            out.append(f'<tr><td>{_e(t.get("track_id"))}</td><td>{_e(t.get("n_faces"))}</td>'
                       f'<td class="{cls}">{_num(s)}</td></tr>')
        out.append("</table>")

    faces = r.get("faces") or []
    if kind == "video" and faces:
        path = imgs.root / f"{anchor}/timeline.png"
        _timeline(r, path)
        out.append(f'<img class="timeline" src="{_src(imgs.out_dir, path)}" alt="score over time">')
    if faces:
        chosen = select_faces(faces, max_faces)
        note = (("the only face" if len(faces) == 1 else f"all {len(faces)} faces") if len(chosen) == len(faces) else
                f"{len(chosen)} of {len(faces)} faces: the highest-scoring ones and the rest evenly over time")
        out.append(f'<p class="meta">Showing {note}. Each face: crop, DifferenceAttention heatmap '
                   "(scaled per face), nearest real faces (of the bank, or of the enrolled reference person) with cosine "
                   "similarity.</p>")
        out.append('<div class="grid">')
        for j in chosen:
            out.append(_face_html(imgs, f"{anchor}/f{j:04d}", faces[j], thr))
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


_TEST_HOOK = """<script>
/* test hook only: the page needs no script; this records whether every image decoded */
window.addEventListener('load', function () {
  var ok = 0, broken = 0;
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (im.complete && im.naturalWidth > 0) { ok++; } else { broken++; }
  }
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.broken = broken;
});
</script>"""


def write_report(
    results: list[dict],
    out_dir: Path,
    settings: dict,
    *,
    max_faces: int = MAX_FACES,
    progress: ProgressFn | None = None,
) -> Path:
    """Write out_dir/index.html (+ PNGs under out_dir/img) for scan results; returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    imgs = _Images(out_dir)

    counts = {k: 0 for k in ("FAKE", "REAL", "no_face", "error", "not_scanned")}
    for r in results:
        key = r.get("status") if r.get("status") in ("no_face", "error", "not_scanned") else r.get("verdict")
        if key in counts:
            counts[key] += 1
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    head = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>forgerydet scan report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>forgerydet scan report</h1>",
        f'<p class="meta">{_e(stamp)} · {len(results)} files: {counts["FAKE"]} fake, {counts["REAL"]} real, '
        f'{counts["no_face"]} without a face, {counts["error"]} errors'
        + (f', {counts["not_scanned"]} not scanned (interrupted)' if counts["not_scanned"] else "") + "</p>",
        "<h2>Settings</h2><table>",
    ]
    head += [f"<tr><th>{_e(k)}</th><td>{_e(_setting_value(v))}</td></tr>" for k, v in settings.items()]
    head.append("</table>")

    summary = ["<h2>Files</h2><table><tr><th>file</th><th>verdict</th><th>score</th><th>faces</th></tr>"]
    body: list[str] = []
    for i, r in enumerate(results):
        summary.append(f'<tr><td><a href="#file-{i:03d}">{_e(r.get("path", "?"))}</a></td><td>{_verdict_badge(r)}</td>'
                       f'<td>{_num(r.get("score"))}</td><td>{_e(r.get("n_faces", 0))}</td></tr>')
        body.append(_file_html(imgs, i, r, max_faces))
        if progress is not None:
            progress(i + 1, len(results))
    summary.append("</table>")

    page = "\n".join(head + summary + body + [_TEST_HOOK, "</body></html>", ""])
    index = out_dir / "index.html"
    write_bytes_atomic(index, page.encode("utf-8"))
    return index
