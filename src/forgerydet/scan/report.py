"""The visual scan report: one static HTML page plus PNGs, readable offline in any browser.

Per file: verdict and counts, per-track scores, a score-over-time plot (videos), and a grid of sampled
faces, each with its DifferenceAttention heatmap and the real bank faces it was compared against.
No external URLs; every string is HTML-escaped; every file is written atomically (temp + os.replace).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from forgerydet.errors import ForgeryDetError, os_reason, path_text
from forgerydet.io import read_image, write_bytes_atomic, write_png
from forgerydet.runtime import Progress
from forgerydet.scan.figures import as_rgb, heatmap_overlay, shrink, timeline_plot
from forgerydet.scan.records import MAX_FACES, select_faces

THUMB = 160  # longest side of a face thumbnail (px)
NEIGHBOUR_THUMB = 64  # longest side of a neighbour thumbnail (px)


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
        self.written: set[Path] = set()
        self._neighbours: dict[str, str | None] = {}

    def png(self, rel: str, rgb: np.ndarray) -> str:
        path = self.root / rel
        write_png(path, rgb)
        self.written.add(path)
        return _src(self.out_dir, path)

    def reference(self, slot: int, thumb: np.ndarray) -> str:
        """The stored picture of an enrolled reference face (written once per report)."""
        key = f"ref:{slot}"
        if key not in self._neighbours:
            self._neighbours[key] = self.png(f"refs/r{slot:05d}.png", as_rgb(thumb))
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
                rgb = shrink(rgb, NEIGHBOUR_THUMB)
                self._neighbours[source] = self.png(f"bank/n{len(self._neighbours):05d}.png", rgb)
        return self._neighbours[source]


def _face_html(imgs: _Images, key: str, face: dict, thr: float) -> str:
    score = face.get("score")
    cls = "s-fake" if score is not None and score >= thr else "s-real"
    parts = ['<figure class="face">', "<div>"]
    crop = face.get("crop")
    if crop is not None:
        rgb = as_rgb(crop)
        alt = f"face, frame {face.get('frame_index')}"
        parts.append(f'<img class="crop" src="{imgs.png(key + "_face.png", shrink(rgb, THUMB))}" alt="{_e(alt)}"> ')
        if face.get("attention") is not None:
            heat = shrink(heatmap_overlay(rgb, face["attention"]), THUMB)
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
    iv = r.get("score_interval")
    spread = f"; {_num(iv[0], '.2f')}-{_num(iv[1], '.2f')} over resampled frames" if iv else ""
    meta = [f"fake probability <b>{_num(r.get('score'))}</b> (threshold {thr:g}{spread})", _e(kind)]
    if kind == "video":
        meta.append(f"{_e(r.get('frames_with_face', 0))} of {_e(sampled)} sampled frames with a face")
        if fps:
            meta.append(f"{float(fps):.2f} fps")
    meta.append(f"{_count(r.get('n_faces', 0), 'face')} in {_count(r.get('n_tracks', 0), 'track')}")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    for note in r.get("notes") or []:
        out.append(f'<p class="notice"><b>Note:</b> {_e(note)}</p>')

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
        timeline_plot(r, path)
        imgs.written.add(path)
        out.append(f'<img class="timeline" src="{_src(imgs.out_dir, path)}" alt="score over time">')
    if faces:
        chosen = select_faces(faces, max_faces)
        note = (("the only face" if len(faces) == 1 else f"all {len(faces)} faces") if len(chosen) == len(faces) else
                f"{len(chosen)} of {len(faces)} faces: the highest-scoring ones and the rest evenly over time")
        out.append(f'<p class="meta">Showing {note}. Each face: crop, DifferenceAttention heatmap '
                   "(scaled per face: where the model attended, not a map of the forgery), nearest real faces (of the "
                   "bank, or of the enrolled reference person) with cosine similarity.</p>")
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


REPORT_TITLE = "<title>forgerydet scan report</title>"  # every report's page has it: an index.html without it is not ours
# the names _Images and _file_html give the PNGs under img/: only these are ever removed from a reused folder
_OUR_IMAGE = re.compile(r"(file-\d{3,}/(f\d{4,}_(face|heat)|timeline)|refs/r\d{5,}|bank/n\d{5,})\.png")


def check_report_folder(out_dir: Path) -> bool:
    """Refuse, before the scan, a --report folder whose index.html forgerydet did not write: the report would
    replace it (the images it adds go under img/, beside the user's other files). True when the folder holds an
    earlier report, which the new one replaces."""
    index = Path(out_dir) / "index.html"
    try:
        with open(index, "rb") as f:
            start = f.read(4096)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise ForgeryDetError(f"--report {path_text(out_dir)}: cannot read its index.html ({os_reason(e)})") from None
    if REPORT_TITLE.encode() not in start:
        raise ForgeryDetError(f"--report {path_text(out_dir)} holds an index.html that is not a forgerydet report: "
                              f"the report would replace it; give a new or empty folder")
    return True


def _remove_stale(imgs: _Images) -> int:
    """Delete the earlier report's images that the new page does not show (its faces of other videos would stay
    beside it, and travel with the folder when it is shared); returns how many. Only names a report writes are
    touched, then the folders they leave empty."""
    removed = 0
    for path in sorted(imgs.root.rglob("*.png")) if imgs.root.is_dir() else []:
        rel = path.relative_to(imgs.root).as_posix()
        if path not in imgs.written and _OUR_IMAGE.fullmatch(rel) and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    for folder in sorted((p for p in imgs.root.glob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if re.fullmatch(r"file-\d{3,}|refs|bank", folder.name) and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def write_report(
    results: list[dict],
    out_dir: Path,
    settings: dict,
    *,
    max_faces: int = MAX_FACES,
    progress: Progress | None = None,
) -> Path:
    """Write out_dir/index.html (+ PNGs under out_dir/img) for scan results; returns the HTML path. An earlier
    report in out_dir is replaced whole: its images that the new page does not show are removed."""
    out_dir = Path(out_dir)
    replacing = check_report_folder(out_dir)
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
        REPORT_TITLE, f"<style>{_CSS}</style></head><body>",
        "<h1>forgerydet scan report</h1>",
        f'<p class="meta">{_e(stamp)} · {_count(len(results), "file")}: {counts["FAKE"]} fake, {counts["REAL"]} real, '
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
    if replacing:
        _remove_stale(imgs)
    return index
