"""One training run over several processes: data parallelism for :func:`mindlib.train.fit` (docs/method.md §7).

Start it with ``torchrun`` (one process per GPU, or several CPU processes); ``python -m mindlib.distributed`` runs
``mindlib/distributed/__main__.py``, one experiment over all ranks::

    torchrun --nproc-per-node 8 -m mindlib.distributed --dataset /data/algonauts2025 --decoder mind \\
        --device cuda --results-dir results/ddp           # one node with 8 GPUs (NCCL)
    torchrun --nproc-per-node 2 -m mindlib.distributed --size smoke --device cpu   # two CPU processes (gloo)

Each process calls the same ``train.fit``. When a process group is up (:func:`init`, which reads torchrun's
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), ``fit`` asks :func:`group` and then

- splits **the same global batch** of ``batch_size`` windows across the ranks (rank ``r`` takes windows
  ``r, r + W, r + 2W, ...`` of it, as ``DistributedSampler`` would): the epoch's shuffle is the one-process shuffle;
- normalises each rank's squared error by the valid TRs of the *global* batch (:meth:`Group.masked_mse`) and sums
  the gradients over ranks (:meth:`Group.reduce_gradients`, one all-reduce of a flat buffer): the step is the
  one-process step, so the weights after any number of steps equal a one-process run to float tolerance; a
  parameter no rank used in a step keeps no gradient, as in one process (AdamW then skips it);
- writes checkpoints on rank 0 only; every rank resumes from the same checkpoint file.

What is exactly the one-process step: the masked MSE, the gradient clipping (on the summed gradients), the
optimiser and the schedule, and auxiliary losses that do not depend on the batch (MIND's ``λ2·‖B‖²``). Batch
statistics are per shard, as with any data-parallel run: MIND's load-balance loss is averaged over the ranks'
shards, and dropout draws other masks. Validation runs on every rank (all ranks keep the same best epoch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Group", "group", "init", "shutdown"]


@dataclass(frozen=True)
class Group:
    """The process group as ``fit`` sees it: this process's ``rank`` among ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        """True when there is more than one process (collectives are needed)."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and results."""
        return self.rank == 0

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's share of a global batch (every ``world``-th index from ``rank``)."""
        return list(indices)[self.rank :: self.world]

    def all_sum(self, value: Tensor | float) -> Tensor:
        """Sum of a scalar over ranks, as a float64 tensor (every rank passes the same dtype to the collective)."""
        t = torch.as_tensor(value.detach() if torch.is_tensor(value) else value, dtype=torch.float64)
        if self.active:
            t = t.to(_collective_device(t))
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def masked_mse(
        self, pred: Tensor | None, target: Tensor | None, mask: Tensor | None, n_parcels: int
    ) -> Tensor | None:
        """This rank's part of the global batch's masked MSE: ``Σ_local mask·(pred - target)² / (Σ_global mask · V)``.

        Parameters
        ----------
        pred, target : Tensor of shape (B_r, T, V), or None for a rank with no window in this batch
        mask : bool Tensor of shape (B_r, T), or None
        n_parcels : int
            V (the normaliser needs it on a rank without windows too).

        Returns
        -------
        Tensor or None
            Summed over ranks, the parts equal :func:`mindlib.train.masked_mse` of the whole batch.
        """
        count = mask.to(torch.float32).sum() if mask is not None else 0.0
        total = (
            self.all_sum(count).float().clamp_min(1.0 / n_parcels)
        )  # as masked_mse's clamp_min(1) on count·V
        if pred is None:
            return None
        weight = mask.to(torch.float32)[..., None]  # (B_r, T, 1)
        sq = (pred.float() - target.float()).pow(2) * weight
        return sq.sum() / (total.to(sq.device) * n_parcels)

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a checkpoint the others may resume from)."""
        if self.active:
            dist.barrier()

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks in place; a parameter without a gradient on every rank keeps none."""
        if not self.active:
            return
        params = list(params)
        device = _collective_device(params[0])
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        dist.all_reduce(has, op=dist.ReduceOp.SUM)
        used = [p for p, h in zip(params, has.tolist()) if h > 0]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1).to(device) for p in used])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in used:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def _collective_device(t: Tensor) -> torch.device:
    """Where a collective runs: the current GPU under NCCL, the CPU under gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def group() -> Group:
    """The current process group (one process, rank 0, when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return Group()


def init(backend: str | None = None) -> Group:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``).

    Parameters
    ----------
    backend : {"nccl", "gloo"}, optional
        Default: NCCL when CUDA is available (each process then uses GPU ``LOCAL_RANK``), else gloo.

    Returns
    -------
    Group
        ``Group()`` (one process) when ``WORLD_SIZE`` is unset or 1: the same script runs without torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return group()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return group()


def shutdown() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still reduces)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
