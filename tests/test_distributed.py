"""mindlib.distributed: two CPU processes (gloo) training on the same global batches end with the weights of one
process; only rank 0 writes checkpoints; an interrupted two-process run resumes to the same weights."""

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from mindlib import distributed, models, train
from mindlib.afire import AFIREConfig
from tests.stand_ins import MODALITIES, V, planted_records, planted_weights

# 3 runs × 2 subjects of 40-42 TRs -> 28 windows of 16 TRs; global batches of 9 -> 9, 9, 9, 1 windows: shards of
# 5 and 4 windows, and a last batch that leaves rank 1 without any
CONFIG = train.TrainConfig(epochs=2, batch_size=9, window=16, stride=8, lr=1e-2, device="cpu", progress=False)
DECODERS = {
    "baseline": {"dropout": 0.0},
    "mind": {"n_experts": 4, "top_k": 2, "lambda_balance": 0.0, "expert_dropout": 0.0},
}


def records():
    rng = np.random.default_rng(0)
    weights = planted_weights(rng)
    return (
        planted_records(("sub-01", "sub-02"), ("s01e01a", "s01e01b", "bourne01"), weights, rng),
        planted_records(("sub-01", "sub-02"), ("s01e02a",), weights, rng),
    )


def build(decoder: str) -> torch.nn.Module:
    torch.manual_seed(0)
    afire = AFIREConfig(
        modalities=dict(MODALITIES), d_model=8, dropout=0.0
    )  # no dropout: masks are per shard
    return models.build_model(decoder, afire, 2, V, **DECODERS[decoder])


def fit(decoder: str, config: train.TrainConfig) -> dict:
    train_recs, val_recs = records()
    result = train.fit(build(decoder), train_recs, val_recs, config)
    return {
        "state": {k: v.clone() for k, v in result.model.state_dict().items()},
        "history": [h["train_loss"] for h in result.history],
    }


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    g = distributed.init("gloo")
    assert (g.rank, g.world, g.active, g.is_main) == (rank, world, True, rank == 0)
    writes = []
    save = train.atomic_save
    train.atomic_save = lambda obj, path: (writes.append(str(path)), save(obj, path))
    try:
        config, out_dir = CONFIG, Path(out)
        for decoder in DECODERS:
            full = fit(decoder, replace(config, checkpoint_dir=str(out_dir / decoder / "full")))
            if rank == 0:
                torch.save(full, out_dir / f"{decoder}-full.pt")
        # MIND interrupted after one epoch, then resumed by both ranks from rank 0's checkpoint
        part = replace(config, checkpoint_dir=str(out_dir / "mind" / "resumed"))
        fit("mind", replace(part, stop_after_epochs=1))
        resumed = fit("mind", part)
        if rank == 0:
            torch.save(resumed, out_dir / "mind-resumed.pt")
        (out_dir / f"writes-{rank}.json").write_text(json.dumps(writes))
    finally:
        train.atomic_save = save
        distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_and_resume(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert json.loads((tmp_path / "writes-1.json").read_text()) == []  # rank 1 never wrote a checkpoint
    rank0 = json.loads((tmp_path / "writes-0.json").read_text())
    assert len(rank0) == len(DECODERS) * CONFIG.epochs + CONFIG.epochs  # full runs + (1 + 1 resumed epochs)
    for decoder in DECODERS:
        one = fit(decoder, CONFIG)
        for run in ("full", "resumed") if decoder == "mind" else ("full",):
            two = torch.load(tmp_path / f"{decoder}-{run}.pt", weights_only=False)
            assert two["state"].keys() == one["state"].keys()
            for name, value in one["state"].items():
                diff = float((two["state"][name] - value).abs().max())
                # AdamW divides by the gradients' RMS: float noise on near-zero gradients shows at ~1e-5
                torch.testing.assert_close(
                    two["state"][name],
                    value,
                    rtol=1e-4,
                    atol=1e-4,
                    msg=f"{decoder} ({run}): {name} differs by {diff:.2g} from one process",
                )
            np.testing.assert_allclose(two["history"], one["history"], rtol=1e-5)


def test_one_process_group_is_a_no_op():
    g = distributed.group()
    assert (g.rank, g.world, g.active, g.is_main) == (0, 1, False, True)
    assert g.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.Group(1, 3).shard(list(range(8))) == [1, 4, 7]
    assert distributed.Group(2, 3).shard([5]) == []
    pred, target = torch.randn(2, 4, V), torch.randn(2, 4, V)
    mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    torch.testing.assert_close(g.masked_mse(pred, target, mask, V), ((pred - target)[mask] ** 2).mean())


def test_init_picks_nccl_and_the_local_gpu_when_cuda_is_there(monkeypatch):
    """The GPU path without a GPU: torchrun's variables -> NCCL on GPU LOCAL_RANK (gloo without CUDA)."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend))
    )
    monkeypatch.setattr(distributed, "group", lambda: distributed.Group(3, 4))
    assert distributed.init() == distributed.Group(3, 4)
    assert calls == [("set_device", 3), ("init", "nccl")]
    calls.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    distributed.init()
    assert calls == [("init", "gloo")]
    monkeypatch.setenv("WORLD_SIZE", "1")  # without torchrun: one process, nothing initialised
    calls.clear()
    distributed.init()
    assert calls == []
