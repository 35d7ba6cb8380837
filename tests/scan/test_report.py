"""HTML scan report: files written, every <img> resolves, strings escaped; and a real headless browser
loads the page with no broken image."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from forgerydet import __version__
from forgerydet.scan.figures import heatmap_overlay
from forgerydet.scan.records import select_faces
from forgerydet.scan.report import write_report

IMG_SRC = re.compile(r'<img\b[^>]*\bsrc="([^"]+)"')
NASTY = 'clip <b>"bold"</b> & <script>alert(1)</script>.mp4'


def _faces(rng, astronaut, n_frames, tracks, bank_png, fps=25.0):
    """Faces of a fake video: crops cut from the astronaut photo with noise, random attention maps."""
    faces = []
    for k in range(n_frames):
        frame = k * 5
        for t in range(tracks):
            y, x = 30 + 4 * t, 170 + 2 * k % 20
            crop = cv2.resize(astronaut[y:y + 200, x:x + 200], (96, 96))
            crop = np.clip(crop.astype(int) + rng.integers(-20, 20, crop.shape), 0, 255).astype(np.uint8)
            score = float(np.clip(0.3 + 0.5 * t + 0.2 * np.sin(k / 3) + rng.normal(0, 0.05), 0, 1))
            faces.append({
                "frame_index": frame, "time": frame / fps, "track_id": t, "box": [10.0, 20.0, 110.0, 140.0],
                "confidence": 0.99, "score": score, "crop": crop,
                "attention": rng.random((7, 7)).astype(np.float32),
                "neighbours": [
                    {"slot": 3, "similarity": 0.91, "source": str(bank_png)},  # exists: thumbnail
                    {"slot": 17, "similarity": 0.85, "source": "/nowhere/real_faces/000_0042.png"},  # gone: name
                    {"slot": 40, "similarity": 0.80, "source": None},  # unknown: slot number
                ],
            })
    return faces


@pytest.fixture
def results(tmp_path, astronaut):
    rng = np.random.default_rng(0)
    bank_png = tmp_path / "crops" / "bank_real_face-0123abcd" / "f000000_0.png"  # a crop as `pairs` writes them
    bank_png.parent.mkdir(parents=True)
    cv2.imwrite(str(bank_png), cv2.cvtColor(astronaut[20:240, 150:370], cv2.COLOR_RGB2BGR))
    video_faces = _faces(rng, astronaut, n_frames=16, tracks=2, bank_png=bank_png)  # 32 faces: > 24 shown
    image_faces = _faces(rng, astronaut, n_frames=1, tracks=1, bank_png=bank_png)
    for f in image_faces:
        f["time"] = None
    base = {"threshold": 0.5, "error": None}
    return [
        {**base, "path": f"/data/{NASTY}", "kind": "video", "status": "ok", "verdict": "FAKE", "score": 0.71,
         "score_interval": [0.634, 0.7712], "frames_sampled": 16, "frames_with_face": 16, "n_faces": 32, "n_tracks": 2, "fps": 25.0,
         "tracks": [{"track_id": 0, "score": 0.31, "n_faces": 16}, {"track_id": 1, "score": 0.81, "n_faces": 16}],
         "faces": video_faces},
        {**base, "path": "/data/portrait.jpg", "kind": "image", "status": "ok", "verdict": "REAL", "score": 0.28,
         "frames_sampled": 1, "frames_with_face": 1, "n_faces": 1, "n_tracks": 1, "fps": None,
         "tracks": [{"track_id": 0, "score": 0.28, "n_faces": 1}], "faces": image_faces},
        {**base, "path": "/data/empty_room.mp4", "kind": "video", "status": "no_face", "verdict": None, "score": None,
         "frames_sampled": 16, "frames_with_face": 0, "n_faces": 0, "n_tracks": 0, "fps": 30.0, "tracks": [],
         "faces": []},
        {**base, "path": "/data/broken.mp4", "kind": "video", "status": "error", "verdict": None, "score": None,
         "error": "cannot decode video: moov atom not found", "frames_sampled": 0, "frames_with_face": 0,
         "n_faces": 0, "n_tracks": 0, "fps": None, "tracks": [], "faces": []},
    ]


SETTINGS = {"checkpoint": "models/demo", "fingerprint": "ab12cd34", "backbone": "mobilenetv2_100",
            "pretrained": "imagenet (packaged)", "aggregation": "confident", "threshold": 0.5,
            "frames per video": 16, "device": "cpu", "seconds": 12.345}


class _Text(HTMLParser):
    """The text of every element named `tags`, as a screen reader or a copy of it gets it (tags within, dropped)."""

    def __init__(self, tags: tuple[str, ...]) -> None:
        super().__init__()
        self.tags, self.open, self.found = tags, [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.tags:
            self.open.append([])

    def handle_endtag(self, tag):
        if tag in self.tags and self.open:
            self.found.append("".join(self.open.pop()))

    def handle_data(self, data):
        for parts in self.open:
            parts.append(data)


def attrs(page: str, tag: str, name: str) -> list[str]:
    """The `name` attribute of every `tag` element, unescaped."""
    found: list[str] = []

    class Attrs(HTMLParser):
        def handle_starttag(self, t, a):
            if t == tag and dict(a).get(name) is not None:
                found.append(dict(a)[name])

    Attrs().feed(page)
    return found


def texts(page: str, *tags: str) -> list[str]:
    parser = _Text(tags)
    parser.feed(page)
    return parser.found


@pytest.fixture
def report(tmp_path, results):
    calls = []
    index = write_report(results, tmp_path / "report", SETTINGS, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    return index


def test_every_img_points_at_an_existing_png(report):
    assert report.name == "index.html" and report.is_file()
    page = report.read_text(encoding="utf-8")
    srcs = IMG_SRC.findall(page)
    # video: 24 faces x (crop + heatmap + 1 bank thumbnail) + timeline; image: 1 x 3; none for no_face/error
    assert len(srcs) == 24 * 3 + 1 + 3
    for src in srcs:
        rel = unquote(html.unescape(src))
        assert not rel.startswith(("/", "http:", "https:", "file:")), src
        path = report.parent / rel
        assert path.suffix == ".png" and cv2.imread(str(path)) is not None, src
    assert not list(report.parent.rglob("*.tmp"))  # atomic writes leave no temp files
    # the one bank source that exists is thumbnailed once, however many faces retrieved it
    assert len(list((report.parent / "img").glob("*/bank/*.png"))) == 1


def test_a_phone_gets_a_narrow_copy_of_the_score_plot(report):
    """The score-over-time plot, 750 px wide, shrunk to a 320 px screen had its legend and axis labels 3-4 px high:
    a screen that narrow gets a copy drawn for it (figures.timeline_plot(narrow=True)); the wide one stays the img."""
    page = report.read_text(encoding="utf-8")
    picture = re.search(r'<picture><source media="\(max-width: (\d+)px\)" srcset="([^"]+)"><img class="timeline" '
                        r'src="([^"]+)" alt="score over time[^"]*"></picture>', page)
    assert picture and 320 <= int(picture.group(1)) < 1000, page[page.find("<picture"):][:300]
    narrow, wide = (cv2.imread(str(report.parent / unquote(html.unescape(picture.group(k))))) for k in (2, 3))
    assert narrow is not None and wide is not None
    assert picture.group(2).endswith("/file-000/timeline_narrow.png") and narrow.shape[1] < wide.shape[1]


def test_a_reused_report_folder_keeps_only_the_new_reports_images(report, results):
    """Scanning another video into the same folder must not leave the first video's faces beside the new page
    (they would travel with the folder when it is shared); files a report does not write are left alone."""
    folder = report.parent
    mine = [folder / "img" / "notes.png", folder / "img" / "file-000" / "keep.png", folder / "photo.png"]
    for p in mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"user's")
    first = {p for p in (folder / "img").rglob("*.png") if p not in mine}
    index = write_report(results[1:2], folder, SETTINGS)  # only the portrait now: one face, one bank thumbnail
    left = {p for p in (folder / "img").rglob("*.png") if p not in mine}
    shown = {(folder / unquote(html.unescape(s))).resolve() for s in IMG_SRC.findall(index.read_text("utf-8"))}
    assert {p.resolve() for p in left} == shown and len(shown) == 3
    assert len(first) == 24 * 2 + 2 + 2 + 1  # crops and heatmaps, timeline and its phone copy, the portrait's two, a bank thumbnail
    assert all(p.read_bytes() == b"user's" for p in mine)
    assert [p.name for p in (folder / "img").iterdir() if p.is_dir() and p.name != "file-000"] == \
        [shown.pop().relative_to(folder.resolve() / "img").parts[0]]  # the first report's folder went with it
    assert not list((folder / "img").glob("*/file-001"))


def _old_layout(folder):
    """A report as forgerydet wrote it before 2026-12-07: its pictures straight under img/file-NNN/."""
    (folder / "img" / "file-000").mkdir(parents=True)
    for name in ("overview.png", "f0000_face.png"):
        (folder / "img" / "file-000" / name).write_bytes(b"old")
    (folder / "index.html").write_text("<html><title>forgerydet scan report</title></html>")


def test_a_report_replaces_the_layout_before_it_whole(tmp_path, results):
    _old_layout(tmp_path / "r")
    index = write_report(results[1:2], tmp_path / "r", SETTINGS)
    assert not (tmp_path / "r" / "img" / "file-000").exists()
    pics = {p.relative_to(tmp_path / "r").as_posix() for p in (tmp_path / "r" / "img").rglob("*.png")}
    assert pics == {unquote(html.unescape(s)) for s in IMG_SRC.findall(index.read_text("utf-8"))}


@pytest.mark.parametrize("stop", ["ctrl-c", "unwritable"])
def test_a_report_stopped_before_its_page_leaves_the_earlier_one_whole(report, results, monkeypatch, stop):
    """It used to overwrite the earlier report's pictures one by one, then its page: stopped between the two, the
    old page showed the new scan's faces under the old verdicts."""
    import forgerydet.scan.report_faces as report_faces

    folder = report.parent
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    folders = sorted(p for p in folder.rglob("*") if p.is_dir())
    real_write, n = report_faces.write_png, []

    def write_png(path, rgb):
        n.append(path)
        if len(n) == 5:
            raise KeyboardInterrupt if stop == "ctrl-c" else PermissionError(13, "Permission denied", str(path))
        return real_write(path, rgb)

    monkeypatch.setattr(report_faces, "write_png", write_png)
    with pytest.raises(KeyboardInterrupt if stop == "ctrl-c" else PermissionError):
        write_report(results[1:2] + results[:1], folder, SETTINGS)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # the new pictures went too
    assert sorted(p for p in folder.rglob("*") if p.is_dir()) == folders


def test_page_content_and_escaping(report):
    page = report.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page and html.escape(NASTY) in page
    assert "No face found" in page and "moov atom not found" in page
    assert "without a face, 1 error</p>" in page  # one error, not "1 errors"
    assert "000_0042.png" in page and "slot 40" in page  # neighbours without a picture are named
    assert "24 of 32 faces" in page and "the only face" in page and "image · 1 face</p>" in page
    assert "mobilenetv2_100" in page and "12.345" in page  # settings table
    # the video's; an image has none. Which interval it is, said: not a min-max, not a 95 % confidence interval
    assert "(threshold 0.500; 0.634-0.771 over resampled frames, the central 90%)" in page
    assert page.count("over resampled frames") == 1
    assert "http://" not in page and "https://" not in page  # no external resources


def test_a_file_heading_reads_its_verdict_apart_from_its_name(tmp_path, results):
    """The badge was glued to the name: a screen reader's heading list, and a copy of the heading, read
    'FAKEt1.jpg' for a file scanned by a relative name."""
    results[1]["path"] = "t1.jpg"
    page = write_report(results, tmp_path / "r", SETTINGS).read_text(encoding="utf-8")
    headings = texts(page, "h1", "h2")
    assert "REAL t1.jpg" in headings and "NO FACE /data/empty_room.mp4" in headings, headings
    assert "ERROR /data/broken.mp4" in headings


def test_a_file_without_a_face_is_said_once_with_what_its_error_adds(tmp_path, results):
    """'No face found in 8 sampled frames: there is nothing to judge, so no verdict. no face found in 8 sampled
    frames': the record's error repeated the line, which a screen reader read out twice."""
    video = results[2] | {"error": "no face found in 16 sampled frames"}
    hint = "(the detector saw the 8000x6000 frame shrunk to 640 px on its longest side: a small face may be found)"
    photo = results[2] | {"path": "/data/big.jpg", "kind": "image", "error": f"no face found {hint}"}
    pages = "the file holds 3 frames or pages (an animated image or a multi-page TIFF): only the first is read"
    gif = results[2] | {"path": "/data/a.webp", "kind": "image", "error": f"no face found; {pages}"}
    page = write_report([video, photo, gif], tmp_path / "r", SETTINGS).read_text(encoding="utf-8")
    notices = [t for t in texts(page, "p") if t.startswith("No face found")]
    assert notices[0] == "No face found in 16 sampled frames: there is nothing to judge, so no verdict."
    assert notices[1] == f"No face found in the image: there is nothing to judge, so no verdict. {hint}"
    assert notices[2].endswith("so no verdict. T" + pages[1:]) and len(notices) == 3


def test_select_faces_keeps_top_scores_and_spreads_over_time():
    faces = [{"frame_index": i, "track_id": 0, "score": s} for i, s in enumerate(np.linspace(0, 0.5, 100))]
    faces[37]["score"] = 0.99  # a spike in the middle
    chosen = select_faces(faces, 24)
    assert len(chosen) <= 24 and chosen == sorted(chosen)
    assert 37 in chosen and 0 in chosen and 99 in chosen
    assert np.diff(chosen).max() <= 10  # no long stretch of time left unshown
    assert select_faces(faces[:5], 24) == [0, 1, 2, 3, 4]


def test_heatmap_overlay_follows_attention():
    crop = np.full((64, 64, 3), 128, np.uint8)
    att = np.zeros((4, 4), np.float32)
    att[0, 3] = 1.0  # attention in the top-right cell only
    out = heatmap_overlay(crop, att)
    assert out.shape == crop.shape and out.dtype == np.uint8
    top_right, bottom_left = out[:16, 48:].astype(int), out[48:, :16].astype(int)
    assert top_right[..., 0].mean() > bottom_left[..., 0].mean() + 40  # hot (red) where attention was
    assert bottom_left[..., 2].mean() > top_right[..., 2].mean() + 40  # cold (blue) elsewhere
    assert np.array_equal(heatmap_overlay(crop, np.zeros((4, 4))).shape, crop.shape)  # all-zero map is fine


def find_browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no headless browser found: `apt-get install chromium` to run the browser test")


def test_the_page_prints_whole_and_its_tables_wrap_on_a_phone(report):
    """Printed for a case file (Chrome's 'Save as PDF'): no face card, picture or table row cut across two pages, a
    file's heading kept with what follows, the folded settings printed, the verdict badges in colour; on a phone, the
    summary's file names and the settings' long values (a sha256, the command) wrap instead of widening the page."""
    page = report.read_text(encoding="utf-8")
    style = page[page.index("<style>"):page.index("</style>")]
    printed = style[style.index("@media print{"):]
    assert "\ntr,img,.face,.notice,.warn{break-inside:avoid}" in printed
    assert "\nh2,.meta:has(+.grid){break-after:avoid}" in printed
    assert "details:not([open])::details-content{content-visibility:visible" in printed
    assert re.search(r"\n\.verdict,[^{]*\{[^}]*print-color-adjust:exact", printed)
    assert ".scroll td a,details.file td{overflow-wrap:anywhere}" in style


@pytest.mark.slow
def test_headless_browser_loads_every_image(report, tmp_path):
    browser = find_browser()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    url = report.resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=60).stdout
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    broken = re.search(r'data-broken="(\d+)"', dom)
    assert loaded and broken, "the page's load hook did not run:\n" + dom[:500]
    n_img = len(IMG_SRC.findall(report.read_text(encoding="utf-8")))
    assert (int(loaded.group(1)), int(broken.group(1))) == (n_img, 0)

    shot = tmp_path / "screenshot.png"
    subprocess.run(flags + ["--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", url],
                   capture_output=True, timeout=60)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1600, 1280)
    assert img.std() > 20  # a rendered page, not a blank canvas


def test_the_page_leads_with_verdicts_and_says_how_to_read_them(tmp_path, results):
    settings = SETTINGS | {"checkpoint_sha256": "f" * 64, "command": "forgerydet scan 'a b.mp4' --report r",
                           "working_directory": "/home/ann", "threshold": 0.337873, "bank_entries": 4096,
                           "notes": ["this checkpoint caught only 0 % of <its> fakes"]}
    results[0]["notes"] = ["close call: it depends on the frames"]
    results[0] |= {"sha256": "c" * 64, "duration_s": 12.5, "width": 640, "height": 480}
    page = write_report(results, tmp_path / "r", settings).read_text(encoding="utf-8")
    files, guide, first, cfg = (page.index(s) for s in ("<h2>Files</h2>", "How to read this report",
                                                        'id="file-000"', "<b>Settings</b>"))
    assert files < guide < first < cfg  # verdicts first, the settings folded away at the end
    assert "A REAL verdict is never proof" in page and "closed or downcast eyes" in page
    # how it was made: version, model and its hash, the threshold to 3 decimals as everywhere, the command
    assert f"forgerydet {__version__}" in page and "f" * 16 + "…" in page and "threshold 0.338" in page
    assert "command (in /home/ann): <code>" + html.escape("forgerydet scan 'a b.mp4' --report r") in page
    assert "compared with the checkpoint's bank (4096 real faces)" in page  # what the faces were compared with
    ref = write_report(results, tmp_path / "r2", settings | {"reference": "Ann", "reference_faces": 18}).read_text()
    assert "compared with the enrolled faces of &#x27;Ann&#x27; (18 faces)" in ref and "enrolled as &#x27;Ann" in ref
    assert "0.3379" not in page and "0.337873" not in page
    # the CLI's notes on the model and settings, under the title for a reader who did not run the scan
    assert page.index('<p class="warn">Note: this checkpoint caught only 0 % of &lt;its&gt; fakes</p>') < files
    # the file judged: its hash, length, rate and size; its notes also in the summary table
    assert "c" * 64 in page and "12.5 s · 25.00 fps · 640x480 px" in page
    assert page.count("close call: it depends on the frames") == 2  # under the file in the summary, and in its section
    assert '<tr class="noterow"><td colspan="4">Note: close call: it depends on the frames</td></tr>' in page
    # a score's side of the threshold is a sign, not only a colour
    assert "0.710 ▲" in page and "0.280 ▼" in page and 'title="at or above the threshold 0.500"' in page
    # a photo's faces are named by number; a video's by time, frame and track
    assert "face 0 · detection" in page and "0.20 s, frame 5 · track 1" in page
    # the plot in words, for a reader who cannot see it
    assert re.search(r'alt="score over time: 32 faces, \d+ at or above the threshold 0.500, highest 0.\d{3} at', page)
    # its highest score as the page shows scores beside the threshold: not '1 at or above the threshold 0.8661,
    # highest 0.866', which read as below it
    faces = [f | {"score": 0.86617 if k == 0 else 0.2} for k, f in enumerate(results[0]["faces"])]
    thr = [results[0] | {"threshold": 0.8661, "faces": faces}]
    alts = [a for a in attrs(write_report(thr, tmp_path / "r5", SETTINGS).read_text(), "img", "alt") if "over time" in a]
    shown = re.search(r"threshold (0\.\d+), highest (0\.\d+) at", alts[0])
    assert shown and float(shown.group(2)) >= float(shown.group(1)), alts
    # a threshold that 3 decimals would round down is shown so that no score beside it is on its wrong side
    low = [r | {"threshold": 0.254491} for r in results[:2]]
    low[1] |= {"score": 0.25446, "verdict": "REAL", "tracks": [{"track_id": 0, "score": 0.25446, "n_faces": 1}]}
    page = write_report(low, tmp_path / "r3", settings | {"threshold": 0.254491}).read_text(encoding="utf-8")
    assert "threshold 0.254<" not in page and "threshold 0.254)" not in page and "0.254</td>" not in page
    assert "threshold 0.2545" in page and "(threshold 0.2545)" in page and "0.25446 ▼" in page
    # a threshold of the user's (scan --threshold) is said to be one, in the header and the guide
    assert "given with" not in page
    page = write_report(results, tmp_path / "r4", settings | {"threshold_given": True}).read_text(encoding="utf-8")
    assert "threshold 0.338 (given with <code>--threshold</code>)" in page and "which was chosen" not in page



def test_a_photo_gets_an_overview_with_its_faces_numbered(tmp_path, results, astronaut):
    photo = results[1] | {"width": 400, "height": 300, "overview": np.zeros((150, 200, 3), np.uint8)}
    photo["faces"] = [f | {"track_id": k, "box": [20.0 + 150 * k, 40.0, 120.0 + 150 * k, 160.0], "score": s}
                      for k, (f, s) in enumerate(zip(photo["faces"] * 2, (0.2, 0.9)))]
    index = write_report([photo], tmp_path / "r", SETTINGS)
    page = index.read_text(encoding="utf-8")
    src = re.search(r'src="(img/[^/"]+/file-000/overview\.png)"', page).group(1)
    assert 'alt="the image with its 2 faces boxed and numbered from the left; faces 1 at or above the threshold"' in page
    # a phone's copy, whose tags are legible there (shrunk to a 320 px screen, the wide one's were ~3 px high)
    phone = re.search(r'<picture><source media="\(max-width: \d+px\)" srcset="(img/[^/"]+/file-000/overview_narrow'
                      r'\.png)"><img class="timeline" src="img/[^"]+/overview\.png"', page).group(1)
    assert cv2.imread(str(index.parent / phone)).shape[1] == 640
    pic = cv2.cvtColor(cv2.imread(str(index.parent / src)), cv2.COLOR_BGR2RGB)
    assert pic.shape == (150, 200, 3)  # drawn on the shrunk copy, boxes scaled to it (frame 400 px wide)
    assert tuple(pic[50, 10]) == (46, 125, 50) and tuple(pic[50, 85]) == (198, 40, 40)  # left edges: green, red
    write_report([results[1]], tmp_path / "r", SETTINGS)  # the same folder, a photo without one: it goes
    assert not (index.parent / src).exists() and not list(index.parent.glob("img/*/file-000/overview*.png"))


@pytest.mark.slow
def test_headless_browser_at_phone_width_needs_no_sideways_scrolling(tmp_path, results):
    """Laid out 360 px wide (a phone; an iframe, since headless windows are at least 500 px) with the settings
    unfolded, nothing sticks out of the page: no wide table that makes the whole page scroll sideways."""
    browser = find_browser()
    results[1]["path"] = "/data/a_long_file_name_without_any_spaces_from_a_camera.jpg"
    settings = SETTINGS | {"checkpoint_sha256": "f" * 64, "command": "forgerydet scan /data/" + "x" * 80 + ".mp4"}
    report = write_report(results, tmp_path / "report", settings)
    probe = report.parent / "probe.html"
    probe.write_text('<iframe id="f" src="index.html" style="width:360px;height:800px"></iframe><pre id="out"></pre>'
                     "<script>document.getElementById('f').onload = function () { var d = this.contentDocument;"
                     " d.querySelectorAll('details').forEach(function (x) { x.open = true; });"
                     " document.getElementById('out').textContent = 'widths ' + d.documentElement.scrollWidth + ' '"
                     " + d.documentElement.clientWidth; };</script>", encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True,
                         timeout=60).stdout
    widths = re.search(r"widths (\d+) (\d+)", dom)
    assert widths, "the probe did not run:\n" + dom[:500]
    assert int(widths.group(1)) <= int(widths.group(2)), widths.group(0)
