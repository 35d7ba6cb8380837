"""training/distributed.py: the single-process Dist, rank-ordered gathering of uneven rows, mixed precision only
on GPUs, the automatic worker count, and loaders sharded per rank in order."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from forgerydet.errors import ForgeryDetError
from forgerydet.training import distributed
from forgerydet.training.distributed import (Dist, amp_precision, auto_workers, autocast, gather_objects, gather_rows,
                                             make_loader, says_start_error, shard, setup_distributed, start_outcomes,
                                             wrap_ddp)


class Numbers(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"i": torch.tensor(i)}


def test_dist_defaults():
    d = Dist()
    assert (d.rank, d.world, d.device, d.main, d.on) == (0, 1, torch.device("cpu"), True, False)
    assert Dist(rank=1, world=2).main is False and Dist(rank=1, world=2).on is True


@pytest.mark.parametrize("world", [None, "1"])
def test_setup_without_torchrun_is_one_process(world, monkeypatch):
    if world is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world)
    assert setup_distributed("cpu") == Dist(0, 1, torch.device("cpu"))
    assert not dist.is_initialized()


def test_setup_checks_the_device_first(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's variables without the rest: the device error comes first
    with pytest.raises(ForgeryDetError, match="--device 'tpu': use 'auto'"):
        setup_distributed("tpu")


def test_gather_rows_of_one_process_is_the_tensor_itself():
    t = torch.arange(6).reshape(3, 2)
    assert gather_rows(t, Dist()) is t


def test_gather_rows_pads_uneven_ranks_and_trims_in_rank_order(monkeypatch):
    """Rank 0 of 2 holds 3 rows, rank 1 holds 1; all_gather is played by a fake peer."""
    mine = torch.arange(6.0).reshape(3, 2)  # (3,2)
    peer = torch.tensor([[9.0, 9.5]])  # (1,2)
    calls = []

    def fake_all_gather(out: list, t: torch.Tensor) -> None:
        calls.append(tuple(t.shape))
        if len(calls) == 1:  # the sizes
            out[0].copy_(t)
            out[1].fill_(1)
        else:  # the rows, padded to the largest count
            out[0].copy_(t)
            out[1].copy_(torch.cat([peer, torch.zeros(2, 2)]))

    monkeypatch.setattr(distributed.dist, "all_gather", fake_all_gather)
    got = gather_rows(mine, Dist(0, 2))
    assert calls == [(1,), (3, 2)]
    assert torch.equal(got, torch.cat([mine, peer]))  # (4,2): no padding rows


def test_gather_objects_is_every_rank_s_object_in_rank_order(monkeypatch):
    """What each rank's RNG state travels to rank 0 by (training/loop.py), one object a rank."""
    assert gather_objects({"a": 1}, Dist()) == [{"a": 1}]

    def fake_all_gather_object(out: list, obj) -> None:
        out[:] = [obj, "peer"]

    monkeypatch.setattr(distributed.dist, "all_gather_object", fake_all_gather_object)
    assert gather_objects("mine", Dist(0, 2)) == ["mine", "peer"]


def test_an_error_before_the_first_step_is_said_by_rank_0_or_else_once_by_the_process_it_concerns():
    held, found = "--out R: another training run is writing there now", "--out R already holds a training run"
    assert [says_start_error([held, found], r) for r in (0, 1)] == [True, False]  # rank 0's lock speaks for the run
    assert [says_start_error([held, None], r) for r in (0, 1)] == [True, False]
    assert [says_start_error([None, "out of memory", "out of memory", "gone"], r) for r in range(4)] == \
        [False, True, False, True]  # rank 0 passed: each other line once, by its lowest rank
    assert not any(says_start_error([None, None], r) for r in (0, 1))


def test_start_outcomes_makes_the_group_where_the_error_came_before_the_loop_did(monkeypatch):
    made, gathered = [], []
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: bool(made))
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: made.append(backend))
    monkeypatch.setattr(distributed.dist, "all_gather_object", lambda out, obj: gathered.append(obj) or
                        out.__setitem__(slice(None), ["rank 0's", obj]))
    assert start_outcomes("cpu", "mine") == ["rank 0's", "mine"] and made == ["gloo"]
    assert start_outcomes("cpu", None) == ["rank 0's", None] and made == ["gloo"]  # made once
    made.clear()
    assert start_outcomes("tpu", "x") == ["rank 0's", "x"] and made == ["gloo"]  # the device was the error


def test_ddp_is_made_without_torch_s_deprecation_warning_and_its_buffers_not_synced_at_each_forward(monkeypatch):
    """DDP(broadcast_buffers=False) warned "`broadcast_buffers` is deprecated" in every torchrun process at every start
    (torch >= 2.14); where torch has forward_sync_buffers it is used, else broadcast_buffers (torch 2.4...)."""
    import socket
    import warnings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning fails
            net = wrap_ddp(torch.nn.BatchNorm1d(3), Dist())
    finally:
        dist.destroy_process_group()
    assert getattr(net, "forward_sync_buffers", getattr(net, "broadcast_buffers", None)) is False

    made = []

    class OldDDP:  # torch before forward_sync_buffers
        def __init__(self, module, device_ids=None, broadcast_buffers=True):
            made.append(broadcast_buffers)

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", OldDDP)
    wrap_ddp(torch.nn.Linear(2, 2), Dist())
    assert made == [False]


def test_autocast_is_off_on_the_cpu_whatever_is_asked():
    a = torch.rand(4, 4)
    for amp in ("auto", "bf16", "fp16", "off"):
        with autocast(torch.device("cpu"), amp):
            assert (a @ a).dtype == torch.float32
            assert not torch.is_autocast_enabled("cpu")


def test_autocast_on_a_gpu_picks_the_dtype(monkeypatch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CUDA is missing here: torch says it disables itself
        assert autocast(torch.device("cuda"), "fp16").fast_dtype == torch.float16
        assert autocast(torch.device("cuda"), "bf16").fast_dtype == torch.bfloat16
        assert autocast(torch.device("cuda"), "auto").fast_dtype == torch.bfloat16
        assert autocast(torch.device("cuda"), "off")._enabled is False


def test_amp_precision_names_what_autocast_computes_in():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [amp_precision(cpu, a) for a in ("auto", "bf16", "fp16", "off")] == ["fp32"] * 4
    assert [amp_precision(gpu, a) for a in ("auto", "bf16", "fp16", "off")] == ["bf16", "bf16", "fp16", "fp32"]


@pytest.mark.parametrize("cores,want", [(None, 0), (1, 0), (2, 0), (4, 0), (6, 3), (8, 4), (16, 8), (64, 8)])
def test_auto_workers(cores, want, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert auto_workers(-1) == want
    assert auto_workers(0) == 0 and auto_workers(3) == 3  # an explicit count is kept


def test_loader_keeps_the_order_and_shards_by_rank(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    one = make_loader(Numbers(10), 4, -1, Dist())
    assert one.num_workers == 0 and one.worker_init_fn is None
    assert [b["i"].tolist() for b in one] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # no shuffle, last batch kept
    shards = [[i for b in make_loader(Numbers(10), 2, 0, Dist(r, 3)) for i in b["i"].tolist()] for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    # training alternates fake, real: in units of 2, each of an even number of ranks gets both classes
    pairs = [[i for b in make_loader(Numbers(10), 4, 0, Dist(r, 2), unit=2) for i in b["i"].tolist()] for r in range(2)]
    assert pairs == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7]]
    assert all({i % 2 for i in one} == {0, 1} for one in pairs)
    # shards of pairs differ by up to 2 samples: training runs the smallest shard's batches on every rank, or a
    # rank one batch short would leave the others waiting in an all-reduce (1,025 pairs, 2 ranks, batch 32)
    sizes = [len(shard(2050, r, 2, 2)) for r in range(2)]
    assert sizes == [1026, 1024] and [-(-n // 32) for n in sizes] == [33, 32]
    assert shard(10, 1, 2, 2) == [2, 3, 6, 7] and shard(10, 0, 3) == [0, 3, 6, 9]
    assert make_loader(Numbers(10), 2, 2, Dist()).worker_init_fn is not None  # one thread per loader process


def test_how_a_stopping_process_says_it_under_torchrun(monkeypatch):
    """Rank 0 speaks for the run: a Ctrl-C/SIGTERM or another process's end (gloo's 'Connection closed by peer', a
    traceback on every peer) is quiet on the other ranks; a process's own error is its own; anything else is a bug."""
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    lost = RuntimeError("[third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:6532")
    try:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        monkeypatch.delenv("RANK", raising=False)
        assert [distributed.stop_cause(e) for e in (KeyboardInterrupt(), OSError(28, "full"), lost)] == ["own", "own", "other"]
        assert distributed.resume_command("r") == "`forgerydet train --out r --resume`"
        assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]  # one process: a second Ctrl-C is the user's
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        for rank, want in (("0", ["own", "own", "peer", "other"]), ("1", ["quiet", "own", "quiet", "other"])):
            monkeypatch.setenv("RANK", rank)
            assert [distributed.stop_cause(e) for e in (KeyboardInterrupt(), OSError(28, "full"), lost,
                                                        RuntimeError("a bug"))] == want
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert distributed.resume_command("r") == "`torchrun --nproc_per_node 2 -m forgerydet train --out r --resume`"
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # two nodes
        assert "the same torchrun command (2 processes)" in distributed.resume_command("r")
    finally:
        for s, h in before.items():
            signal.signal(s, h)
