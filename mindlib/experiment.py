"""One experiment = one decoder on one backbone, tuned on validation, scored once on test (docs/method.md §7, §9).

The notebooks (03 AFIRE, 04 SADGate, 06 train MIND, 07 baselines, 08 tables, 11 new backbone) all run
the same protocol, so it lives here once:

1. build the decoder from :class:`ExperimentConfig` (``mindlib.models.build_model``, or ridge);
2. grid-search learning rate × weight decay on the **validation** runs (every decoder gets the same grid);
3. keep the best epoch of the best cell (model selection on validation only);
4. score validation and, once, the held-out **test** runs.

Ridge is the classical voxelwise model (``mindlib.baselines.RidgeEncoder``): one penalty per parcel,
chosen on the same validation runs, then it is scored exactly like the others.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from mindlib import models, train
from mindlib.afire import AFIREConfig
from mindlib.baselines import RidgeEncoder
from mindlib.data import Study
from mindlib.params import unknown_names

DECODERS = (*models.DECODERS, "ridge")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run of notebook 06 (and of each cell of Tables 1 and 2)."""

    decoder: Literal["mind", "baseline", "mlp", "mmoe", "ridge"] = "mind"  # Table 1 rows
    mode: Literal["both", "token", "prior"] = "both"  # SADGate router (Table 2); MIND only
    n_experts: int = 8  # E (MIND and MMoE)
    top_k: int = 2  # K experts kept per token (MIND)
    d_model: int = 128  # d, AFIRE token dim
    hidden: int = 256  # hidden width of MLP decoders / MLP experts
    expert: Literal["linear", "mlp"] = "linear"  # MIND expert heads
    fusion: Literal["concat", "sum", "gated"] = "concat"  # AFIRE fusion operator
    temporal: Literal["mlp", "transformer", "none"] = "mlp"  # AFIRE temporal module
    modality_dropout: float = 0.0  # P(drop a modality of a training window)
    epochs: int = 15  # passes over the training windows per grid cell
    batch_size: int = 8  # B windows per step
    window: int = 100  # T TRs per window
    stride: int = 50  # TRs between window starts
    lrs: tuple[float, ...] = (1e-3, 3e-3)  # learning-rate grid (validation only)
    weight_decays: tuple[float, ...] = (1e-2,)  # weight-decay grid (validation only)
    lambda_balance: float = 0.01  # λ1, load balance (MIND)
    lambda_bias: float = 1e-3  # λ2, ‖B‖² (MIND)
    balance: Literal["switch", "importance"] = "switch"  # balance-loss kind (MIND; see mindlib.sadgate)
    router_subject: bool = True  # e_s on MIND's token router (see mindlib.sadgate.SADGateConfig)
    seed: int = 0  # model initialisation, shuffling, dropout
    isg_subjects: tuple[str, ...] = ()  # leave-one-subject-out for each (ISG column of Table 1); () = skip
    fir_lags_trs: tuple[float, ...] = (
        2,
        3,
        4,
    )  # ridge: FIR delays in TRs (neural decoders use the study's lag)
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    progress: bool = False  # tqdm bar per epoch

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if not self.lrs or not self.weight_decays:
            raise ValueError("lrs and weight_decays must each hold at least one value")

    def train_config(self, checkpoint_dir: str | None = None) -> train.TrainConfig:
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
        return AFIREConfig(
            modalities=dict(study.feature_dims),
            d_model=self.d_model,
            fusion=self.fusion,
            temporal=self.temporal,
            modality_dropout=self.modality_dropout,
            max_len=max(512, self.window),
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
    eval_kw = {"window": config.window, "device": config.device if config.decoder != "ridge" else None}
    if config.decoder == "ridge":
        # the classical voxelwise model learns the response shape from FIR-delayed features
        fir = with_lags(study, config.fir_lags_trs)
        # per-parcel penalties chosen on the validation runs, the data every other decoder selects on
        model = RidgeEncoder(n_subjects=len(study.subjects)).fit(fir.select("train"), fir.select("val"))
        # score exactly the TRs every other decoder is scored on (the study's valid mask), with FIR features
        valid = {(r.subject, r.run): r.valid for r in study.records}
        val_recs, test_recs = (
            [replace(r, valid=valid[(r.subject, r.run)]) for r in fir.select(s)] for s in ("val", "test")
        )
        grid, history, n_params = pd.DataFrame(), [], model.n_params
        eval_kw = {}
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
        n_params = int(sum(p.numel() for p in model.parameters()))
    seconds = time.perf_counter() - t0
    val = train.evaluate(model, val_recs, **eval_kw)
    test = train.evaluate(model, test_recs, **eval_kw) if test_recs else None
    result = ExperimentResult(config, study.backbone, model, grid, history, val, test, seconds, n_params)
    if config.decoder == "ridge":
        result.extra["fir_lags_trs"] = list(config.fir_lags_trs)
    if config.isg_subjects:
        if config.decoder == "ridge":
            raise ValueError("ISG needs a decoder with subject slots; ridge has one model per subject")
        best = grid.loc[grid.best_val_r.idxmax()]
        tcfg = replace(config.train_config(), lr=float(best.lr), weight_decay=float(best.weight_decay))
        isg_runs = [loso_run(study, config, s, tcfg) for s in config.isg_subjects]
        result.extra["isg_r"] = float(np.mean([r.scores["pearson"]["mean"] for r in isg_runs]))
        result.extra["isg_per_subject"] = {r.held_out: r.scores["pearson"]["mean"] for r in isg_runs}
    return result


def with_lags(study: Study, lags_trs) -> Study:
    """The same study (subjects, runs and split) with features aligned at other lags (FIR delays)."""
    from mindlib import data, layout

    if tuple(lags_trs) == tuple(study.lags_trs):
        return study
    other = data.load_study(
        study.root,
        study.backbone,
        subjects=study.subjects,
        lags_trs=tuple(lags_trs),
        layer_fractions=study.layer_fractions,
        tr_s=study.tr_s,
        runs=sorted({r.run for r in study.records}),
        n_parcels=study.n_parcels,
        features_root=study.features_root,
        studies=sorted({layout.study_of(r.run) for r in study.records}),
        allow_stale=True,  # the same files the study was loaded from: checked (or overridden) then
    )
    return replace(other, split=study.split)


def loso_run(
    study: Study,
    config: ExperimentConfig,
    held_out: str,
    train_config: train.TrainConfig | None = None,
    eval_split: str = "test",
):
    """Inter-subject generalisation as the paper defines it: train on every subject but ``held_out`` (their
    training runs, selected on their validation runs), then score ``held_out``'s ``eval_split`` runs through a
    new subject slot at the population initialisation (MIND: ``e_s`` = mean embedding, ``B_s`` = 0; subject
    heads: the mean head). Returns :class:`mindlib.isg.ISGResult`."""
    from mindlib import isg

    if held_out not in study.subjects:
        raise ValueError(f"held_out={held_out!r} is not a subject of this study: {study.subjects}")
    split = eval_split if study.select(eval_split) else "val"
    return isg.loso(
        lambda n: build(config, study, n_subjects=n),
        {s: study.select(s) for s in {"train", "val", split}},
        held_out,
        train_config or config.train_config(),
        eval_split=split,
        score_trained=False,
    )


def noise_ceiling_fraction(
    result: ExperimentResult, ceilings: dict[str, np.ndarray], split: str = "test"
) -> float:
    """Mean over subjects of (mean parcel r) / (mean parcel noise ceiling) — the share of the explainable
    signal a model reaches. ``ceilings`` maps subject -> (V,) ceiling (synthetic truth or repeats)."""
    scores = (result.test if split == "test" else result.val)["pearson"]["per_subject"]
    fr = [scores[s] / float(np.nanmean(ceilings[s])) for s in scores if s in ceilings]
    return float(np.mean(fr)) if fr else float("nan")


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
    from dataclasses import asdict
    from pathlib import Path

    if result.config.decoder == "ridge":
        raise ValueError("save() stores torch decoders; a ridge model is refitted in seconds instead")
    blob = {
        "config": asdict(result.config),
        "backbone": result.backbone,
        "state_dict": result.model.state_dict(),
    }
    train._atomic_save(blob, Path(path))  # beside, then renamed: an interrupted save leaves the old file


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
