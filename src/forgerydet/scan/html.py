"""The report's HTML vocabulary: escaping and number formats, the page's style, the threshold marks that do not
rely on colour, and the fixed "How to read this report" text. Shared by report.py (the page) and
report_faces.py (the face cards)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from forgerydet.errors import no_bidi, path_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{margin:0 0 4px} h2{margin:0;font-size:1.15em;word-break:break-all}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.scroll{overflow-x:auto;max-width:100%}
.file{background:#fff;border:1px solid #ddd;border-radius:8px;padding:14px 16px;margin:18px 0}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700;margin-right:8px}
.v-fake{background:#c62828}.v-real{background:#2e7d32}.v-none{background:#757575}.v-error{background:#6a1b9a}
.notice{padding:8px 12px;border-radius:4px;background:#fff3e0;border-left:4px solid #ef6c00}
.notice.error{background:#f3e5f5;border-left-color:#6a1b9a}
.guide{background:#eef3fb;border-left:4px solid #3b6fb6;padding:6px 14px;border-radius:4px;margin:12px 0}
.guide summary{font-weight:700;cursor:pointer}.guide li{margin:3px 0}
.meta{color:#555;margin:6px 0}
.warn{color:#6d4c00;background:#fff8ee;margin:6px 0;padding:4px 8px}
code{overflow-wrap:anywhere;background:#f0f0f0;padding:0 3px;border-radius:3px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.face{margin:0;border:1px solid #e0e0e0;border-radius:6px;padding:6px;width:252px;max-width:100%;background:#fcfcfc}
.face img.crop{width:120px;height:120px;object-fit:cover}
.face figcaption{font-size:.8em;margin-bottom:4px}
.noterow td{border-top:none;font-size:.85em;color:#6d4c00;background:#fff8ee}
.s-fake{color:#c62828;font-weight:700}.s-real{color:#2e7d32;font-weight:700}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
.nbrs{display:flex;flex-wrap:wrap;gap:4px;margin-top:4px}
.nb{font-size:.7em;width:56px;text-align:center;overflow-wrap:anywhere}
.nb img{width:56px;height:56px;object-fit:cover;display:block}
.nbl{font-size:.75em;margin:4px 0 0;padding-left:16px;overflow-wrap:anywhere}
.timeline{max-width:100%;height:auto}
.scroll td a,details.file td{overflow-wrap:anywhere}
@media print{
body{margin:0;background:#fff}
h2,.meta:has(+.grid){break-after:avoid}
tr,img,.face,.notice,.warn{break-inside:avoid}
.verdict,.noterow td,.notice,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}
details:not([open])::details-content{content-visibility:visible;display:contents}
.scroll{overflow:visible}
}
"""

ABOVE, BELOW = "▲", "▼"  # beside a score, so that the colour is never the only sign of which side of the threshold

GUIDE = [
    "<b>Score and verdict.</b> Each face gets a fake probability; a video's score combines its sampled frames "
    "(the aggregation named at the end). The probability was fitted on as many fakes as real faces, so it is too "
    "high where fakes are rare. A file is called FAKE when its score reaches the threshold, which was "
    "chosen on held-out real faces at a set share of false alarms (<code>forgerydet info CHECKPOINT</code> says "
    f"which). {ABOVE} marks a score at or above the threshold, {BELOW} one below it.",
    "<b>A REAL verdict is never proof.</b> This model learned the traces of blending a face into a frame. It misses "
    "many reenactments and local edits (Face2Face, NeuralTextures, mouth or eye edits) and whole-image synthesis "
    "(GAN-made faces), and even some face swaps of the kind it learned score low (a FaceForensics++ Deepfakes video "
    "0.08). Small faces and heavy re-encoding hide forgeries further.",
    "<b>What raises real faces' scores</b> (a FAKE verdict then deserves care): retouched or smoothed skin, headwear "
    "across the forehead, hard side light, a blurred portrait-mode background, closed or downcast eyes (blinks), "
    "strong blur or re-encoding, and interlaced video (deinterlaced, which helps). A file of many faces is called "
    "FAKE more often too: each face is another chance to cross the threshold. Notes under a file name the cases "
    "the scan can detect; for the others, look at the frames that drive its score.",
    "<b>The heatmap</b> shows where the model looked within each face, against the face's least-attended cell: "
    "blue there, red where a cell got twice as much or more. The caption gives the actual ratio (\"nearly uniform\" "
    "under 1.25x); the shipped model's maps are mild (1.1-1.7x on its validation videos, about half of them nearly "
    "uniform), so mostly blue. It is not a map of the forgery.",
    "<b>Nearest real faces</b> are the bank's faces each face was compared with, with the cosine similarity of "
    "their features (1 = identical). They are other, unrelated people: a name says which training photo or video "
    "frame it was, not who is in this file. Their pictures appear only when the images the bank was built from are "
    "found at the paths it recorded (relative ones from the folder the bank was written in, where the checkpoint "
    "names it, else from the current folder); otherwise their names are given.",
    "Measurements behind all of this: README.md, section \"When a verdict deserves less trust\", and models/README.md "
    "(the shipped model's card) in the forgerydet repository.",
]


def esc(x: Any) -> str:
    """Any value as escaped HTML text (a file name's non-UTF-8 bytes as \\xNN, errors.path_text; its bidirectional
    controls as \\uXXXX, errors.no_bidi, so that no name shows reordered)."""
    return html.escape(no_bidi(path_text(x)), quote=True)


def num(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(float(x), fmt)


def count(n: Any, word: str) -> str:
    return f"{esc(n)} {word}" + ("" if n == 1 else "s")


def rel_src(out_dir: Path, path: Path) -> str:
    """A file under out_dir as an escaped, URL-quoted relative src."""
    return esc(quote(path.relative_to(out_dir).as_posix()))


def no_face_detail(error: Any) -> str:
    """What a no-face record's error adds to the report's 'No face found in ...: there is nothing to judge' line (a
    hint on --detect-side, a first page only), escaped, with a space before it; '' where it adds nothing. Its
    opening words ('no face found in 8 sampled frames') only repeated that line."""
    rest = re.sub(r"^no face found(?: in \d+ sampled frames)?[;:,]?\s*", "", str(error or ""))
    return f" {esc(rest[:1].upper() + rest[1:])}" if rest else ""


def threshold_text(threshold: float) -> str:
    """A threshold as every output shows it: 3 decimals, or more where 3 would round it down (0.254491 -> '0.2545',
    not '0.254', beside which a REAL 0.2545 read as a score above the threshold); never shown below its value."""
    d = next((d for d in range(3, 9) if float(f"{threshold:.{d}f}") >= threshold), 8)
    return f"{threshold:.{d}f}"


def score_digits(score: float, threshold: float) -> int:
    """Decimals to show a score with beside its threshold (as threshold_text shows it): 3, or more for a score below
    it that would round to it ('0.338' REAL beside threshold 0.338 reads as a contradiction; 0.33796 does not), or
    for one at or above it that 3 decimals would show below threshold_text ('0.254' FAKE beside 0.2545)."""
    if float(score) >= threshold:
        shown = float(threshold_text(threshold))
        return next((d for d in range(3, 9) if float(f"{float(score):.{d}f}") >= shown), 8)
    return next((d for d in range(3, 7) if f"{float(score):.{d}f}" != f"{threshold:.{d}f}"), 6)


def score_text(score: float, threshold: float) -> str:
    """A score (or a bound of its interval) as shown beside its threshold: with score_digits' decimals, so that one
    below the threshold never reads as at or above threshold_text, nor one at or above it as below."""
    return f"{float(score):.{score_digits(score, threshold)}f}"


def side_text(score: float, threshold: float) -> str:
    """Which side of the threshold a score is on, in words, with the threshold as threshold_text shows it (for a
    picture's alt text, where the ▲/▼ and colour of `mark` do not reach)."""
    side = "at or above" if float(score) >= threshold else "below"
    return f"{side} the threshold {threshold_text(threshold)}"


def mark(score: Any, threshold: float) -> str:
    """A score with its threshold mark, coloured, for HTML: 'score ▲' at or above, 'score ▼' below, and the side in
    words for a screen reader (visually hidden: a tooltip reaches neither it nor a keyboard). A score below the
    threshold that rounds to its 3 decimals gets more, so that '0.338 ▼' never sits beside 'threshold 0.338'."""
    if score is None:
        return "–"
    above = float(score) >= threshold
    side = "at or above" if above else "below"
    digits = score_digits(score, threshold)
    shown = max(digits, len(threshold_text(threshold).split(".")[1]))  # never fewer decimals than threshold_text's
    return (f'<span class="{"s-fake" if above else "s-real"}" title="{side} the threshold {threshold:.{shown}f}">'
            f'{num(score, f".{digits}f")} {ABOVE if above else BELOW}<span class="vh"> ({side} the threshold)</span></span>')


def reference_guide(name: str) -> str:
    """The guide's item on neighbours when a scan compared faces with a person's enrolled faces, not the bank."""
    return (f"<b>Nearest enrolled faces</b> are the real faces enrolled as {esc(repr(name))} that each face was "
            "compared with, instead of the bank's unrelated people, with the cosine similarity of their features "
            "(1 = identical). A face far less similar to them than they are to one another may not be that person at "
            "all, and the comparison then says little. The model reads this difference only weakly: a verdict against "
            "enrolled faces is no surer than a plain scan's (see the note above).")


CALIBRATED = ("which was chosen on held-out real faces at a set share of false alarms (<code>forgerydet info "
              "CHECKPOINT</code> says which)")
GIVEN = ("which here was given with <code>--threshold</code>: not the checkpoint's own, chosen on held-out real faces "
         "at a set share of false alarms, so the share of real faces it calls FAKE is unknown")


def guide_html(reference: str | None = None, threshold_given: bool = False) -> str:
    """The fixed 'How to read this report' box (open by default; it folds away); with `reference` (a scan against
    a person's enrolled faces) its item on the nearest faces describes those instead of the bank's; with
    `threshold_given` (scan --threshold) its item on the verdict says that the threshold is the user's."""
    guide = GUIDE if reference is None else [reference_guide(reference) if g.startswith("<b>Nearest real faces</b>")
                                             else g for g in GUIDE]
    guide = [g.replace(CALIBRATED, GIVEN) for g in guide] if threshold_given else guide
    items = "".join(f"<li>{item}</li>" for item in guide)
    return f'<details class="guide" open><summary>How to read this report</summary><ul>{items}</ul></details>'
