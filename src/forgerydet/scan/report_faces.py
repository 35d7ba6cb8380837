"""The report's face cards: each shown face's crop, its DifferenceAttention heatmap (with how uneven the map is)
and the real faces it was compared with (their pictures when the bank's source images are on this machine,
their names otherwise), plus the PNG writer that keeps track of every image the page uses, and the score-over-time
plot's picture (a phone's copy beside it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from forgerydet.errors import ForgeryDetError
from forgerydet.faces.index import SOURCE_FOLDER
from forgerydet.io import read_image, write_png
from forgerydet.scan.figures import as_rgb, attention_spread, heatmap_overlay, shrink, timeline_plot
from forgerydet.scan.html import esc, mark, num, rel_src, score_text, side_text

THUMB = 160  # longest side of a face thumbnail (px)
NEIGHBOUR_THUMB = 64  # longest side of a neighbour thumbnail (px)
FLAT_SPREAD = 1.25  # a map whose most-attended cell got less than this times the least is called nearly uniform
IMG_FOLDER = "img"  # the report's pictures: out_dir/img/...
_CROP_NAME = re.compile(r"f(\d+)(?:_\d+)?\.\w+")  # the crops `extract`, `pairs` write: frame index[, face number]


class ReportImages:
    """Writes the report's PNGs under out_dir/img (under out_dir/img/RUN with `run`: one report's own folder) and
    hands back their relative src; `written` lists them all. bank_root: the folder the checkpoint's bank sources are
    relative to (the scan setting bank_sources_root; None: the current folder), where their pictures are looked up
    for thumbnails."""

    def __init__(self, out_dir: Path, bank_root: str | None = None, run: str | None = None) -> None:
        self.out_dir = out_dir
        self.bank_root = bank_root
        self.root = out_dir / IMG_FOLDER / run if run else out_dir / IMG_FOLDER
        self.written: set[Path] = set()
        self._neighbours: dict[str, str | None] = {}

    def png(self, rel: str, rgb: np.ndarray) -> str:
        path = self.root / rel
        write_png(path, rgb)
        self.written.add(path)
        return rel_src(self.out_dir, path)

    def reference(self, slot: int, thumb: np.ndarray) -> str:
        """The stored picture of an enrolled reference face (written once per report)."""
        key = f"ref:{slot}"
        if key not in self._neighbours:
            self._neighbours[key] = self.png(f"refs/r{slot:05d}.png", as_rgb(thumb))
        return self._neighbours[key]  # type: ignore[return-value]

    def neighbour(self, source: str) -> str | None:
        """Thumbnail of a bank face's source image, or None when it is not readable here or is not a face crop that
        `pairs`/`extract` wrote (STEM-8hex/fNNNNNN[_K].ext): the sources come from the checkpoint, so one from a stranger
        could otherwise name any picture on this disk and have a report that is then shared show it."""
        if source not in self._neighbours:
            if not is_crop_path(source):
                self._neighbours[source] = None
                return None
            path = Path(self.bank_root or ".") / source  # an absolute source stays itself
            if not path.is_file():  # a checkpoint copied from the machine it was made on: from here, as typed
                path = Path(source)
            try:
                rgb = read_image(path) if path.is_file() else None
            except ForgeryDetError:
                rgb = None
            if rgb is None:
                self._neighbours[source] = None
            else:
                rgb = shrink(rgb, NEIGHBOUR_THUMB)
                self._neighbours[source] = self.png(f"bank/n{len(self._neighbours):05d}.png", rgb)
        return self._neighbours[source]


def is_crop_path(source: str) -> bool:
    """Whether a bank source names a face crop in the layout `pairs` and `extract` write (STEM-8hex/fNNNNNN[_K].ext)."""
    p = Path(source)
    return SOURCE_FOLDER.fullmatch(p.parent.name) is not None and _CROP_NAME.fullmatch(p.name) is not None


def source_label(source: str) -> str:
    """A readable name for a bank face's source: the photo or video a crop was cut from, as `pairs`/`extract` name
    their folders (stem-8 hex digits/f000123_0.jpg -> 'stem, frame 123'), else the file's own name."""
    p = Path(source)
    folder, crop = SOURCE_FOLDER.fullmatch(p.parent.name), _CROP_NAME.fullmatch(p.name)
    if folder is None or crop is None:
        return p.name
    frame, stem = int(crop.group(1)), folder.group(1)
    stem = f"photo {stem}" if stem.isdigit() else stem  # web photos named by number: '58' alone reads as a count
    return stem + (f", frame {frame}" if frame else "")


def spread_caption(attention: Any) -> str:
    """What the heatmap's colours stand for on this face: how much more its most-attended cell got."""
    spread = attention_spread(attention)
    if spread is None:
        return "heatmap: some cells got no attention"
    flat = " (nearly uniform)" if spread < FLAT_SPREAD else ""
    return f"heatmap: most-attended cell {spread:.2f}x the least{flat}; red = 2x or more"


def _neighbours_html(imgs: ReportImages, nbs: list[dict]) -> str:
    person = nbs[0].get("person")
    what = f"nearest enrolled real faces of {person}" if person else "nearest real faces in the memory bank"
    pictures, names = [], []
    for nb in nbs:
        source = nb.get("source")
        if nb.get("thumb") is not None:  # an enrolled reference face: its stored picture
            src = imgs.reference(int(nb.get("slot", 0)), nb["thumb"])
        else:
            src = imgs.neighbour(str(source)) if source else None
        label = source_label(str(source)) if source else f"slot {nb.get('slot', '?')}"
        if person:
            label = f"{person}: {Path(str(source)).name} frame {nb.get('frame_index', '?')}"
        sim = f"sim {num(nb.get('similarity'), '.2f')}"
        if src:
            pictures.append(f'<div class="nb"><img src="{src}" alt="{esc(label)}, {sim}" '
                            f'title="{esc(label if person else source)}">{esc(sim)}</div>')
        else:
            names.append(f'<li title="{esc(source or label)}">{esc(label)} · {esc(sim)}</li>')
    out = (f'<div class="nbrs" role="group" aria-label="{esc(what)}" title="{esc(what)}">{"".join(pictures)}</div>'
           if pictures else "")  # named for a screen reader as the list is: a title is only a mouse's tooltip
    if names:
        out += f'<ul class="nbl" aria-label="{esc(what)}">{"".join(names)}</ul>'
    return out


PHONE_WIDTH = 600  # CSS px: a screen this narrow or narrower gets the plot's phone copy


def timeline_html(imgs: ReportImages, anchor: str, result: dict, alt: str) -> str:
    """A video's score-over-time plot: the wide picture, and on a phone's screen its narrow copy, whose legend and
    labels stay legible there."""
    wide, narrow = imgs.root / f"{anchor}/timeline.png", imgs.root / f"{anchor}/timeline_narrow.png"
    timeline_plot(result, wide)
    timeline_plot(result, narrow, narrow=True)
    imgs.written |= {wide, narrow}
    return picture_html(rel_src(imgs.out_dir, wide), rel_src(imgs.out_dir, narrow), alt)


def picture_html(wide: str, narrow: str | None, alt: str) -> str:
    """A report picture (`wide`: its src), and on a phone's screen its copy drawn for it (`narrow`, if any)."""
    img = f'<img class="timeline" src="{wide}" alt="{esc(alt)}">'
    return img if narrow is None else f'<picture><source media="(max-width: {PHONE_WIDTH}px)" srcset="{narrow}">{img}</picture>'


def face_html(imgs: ReportImages, key: str, face: dict, thr: float, kind: str = "video") -> str:
    """One face card: caption (score with its threshold mark; where in the file), crop and heatmap, neighbours.
    A still image's faces are named by number (its track id), a video's by time, frame and track. The caption is
    the figure's first child (HTML allows it first or last only; it stood between the pictures and the neighbours)."""
    score = face.get("score")
    t = face.get("time")
    if kind == "image":
        where = f"face {esc(face.get('track_id', '?'))}"
    else:
        where = (f"{float(t):.2f} s, " if t is not None else "") + f"frame {esc(face.get('frame_index', '?'))}" \
                + f" · track {esc(face.get('track_id', '?'))}"
    pictures = []
    crop = face.get("crop")
    heat_note = ""
    if crop is not None:
        rgb = as_rgb(crop)
        alt = f"face crop, {where}: " + ("no score" if score is None else  # as its caption reads, side included
                                          f"score {score_text(score, thr)}, {side_text(score, thr)}")
        pictures.append(f'<img class="crop" src="{imgs.png(key + "_face.png", shrink(rgb, THUMB))}" alt="{esc(alt)}"> ')
        if face.get("attention") is not None:
            heat_note = spread_caption(face["attention"])
            heat = shrink(heatmap_overlay(rgb, face["attention"]), THUMB)
            pictures.append(f'<img class="crop" src="{imgs.png(key + "_heat.png", heat)}" '
                            f'alt="{esc(f"attention heatmap of that face; {heat_note}")}">')
    else:
        pictures.append('<span class="meta">(no crop stored)</span>')
    caption = (f"<figcaption>score {mark(score, thr)} · {where} · detection {num(face.get('confidence'), '.2f')}"
               + (f"<br>{esc(heat_note)}" if heat_note else "") + "</figcaption>")
    parts = ['<figure class="face">', caption, "<div>", *pictures, "</div>"]
    if face.get("neighbours"):
        parts.append(_neighbours_html(imgs, face["neighbours"]))
    parts.append("</figure>")
    return "".join(parts)
