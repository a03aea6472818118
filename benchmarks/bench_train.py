"""Training cost: one full step per decoder, and ``mindlib.train.fit`` on the demo study (docs/method.md §7).

A step is what :func:`mindlib.train.fit` does per batch: AFIRE + decoder forward on B windows of T
TRs, :func:`mindlib.train.masked_mse` + ``aux_loss``, backward, gradient clipping at 1.0, AdamW
(β = 0.9, 0.95). Batches are random tensors of the right shapes (the cost does not depend on the
values), built once. Decoders come from :func:`mindlib.models.build_model` with default options
(AFIRE: linear projectors, concat fusion, temporal MLP), MIND timed with both dispatches.

Sizes (:func:`step_sizes`): ``demo`` uses the demo synthetic study's ``tribe`` feature dims and
d_model 128; ``full-512`` and ``full-3072`` use TRIBE-sized features (docs/method.md §3: video 1408, audio
1024, text 3072 per layer, three layer groups, one lag), 4 subjects, 1000 parcels, d_model 512 and
the paper-like 3072.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from mindlib import layout
from mindlib.afire import AFIREConfig
from mindlib.decoder import n_parameters
from mindlib.models import build_model
from mindlib.train import masked_mse

from .common import median_time

# TRIBE features per TR after three layer groups (docs/method.md §3), one FIR lag: F_m = 3 · D_m
TRIBE_FEATURE_DIMS: tuple[tuple[str, int], ...] = (
    ("video", 3 * 1408),
    ("audio", 3 * 1024),
    ("text", 3 * 3072),
)
# (label, decoder, options): what one step is timed for
DECODERS: tuple[tuple[str, str, dict], ...] = (
    ("mind (sparse)", "mind", {"dispatch": "sparse"}),
    ("mind (dense)", "mind", {"dispatch": "dense"}),
    ("baseline", "baseline", {}),
    ("mlp", "mlp", {}),
    ("mmoe", "mmoe", {}),
)


@dataclass(frozen=True)
class StepSize:
    """One model and batch size for :func:`run_train_steps`."""

    label: str  # e.g. "demo", "full-512"
    d_model: int  # d
    feature_dims: tuple[tuple[str, int], ...]  # (modality, F_m)
    n_subjects: int = len(layout.SUBJECTS)  # S
    n_parcels: int = layout.N_PARCELS  # V
    B: int = 8  # windows per step
    T: int = 100  # TRs per window
    afire_options: dict = field(default_factory=dict, hash=False, compare=False)  # extra AFIREConfig fields


def demo_feature_dims(size: str = "demo") -> tuple[tuple[str, int], ...]:
    """F_m of a synthetic study's ``tribe`` backbone, as :func:`mindlib.data.load_study` gives them.

    Layer groups of each modality's layers (:func:`mindlib.data.layer_groups`), one lag, computed from
    :func:`mindlib.synthetic.size_spec` without building the study.
    """
    from mindlib import data, synthetic

    return tuple(
        (m, len(data.layer_groups(n_layers)) * dim) for m, n_layers, dim in synthetic.size_spec(size).tribe
    )


def step_sizes(quick: bool = False) -> list[StepSize]:
    """The sizes timed by ``python -m benchmarks``: demo, full-512 and (not with --quick) full-3072."""
    sizes = [
        StepSize("demo", 128, demo_feature_dims("demo"), n_subjects=len(layout.SUBJECTS)),
        StepSize("full-512", 512, TRIBE_FEATURE_DIMS),
    ]
    if not quick:
        sizes.append(StepSize("full-3072", 3072, TRIBE_FEATURE_DIMS))
    return sizes


def random_batch(size: StepSize, device: torch.device, seed: int = 0) -> dict:
    """A batch shaped like :func:`mindlib.data.collate_windows`' output (every TR valid)."""
    g = torch.Generator().manual_seed(seed)
    B, T = size.B, size.T
    return {
        "features": {m: torch.randn(B, T, F, generator=g).to(device) for m, F in size.feature_dims},
        "fmri": torch.randn(B, T, size.n_parcels, generator=g).to(device),
        "mask": torch.ones(B, T, dtype=torch.bool, device=device),
        "subject": (torch.arange(B) % size.n_subjects).to(device),
    }


def make_step(
    model: nn.Module, batch: Mapping, device: torch.device, lr: float = 1e-3
) -> Callable[[], float]:
    """One training step as in :func:`mindlib.train.fit` (bf16 autocast on CUDA); returns the closure."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=1e-2)
    model.train()

    def step() -> float:
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(batch["features"], batch["subject"])
        else:
            out = model(batch["features"], batch["subject"])
        loss = masked_mse(out.pred, batch["fmri"], batch["mask"]) + out.aux_loss.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return float(loss.detach())

    return step


def run_train_steps(
    device: torch.device,
    sizes: Sequence[StepSize],
    decoders: Sequence[tuple[str, str, dict]] = DECODERS,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Median time of one training step per (size, decoder).

    Returns
    -------
    DataFrame
        One row per (size, decoder): ``d_model``, ``F_total`` (sum of F_m), ``params_M``, ``B``, ``T``,
        ``step_ms``, ``windows_per_s`` (B / step time).
    """
    rows = []
    for size in sizes:
        batch = random_batch(size, device, seed)
        afire = AFIREConfig(modalities=size.feature_dims, d_model=size.d_model, **size.afire_options)
        for label, decoder, options in decoders:
            torch.manual_seed(seed)
            model = build_model(decoder, afire, size.n_subjects, size.n_parcels, **options).to(device)
            step = make_step(model, batch, device)
            seconds = median_time(step, device, repeats=repeats, warmup=warmup)
            rows.append(
                {
                    "size": size.label,
                    "decoder": label,
                    "d_model": size.d_model,
                    "F_total": sum(F for _, F in size.feature_dims),
                    "V": size.n_parcels,
                    "params_M": n_parameters(model, trainable_only=False) / 1e6,
                    "B": size.B,
                    "T": size.T,
                    "step_ms": 1e3 * seconds,
                    "windows_per_s": size.B / seconds,
                }
            )
            del model, step
    return pd.DataFrame(rows)


def run_fit(
    device: torch.device,
    size: str = "demo",
    epochs: int = 2,
    d_model: int = 128,
    backbone: str = "tribe",
    seed: int = 0,
) -> pd.DataFrame:
    """Build (once) the synthetic study and time :func:`mindlib.train.fit` of MIND on it.

    The study goes where the notebooks put it (:func:`mindlib.project.resolve_dataset`: ``./studies``
    or ``$MIND_STUDIES_DIR``), so ``make demo`` reuses it.

    Returns
    -------
    DataFrame
        One row: study build/check seconds, load seconds, train windows, epochs, fit seconds,
        seconds per epoch and training windows per second (epoch time includes its validation
        pass, as ``TrainResult.history`` records it), best validation r.
    """
    from mindlib import data, train
    from mindlib.project import resolve_dataset

    t0 = time.perf_counter()
    root = resolve_dataset("synthetic", size=size, seed=seed)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    study = data.load_study(root, backbone)
    t_load = time.perf_counter() - t0
    train_records, val_records = study.select("train"), study.select("val")
    config = train.TrainConfig(epochs=epochs, device=device.type, progress=False, seed=seed)
    n_windows = len(data.WindowDataset(train_records, window=config.window, stride=config.stride))
    torch.manual_seed(seed)
    afire = AFIREConfig(modalities=study.feature_dims, d_model=d_model)
    model = build_model("mind", afire, len(study.subjects), study.n_parcels)
    t0 = time.perf_counter()
    result = train.fit(model, train_records, val_records, config)
    t_fit = time.perf_counter() - t0
    train_seconds = sum(h["seconds"] for h in result.history)
    return pd.DataFrame(
        [
            {
                "study": f"synthetic-{size}",
                "backbone": backbone,
                "decoder": "mind (sparse)",
                "d_model": d_model,
                "subjects": len(study.subjects),
                "train_runs": len(train_records),
                "train_windows": n_windows,
                "epochs": epochs,
                "build_s": t_build,
                "load_s": t_load,
                "fit_s": t_fit,
                "s_per_epoch": train_seconds / epochs,
                "windows_per_s": n_windows * epochs / train_seconds,
                "best_val_r": result.best_val_r,
            }
        ]
    )
