"""Fitting and scoring a decoder: the objective, the schedule, whole-run predictions (docs/method.md §7, §9; paper §2.5).

- **Objective**: masked MSE over the valid TRs of each window plus the decoder's own ``aux_loss``
  (``λ1·L_bal + λ2·‖B‖²`` for MIND, 0 for the baselines).
- **Schedule**: AdamW (β = 0.9, 0.95) with a OneCycle learning rate (10 % warm-up); windows of 100
  TRs, stride 50; each batch mixes subjects (every window carries its subject id).
- **Selection**: the epoch with the best validation Pearson r (parcels -> runs -> subjects, on full
  reconstructed runs) is kept. The test set is never looked at here.
- **Reproducibility**: epoch ``e`` shuffles with a generator seeded ``seed * 1000 + e`` and reseeds
  torch (dropout) the same way, so a run resumed from its checkpoint ends with the same weights as
  an uninterrupted one (bit-identical on CPU).

Whole runs are predicted with covering windows (the last one aligned to the run's end) whose
overlaps are averaged (:func:`mindlib.metrics.reconstruct_run`): every TR is predicted, none is
zero-filled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mindlib import distributed, metrics
from mindlib.data import STRIDE_TRS, WINDOW_TRS, WindowDataset, collate_windows, window_starts
from mindlib.files import atomic_write, write_json
from mindlib.layout import movie_of
from mindlib.params import default_of, unknown_names
from mindlib.progress import progress_bar

__all__ = [
    "TrainConfig",
    "Prediction",
    "TrainResult",
    "GridResult",
    "CHECKPOINT_NAME",
    "check_records",
    "resolve_device",
    "masked_mse",
    "fit",
    "run_epoch",
    "atomic_save",
    "predict_runs",
    "evaluate",
    "grid_search",
    "save_history",
    "load_history",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"  # file written in TrainConfig.checkpoint_dir after every epoch

# Fields that define the optimisation trajectory: a checkpoint can only be resumed under the same values.
_TRAJECTORY_FIELDS = (
    "epochs",
    "batch_size",
    "window",
    "stride",
    "lr",
    "weight_decay",
    "betas",
    "warmup_frac",
    "grad_clip",
    "seed",
    "eval_every",
)


@dataclass(frozen=True)
class Prediction:
    """How whole runs are predicted: covering windows, in batches, on a device (:func:`predict_runs`).

    The one declaration of the settings every whole-run scorer shares (:func:`predict_runs`,
    :func:`evaluate`, :func:`mindlib.isg.cross_subject_swap`, :func:`mindlib.analysis.gate_runs`); those take
    a ``Prediction`` and accept its fields as keywords (``evaluate(model, records, window=16)``).
    :attr:`TrainConfig.prediction` is a fit's own (its window, stride, batch size and amp).
    """

    window: int = WINDOW_TRS  # T TRs per window (the model's training window); a shorter run is one window
    stride: int | None = None  # TRs between window starts, <= window; None = window // 2
    batch_size: int = 16  # windows per forward pass
    device: str | torch.device | None = None  # None keeps the model where it is; "auto" or a name moves it
    amp: bool = False  # bf16 autocast on CUDA (no effect on CPU)

    def __post_init__(self) -> None:
        if not 1 <= self.step <= self.window:
            raise ValueError(
                f"stride must be in [1, window={self.window}] so windows cover every TR, got {self.stride}"
            )

    @property
    def step(self) -> int:
        """TRs between window starts: ``stride``, or ``window // 2`` when it is None."""
        return max(self.window // 2, 1) if self.stride is None else self.stride

    def with_settings(self, **settings: Any) -> Prediction:
        """This prediction with the fields named in ``settings`` replaced (a scorer's keyword arguments).

        Raises
        ------
        TypeError
            For a name that is not a field, with its closest field (``windw`` -> ``window``).
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(
                f"unknown prediction setting(s) {unknown_names(unknown, names)}; Prediction's fields are "
                f"{sorted(names)}"
            )
        return replace(self, **settings) if settings else self


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of :func:`fit` (docs/method.md §7). ``lr`` and ``weight_decay`` are chosen by :func:`grid_search`."""

    epochs: int = 20  # passes over the training windows
    batch_size: int = 8  # B windows per step, mixing subjects
    window: int = default_of(Prediction, "window")  # T TRs per window (docs/method.md §7: 100)
    stride: int = STRIDE_TRS  # TRs between window starts (<= window, so windows cover every TR)
    lr: float = 1e-3  # peak learning rate of the OneCycle schedule
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas (kept fixed: no momentum cycling)
    warmup_frac: float = 0.1  # OneCycle pct_start, the share of steps spent warming up
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    seed: int = 0  # epoch e shuffles and reseeds dropout with seed * 1000 + e
    device: str = "auto"  # "auto" = cuda if available else cpu; or "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast on CUDA (no effect on CPU)
    checkpoint_dir: str | None = None  # write <dir>/checkpoint.pt after every epoch; None = no checkpoint
    progress: bool = True  # one tqdm bar per fit (epoch, loss, val r, ETA), redrawn ~20 times
    resume: bool = True  # continue from <checkpoint_dir>/checkpoint.pt when it exists
    eval_every: int = 1  # validate every n epochs (and always after the last one)
    num_threads: int | None = None  # torch CPU threads while fitting; None = leave as is
    stop_after_epochs: int | None = None  # stop once this many epochs (resumed ones included) have run

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "window", "stride", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if self.stride > self.window:
            raise ValueError(
                f"TrainConfig.stride ({self.stride}) must be <= window ({self.window}) so windows cover every TR"
            )
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)
        if not 0.0 < self.warmup_frac < 1.0:
            raise ValueError(f"TrainConfig.warmup_frac must be in (0, 1), got {self.warmup_frac!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(
                f"TrainConfig.grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(
                    f"TrainConfig.device {self.device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'"
                ) from err
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(
                f"TrainConfig.num_threads must be an integer >= 1 or None, got {self.num_threads!r}"
            )
        if self.stop_after_epochs is not None and (
            not isinstance(self.stop_after_epochs, int) or self.stop_after_epochs < 1
        ):
            raise ValueError(
                f"TrainConfig.stop_after_epochs must be an integer >= 1 or None, got {self.stop_after_epochs!r}"
            )

    @property
    def prediction(self) -> Prediction:
        """Whole-run prediction with this fit's window, stride, batch size and amp, where the model is (fit and
        calibration have moved it to ``device``)."""
        return Prediction(window=self.window, stride=self.stride, batch_size=self.batch_size, amp=self.amp)


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch`` (0-based), ``train_loss`` (mean over windows), ``val_r`` (NaN on
        epochs not validated), ``lr`` (learning rate of the epoch's last step), ``seconds``.
    best_epoch : int
        0-based epoch with the best validation r (-1 if none was validated).
    best_val_r : float
    model : nn.Module
        The trained model with the best epoch's weights loaded (the same object that was passed in),
        in eval mode (``model.training`` is False).
    checkpoint_path : Path or None
    stopped_early : bool
        True when ``stop_after_epochs`` ended the run before ``epochs``.
    """

    history: list[dict]
    best_epoch: int
    best_val_r: float
    model: nn.Module
    checkpoint_path: Path | None = None
    stopped_early: bool = False


@dataclass
class GridResult:
    """What :func:`grid_search` returns: one table row per (lr, weight_decay), the winner and its fit."""

    table: pd.DataFrame
    best_config: TrainConfig
    best_result: TrainResult


# ---------------------------------------------------------------------------------------------
# input checks, devices, windows
# ---------------------------------------------------------------------------------------------


def _model_modalities(model: nn.Module) -> dict[str, int]:
    try:
        modalities = model.config.afire.modalities
    except AttributeError as err:
        raise TypeError(
            f"{type(model).__name__} has no config.afire.modalities; fit/predict need a decoder built on AFIRE "
            f"(mindlib.models.build_model) or a predict_fn for evaluate()"
        ) from err
    return dict(modalities)


def check_records(
    model: nn.Module,
    records: Sequence,
    name: str = "records",
    require_valid: bool = True,
) -> None:
    """Check that run records fit a decoder before any work starts.

    Parameters
    ----------
    model : nn.Module
        A decoder with ``config.afire.modalities`` and ``n_subjects``.
    records : list of RunRecord
    name : str
        How the records are called in error messages (``"train_records"``).
    require_valid : bool
        Also require at least one valid TR per record (training and scoring need one; prediction not).

    Raises
    ------
    ValueError
        Naming the run and the fix: empty list, a (subject, run) given twice, missing or extra
        modalities, a feature dimension other than the model's, arrays of different lengths, a
        subject index the model has no slot for, a run without a valid TR.
    """
    if len(records) == 0:
        raise ValueError(f"{name} is empty: pass at least one RunRecord (e.g. study.select('train'))")
    expected = _model_modalities(model)
    n_subjects = int(model.n_subjects)
    n_parcels = getattr(getattr(model, "config", None), "n_parcels", None)
    seen: set[tuple[str, str]] = set()
    for rec in records:
        where = f"{name}: {rec.subject} run {rec.run}"
        key = (rec.subject, rec.run)
        if key in seen:
            raise ValueError(f"{where} appears twice; each (subject, run) may be given once")
        seen.add(key)
        got = set(rec.features)
        for modality in sorted(set(expected) - got):
            raise ValueError(
                f"{where} lacks modality {modality!r} (expected modalities {sorted(expected)}, got {sorted(got)}); "
                f"load features from the backbone the model was built for"
            )
        for modality in sorted(got - set(expected)):
            raise ValueError(
                f"{where} has modality {modality!r} the model does not know (expected {sorted(expected)}, "
                f"got {sorted(got)}); build the model with this backbone's modalities"
            )
        n_trs = rec.fmri.shape[0]
        for modality, dim in expected.items():
            shape = tuple(rec.features[modality].shape)
            if len(shape) != 2 or shape[1] != dim:
                raise ValueError(
                    f"{where}, modality {modality!r}: expected features of shape (T, {dim}), got {shape}; "
                    f"the model was built for other layer groups or FIR lags"
                )
            if shape[0] != n_trs:
                raise ValueError(
                    f"{where}, modality {modality!r}: {shape[0]} feature TRs but {n_trs} fMRI TRs"
                )
        if rec.fmri.ndim != 2 or (n_parcels is not None and rec.fmri.shape[1] != n_parcels):
            raise ValueError(f"{where}: fMRI of shape {tuple(rec.fmri.shape)}, expected (T, {n_parcels})")
        if tuple(np.shape(rec.valid)) != (n_trs,):
            raise ValueError(f"{where}: valid mask of shape {np.shape(rec.valid)}, expected ({n_trs},)")
        if not 0 <= int(rec.subject_index) < n_subjects:
            raise ValueError(
                f"{where}: subject_index {rec.subject_index} but the model has {n_subjects} subject slot(s); "
                f"build the model with n_subjects > {rec.subject_index} or remap the subjects "
                f"(mindlib.isg.remap_subjects)"
            )
        if require_valid and not np.asarray(rec.valid).any():
            raise ValueError(
                f"{where} has no valid TR (no TR covered by features and fMRI); drop the run or check "
                f"its features' length"
            )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; any other name is passed to :class:`torch.device`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was asked for but CUDA is not available; use device='auto' or 'cpu'"
        )
    return dev


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _to_device(batch: Mapping, device: torch.device) -> dict:
    return {
        "features": {m: x.to(device, dtype=torch.float32) for m, x in batch["features"].items()},
        "fmri": batch["fmri"].to(device, dtype=torch.float32),
        "mask": batch["mask"].to(device),
        "subject": batch["subject"].to(device),
    }


# ---------------------------------------------------------------------------------------------
# the objective and one epoch
# ---------------------------------------------------------------------------------------------


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the valid TRs only.

    Parameters
    ----------
    pred, target : Tensor of shape (B, T, V)
    mask : bool Tensor of shape (B, T)
        True on TRs that count (covered by features, fMRI present, not padding).

    Returns
    -------
    Tensor
        Scalar, float32: ``Σ mask·(pred - target)² / (Σ mask · V)``; 0 when no TR is valid.
    """
    weight = mask.to(torch.float32)[..., None]  # (B, T, 1)
    sq = (pred.float() - target.float()).pow(2) * weight
    return sq.sum() / (weight.sum() * pred.shape[-1]).clamp_min(1.0)


def _aux(output) -> Tensor | float:
    aux = getattr(output, "aux_loss", None)
    return 0.0 if aux is None else aux.float() if torch.is_tensor(aux) else float(aux)


def _epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled window indices of one epoch, cut into batches; the same for the same (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n_items, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n_items, batch_size)]


def run_epoch(
    model: nn.Module,
    dataset: WindowDataset,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    scheduler=None,
    after_step: Callable[[], None] | None = None,
    bar=None,
) -> tuple[float, float]:
    """One pass over the shuffled windows: forward, masked MSE + ``aux_loss``, backward, one step per batch.

    Epoch ``epoch`` shuffles with a generator seeded ``seed · 1000 + epoch`` and reseeds torch's dropout
    the same way, so a resumed run replays it (docs/method.md §7). :func:`fit` calls it once per epoch;
    :func:`mindlib.isg.calibrate_subject` calls it to train a new subject's row only.

    Parameters
    ----------
    model : nn.Module
        A decoder returning a :class:`~mindlib.decoder.ModelOutput`; set to training mode here.
    dataset : WindowDataset
        The training windows (B windows of T TRs per batch).
    epoch : int
        Index of the epoch, from 0 (seeds the shuffle and the dropout).
    config : TrainConfig
        ``batch_size``, ``seed``, ``grad_clip``, ``amp`` and ``epochs`` (shown on the progress bar).
    device : torch.device
    optimizer : torch.optim.Optimizer
    params : list of nn.Parameter
        The parameters the optimizer updates (clipped together; summed over processes under torchrun).
    scheduler : learning-rate scheduler, optional
        Stepped after every optimizer step.
    after_step : callable, optional
        Called after every step (e.g. to restore the rows calibration must not change).
    bar : progress bar, optional
        Advanced by one per step, its postfix showing the epoch and the loss.

    Returns
    -------
    mean_loss : float
        Mean loss per window over the epoch.
    lr : float
        Learning rate of the last step (NaN when there was no step).

    Raises
    ------
    FloatingPointError
        The loss of a step is not finite.
    """
    torch.manual_seed(config.seed * 1000 + epoch)  # dropout / modality dropout replay on resume
    model.train()
    group = distributed.group()  # several processes (torchrun): each takes its share of every global batch
    total, count, lr = 0.0, 0, float("nan")
    for step, idx in enumerate(_epoch_batches(len(dataset), config.batch_size, config.seed, epoch)):
        loss = _batch_loss(model, dataset, group.shard(idx), device, config, group)
        value = group.all_sum(loss.detach() if loss is not None else 0.0) if group.active else loss.detach()
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"epoch {epoch} step {step}: the loss is {value.item()}; lower TrainConfig.lr or check the "
                f"inputs for NaN"
            )
        optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        group.reduce_gradients(params)  # sum over ranks: the one-process gradient of the global batch
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        lr = float(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        total += value.item() * len(idx)
        count += len(idx)
        if bar is not None:
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{value.item():.4f}", refresh=False)
            bar.update(1)  # redraws only every few steps (progress_bar)
    return total / max(count, 1), lr


def _batch_loss(
    model: nn.Module,
    dataset: WindowDataset,
    idx: list[int],
    device: torch.device,
    config: TrainConfig,
    group: distributed.Group,
) -> Tensor | None:
    """The loss of windows ``idx``: the whole batch's in one process, this rank's part of it in several (None
    for a rank without windows in a small last batch)."""
    if not group.active:
        batch = _to_device(collate_windows([dataset[i] for i in idx]), device)
        with _autocast(device, config.amp):
            output = model(batch["features"], batch["subject"])
        return masked_mse(output.pred, batch["fmri"], batch["mask"]) + _aux(output)
    if not idx:
        group.masked_mse(None, None, None, model.config.n_parcels)  # the normaliser's collective still runs
        return None
    batch = _to_device(collate_windows([dataset[i] for i in idx]), device)
    with _autocast(device, config.amp):
        output = model(batch["features"], batch["subject"])
    mse = group.masked_mse(output.pred, batch["fmri"], batch["mask"], output.pred.shape[-1])
    return mse + _aux(output) / group.world  # batch-independent aux terms sum back to the one-process value


def _validation_r(model: nn.Module, records: Sequence, config: TrainConfig, device: torch.device) -> float:
    """Mean Pearson r over parcels -> runs -> subjects, on the valid TRs of full reconstructed runs."""
    preds = predict_runs(model, records, replace(config.prediction, device=device))
    scores = {
        (r.subject, r.run): metrics.pearson_r(r.fmri, p, mask=np.asarray(r.valid))
        for r, p in zip(records, preds)
    }
    return metrics.summarize(scores)["mean"]


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a crash never leaves half a checkpoint.

    Parameters
    ----------
    obj : object
        What ``torch.save`` writes (a checkpoint dict, a model).
    path : Path
        Destination; its folder is created, an existing file is replaced only once the new one is whole.
    """
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _load_checkpoint(path: Path, config: TrainConfig, n_windows: int, device: torch.device) -> dict:
    state = torch.load(path, map_location=device, weights_only=True)
    saved = state.get("config", {})
    current = asdict(config)
    changed = [
        f"{name} (checkpoint {saved.get(name)!r}, now {current[name]!r})"
        for name in _TRAJECTORY_FIELDS
        if _as_plain(saved.get(name)) != _as_plain(current[name])
    ]
    if state.get("n_windows") != n_windows:
        changed.append(f"number of training windows (checkpoint {state.get('n_windows')}, now {n_windows})")
    if changed:
        raise ValueError(
            f"cannot resume from {path}: it was written under other settings: {'; '.join(changed)}. "
            f"Use another checkpoint_dir, delete the file, or set TrainConfig(resume=False)"
        )
    return state


def _as_plain(value):
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    train_records: Sequence,
    val_records: Sequence,
    config: TrainConfig = TrainConfig(),
    desc: str | None = None,
) -> TrainResult:
    """Train a decoder on windows of the training runs; keep the epoch with the best validation r.

    Parameters
    ----------
    model : nn.Module
        A decoder obeying the contract: ``forward(features, subject, modality_mask=None)`` returning
        ``.pred`` of shape (B, T, V) and ``.aux_loss``; attributes ``config.afire.modalities`` and
        ``n_subjects``. Trained in place.
    train_records, val_records : list of RunRecord
        Training runs (cut into windows of ``config.window`` TRs, stride ``config.stride``) and the
        validation runs used for model selection (scored on their valid TRs, full runs).
    config : TrainConfig
    desc : str, optional
        Label of the progress bar (``config.progress``); default ``"lr <lr> wd <weight_decay>"``.

    Returns
    -------
    TrainResult
        History, best epoch and score, the model with the best weights loaded (in eval mode), the
        checkpoint path.

    Notes
    -----
    With ``checkpoint_dir`` set, ``<checkpoint_dir>/checkpoint.pt`` is rewritten atomically after every
    epoch (model, optimiser, scheduler, history, best state). With ``resume=True`` an existing
    checkpoint written under the same schedule is continued; the final weights equal those of an
    uninterrupted run (on CPU). ``resume=False`` starts over and overwrites it.
    The OneCycle schedule keeps AdamW's betas fixed (``cycle_momentum=False``): docs/method.md §7 asks for
    β = (0.9, 0.95), which momentum cycling would change.
    Each epoch calls ``torch.manual_seed(seed * 1000 + epoch)``: the global torch RNG is reseeded.
    ``stop_after_epochs`` ends the call early, as an interruption would: the checkpoint holds the last
    epoch's state, the returned model the best epoch's weights so far.
    """
    check_records(model, train_records, "train_records")
    check_records(model, val_records, "val_records")
    threads_before = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        return _fit(model, list(train_records), list(val_records), config, desc)
    finally:
        torch.set_num_threads(threads_before)


def _fit(
    model: nn.Module, train_records: list, val_records: list, config: TrainConfig, desc: str | None = None
) -> TrainResult:
    device = resolve_device(config.device)
    model.to(device)
    dataset = WindowDataset(train_records, window=config.window, stride=config.stride)
    n_windows = len(dataset)
    steps_per_epoch = math.ceil(n_windows / config.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter (every requires_grad is False)")
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    total_steps = config.epochs * steps_per_epoch
    # torch's OneCycleLR divides by zero when the warm-up rounds to less than one step (tiny runs):
    # warm up for at least 1.5 steps' worth of the schedule, and never past its middle.
    pct_start = min(max(config.warmup_frac, 1.5 / total_steps), 0.5)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=max(total_steps, 4),
        pct_start=pct_start,
        cycle_momentum=False,
    )

    history: list[dict] = []
    best_state: dict | None = None
    best_epoch, best_val_r, start_epoch = -1, float("nan"), 0
    ckpt_path = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if ckpt_path is not None and config.resume and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, config, n_windows, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])
        best_state, best_epoch, best_val_r = state["best_state"], state["best_epoch"], state["best_val_r"]
        start_epoch = state["epoch"] + 1
        logger.info("resumed from %s after epoch %d of %d", ckpt_path, state["epoch"], config.epochs)

    stopped_early = False
    last_epoch = (
        config.epochs if config.stop_after_epochs is None else min(config.epochs, config.stop_after_epochs)
    )
    bar = progress_bar(  # one bar for the whole fit: its ETA covers every remaining epoch
        total=max(last_epoch - start_epoch, 0) * steps_per_epoch,
        desc=desc if desc is not None else f"lr {config.lr:g} wd {config.weight_decay:g}",
        disable=not config.progress or not distributed.group().is_main,
    )
    for epoch in range(start_epoch, config.epochs):
        if config.stop_after_epochs is not None and epoch >= config.stop_after_epochs:
            stopped_early = True
            break
        t0 = time.perf_counter()
        try:
            train_loss, lr = run_epoch(
                model, dataset, epoch, config, device, optimizer, params, scheduler, bar=bar
            )
            validate = (epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1
            val_r = _validation_r(model, val_records, config, device) if validate else float("nan")
            bar.set_postfix(
                epoch=f"{epoch + 1}/{config.epochs}",
                loss=f"{train_loss:.4f}",
                val_r=f"{val_r:.4f}",
                refresh=False,
            )
        except BaseException:
            bar.close()
            raise
        if not math.isnan(val_r) and (best_epoch < 0 or val_r > best_val_r):
            best_state, best_epoch, best_val_r = _cpu_state(model), epoch, float(val_r)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(train_loss),
                "val_r": float(val_r),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
        )
        logger.info("epoch %d: train loss %.4f, val r %.4f", epoch, train_loss, val_r)
        if ckpt_path is not None:
            if distributed.group().is_main:  # one writer; every rank resumes from the same file
                atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "history": history,
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_val_r": best_val_r,
                        "n_windows": n_windows,
                        "config": asdict(config),
                    },
                    ckpt_path,
                )
            distributed.group().barrier()
    bar.close()  # the last redraw shows the final epoch, loss and validation r

    if best_state is None:
        warnings.warn(
            "no epoch gave a finite validation r; the model keeps its last weights",
            RuntimeWarning,
            stacklevel=3,
        )
    else:
        model.load_state_dict(best_state)
    model.eval()  # handed back ready for inference: no dropout, no modality dropout
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        best_val_r=best_val_r,
        model=model,
        checkpoint_path=ckpt_path,
        stopped_early=stopped_early,
    )


# ---------------------------------------------------------------------------------------------
# whole-run prediction and scores
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_runs(
    model: nn.Module,
    records: Sequence,
    prediction: Prediction = Prediction(),
    output: Callable[[Any], Tensor] | None = None,
    **settings: Any,
) -> list[np.ndarray]:
    """Predict every TR of whole runs with covering windows whose overlaps are averaged.

    Parameters
    ----------
    model : nn.Module
        A decoder (see :func:`fit`); run in eval mode, its mode is restored afterwards.
    records : list of RunRecord
        Only ``features``, ``subject_index`` and the run length are used.
    prediction : Prediction
        Window, stride, batch size, device, amp. Windows start every ``stride`` TRs and the last one is
        aligned to the run's end (:func:`mindlib.data.window_starts`), so every TR is covered.
    output : callable, optional
        What to read off the model's output, a ``(B, T, X)`` tensor; default ``out.pred`` (X = V).
        ``lambda out: out.gate.weights`` reads the gate over whole runs instead (X = E).
    **settings
        Fields of ``prediction`` to change for this call (``window=16``).

    Returns
    -------
    list of ndarray of shape (T, X), float32
        One array per record, in order.
    """
    output = output or (lambda out: out.pred)
    p = prediction.with_settings(**settings)
    window, stride, batch_size = p.window, p.step, p.batch_size
    check_records(model, records, "records", require_valid=False)
    if p.device is None:
        dev = _model_device(model)
    else:
        dev = resolve_device(p.device)
        model.to(dev)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for rec in records:
            n_trs = rec.fmri.shape[0]
            width = min(window, n_trs)
            starts = window_starts(n_trs, window, stride)
            feats = {m: torch.as_tensor(np.asarray(x)) for m, x in rec.features.items()}  # (T, F_m)
            pieces: list[tuple[int, np.ndarray]] = []
            for i in range(0, len(starts), batch_size):
                chunk = starts[i : i + batch_size]
                batch = {
                    m: torch.stack([x[s : s + width] for s in chunk]).to(dev, dtype=torch.float32)
                    for m, x in feats.items()
                }  # (B, T, F_m)
                subject = torch.full((len(chunk),), int(rec.subject_index), dtype=torch.long, device=dev)
                with _autocast(dev, p.amp):
                    pred = output(model(batch, subject))  # (B, T, V) or what `output` reads
                pieces.extend(zip(chunk, pred.float().cpu().numpy()))
            out.append(metrics.reconstruct_run(pieces, n_trs))
    finally:
        model.train(was_training)
    return out


def _predictions(model_or_fn, records, prediction: Prediction) -> list[np.ndarray]:
    if isinstance(model_or_fn, nn.Module):
        return predict_runs(model_or_fn, records, prediction)
    if callable(model_or_fn):
        return [np.asarray(model_or_fn(rec)) for rec in records]
    if callable(getattr(model_or_fn, "predict", None)):
        return [np.asarray(model_or_fn.predict(rec)) for rec in records]
    raise TypeError(
        f"evaluate() needs a torch decoder, a predict_fn(record) -> (T, V) or an object with .predict(record); "
        f"got {type(model_or_fn).__name__}"
    )


def evaluate(
    model_or_fn,
    records: Sequence,
    prediction: Prediction = Prediction(),
    exclude_trs: int = 5,
    **settings: Any,
) -> dict:
    """Score predictions of whole runs: Pearson, Spearman, R² per parcel, averaged, and the official metric.

    Parameters
    ----------
    model_or_fn : nn.Module, callable or object with ``.predict``
        A torch decoder (predicted with :func:`predict_runs`), a ``predict_fn(record) -> (T, V)``, or an
        object with ``.predict(record)`` such as :class:`mindlib.baselines.RidgeEncoder`: one code path.
    records : list of RunRecord
        Runs to score; Pearson/Spearman/R² use each run's valid TRs.
    prediction : Prediction
        How :func:`predict_runs` predicts whole runs (torch decoders only).
    exclude_trs : int
        TRs dropped at both ends of each run by the official metric.
    **settings
        Fields of ``prediction`` to change for this call (``window=16``).

    Returns
    -------
    dict
        ``"pearson"``, ``"spearman"``, ``"r2"``: each :func:`mindlib.metrics.summarize` output
        (``mean``, ``per_subject``, ``per_run``); ``"algonauts"``: :func:`mindlib.metrics.algonauts_score`
        on the same predictions (invalid TRs also dropped); ``"per_parcel"``: ``{metric: {(subject, run):
        (V,) array}}`` for maps; ``"table"``: a DataFrame with one row per run (subject, run, movie,
        pearson, spearman, r2: parcel means).
    """
    records = list(records)
    if not records:
        raise ValueError("evaluate() got no records")
    preds = _predictions(model_or_fn, records, prediction.with_settings(**settings))
    per_parcel: dict[str, dict] = {"pearson": {}, "spearman": {}, "r2": {}}
    predictions: dict[str, dict] = {}
    targets: dict[str, dict] = {}
    valid: dict[str, dict] = {}
    rows = []
    for rec, pred in zip(records, preds):
        if pred.shape != rec.fmri.shape:
            raise ValueError(
                f"{rec.subject} run {rec.run}: prediction of shape {pred.shape}, fMRI of shape {rec.fmri.shape}"
            )
        key = (rec.subject, rec.run)
        if key in per_parcel["pearson"]:
            raise ValueError(
                f"{rec.subject} run {rec.run} appears twice; each (subject, run) may be given once"
            )
        mask = np.asarray(rec.valid, dtype=bool)
        per_parcel["pearson"][key] = metrics.pearson_r(rec.fmri, pred, mask=mask)
        per_parcel["spearman"][key] = metrics.spearman_r(rec.fmri, pred, mask=mask)
        per_parcel["r2"][key] = metrics.r2_score(rec.fmri, pred, mask=mask)
        predictions.setdefault(rec.subject, {})[rec.run] = pred
        targets.setdefault(rec.subject, {})[rec.run] = rec.fmri
        valid.setdefault(rec.subject, {})[rec.run] = mask
        rows.append(
            {
                "subject": rec.subject,
                "run": rec.run,
                "movie": movie_of(rec.run),
                **{name: metrics.nanmean(scores[key]) for name, scores in per_parcel.items()},
            }
        )
    result = {name: metrics.summarize(scores) for name, scores in per_parcel.items()}
    result["algonauts"] = metrics.algonauts_score(predictions, targets, exclude_trs=exclude_trs, valid=valid)
    result["per_parcel"] = per_parcel
    result["table"] = pd.DataFrame(rows)
    return result


# ---------------------------------------------------------------------------------------------
# grid search, history files
# ---------------------------------------------------------------------------------------------


def grid_search(
    build_fn: Callable[[], nn.Module],
    train_records: Sequence,
    val_records: Sequence,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    config: TrainConfig = TrainConfig(),
) -> GridResult:
    """Choose learning rate and weight decay on the validation runs only (docs/method.md §7).

    Parameters
    ----------
    build_fn : callable () -> nn.Module
        Builds a fresh model; called after ``torch.manual_seed(config.seed)`` so every cell starts
        from the same initial weights.
    train_records, val_records : list of RunRecord
    lrs, weight_decays : sequence of float
        The grid (every pair is fitted).
    config : TrainConfig
        Everything else; with ``checkpoint_dir`` set, each cell writes to its own subfolder
        ``lr<lr>_wd<wd>``.

    Returns
    -------
    GridResult
        ``table`` (DataFrame: lr, weight_decay, best_val_r, best_epoch), ``best_config`` and the
        ``best_result`` of the winning cell (other cells' models are dropped).
    """
    if len(lrs) == 0 or len(weight_decays) == 0:
        raise ValueError("grid_search() needs at least one lr and one weight_decay")
    rows = []
    best: tuple[float, TrainConfig, TrainResult] | None = None
    for lr in lrs:
        for weight_decay in weight_decays:
            cell_dir = None
            if config.checkpoint_dir is not None:
                cell_dir = str(Path(config.checkpoint_dir) / f"lr{lr:g}_wd{weight_decay:g}")
            cfg = replace(config, lr=lr, weight_decay=weight_decay, checkpoint_dir=cell_dir)
            torch.manual_seed(config.seed)
            result = fit(build_fn(), train_records, val_records, cfg)
            rows.append(
                {
                    "lr": lr,
                    "weight_decay": weight_decay,
                    "best_val_r": result.best_val_r,
                    "best_epoch": result.best_epoch,
                }
            )
            score = -math.inf if math.isnan(result.best_val_r) else result.best_val_r
            if best is None or score > best[0]:
                best = (score, cfg, result)
    assert best is not None  # the grid is not empty
    return GridResult(table=pd.DataFrame(rows), best_config=best[1], best_result=best[2])


def save_history(history: Sequence[Mapping], path: str | Path) -> Path:
    """Write a training history (list of per-epoch dicts) as JSON; NaN is written as null."""
    return write_json(path, [dict(row) for row in history], indent=1)


def load_history(path: str | Path) -> list[dict]:
    """Read a history written by :func:`save_history` (null back to NaN)."""
    rows = json.loads(Path(path).read_text())
    return [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in rows]
