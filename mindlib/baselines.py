"""Baseline decoders of paper Table 1 (SPEC §8).

Torch decoders on the same AFIRE tokens as MIND, with MIND's interface
(``forward(features, subject, modality_mask=None) -> ModelOutput``, ``add_subject()``,
``subject_parameters()``):

- :class:`BaselineDecoder`: a per-subject ``Linear(d, V)`` head (TRIBE-style);
- :class:`MLPDecoder`: one shared MLP ``d -> h -> V`` with a subject embedding added to the token;
- :class:`MMoEDecoder` (Ma et al. 2018): E shared MLP experts ``d -> h``, a per-subject softmax gate
  over experts computed from the token, a per-subject readout ``h -> V``.

And the classical voxelwise encoding model, :class:`RidgeEncoder`: per subject, ridge regression from
(FIR-delayed) TR features to parcels with per-parcel alphas chosen by cross-validation (himalaya).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from mindlib.afire import AFIRE, AFIREConfig
from mindlib.mind import ModelOutput, _check_subject

DEFAULT_ALPHAS = tuple(np.logspace(-2, 6, 17))  # ridge penalties tried per parcel: 1e-2 .. 1e6, 2 per decade


def _check_common(name: str, afire: Any, n_subjects: int, n_parcels: int, dropout: float) -> None:
    if not isinstance(afire, AFIREConfig):
        raise TypeError(f"{name}.afire must be an AFIREConfig, got {type(afire).__name__}")
    if n_subjects <= 0:
        raise ValueError(f"{name}.n_subjects must be > 0, got {n_subjects}")
    if n_parcels <= 0:
        raise ValueError(f"{name}.n_parcels must be > 0, got {n_parcels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {dropout}")


@dataclass(frozen=True)
class BaselineConfig:
    """Configuration of :class:`BaselineDecoder`."""

    afire: AFIREConfig  # the token interface
    n_subjects: int  # S
    n_parcels: int  # V
    dropout: float = 0.1  # dropout on the head input

    def __post_init__(self) -> None:
        _check_common("BaselineConfig", self.afire, self.n_subjects, self.n_parcels, self.dropout)


@dataclass(frozen=True)
class MLPConfig:
    """Configuration of :class:`MLPDecoder`."""

    afire: AFIREConfig  # the token interface
    n_subjects: int  # S
    n_parcels: int  # V
    hidden: int = 256  # h
    dropout: float = 0.1  # dropout after the hidden GELU

    def __post_init__(self) -> None:
        _check_common("MLPConfig", self.afire, self.n_subjects, self.n_parcels, self.dropout)
        if self.hidden <= 0:
            raise ValueError(f"MLPConfig.hidden must be > 0, got {self.hidden}")


@dataclass(frozen=True)
class MMoEConfig:
    """Configuration of :class:`MMoEDecoder`."""

    afire: AFIREConfig  # the token interface
    n_subjects: int  # S (one gate and one readout per subject)
    n_parcels: int  # V
    n_experts: int = 8  # E shared experts
    hidden: int = 256  # h, expert output width
    dropout: float = 0.1  # dropout on the expert mixture

    def __post_init__(self) -> None:
        _check_common("MMoEConfig", self.afire, self.n_subjects, self.n_parcels, self.dropout)
        if self.hidden <= 0 or self.n_experts <= 0:
            raise ValueError(f"MMoEConfig: hidden={self.hidden} and n_experts={self.n_experts} must be > 0")


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """A parameter initialised like nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class _SubjectDecoder(nn.Module):
    """Shared plumbing: AFIRE, subject-axis parameters, population init of a new subject."""

    _subject_params: tuple[str, ...] = ()  # attribute names of the parameters with leading axis S

    @property
    def n_subjects(self) -> int:
        """S, the number of subject slots."""
        return self.config.n_subjects

    def _params(self) -> list[nn.Parameter]:
        out = []
        for name in self._subject_params:
            obj = self
            for part in name.split("."):
                obj = getattr(obj, part)
            out.append(obj)
        return out

    def subject_parameters(self) -> list[nn.Parameter]:
        """The parameters with a leading subject axis S (few-shot calibration trains their new row)."""
        return self._params()

    @torch.no_grad()
    def add_subject(self) -> int:
        """Append a subject slot initialised at the population (mean of the subject rows).

        Returns the new index. Parameters are replaced: build optimisers afterwards.
        """
        S = self.n_subjects
        for name in self._subject_params:
            *path, last = name.split(".")
            owner = self
            for part in path:
                owner = getattr(owner, part)
            old = getattr(owner, last)
            setattr(owner, last, nn.Parameter(torch.cat([old, old.mean(dim=0, keepdim=True)])))
            if isinstance(owner, nn.Embedding):
                owner.num_embeddings = S + 1
        self.config = replace(self.config, n_subjects=S + 1)
        return S


class BaselineDecoder(_SubjectDecoder):
    """AFIRE tokens -> per-subject ``Linear(d, V)`` (paper's TRIBE-style baseline).

    Parameters ``head_weight`` (S, d, V) and ``head_bias`` (S, V); ``pred = x @ W_s + b_s``.
    """

    _subject_params = ("head_weight", "head_bias")

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        d, S, V = config.afire.d_model, config.n_subjects, config.n_parcels
        self.afire = AFIRE(config.afire)
        self.dropout = nn.Dropout(config.dropout)
        self.head_weight = _uniform((S, d, V), d)
        self.head_bias = _uniform((S, V), d)

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict (B, T, V); ``gate`` is None and ``aux_loss`` 0 (see :class:`mindlib.mind.ModelOutput`)."""
        _check_subject(subject, self.n_subjects)
        x = self.dropout(self.afire(features, modality_mask))  # (B, T, d)
        weights, biases = self.head_weight.unbind(0), self.head_bias.unbind(0)
        pred = x.new_zeros(*x.shape[:2], self.config.n_parcels)  # (B, T, V)
        for s in subject.unique().tolist():  # one matmul per subject present in the batch
            rows = torch.nonzero(subject == s).flatten()
            pred = pred.index_copy(0, rows, torch.matmul(x[rows], weights[s]) + biases[s])
        return ModelOutput(pred, None, pred.new_zeros(()))


class MLPDecoder(_SubjectDecoder):
    """Shared single-path MLP: ``Linear(d, h) -> GELU -> Dropout -> Linear(h, V)`` on ``x + e_s``.

    ``subject_embedding`` (S, d), init N(0, 0.02²).
    """

    _subject_params = ("subject_embedding.weight",)

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        d = config.afire.d_model
        self.afire = AFIRE(config.afire)
        self.subject_embedding = nn.Embedding(config.n_subjects, d)
        nn.init.normal_(self.subject_embedding.weight, std=0.02)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.n_parcels),
        )

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict (B, T, V); ``gate`` is None and ``aux_loss`` 0."""
        _check_subject(subject, self.n_subjects)
        x = self.afire(features, modality_mask) + self.subject_embedding(subject)[:, None]  # (B, T, d)
        pred = self.mlp(x)
        return ModelOutput(pred, None, pred.new_zeros(()))


class MMoEDecoder(_SubjectDecoder):
    """Multi-gate mixture of experts (Ma et al. 2018), one gate and one readout per subject.

    Shared experts ``w1`` (E, d, h), ``b1`` (E, h) with GELU; per-subject gate ``gate_weight``
    (S, d, E), ``gate_bias`` (S, E), softmax over experts per token; mixture (B, T, h) -> Dropout ->
    per-subject readout ``readout_weight`` (S, h, V), ``readout_bias`` (S, V).

    The gate is dense (every expert used) and is not returned: ``ModelOutput.gate`` is None, since a
    :class:`~mindlib.sadgate.GateOutput` describes a Top-K routing that MMoE does not have.
    """

    _subject_params = ("gate_weight", "gate_bias", "readout_weight", "readout_bias")

    def __init__(self, config: MMoEConfig) -> None:
        super().__init__()
        self.config = config
        d, S, E, h, V = (
            config.afire.d_model,
            config.n_subjects,
            config.n_experts,
            config.hidden,
            config.n_parcels,
        )
        self.afire = AFIRE(config.afire)
        self.w1 = _uniform((E, d, h), d)
        self.b1 = _uniform((E, h), d)
        self.gate_weight = _uniform((S, d, E), d)
        self.gate_bias = nn.Parameter(torch.zeros(S, E))
        self.dropout = nn.Dropout(config.dropout)
        self.readout_weight = _uniform((S, h, V), h)
        self.readout_bias = _uniform((S, V), h)

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict (B, T, V); ``gate`` is None and ``aux_loss`` 0."""
        _check_subject(subject, self.n_subjects)
        x = self.afire(features, modality_mask)  # (B, T, d)
        hidden = F.gelu(torch.einsum("btd,edh->bteh", x, self.w1) + self.b1)  # (B, T, E, h)
        logits = torch.einsum("btd,bde->bte", x, self.gate_weight[subject]) + self.gate_bias[subject][:, None]
        mix = torch.einsum("bte,bteh->bth", logits.softmax(dim=-1), hidden)  # (B, T, h)
        mix = self.dropout(mix)
        pred = (
            torch.einsum("bth,bhv->btv", mix, self.readout_weight[subject])
            + self.readout_bias[subject][:, None]
        )
        return ModelOutput(pred, None, pred.new_zeros(()))


# --------------------------------------------------------------------------------------------- ridge


class RidgeEncoder:
    """Voxelwise (parcelwise) ridge encoding model, one per subject (himalaya, numpy backend).

    Per subject: features = the modalities concatenated (already FIR-delayed upstream when
    ``lags_trs`` has several lags), standardised with the mean and std of the training TRs; fitted on
    the valid TRs of that subject's training records with one alpha per parcel chosen by
    cross-validation over contiguous folds grouped by run (``GroupKFold``; a single run is split into
    contiguous blocks). Inputs are duck-typed ``RunRecord``-like objects with ``subject_index``,
    ``fmri`` (T, V), ``features`` {m: (T, F_m)}, ``valid`` (T,) bool.

    Parameters
    ----------
    alphas : array of shape (n_alphas,)
        Ridge penalties to try.
    n_folds : int
        Cross-validation folds (fewer if a subject has fewer runs).
    modalities : sequence of str, optional
        Modalities to concatenate, in this order; default: those of the first record, in its order.
    n_subjects : int, optional
        If given, every subject index in ``[0, n_subjects)`` must have training records.
    dtype : str
        Floating type of the fit ("float32" keeps memory down on real data).

    Attributes
    ----------
    best_alphas_ : dict of int to ndarray of shape (V,)
        Selected alpha per parcel, per subject index.
    models_ : dict of int to himalaya.ridge.RidgeCV
    mean_, scale_ : dict of int to ndarray of shape (F,)
        Standardisation statistics per subject (training TRs).
    modalities_ : tuple of str
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        n_folds: int = 5,
        modalities: Sequence[str] | None = None,
        n_subjects: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self.alphas = np.asarray(alphas, dtype=np.float64)
        if self.alphas.ndim != 1 or self.alphas.size == 0 or np.any(self.alphas <= 0):
            raise ValueError(
                f"RidgeEncoder.alphas must be a non-empty 1-D array of positive values, got {alphas!r}"
            )
        if n_folds < 2:
            raise ValueError(f"RidgeEncoder.n_folds must be >= 2, got {n_folds}")
        self.n_folds = int(n_folds)
        self.modalities = None if modalities is None else tuple(modalities)
        self.n_subjects = n_subjects
        self.dtype = dtype

    def _design(self, record: Any) -> np.ndarray:
        """Concatenated features (T, F) of a record."""
        missing = [m for m in self.modalities_ if m not in record.features]
        if missing:
            raise ValueError(
                f"RidgeEncoder: record of run {getattr(record, 'run', '?')!r} lacks modalities {missing}; "
                f"fitted on {list(self.modalities_)}"
            )
        return np.concatenate(
            [np.asarray(record.features[m], dtype=self.dtype) for m in self.modalities_], axis=1
        )

    def _splits(self, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import GroupKFold, KFold

        n_groups = len(np.unique(groups))
        if n_groups >= 2:
            splitter = GroupKFold(n_splits=min(self.n_folds, n_groups))
            return list(splitter.split(groups, groups=groups))
        splitter = KFold(n_splits=min(self.n_folds, len(groups)), shuffle=False)  # contiguous blocks
        return list(splitter.split(groups))

    def fit(self, records: Sequence[Any]) -> RidgeEncoder:
        """Fit one ridge model per subject on the valid TRs of its training records.

        Parameters
        ----------
        records : sequence of RunRecord-like
            Training runs (any subjects).

        Returns
        -------
        self
        """
        from himalaya.backend import get_backend, set_backend
        from himalaya.ridge import RidgeCV

        records = list(records)
        if not records:
            raise ValueError("RidgeEncoder.fit got no records; pass the training RunRecords")
        self.modalities_ = self.modalities if self.modalities is not None else tuple(records[0].features)
        by_subject: dict[int, list[Any]] = {}
        for rec in records:
            by_subject.setdefault(int(rec.subject_index), []).append(rec)
        expected = range(self.n_subjects) if self.n_subjects is not None else sorted(by_subject)
        self.models_, self.best_alphas_, self.mean_, self.scale_ = {}, {}, {}, {}
        previous = get_backend().name
        set_backend("numpy")
        # One BLAS thread: these solves are small, and several OpenBLAS threads spinning against torch or
        # another process on a 2-core machine made a fit take up to 100x longer (0.2 s vs 27 s measured).
        blas = threadpool_limits(limits=1, user_api="blas")
        try:
            for s in expected:
                recs = by_subject.get(s, [])
                X_parts, Y_parts, groups = [], [], []
                for g, rec in enumerate(recs):
                    valid = np.asarray(rec.valid, dtype=bool)
                    if valid.any():
                        X_parts.append(self._design(rec)[valid])
                        Y_parts.append(np.asarray(rec.fmri, dtype=self.dtype)[valid])
                        groups.append(np.full(int(valid.sum()), g))
                if not X_parts:
                    raise ValueError(
                        f"RidgeEncoder: subject index {s} has no training records with valid TRs; "
                        "include its training runs or drop it (n_subjects)"
                    )
                X, Y, group = np.concatenate(X_parts), np.concatenate(Y_parts), np.concatenate(groups)
                mean = X.mean(axis=0)
                scale = X.std(axis=0)
                scale[scale == 0] = 1.0
                X = (X - mean) / scale
                model = RidgeCV(
                    alphas=self.alphas.astype(self.dtype), fit_intercept=True, cv=self._splits(group)
                )
                model.fit(X, Y)
                self.models_[s], self.mean_[s], self.scale_[s] = model, mean, scale
                self.best_alphas_[s] = np.asarray(model.best_alphas_)
        finally:
            blas.restore_original_limits()
            set_backend(previous)
        return self

    def predict(self, record: Any) -> np.ndarray:
        """Predicted responses of every TR of a run.

        Parameters
        ----------
        record : RunRecord-like

        Returns
        -------
        pred : ndarray of shape (T, V), float32
        """
        if not hasattr(self, "models_"):
            raise ValueError("RidgeEncoder.predict called before fit(records)")
        s = int(record.subject_index)
        if s not in self.models_:
            raise ValueError(
                f"RidgeEncoder: subject index {s} was not fitted (fitted: {sorted(self.models_)}); "
                "fit with training records of that subject"
            )
        from himalaya.backend import get_backend, set_backend

        X = (self._design(record) - self.mean_[s]) / self.scale_[s]
        previous = get_backend().name
        set_backend("numpy")
        blas = threadpool_limits(limits=1, user_api="blas")
        try:
            pred = self.models_[s].predict(X.astype(self.dtype))
        finally:
            blas.restore_original_limits()
            set_backend(previous)
        return np.asarray(pred, dtype=np.float32)
