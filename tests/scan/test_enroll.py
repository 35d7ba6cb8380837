"""Reference banks: `forgerydet enroll` (add, list, remove, face choice), `scan --reference`, and the bad inputs
that must give one clear line, exit 1 and change nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from forgerydet.cli.app import app
from forgerydet.model.checkpoint import save_checkpoint
from forgerydet.model.config import references_path
from forgerydet.model.references import file_lock, load_person, read_references
from forgerydet.scan.enroll import EnrollConfig, enroll
from tests._faces_util import face_frames, head, write_video
from tests.helpers import tiny_model


def _ck(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    m = tiny_model(bank_size=16).eval()
    m.bank.rebuild(m.encode_keys(torch.rand(10, 3, 64, 64)), m.key_fingerprint(), source=torch.arange(10))
    return save_checkpoint(path, m, bank_sources=[f"/nowhere/real_{i}.png" for i in range(10)])


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    return _ck(tmp_path_factory.mktemp("ck") / "tiny.safetensors", 0)


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    face = write_video(d / "face.mp4", face_frames(astronaut, 4), fps=5)
    big = cv2.resize(head(astronaut), (128, 128), interpolation=cv2.INTER_AREA)
    small = cv2.resize(head(astronaut), (96, 96), interpolation=cv2.INTER_AREA)
    two = []
    for i in range(4):  # the main face on the left, a smaller bystander on the right
        f = np.full((160, 300, 3), 90, np.uint8)
        f[16:144, 8 + 2 * i : 136 + 2 * i] = big
        f[32:128, 196:292] = small
        two.append(f)
    rng = np.random.default_rng(0)
    photo = d / "still.png"
    cv2.imwrite(str(photo), cv2.cvtColor(face_frames(astronaut, 1)[0], cv2.COLOR_RGB2BGR))
    return {
        "face": face, "two": write_video(d / "two.mp4", two, fps=5), "photo": photo,
        "noface": write_video(d / "noface.mp4", [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(3)]),
    }  # fmt: skip


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run(*args: str):
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    r.flat = " ".join(r.output.split())  # the console wraps at the runner's width
    return r


def one_error_line(r, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert r.output.lstrip().startswith("error:") and r.output.count("error:") == 1, r.output
    for n in needles:
        assert n in r.flat, r.output


def test_default_file_sits_beside_the_model():
    assert references_path("models/default.safetensors") == Path("models/default.refs.safetensors")


@pytest.mark.slow
def test_enroll_list_add_remove_and_scan_against_the_person(ck, media, tmp_path):
    before = sha(ck)
    refs = references_path(ck)
    r = run("enroll", "Astro Naut", media["face"], "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "main track 0, on 3 of 3 sampled frame(s)" in r.flat and "enrolled 3 faces of 'Astro Naut'" in r.flat
    assert refs.is_file() and sha(ck) == before  # the reference file is beside the model, never in it
    # the same faces again are not duplicated; a photo adds to the same person
    r = run("enroll", "Astro Naut", media["face"], media["photo"], "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    assert r.exit_code == 0 and "enrolled 1 face of" in r.flat and "3 already enrolled" in r.flat and "; 1 person in " in r.flat, r.output
    # the same footage under another name (a link, a copy) is the same faces too
    (tmp_path / "link.mp4").symlink_to(media["face"])
    shutil.copy(media["face"], tmp_path / "copy.mp4")
    r = run("enroll", "Astro Naut", tmp_path / "link.mp4", tmp_path / "copy.mp4", "--checkpoint", ck, "--frames", "3",
            "--device", "cpu")
    assert r.exit_code == 0 and "6 already enrolled" in r.flat, r.output
    # a copy given beside the original in one call: its faces once
    r = run("enroll", "Bob", media["face"], tmp_path / "copy.mp4", "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    assert r.exit_code == 0 and "enrolled 3 faces of 'Bob'" in r.flat and "3 already enrolled" in r.flat, r.output
    assert r.flat.count("warning:") == 2 and "the same file is enrolled as 'Astro Naut' too" in r.flat  # both names of it
    r = run("enroll", "Bob", media["photo"], "--checkpoint", ck, "--frames", "3", "--device", "cpu")  # Astro Naut's too
    assert r.exit_code == 0 and r.flat.count("warning:") == 1 and f"{media['photo']}: the same file is enrolled as " \
        "'Astro Naut' too" in r.flat, r.output
    # enrolled as two others already: both named (only the last one in the file was)
    r = run("enroll", "Carl", media["photo"], "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    assert r.exit_code == 0 and r.flat.count("warning:") == 2 and "enrolled as 'Astro Naut' too" in r.flat \
        and "enrolled as 'Bob' too" in r.flat, r.output
    run("enroll", "Carl", "--remove", "--checkpoint", ck)
    run("enroll", "Bob", "--remove", "--checkpoint", ck)
    r = run("enroll", "--list", "--checkpoint", ck)
    assert r.exit_code == 0 and "Astro Naut" in r.output and " 4 " in r.output, r.output
    f = read_references(refs)
    assert f.values.shape == (4, 16, 32) and f.values.dtype == torch.float16 and f.thumbs.shape[0] == 4
    # scan against the person: JSON, table and report say which reference set and which faces, with similarities
    out, rep = tmp_path / "scan.json", tmp_path / "report"
    r = run("scan", media["face"], "--checkpoint", ck, "--reference", "Astro Naut", "--frames", "2", "--device", "cpu",
            "--json", out, "--report", rep)
    assert r.exit_code == 0, r.output
    assert "reference 'Astro Naut': 4 enrolled faces" in r.flat and "nearest" in r.flat and "f0 1.00" in r.flat, r.output
    doc = json.loads(out.read_text())
    s = doc["settings"]
    assert s["reference"] == "Astro Naut" and s["reference_faces"] == 4 and s["mode"].startswith("reference")
    rec = doc["files"][0]
    for face in rec["faces"]:
        assert len(face["neighbours"]) == 2  # topk of the tiny model
        for nb in face["neighbours"]:
            assert nb["person"] == "Astro Naut" and 0 <= nb["slot"] < 4 and -1.001 <= nb["similarity"] <= 1.001
            assert nb["source"].endswith(("face.mp4", "still.png")) and "thumb" not in nb
    used = rec["reference"]["used"]
    assert sum(u["times"] for u in used) == 2 * len(rec["faces"]) and rec["reference"]["name"] == "Astro Naut"
    # how alike this file's faces are to the enrolled ones, beside how alike those are to one another
    top = [f["neighbours"][0]["similarity"] for f in rec["faces"]]
    assert rec["reference"]["nearest_similarity_median"] == pytest.approx(float(np.median(top)), abs=1e-4)
    assert 0.5 < rec["reference"]["enrolled_similarity_median"] <= 1.0001  # frames of one face: alike
    assert not any(n.startswith("unlike") for n in rec["notes"])  # the same face as enrolled
    # and the very file enrolled: its faces recall frames of itself, which says nothing about it (no note said so)
    assert rec["reference"]["enrolled_from_this_file"] == 3 and "this file is one 'Astro Naut' was enrolled from (3 " \
        "enrolled faces): its faces are compared with frames of itself" in " ".join(rec["notes"])
    assert any(n.startswith("compared with the enrolled faces of 'Astro Naut'") for n in s["notes"])
    html = (rep / "index.html").read_text()
    assert "Astro Naut" in html and "nearest enrolled real faces" in html and list((rep / "img").glob("*/refs/*.png"))
    # the scan really retrieved from the person's faces, not from the global bank
    from forgerydet.model.checkpoint import load_checkpoint

    model = load_checkpoint(ck).model.eval()
    person = load_person(refs, "Astro Naut", model)
    x = torch.rand(3, 3, 64, 64)
    o = model(x, "single", bank=person.bank)
    torch.testing.assert_close(o["reference"], torch.nn.functional.normalize(person.bank.values[o["neighbours"]].float().mean(1), dim=-1))
    assert o["neighbours"].max() < 4 and sha(ck) == before
    # removing the person
    r = run("enroll", "Astro Naut", "--remove", "--checkpoint", ck)
    assert r.exit_code == 0 and "removed 'Astro Naut': 4" in r.flat, r.output
    assert read_references(refs).people() == {}


@pytest.mark.slow
def test_several_faces_enrol_the_main_one_and_say_so(ck, media, tmp_path):
    into = tmp_path / "refs.safetensors"
    r = run("enroll", "A", media["two"], "--into", into, "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "1 other track(s) (3 faces) left out" in r.flat, r.output
    entries = read_references(into).entries
    assert len(entries) == 3 and len({e["track_id"] for e in entries}) == 1
    assert all(e["box"][0] < 128 for e in entries)  # the large face on the left, not the bystander
    r = run("enroll", "B", media["two"], "--into", into, "--checkpoint", ck, "--frames", "3", "--device", "cpu",
            "--face", "all")
    assert r.exit_code == 0 and "bystanders included" in r.flat, r.output
    assert read_references(into).people() == {"A": 3, "B": 6}


def test_a_group_photo_enrolled_under_the_old_numbering_is_not_enrolled_twice(ck, media, tmp_path, monkeypatch):
    """Before 0.2.0 a photo's faces were numbered in the detector's order, now from the left: a face enrolled then
    got another track id, and enrolling the same photo again added it a second time. The same frame and box of the
    same bytes is the same face too."""
    import forgerydet.faces.pipeline as pipeline

    cap = cv2.VideoCapture(str(media["two"]))
    ok, frame = cap.read()
    cap.release()
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), frame)  # the main face on the left, a bystander on the right
    real = pipeline.detect_source  # enroll imports it when it runs

    def old_numbering(*a, **k):  # the right face first, as a detector's order may have put it
        src = real(*a, **k)
        for fr in src.faces:
            for f in fr:
                f.track_id = len(fr) - 1 - f.track_id
        return src

    into = tmp_path / "refs.safetensors"
    cfg = EnrollConfig(device="cpu")
    monkeypatch.setattr(pipeline, "detect_source", old_numbering)
    assert enroll("A", [photo], checkpoint=ck, into=into, config=cfg).added == 1
    monkeypatch.setattr(pipeline, "detect_source", real)
    again = enroll("A", [photo], checkpoint=ck, into=into, config=cfg)
    assert (again.added, again.duplicates, again.total) == (0, 1, 1)


def test_a_cut_off_video_is_enrolled_from_the_frames_it_has_and_says_so(ck, astronaut, tmp_path):
    """Its report line used to say "on 1 of 1 sampled frame(s)", the frames that could not be decoded unsaid."""
    whole = write_video(tmp_path / "whole.mkv", face_frames(astronaut, 40, shift=1), fps=5)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    r = run("enroll", "A", cut, "--into", tmp_path / "refs.safetensors", "--checkpoint", ck, "--frames", "8",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "sampled frame(s) could not be decoded (a damaged or cut-off video)" in r.flat, r.output


# ----------------------------------------------------------------------------- bad input: one line, exit 1, nothing lost

@pytest.fixture
def enrolled(ck, media, tmp_path) -> Path:
    into = tmp_path / "refs.safetensors"
    enroll("A", [media["photo"]], checkpoint=ck, into=into, config=EnrollConfig(device="cpu"))
    return into


def test_unknown_name(ck, media, enrolled):
    r = run("scan", media["photo"], "--checkpoint", ck, "--reference", "Nobody", "--references", enrolled, "--device", "cpu")
    one_error_line(r, "'Nobody' is not enrolled", "enrolled: A")
    r = run("enroll", "Nobody", "--remove", "--into", enrolled, "--checkpoint", ck)
    one_error_line(r, "nothing removed")
    assert read_references(enrolled).people() == {"A": 1}


def test_empty_enrolment_writes_nothing(ck, media, enrolled, tmp_path):
    before = sha(enrolled)
    r = run("enroll", "A", media["noface"], "--into", enrolled, "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    one_error_line(r, "no face found", "nothing enrolled", "unchanged")
    assert sha(enrolled) == before
    fresh = tmp_path / "new.safetensors"
    r = run("enroll", "A", media["noface"], "--into", fresh, "--checkpoint", ck, "--frames", "3", "--device", "cpu")
    one_error_line(r, "not created")
    assert not fresh.exists()


def test_a_model_folder_that_cannot_be_written_names_into(ck, media, tmp_path, monkeypatch):
    """A shared install whose models/ is read-only: enrolling beside the shipped model said "cannot write there
    (...: choose a writable location)" and named no option that chooses one."""
    import errno

    import forgerydet.paths as paths_mod

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    model = Path(shutil.copy(ck, tmp_path / "m.safetensors"))  # (other tests enrol beside the shared one)
    monkeypatch.setattr(paths_mod.tempfile, "mkstemp", refused)  # every folder unwritable, as for a user in /opt
    r = run("enroll", "A", media["photo"], "--checkpoint", model, "--device", "cpu")
    one_error_line(r, "the reference file beside the model", "cannot write there", "--into FILE",
                   "scan --references FILE")
    assert not references_path(model).exists()
    r = run("enroll", "A", media["photo"], "--checkpoint", model, "--into", tmp_path / "r.safetensors", "--device", "cpu")
    one_error_line(r, "--into", "cannot write there")
    assert "--into FILE" not in r.output  # the option was given: nothing to suggest


def test_reference_file_of_another_model_is_refused(ck, media, enrolled, tmp_path):
    other = _ck(tmp_path / "other.safetensors", 1)
    before = sha(enrolled)
    r = run("scan", media["photo"], "--checkpoint", other, "--reference", "A", "--references", enrolled, "--device", "cpu")
    one_error_line(r, "enrolled with another key encoder")
    r = run("enroll", "B", media["photo"], "--into", enrolled, "--checkpoint", other, "--device", "cpu")
    one_error_line(r, "enrolled with another key encoder")
    assert sha(enrolled) == before
    r = run("scan", media["photo"], "--checkpoint", ck, "--reference", "A", "--references", ck, "--device", "cpu")
    one_error_line(r, "not a forgerydet reference file")  # a checkpoint given as a reference file


def test_corrupt_reference_file(ck, media, enrolled):
    enrolled.write_bytes(enrolled.read_bytes()[:300])
    before = sha(enrolled)
    r = run("scan", media["photo"], "--checkpoint", ck, "--reference", "A", "--references", enrolled, "--device", "cpu")
    one_error_line(r, "not a readable forgerydet reference file")
    r = run("enroll", "A", media["photo"], "--into", enrolled, "--checkpoint", ck, "--device", "cpu")
    one_error_line(r, "not a readable forgerydet reference file", "left as it is")
    assert sha(enrolled) == before  # never overwritten: the user may want to recover it


def test_enrolling_into_a_file_being_read(ck, media, enrolled, monkeypatch):
    import forgerydet.faces.pipeline as pipeline

    before = sha(enrolled)
    detected = []
    real = pipeline.detect_source
    monkeypatch.setattr(pipeline, "detect_source", lambda *a, **k: detected.append(a) or real(*a, **k))
    with file_lock(enrolled, exclusive=False, wait=0):  # a reader (scan) is reading it
        r = run("enroll", "B", media["photo"], "--into", enrolled, "--checkpoint", ck, "--device", "cpu", "--wait", "0")
    one_error_line(r, "in use by another forgerydet process", "nothing was changed",
                   "(waited 0 s; `enroll --wait SECONDS` waits longer)")  # scan has no --wait: not "give it --wait"
    assert detected == []  # said before the detection and encoding, not after them
    assert sha(enrolled) == before
    # without a lock the write is still atomic: a reader that opened the file before keeps a whole file
    with safe_open(str(enrolled), "pt") as f:
        enroll("B", [media["photo"]], checkpoint=ck, into=enrolled, config=EnrollConfig(device="cpu"))
        assert f.get_tensor("values").shape[0] == 1 and json.loads(f.metadata()["people"]) == {"A": [0, 1]}
    assert read_references(enrolled).people() == {"A": 1, "B": 1}


def test_references_file_without_a_name(ck, enrolled):
    r = run("scan", "x.mp4", "--checkpoint", ck, "--references", enrolled)
    one_error_line(r, "--references FILE needs --reference NAME")


def test_the_bank_fusion_applies_against_the_own_bank_only(ck, media, enrolled, tmp_path):
    """A calibration's bank fusion (p = sigmoid(a logit + b similarity + c)) and its threshold are used against
    the checkpoint's own bank; a person's references have other similarities, so there the temperature and its
    threshold apply."""
    from forgerydet.model.checkpoint import load_checkpoint, resave_checkpoint
    from forgerydet.scan.config import ScanConfig
    from forgerydet.scan.scanner import Scanner

    c = load_checkpoint(ck)
    fused = tmp_path / "fused.safetensors"
    resave_checkpoint(c, fused, c.model, extra={"threshold": 0.7, "temperature": 1.0, "bank_fusion": {
        "logit": 0.0, "similarity": 0.0, "bias": 2.0, "threshold": 0.3}})
    cfg = dict(device="cpu", num_frames=1)
    own = next(Scanner(fused, ScanConfig(**cfg)).scan([media["photo"]]))
    assert own["threshold"] == 0.3 and own["score"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)
    plain = next(Scanner(ck, ScanConfig(**cfg)).scan([media["photo"]]))
    ref = next(Scanner(fused, ScanConfig(reference="A", references=enrolled, **cfg)).scan([media["photo"]]))
    assert ref["threshold"] == 0.7 and ref["score"] != pytest.approx(own["score"], abs=1e-6)
    assert 0.0 < plain["score"] < 1.0 and plain["threshold"] == 0.5  # never calibrated: no fusion, threshold 0.5
    user = next(Scanner(fused, ScanConfig(threshold=0.95, **cfg)).scan([media["photo"]]))
    assert user["threshold"] == 0.95 and user["verdict"] == "REAL"  # --threshold wins over the stored one
    resave_checkpoint(c, fused, c.model, extra={"bank_fusion": {"logit": 1.0, "similarity": "x", "bias": 0.0,
                                                                 "threshold": 0.5}})
    r = run("scan", media["photo"], "--checkpoint", fused, "--device", "cpu")
    one_error_line(r, "stored bank_fusion", "re-calibrate with `forgerydet calibrate`")


@pytest.mark.parametrize("deinterlace", [True, False])
def test_enroll_decodes_as_scan_does(ck, media, tmp_path, monkeypatch, deinterlace):
    import forgerydet.faces.pipeline as pipeline

    seen, real_detect = [], pipeline.detect_source

    def spy(path, config, detector):
        seen.append(config.deinterlace)
        return real_detect(path, config, detector)

    monkeypatch.setattr(pipeline, "detect_source", spy)
    cfg = EnrollConfig(num_frames=2, device="cpu", deinterlace=deinterlace)
    enroll("Ann", [media["face"]], checkpoint=ck, into=tmp_path / "r.safetensors", config=cfg)
    assert seen == [deinterlace]
