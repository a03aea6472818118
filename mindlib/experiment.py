"""One experiment = one decoder on one backbone, tuned on validation, scored once on test (docs/method.md §7, §9).

The notebooks (03 AFIRE, 04 SADGate, 06 train MIND, 07 baselines, 08 tables, 11 new backbone) all run
the same protocol, so it lives here once:

1. build the decoder from :class:`ExperimentConfig` (``mindlib.models.build_model``, or ridge);
2. grid-search learning rate × weight decay on the **validation** runs (every decoder gets the same grid);
3. keep the best epoch of the best cell (model selection on validation only);
4. score validation and, once, the held-out **test** runs.

Ridge is the classical voxelwise model (``mindlib.baselines.RidgeEncoder``): one penalty per parcel,
chosen on the same validation runs, then it is scored exactly like the others.

One config tree, flat on top
----------------------------
:class:`ExperimentConfig` is flat: one field per setting a notebook varies, because the notebooks' parameter
cells, papermill (``-p d_model 64``), ``mindlib.grid`` and the saved results and models all pass and store one
flat dict of literals. It declares no default of its own where a module config has one: each default is
*read from* that config's field (:func:`mindlib.params.default_of` on ``AFIREConfig``, ``SADGateOptions``,
``MINDConfig``, ``MLPConfig``, ``TrainConfig``), and :meth:`ExperimentConfig.afire_config`,
:meth:`~ExperimentConfig.train_config`, :meth:`~ExperimentConfig.decoder_options` and :func:`build` construct
the module configs from it. The defaults that differ from a module's on purpose have one name each
(:data:`D_MODEL`, :data:`EPOCHS`, :data:`PROGRESS`). Every choice is a ``typing.Literal`` declared once in its
module and checked here for every decoder (``mode="tokn"`` is an error even for ridge).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch

from mindlib import isg, models, reduce, train
from mindlib.afire import AFIREConfig, Fusion, Temporal
from mindlib.baselines import MLPConfig, RidgeEncoder
from mindlib.data import Study, with_lags
from mindlib.decoder import n_parameters
from mindlib.experts import Expert
from mindlib.mind import MINDConfig
from mindlib.params import check_literal_fields, default_of, unknown_names
from mindlib.sadgate import Balance, Mode, SADGateOptions

Decoder = Literal[models.Decoder, "ridge"]  # Table 1 rows: the torch decoders, and ridge
DECODERS: tuple[str, ...] = get_args(Decoder)

# The experiment's defaults that differ from the module configs' on purpose, one name each. The notebooks'
# runs (their parameter cells, mindlib.grid) are sized for CPU studies: a token dim of half AFIREConfig's 256
# and 15 epochs per grid cell instead of fit()'s 20; and quiet, since tests and grids run many of them.
D_MODEL = 128  # d, AFIRE token dim of an experiment (AFIREConfig: 256)
EPOCHS = 15  # passes over the training windows per grid cell (TrainConfig: 20)
PROGRESS = False  # no progress bar unless asked for (TrainConfig: True); a notebook passes progress=True


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run of notebook 06 (and of each cell of Tables 1 to 4).

    Flat, with each default read from the module config that uses it (see the module docstring).
    """

    decoder: Decoder = "mind"  # Table 1 rows
    mode: Mode = default_of(SADGateOptions, "mode")  # SADGate router (Table 2); MIND only
    n_experts: int = default_of(SADGateOptions, "n_experts")  # E (MIND and MMoE)
    top_k: int = default_of(SADGateOptions, "top_k")  # K experts kept per token (MIND)
    d_model: int = D_MODEL  # d, AFIRE token dim
    hidden: int = default_of(MLPConfig, "hidden")  # h of MLP, MMoE and MIND's MLP experts (one default)
    expert: Expert = default_of(MINDConfig, "expert")  # MIND expert heads
    fusion: Fusion = default_of(AFIREConfig, "fusion")  # AFIRE fusion operator
    temporal: Temporal = default_of(AFIREConfig, "temporal")  # AFIRE temporal module
    modality_dropout: float = default_of(AFIREConfig, "modality_dropout")  # P(drop a modality of a window)
    epochs: int = EPOCHS  # passes over the training windows per grid cell
    batch_size: int = default_of(train.TrainConfig, "batch_size")  # B windows per step
    window: int = default_of(train.TrainConfig, "window")  # T TRs per window
    stride: int = default_of(train.TrainConfig, "stride")  # TRs between window starts
    lrs: tuple[float, ...] = (1e-3, 3e-3)  # learning-rate grid (validation only)
    weight_decays: tuple[float, ...] = (default_of(train.TrainConfig, "weight_decay"),)  # weight-decay grid
    lambda_balance: float = default_of(MINDConfig, "lambda_balance")  # λ1, load balance (MIND)
    lambda_bias: float = default_of(MINDConfig, "lambda_bias")  # λ2, ‖B‖² (MIND)
    balance: Balance = default_of(SADGateOptions, "balance")  # balance-loss kind (MIND; see mindlib.sadgate)
    router_subject: bool = default_of(SADGateOptions, "router_subject")  # e_s on MIND's token router
    seed: int = default_of(train.TrainConfig, "seed")  # model initialisation, shuffling, dropout
    isg_subjects: tuple[str, ...] = ()  # leave-one-subject-out for each (ISG column of Table 1); () = skip
    fir_lags_trs: tuple[float, ...] = (2, 3, 4)  # ridge's FIR delays in TRs (the others: the study's lag)
    ridge_components: int = (
        0  # ridge: PCA axes per modality, FIR lags by shifts (mindlib.reduce); 0: all features
    )
    device: str = default_of(train.TrainConfig, "device")  # "auto" | "cpu" | "cuda"
    progress: bool = PROGRESS  # tqdm bar per fit

    def __post_init__(self) -> None:
        check_literal_fields(self)  # decoder, mode, expert, fusion, temporal, balance: for every decoder
        if not self.lrs or not self.weight_decays:
            raise ValueError("lrs and weight_decays must each hold at least one value")
        if self.ridge_components < 0:
            raise ValueError(
                f"ExperimentConfig.ridge_components={self.ridge_components}: the PCA axes per modality must be "
                ">= 1, or 0 for the full features"
            )

    def train_config(self, checkpoint_dir: str | None = None) -> train.TrainConfig:
        """:class:`mindlib.train.TrainConfig` of each grid cell (``lr``, ``weight_decay``: the grid's first)."""
        return train.TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            window=self.window,
            stride=self.stride,
            lr=self.lrs[0],
            weight_decay=self.weight_decays[0],
            seed=self.seed,
            device=self.device,
            checkpoint_dir=checkpoint_dir,
            progress=self.progress,
        )

    def afire_config(self, study: Study) -> AFIREConfig:
        """:class:`mindlib.afire.AFIREConfig` for ``study``'s modalities (its positions cover the window)."""
        return AFIREConfig(
            modalities=dict(study.feature_dims),
            d_model=self.d_model,
            fusion=self.fusion,
            temporal=self.temporal,
            modality_dropout=self.modality_dropout,
            max_len=max(default_of(AFIREConfig, "max_len"), self.window),
        )

    def decoder_options(self) -> dict[str, Any]:
        """Options of ``build_model`` for this decoder (only those its config has)."""
        wanted = {
            "n_experts": self.n_experts,
            "top_k": self.top_k,
            "mode": self.mode,
            "expert": self.expert,
            "expert_hidden": self.hidden,
            "hidden": self.hidden,
            "lambda_balance": self.lambda_balance,
            "lambda_bias": self.lambda_bias,
            "balance": self.balance,
            "router_subject": self.router_subject,
        }
        valid = models.decoder_options(self.decoder)
        return {k: v for k, v in wanted.items() if k in valid}

    @property
    def prediction(self) -> train.Prediction:
        """How validation and test runs are predicted: this config's window, on its device."""
        return train.Prediction(window=self.window, device=self.device)


def build(config: ExperimentConfig, study: Study, n_subjects: int | None = None) -> torch.nn.Module:
    """A fresh decoder for ``study`` (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    return models.build_model(
        config.decoder,
        config.afire_config(study),
        n_subjects or len(study.subjects),
        study.n_parcels,
        **config.decoder_options(),
    )


@dataclass
class ExperimentResult:
    """What :func:`run` returns: the selected model, its scores and how it was chosen."""

    config: ExperimentConfig
    backbone: str
    model: Any  # nn.Module, or RidgeEncoder
    grid: pd.DataFrame  # lr, weight_decay, best_val_r, best_epoch (empty for ridge)
    history: list[dict]  # of the selected cell
    val: dict  # train.evaluate on validation runs
    test: dict | None  # train.evaluate on test runs (None if the study has none)
    seconds: float
    n_params: int
    extra: dict = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        return int(self.grid.loc[self.grid.best_val_r.idxmax(), "best_epoch"]) if len(self.grid) else -1

    def parcel_r(self, split: Literal["val", "test"] = "test") -> np.ndarray:
        """Pearson r per parcel ``(V,)``, averaged over runs then subjects (nan-aware)."""
        scores = (self.test if split == "test" else self.val)["per_parcel"]["pearson"]
        by_subject: dict[str, list] = {}
        for (subject, _run), r in scores.items():
            by_subject.setdefault(subject, []).append(r)
        with np.errstate(all="ignore"):
            return np.nanmean([np.nanmean(v, axis=0) for v in by_subject.values()], axis=0)

    def per_run_r(self, split: Literal["val", "test"] = "test") -> dict[str, float]:
        """Pearson r of each scored run (mean over parcels), ``{"subject/run": r}``: the paired units of
        :func:`mindlib.stats.compare` ({} when the split was not scored)."""
        scores = self.test if split == "test" else self.val
        if scores is None:
            return {}
        return {f"{subject}/{run}": float(r) for (subject, run), r in scores["pearson"]["per_run"].items()}

    def summary(self) -> dict:
        """Key numbers for results files and tables."""
        out = {
            "backbone": self.backbone,
            "decoder": self.config.decoder,
            "mode": self.config.mode,
            "balance": self.config.balance,
            "seed": self.config.seed,
            "val_r": self.val["pearson"]["mean"],
            "val_spearman": self.val["spearman"]["mean"],
            "val_r2": self.val["r2"]["mean"],
            "val_algonauts": self.val["algonauts"]["mean"],
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
            "n_params": self.n_params,
        }
        if len(self.grid):
            best = self.grid.loc[self.grid.best_val_r.idxmax()]
            out.update(best_lr=float(best.lr), best_weight_decay=float(best.weight_decay))
        if self.test is not None:
            out.update(
                test_r=self.test["pearson"]["mean"],
                test_spearman=self.test["spearman"]["mean"],
                test_r2=self.test["r2"]["mean"],
                test_algonauts=self.test["algonauts"]["mean"],
            )
        return {**out, **self.extra}


def run(
    study: Study, config: ExperimentConfig = ExperimentConfig(), checkpoint_dir: str | None = None
) -> ExperimentResult:
    """Tune on validation, select on validation, score validation and test once.

    Parameters
    ----------
    study : Study
        From :func:`mindlib.data.load_study` (its split is used as is).
    config : ExperimentConfig
    checkpoint_dir : str, optional
        Per-cell checkpoints (training resumes from them after an interruption).

    Returns
    -------
    ExperimentResult
    """
    train_recs, val_recs, test_recs = (study.select(s) for s in ("train", "val", "test"))
    if not train_recs or not val_recs:
        raise ValueError(
            f"{study.root}: the split has {len(train_recs)} training and {len(val_recs)} validation runs; "
            "both must be non-empty (use a larger study or smaller val/test fractions)"
        )
    t0 = time.perf_counter()
    prediction = config.prediction  # torch decoders only (ridge predicts each record itself)
    if config.decoder == "ridge":
        # the classical voxelwise model learns the response shape from FIR-delayed features
        if not config.ridge_components:
            fir = with_lags(study, config.fir_lags_trs)
        else:  # bounded memory at the release's size: PCA per modality, FIR lags by shifting reduced tokens
            fir, _ = reduce.reduced_fir_study(
                study, config.fir_lags_trs, config.ridge_components, config.progress
            )
        # per-parcel penalties chosen on the validation runs, the data every other decoder selects on
        # PCA tokens are standardised features already, rotated: scaling them again would whiten them
        ridge = RidgeEncoder(n_subjects=len(study.subjects), standardise=not config.ridge_components)
        model = ridge.fit(fir.select("train"), fir.select("val"))
        # score exactly the TRs every other decoder is scored on (the study's valid mask), with FIR features
        valid = {(r.subject, r.run): r.valid for r in study.records}
        val_recs, test_recs = (
            [replace(r, valid=valid[(r.subject, r.run)]) for r in fir.select(s)] for s in ("val", "test")
        )
        grid, history, n_params = pd.DataFrame(), [], model.n_params
    else:
        gr = train.grid_search(
            lambda: build(config, study),
            train_recs,
            val_recs,
            config.lrs,
            config.weight_decays,
            config.train_config(checkpoint_dir),
        )
        model, grid, history = gr.best_result.model, gr.table, gr.best_result.history
        n_params = n_parameters(model, trainable_only=False)
    seconds = time.perf_counter() - t0
    val = train.evaluate(model, val_recs, prediction)
    test = train.evaluate(model, test_recs, prediction) if test_recs else None
    result = ExperimentResult(config, study.backbone, model, grid, history, val, test, seconds, n_params)
    if config.decoder == "ridge":
        result.extra["fir_lags_trs"] = list(config.fir_lags_trs)
        result.extra["ridge_columns"] = int(sum(fir.feature_dims.values()))
    if config.isg_subjects:
        if config.decoder == "ridge":
            raise ValueError("ISG needs a decoder with subject slots; ridge has one model per subject")
        best = grid.loc[grid.best_val_r.idxmax()]
        tcfg = replace(config.train_config(), lr=float(best.lr), weight_decay=float(best.weight_decay))
        isg_runs = [
            isg.loso_study(study, lambda n: build(config, study, n), s, tcfg) for s in config.isg_subjects
        ]
        result.extra["isg_r"] = float(np.mean([r.scores["pearson"]["mean"] for r in isg_runs]))
        result.extra["isg_per_subject"] = {r.held_out: r.scores["pearson"]["mean"] for r in isg_runs}
    return result


def config_from_params(*, ignore: Iterable[str] = (), **params: Any) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from notebook parameters.

    Parameters
    ----------
    ignore : iterable of str
        Parameter names that belong to the notebook, not to the config (``dataset``, ``tag``, ...).
    **params
        Config fields; lists become tuples (papermill passes lists).

    Raises
    ------
    ValueError
        For a name that is neither a config field nor in ``ignore`` (a typo is never dropped silently).
    """
    names = set(ExperimentConfig.__dataclass_fields__)
    skip = set(ignore)
    unknown = sorted(set(params) - names - skip)
    if unknown:
        raise ValueError(
            f"unknown ExperimentConfig parameter(s) {unknown_names(unknown, names)}; its fields are {sorted(names)}. "
            "Fix the name, or list a notebook-only parameter in ignore=..."
        )
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k not in skip}
    return ExperimentConfig(**kw)


def save(result: ExperimentResult, path) -> None:
    """Save a trained torch decoder with the config that rebuilds it (``torch.save``; ridge not supported)."""
    if result.config.decoder == "ridge":
        raise ValueError("save() stores torch decoders; a ridge model is refitted in seconds instead")
    blob = {
        "config": asdict(result.config),
        "backbone": result.backbone,
        "state_dict": result.model.state_dict(),
    }
    train.atomic_save(blob, Path(path))  # beside, then renamed: an interrupted save leaves the old file


def load(path, study: Study) -> tuple[torch.nn.Module, ExperimentConfig]:
    """Rebuild a decoder saved by :func:`save` for ``study`` and load its weights (eval mode)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    config = config_from_params(**blob["config"])
    if blob["backbone"] != study.backbone:
        raise ValueError(
            f"{path} holds a {blob['backbone']!r} model; the study was loaded for {study.backbone!r}"
        )
    model = build(config, study)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), config
