"""The visual scan report: one static HTML page plus PNGs, readable offline in any browser.

Per file: verdict and counts, per-track scores, a score-over-time plot (videos), and a grid of sampled
faces, each with its DifferenceAttention heatmap and the real bank faces it was compared against.
No external URLs; every string is HTML-escaped; every file is written atomically (temp + os.replace).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from forgerydet import __version__
from forgerydet.errors import ForgeryDetError, os_reason, path_text
from forgerydet.io import write_bytes_atomic
from forgerydet.paths import check_output
from forgerydet.runtime import Progress
from forgerydet.scan.figures import narrow_overview, overview_picture
from forgerydet.scan.html import CSS, count, esc, guide_html, mark, no_face_detail, score_text, threshold_text
from forgerydet.scan.records import INTERVAL_LEVEL, MAX_FACES, select_faces, shortest_names
from forgerydet.scan.report_faces import IMG_FOLDER, ReportImages, face_html, picture_html, timeline_html


def _rounded(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _setting_value(v: Any) -> str:
    """A setting as the page shows it: numbers to 3 decimals (the threshold reads the same everywhere)."""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(_rounded(v), sort_keys=True, default=str)
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
    return f'<span class="verdict {cls}">{esc(v or "?")}</span>'


def _file_facts(r: dict) -> str:
    """What was scanned: a video's length, frame rate and size, and the file's sha256 (one line)."""
    facts = []
    if r.get("duration_s") is not None:
        facts.append(f"{float(r['duration_s']):.1f} s")
    if r.get("fps"):
        facts.append(f"{float(r['fps']):.2f} fps")
    if r.get("width") and r.get("height"):
        facts.append(f"{esc(r['width'])}x{esc(r['height'])} px")
    if r.get("sha256"):
        facts.append(f"sha256 <code>{esc(r['sha256'])}</code>")
    return f'<p class="meta">{" · ".join(facts)}</p>' if facts else ""


def _timeline_alt(r: dict, thr: float) -> str:
    """The score-over-time plot in words, for a reader who cannot see it."""
    faces = r.get("faces") or []
    scored = [f for f in faces if f.get("score") is not None]
    if not scored:
        return "score over time"
    top = max(scored, key=lambda f: float(f["score"]))
    when = f"{float(top['time']):.2f} s" if top.get("time") is not None else f"frame {top.get('frame_index')}"
    above = sum(float(f["score"]) >= thr for f in scored)
    return (f"score over time: {len(scored)} faces, {above} at or above the threshold {threshold_text(thr)}, "
            f"highest {score_text(top['score'], thr)} at {when}")


def _overview_html(imgs: ReportImages, anchor: str, r: dict, thr: float) -> str:
    """A still image with its faces boxed and numbered (red at or above the threshold), so that 'face 2' of a group
    photo can be found in it."""
    wide = imgs.png(f"{anchor}/overview.png", overview_picture(r["overview"], r["faces"], int(r["width"]), thr))
    phone = narrow_overview(r["overview"], r["faces"], int(r["width"]), thr)  # its tags legible there (a crowd's: none)
    above = [str(f.get("track_id")) for f in r["faces"] if f.get("score") is not None and float(f["score"]) >= thr]
    said = f"faces {', '.join(above)} at or above the threshold" if above else "no face at or above the threshold"
    alt = f"the image with its {len(r['faces'])} faces boxed and numbered from the left; {said}"
    return picture_html(wide, None if phone is None else imgs.png(f"{anchor}/overview_narrow.png", phone), alt)


def _file_html(imgs: ReportImages, idx: int, r: dict, max_faces: int) -> str:
    anchor = f"file-{idx:03d}"
    out = [f'<section class="file" id="{anchor}">', f"<h2>{_verdict_badge(r)} {esc(r.get('path', '?'))}</h2>"]
    status = r.get("status", "ok")
    kind = r.get("kind", "?")
    sampled = r.get("frames_sampled", 0)
    if status == "not_scanned":
        out.append(f'<p class="notice">{esc(r.get("error") or "not scanned")}</p>')
        out.append("</section>")
        return "".join(out)
    if status == "error":
        why = esc(r.get("error") or "unknown error")
        out.append(f'<p class="notice error"><b>Could not scan this file:</b> {why}</p>')
        out.append("</section>")
        return "".join(out)
    out.append(_file_facts(r))
    if status == "no_face":
        what = f"{esc(sampled)} sampled frames" if kind == "video" else "the image"
        out.append(f'<p class="notice"><b>No face found</b> in {what}: there is nothing to judge, so no verdict.'
                   + no_face_detail(r.get("error")) + "</p>")
        out.append("</section>")
        return "".join(out)

    thr = float(r.get("threshold", 0.5))
    iv = r.get("score_interval")
    spread = f"; {score_text(iv[0], thr)}-{score_text(iv[1], thr)} over resampled frames, the central {INTERVAL_LEVEL:.0%}" if iv else ""
    meta = [f"fake probability <b>{mark(r.get('score'), thr)}</b> (threshold {threshold_text(thr)}{spread})", esc(kind)]
    if kind == "video":
        meta.append(f"{esc(r.get('frames_with_face', 0))} of {esc(sampled)} sampled frames with a face")
    meta.append(count(r.get("n_faces", 0), "face") if kind == "image" else
                f"{count(r.get('n_faces', 0), 'face')} in {count(r.get('n_tracks', 0), 'track')}")
    out.append(f'<p class="meta">{" · ".join(meta)}</p>')
    for note in r.get("notes") or []:
        out.append(f'<p class="notice"><b>Note:</b> {esc(note)}</p>')
    if r.get("resumed"):  # scan --resume: the record came from the earlier scan's JSON, which keeps no pictures
        out.append('<p class="notice">Taken over from the earlier scan this one resumed (<code>--resume</code>): its '
                   "scores are that scan's, and its face pictures were not kept, so none are shown. Scan the file "
                   "again without <code>--resume</code> to see them.</p>")

    tracks = r.get("tracks") or []
    if tracks:
        who = "face" if kind == "image" else "track"
        out.append(f"<table><tr><th>{who}</th><th>faces</th><th>score</th></tr>" if kind != "image" else
                   f"<table><tr><th>{who}</th><th>score</th></tr>")
        for t in tracks:
            n = "" if kind == "image" else f"<td>{esc(t.get('n_faces'))}</td>"
            out.append(f"<tr><td>{esc(t.get('track_id'))}</td>{n}<td>{mark(t.get('score'), thr)}</td></tr>")
        out.append("</table>")

    faces = r.get("faces") or []
    if kind == "image" and faces and r.get("overview") is not None and r.get("width"):
        out.append(_overview_html(imgs, anchor, r, thr))
    if kind == "video" and faces:
        out.append(timeline_html(imgs, anchor, r, _timeline_alt(r, thr)))
    if faces:
        chosen = select_faces(faces, max_faces)
        note = (("the only face" if len(faces) == 1 else f"all {len(faces)} faces") if len(chosen) == len(faces) else
                f"{len(chosen)} of {len(faces)} faces: the highest-scoring ones and the rest evenly over time")
        out.append(f'<p class="meta">Showing {note}. Each face: crop, where the model attended (not a map of the '
                   "forgery), the real faces it was compared with and their similarity.</p>")
        out.append('<div class="grid">')
        for j in chosen:
            out.append(face_html(imgs, f"{anchor}/f{j:04d}", faces[j], thr, kind))
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
# A report's pictures go into a folder of its own, img/RUN/ (RUN: YYYYmmdd-HHMMSS-k), and its page last, so an earlier
# page keeps its own pictures until the new one replaces it. Only these names (and img/file-NNN/..., the layout before
# 2026-12-07) are ever removed from a reused folder.
_RUN = r"\d{8}-\d{6}-\d+"
_OUR_IMAGE = re.compile(rf"(?:{_RUN}/)?(file-\d{{3,}}/(f\d{{4,}}_(face|heat)|(timeline|overview)(_narrow)?)|refs/r\d{{5,}}|bank/n\d{{5,}})\.png")
_OUR_FOLDER = re.compile(rf"(?:{_RUN}/)?(file-\d{{3,}}|refs|bank)|{_RUN}")


def check_report_folder(out_dir: Path) -> None:
    """Refuse, before the scan, a --report folder whose index.html forgerydet did not write: the report would
    replace it (the images it adds go under img/, beside the user's other files), or whose img is a file."""
    check_output(out_dir, "--report", folder=True, inside=(IMG_FOLDER,), writes=("index.html",))
    index = Path(out_dir) / "index.html"
    try:
        with open(index, "rb") as f:
            start = f.read(4096)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ForgeryDetError(f"--report {path_text(out_dir)}: cannot read its index.html ({os_reason(e)})") from None
    if REPORT_TITLE.encode() not in start:
        raise ForgeryDetError(f"--report {path_text(out_dir)} holds an index.html that is not a forgerydet report: "
                              f"the report would replace it; give a new or empty folder")
    if not os.access(index, os.W_OK):  # else refused only when the page is written, after the whole scan
        raise ForgeryDetError(f"--report {path_text(out_dir)}: its index.html is read-only (make it writable, or give "
                              f"another folder)")


def written_by_report(out_dir: Path, path: Path) -> bool:
    """Whether `path` (links followed) is the report's page in `out_dir` or lies in one of its image folders."""
    root, p = Path(os.path.realpath(out_dir)), Path(os.path.realpath(path))
    if p == root:  # the folder itself
        return True
    if p.parent == root:
        return p.name in ("index.html", IMG_FOLDER)
    return p.is_relative_to(root) and p.relative_to(root).parts[0] == IMG_FOLDER  # the report's pictures, all of them


def _remove_stale(img: Path, keep: set[Path]) -> int:
    """Delete the pictures under `img` that the page does not show (`keep`): an earlier report's (its faces of other
    videos would stay beside the new page, and travel with the folder when it is shared), or those of a report that
    was stopped before its page; then the folders they leave empty. Only names a report writes are touched. Returns
    how many could not be removed."""
    left = 0
    for path in sorted(img.rglob("*.png")) if img.is_dir() else []:
        rel = path.relative_to(img).as_posix()
        if path not in keep and _OUR_IMAGE.fullmatch(rel) and not path.is_symlink():
            try:
                path.unlink(missing_ok=True)
            except OSError:
                left += 1
    folders = [p for p in img.rglob("*") if p.is_dir() and not p.is_symlink()] if img.is_dir() else []
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # deepest first
        if _OUR_FOLDER.fullmatch(folder.relative_to(img).as_posix()):
            try:
                folder.rmdir()  # only while empty
            except OSError:
                pass
    return left


def _provenance(settings: dict) -> str:
    """One line under the title: the forgerydet version, the model (and its sha256), the threshold and, from the
    CLI, the command that made the report and its notes on the model and the settings."""
    parts = [f"forgerydet {esc(__version__)}"]
    if settings.get("checkpoint"):
        digest = f" (sha256 <code>{esc(str(settings['checkpoint_sha256'])[:16])}…</code>)" \
            if settings.get("checkpoint_sha256") else ""
        parts.append(f"model {esc(settings['checkpoint'])}{digest}")
    if isinstance(settings.get("threshold"), (int, float)):
        parts.append(f"threshold {threshold_text(float(settings['threshold']))}"
                     + (" (given with <code>--threshold</code>)" if settings.get("threshold_given") else ""))
    if settings.get("reference"):  # what the faces were compared with: a person's enrolled faces, a disk bank, the bank
        parts.append(f"compared with the enrolled faces of {esc(repr(settings['reference']))} "
                     f"({esc(settings.get('reference_faces'))} faces)")
    elif settings.get("bank"):
        parts.append(f"compared with the disk bank {esc(settings['bank'])} ({esc(settings.get('bank_entries'))} faces)")
    elif settings.get("bank_entries") is not None:
        parts.append(f"compared with the checkpoint's bank ({esc(settings['bank_entries'])} real faces)")
    if settings.get("segment"):  # --start/--end: each video's verdict is about that part of it
        parts.append(f"videos sampled {esc(settings['segment'])} only")
    line = f'<p class="meta">{" · ".join(parts)}</p>'
    if settings.get("command"):
        where = f" (in {esc(settings['working_directory'])})" if settings.get("working_directory") else ""
        line += f'<p class="meta">command{where}: <code>{esc(settings["command"])}</code></p>'
    # what the CLI printed as notes about the model and the settings (records.settings_notes): a reader of the page
    # needs them as much as the person who ran the scan
    line += "".join(f'<p class="warn">Note: {esc(n)}</p>' for n in settings.get("notes") or [])
    return line


def write_report(
    results: list[dict],
    out_dir: Path,
    settings: dict,
    *,
    max_faces: int = MAX_FACES,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write out_dir/index.html (+ PNGs under out_dir/img/RUN) for scan results; returns the HTML path. An earlier
    report there is replaced whole once the new page is written; stopped or failed before, the new pictures go and
    the earlier report stays as it was. Pictures that could not be removed are said in `notes`, when given."""
    out_dir = Path(out_dir)
    check_report_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    imgs = ReportImages(out_dir, settings.get("bank_sources_root"), run=_new_run(out_dir / IMG_FOLDER))
    try:
        index = _write_page(imgs, results, settings, max_faces, progress)
    except BaseException:  # Ctrl-C, a full disk, a read-only folder: the earlier page and its pictures stay whole
        _remove_stale(imgs.root, set())
        with contextlib.suppress(OSError):
            imgs.root.rmdir()
        raise
    left = _remove_stale(out_dir / IMG_FOLDER, imgs.written)
    if left and notes is not None:
        notes.append(f"{left} picture(s) of an earlier report in {path_text(out_dir / IMG_FOLDER)} could not be removed "
                     f"(no permission?); the new page does not show them")
    return index


def _new_run(img: Path) -> str:
    """The name of a new folder, made now, for this report's pictures under `img` (never an earlier report's)."""
    stamp = f"{_dt.datetime.now():%Y%m%d-%H%M%S}"
    img.mkdir(exist_ok=True)
    for k in itertools.count(1):
        try:
            (img / f"{stamp}-{k}").mkdir()
        except FileExistsError:
            continue
        return f"{stamp}-{k}"
    raise AssertionError("unreachable")


def _write_page(imgs: ReportImages, results: list[dict], settings: dict, max_faces: int,
                progress: Progress | None) -> Path:
    """The pictures (through `imgs`), then index.html, atomically and last."""
    out_dir = imgs.out_dir
    counts = {k: 0 for k in ("FAKE", "REAL", "no_face", "error", "not_scanned")}
    for r in results:
        key = r.get("status") if r.get("status") in ("no_face", "error", "not_scanned") else r.get("verdict")
        if key in counts:
            counts[key] += 1
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    head = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        REPORT_TITLE, f"<style>{CSS}</style></head><body>",
        "<h1>forgerydet scan report</h1>",
        f'<p class="meta">{esc(stamp)} · {count(len(results), "file")}: {counts["FAKE"]} fake, {counts["REAL"]} real, '
        f'{counts["no_face"]} without a face, {count(counts["error"], "error")}'
        + (f', {counts["not_scanned"]} not scanned (interrupted)' if counts["not_scanned"] else "") + "</p>",
        _provenance(settings),
    ]
    # a file's notes go on a full-width row under it, so that they stay readable on a phone
    summary = ['<h2>Files</h2><div class="scroll"><table><tr><th>file</th><th>verdict</th><th>score</th>'
               "<th>faces</th></tr>"]
    body: list[str] = []
    names = shortest_names([str(r.get("path", "?")) for r in results])  # x/face.png and y/face.png, not face.png twice
    for i, r in enumerate(results):
        thr = float(r.get("threshold") or 0.5)
        summary.append(f'<tr><td><a href="#file-{i:03d}" title="{esc(r.get("path", "?"))}">'
                       f'{esc(names[i])}</a></td><td>{_verdict_badge(r)}</td>'
                       f'<td>{mark(r.get("score"), thr)}</td><td>{esc(r.get("n_faces", 0))}</td></tr>')
        summary += [f'<tr class="noterow"><td colspan="4">Note: {esc(n)}</td></tr>' for n in r.get("notes") or []]
        body.append(_file_html(imgs, i, r, max_faces))
        if progress is not None:
            progress(i + 1, len(results))
    summary += ["</table></div>", guide_html(settings.get("reference"), bool(settings.get("threshold_given")))]
    tail = ['<details class="file"><summary><b>Settings</b>: everything this scan used, to repeat it</summary><table>']
    shown = {k: threshold_text(v) if k == "threshold" and isinstance(v, float) else _setting_value(v) for k, v in settings.items()}
    tail += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in shown.items()]
    tail.append("</table></details>")

    page = "\n".join(head + summary + body + tail + [_TEST_HOOK, "</body></html>", ""])
    return write_bytes_atomic(out_dir / "index.html", page.encode("utf-8"))
