"""scan/report_faces.py: a face card's caption (score mark, where in the file), the heatmap's spread caption,
neighbours as pictures when their source images are here and as readable names when not."""

from __future__ import annotations

from html.parser import HTMLParser

import cv2
import numpy as np

from forgerydet.scan.report_faces import (FLAT_SPREAD, ReportImages, face_html, is_crop_path, source_label,
                                         spread_caption)


def test_source_labels_name_the_photo_or_video_a_bank_face_came_from():
    assert source_label("Juan_Ignacio_Chela_0003-f2cb542b/f000000_0.jpg") == "Juan_Ignacio_Chela_0003"
    assert source_label("d9-1cd967e8/f000280_0.jpg") == "d9, frame 280"
    assert source_label("/nowhere/real_faces/000_0042.png") == "000_0042.png"  # not a crop folder: its own name
    assert source_label("x-notahash/f000001_0.jpg") == "f000001_0.jpg"
    assert source_label("58-966ab166/f000000_0.jpg") == "photo 58"  # a number alone would read as a count


def test_the_spread_caption_says_how_uneven_the_map_is():
    assert spread_caption(np.array([[1.0, 2.0]])) == "heatmap: most-attended cell 2.00x the least; red = 2x or more"
    assert "1.10x the least (nearly uniform)" in spread_caption(np.array([[1.0, 1.1]])) and FLAT_SPREAD == 1.25
    assert spread_caption(np.array([[0.0, 1.0]])) == "heatmap: some cells got no attention"


def _face(tmp_path, sources):
    rng = np.random.default_rng(0)
    return {"frame_index": 12, "time": 0.48, "track_id": 1, "confidence": 0.987, "score": 0.61,
            "crop": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "attention": 1 + rng.random((7, 7)),
            "neighbours": [{"slot": k, "similarity": 0.7 - k / 10, "source": s} for k, s in enumerate(sources)]}


def test_a_video_face_card(tmp_path):
    here = tmp_path / "crops" / "bank-89abcdef" / "f000007_0.png"
    here.parent.mkdir(parents=True)
    cv2.imwrite(str(here), np.full((80, 80, 3), 128, np.uint8))
    imgs = ReportImages(tmp_path / "report")
    card = face_html(imgs, "file-000/f0001", _face(tmp_path, [str(here), "p-0123abcd/f000000_0.jpg"]), 0.5)
    assert "0.610 ▲" in card and "0.48 s, frame 12 · track 1 · detection 0.99" in card
    assert 'alt="face crop, 0.48 s, frame 12 · track 1: score 0.610, at or above the threshold 0.500"' in card and "attention heatmap of that face; heatmap:" in card
    assert '<img src="img/bank/n00000.png" alt="bank, frame 7, sim 0.70"' in card  # a picture where the crop is here
    assert '<li title="p-0123abcd/f000000_0.jpg">p · sim 0.60</li>' in card  # a name where it is not
    assert {p.name for p in imgs.written} == {"f0001_face.png", "f0001_heat.png", "n00000.png"}


def test_relative_bank_sources_are_found_from_the_folder_the_bank_was_written_in(tmp_path, monkeypatch):
    (tmp_path / "crops" / "p-0123abcd").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "crops" / "p-0123abcd" / "f000000_0.jpg"), np.full((80, 80, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path / "crops")  # another folder than the one training ran in
    face = _face(tmp_path, ["crops/p-0123abcd/f000000_0.jpg"])
    assert "<img" not in face_html(ReportImages(tmp_path / "r1"), "file-000/f0001", face, 0.5).split("heatmap")[-1]
    card = face_html(ReportImages(tmp_path / "r2", bank_root=str(tmp_path)), "file-000/f0001", face, 0.5)
    assert '<img src="img/bank/n00000.png" alt="p, sim 0.70"' in card


def test_a_still_images_faces_are_numbered_not_timed(tmp_path):
    card = face_html(ReportImages(tmp_path), "file-000/f0000", _face(tmp_path, []), 0.7, kind="image")
    assert "0.610 ▼" in card and "· face 1 · detection 0.99" in card and "frame" not in card and "nbl" not in card


def test_a_checkpoint_cannot_make_a_report_show_pictures_that_are_not_face_crops(tmp_path):
    # bank sources come from the checkpoint: one from a stranger could name the user's own photos, and a report
    # that is then shared would carry them. Only crops in the layout `pairs`/`extract` write are shown as pictures.
    private = tmp_path / "Pictures" / "IMG_0001.jpg"
    private.parent.mkdir()
    cv2.imwrite(str(private), np.full((80, 80, 3), 200, np.uint8))
    imgs = ReportImages(tmp_path / "report", bank_root=str(tmp_path))
    card = face_html(imgs, "file-000/f0001", _face(tmp_path, [str(private), "Pictures/IMG_0001.jpg"]), 0.5)
    assert "<img" not in card.split("heatmap")[-1] and not (tmp_path / "report" / "img" / "bank").exists()
    assert "IMG_0001.jpg · sim 0.70" in card  # named, as a source that is not on this machine is
    assert is_crop_path("Ann_0001-0123abcd/f000000_0.jpg") and is_crop_path("/r/crops/real/v-0123abcd/f000012.png")
    assert not is_crop_path("Ann_0001/f000000_0.jpg") and not is_crop_path("x-0123abcd/photo.jpg")


def _alts(card: str) -> list[str]:
    class Alts(HTMLParser):
        found: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.found.append(dict(attrs).get("alt"))

    parser = Alts()
    parser.found = []
    parser.feed(card)
    return parser.found


def test_a_face_crops_alt_says_what_it_shows_and_its_score_as_its_caption_does(tmp_path):
    """The crop's alt was 'WHERE, score 0.288' (3 decimals, no side) for a face its caption showed as '0.2884 ▲'
    beside the threshold 0.2884 (scan --threshold 0.2884): a screen reader heard a score below the threshold for a
    face at or above it, and not that the picture was the face."""
    face = _face(tmp_path, []) | {"score": 0.28840072}
    card = face_html(ReportImages(tmp_path / "r"), "file-000/f0001", face, 0.2884)
    crop, heat = _alts(card)
    assert crop == "face crop, 0.48 s, frame 12 · track 1: score 0.2884, at or above the threshold 0.2884", crop
    assert "0.2884 ▲" in card and heat.startswith("attention heatmap of that face")
    below = face_html(ReportImages(tmp_path / "r2"), "file-000/f0001", face, 0.28841, kind="image")
    assert _alts(below)[0] == "face crop, face 1: score 0.28840, below the threshold 0.28841"


def test_neighbour_pictures_are_a_named_group_as_neighbour_names_are_a_named_list(tmp_path):
    """The pictures of the nearest real faces sat in a <div> named only by a title (a mouse's tooltip), so a screen
    reader heard 'bank, frame 7, sim 0.70' without hearing what these were; the list of names had an aria-label."""
    here = tmp_path / "crops" / "bank-89abcdef" / "f000007_0.png"
    here.parent.mkdir(parents=True)
    cv2.imwrite(str(here), np.full((80, 80, 3), 128, np.uint8))
    card = face_html(ReportImages(tmp_path / "r"), "file-000/f0001", _face(tmp_path, [str(here), "p-0123abcd/f"]), 0.5)
    named = {}

    class Groups(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get("class") in ("nbrs", "nbl"):
                named[a["class"]] = (a.get("role", "list" if tag == "ul" else None), a.get("aria-label"))

    Groups().feed(card)
    assert named == {"nbrs": ("group", "nearest real faces in the memory bank"),
                     "nbl": ("list", "nearest real faces in the memory bank")}, named


def _children(card: str, parent: str = "figure") -> list[str]:
    """The tags of the element children of the card's first `parent`, in order."""
    found: list[str] = []
    depth = [0]
    void = {"img", "br", "source"}

    class Children(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if depth[0] == 1:
                found.append(tag)
            if tag not in void and (depth[0] or tag == parent):
                depth[0] += 1

        def handle_endtag(self, tag):
            if depth[0]:
                depth[0] -= 1

    Children().feed(card)
    return found


def test_the_caption_is_the_figures_first_child_as_html_requires(tmp_path):
    """The <figcaption> stood between the pictures and the neighbours: HTML allows it only as a figure's first or
    last child, and a validator (or a screen reader's figure navigation) did not take it as the caption."""
    for sources, kind in [([], "video"), (["p-0123abcd/f000000_0.jpg"], "image")]:
        face = _face(tmp_path, sources)
        imgs = ReportImages(tmp_path / kind)
        for card in (face_html(imgs, "file-000/f0001", face, 0.5, kind=kind),
                     face_html(imgs, "file-000/f0002", face | {"crop": None}, 0.5)):
            children = _children(card)
            assert children[0] == "figcaption" and children.count("figcaption") == 1, children
            assert children[1] == "div" and ("ul" in children) == bool(sources), children
