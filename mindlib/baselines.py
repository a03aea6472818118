"""Baseline decoders of paper Table 1 (docs/method.md §8).

Torch decoders on the same AFIRE tokens as MIND, with MIND's interface
(``forward(features, subject, modality_mask=None) -> ModelOutput``, ``add_subject()``,
``subject_parameters()``; :mod:`mindlib.decoder`):

- :class:`BaselineDecoder`: a per-subject ``Linear(d, V)`` head (TRIBE-style);
- :class:`MLPDecoder`: one shared MLP ``d -> h -> V`` with a subject embedding added to the token;
- :class:`MMoEDecoder` (Ma et al. 2018): E shared MLP experts ``d -> h``, a per-subject softmax gate
  over experts computed from the token, a per-subject readout ``h -> V``.

And the classical voxelwise encoding model, :class:`RidgeEncoder`: per subject, ridge regression from
(FIR-delayed) TR features to parcels with per-parcel alphas chosen on validation runs (or by
cross-validation over training runs), solved through one Gram eigendecomposition for all alphas.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from mindlib import metrics
from mindlib.afire import AFIRE, AFIREConfig
from mindlib.decoder import ModelOutput, check_subject_indices, uniform_parameter

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
        self.head_weight = uniform_parameter((S, d, V), d)
        self.head_bias = uniform_parameter((S, V), d)

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict (B, T, V); ``gate`` is None and ``aux_loss`` 0 (see :class:`mindlib.decoder.ModelOutput`)."""
        check_subject_indices(subject, self.n_subjects)
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
        check_subject_indices(subject, self.n_subjects)
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
        self.w1 = uniform_parameter((E, d, h), d)
        self.b1 = uniform_parameter((E, h), d)
        self.gate_weight = uniform_parameter((S, d, E), d)
        self.gate_bias = nn.Parameter(torch.zeros(S, E))
        self.dropout = nn.Dropout(config.dropout)
        self.readout_weight = uniform_parameter((S, h, V), h)
        self.readout_bias = uniform_parameter((S, V), h)

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict (B, T, V); ``gate`` is None and ``aux_loss`` 0."""
        check_subject_indices(subject, self.n_subjects)
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


class _RidgePath:
    """One eigendecomposition of the centred Gram matrix, reused for every alpha (primal ridge).

    With ``Xc = X - mean(X)`` and ``Yc = Y - mean(Y)`` of the rows given, ``Xcᵀ Xc = Q diag(λ) Qᵀ`` and
    ``Z = Qᵀ Xcᵀ Yc``; the ridge weights of penalty ``α`` are ``Q diag(1 / (λ + α)) Z``. Building it costs
    one ``F × F`` Gram matrix (float64, in row chunks) and one symmetric eigendecomposition; each further
    alpha costs a matrix product. Shapes: ``X (n, F)``, ``Y (n, V)``.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, chunk: int = 4096) -> None:
        import scipy.linalg

        self.x_mean = X.mean(axis=0, dtype=np.float64)
        self.y_mean = Y.mean(axis=0, dtype=np.float64)
        F_, V_ = X.shape[1], Y.shape[1]
        gram, xty = np.zeros((F_, F_)), np.zeros((F_, V_))
        for i in range(0, len(X), chunk):
            xc = X[i : i + chunk].astype(np.float64) - self.x_mean
            gram += xc.T @ xc
            xty += xc.T @ (Y[i : i + chunk].astype(np.float64) - self.y_mean)
        self.eigvals, self.eigvecs = scipy.linalg.eigh(
            gram, overwrite_a=True, check_finite=False, driver="evd"
        )
        self.eigvals = np.clip(self.eigvals, 0.0, None)  # round-off can leave tiny negative values
        self.z = self.eigvecs.T @ xty  # (F, V)

    def predictions(self, X: np.ndarray, alphas: np.ndarray):
        """Yield the predictions ``(n, V)`` of ``X (n, F)`` for each alpha in turn."""
        rotated = (X.astype(np.float64) - self.x_mean) @ self.eigvecs  # (n, F)
        for alpha in alphas:
            yield (rotated / (self.eigvals + alpha)) @ self.z + self.y_mean

    def weights(self, alpha_per_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``coef (F, V)`` and ``intercept (V,)`` with one alpha per target column."""
        coef = self.eigvecs @ (self.z / (self.eigvals[:, None] + alpha_per_target[None, :]))
        return coef, self.y_mean - self.x_mean @ coef


def _run_mean_r2(pred: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """:func:`mindlib.metrics.r2_score` within each group of rows (a run or a block), averaged over groups:
    ``(V,)``. Columns constant within a group give NaN for that group, silently (alpha selection)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns; all-NaN columns stay NaN
        return np.nanmean(
            [metrics.r2_score(Y[groups == g], pred[groups == g]) for g in np.unique(groups)], axis=0
        )


def _by_subject(records: Sequence[Any]) -> dict[int, list[Any]]:
    """Records grouped by ``subject_index``, in their order."""
    out: dict[int, list[Any]] = {}
    for rec in records:
        out.setdefault(int(rec.subject_index), []).append(rec)
    return out


class RidgeEncoder:
    """Voxelwise (parcelwise) ridge encoding model, one per subject, with one penalty per parcel.

    Per subject: features = the modalities concatenated (already FIR-delayed upstream when the study
    has several lags), standardised with the mean and std of the training TRs, fitted with an intercept
    on the valid TRs of that subject's training records. Each parcel's alpha maximises R² (per run,
    averaged over runs) either on the subject's **validation** records, when ``fit`` gets them
    (the data every other decoder selects on), or else by cross-validation over contiguous folds grouped
    by run (``GroupKFold``; a single run is split into contiguous blocks). The solver eigendecomposes
    the ``F × F`` Gram matrix once per fold, so every alpha is nearly free; it suits ``T ≫ F`` (fMRI
    runs) and stays exact for ``T < F``. Inputs are duck-typed ``RunRecord``-like objects with
    ``subject_index``, ``fmri`` (T, V), ``features`` {m: (T, F_m)}, ``valid`` (T,) bool.

    Parameters
    ----------
    alphas : array of shape (n_alphas,)
        Ridge penalties to try.
    n_folds : int
        Cross-validation folds when no validation records are given (fewer if a subject has fewer runs).
    modalities : sequence of str, optional
        Modalities to concatenate, in this order; default: those of the first record, in its order.
    n_subjects : int, optional
        If given, every subject index in ``[0, n_subjects)`` must have training records.
    dtype : str
        Floating type the design matrices are held in ("float32" keeps memory down on real data); the
        Gram matrix and its eigendecomposition are always float64.
    blas_threads : int
        BLAS threads during ``fit`` and ``predict`` (1 avoids oversubscription when several fits or
        torch share a small machine).
    standardise : bool
        Scale each column by its training standard deviation (True, the voxelwise default). False keeps the
        columns' own scales: for PCA tokens (:mod:`mindlib.reduce`) standardising would whiten them, giving the
        low-variance axes as much weight as the leading ones, whereas without it the ridge on all the axes
        equals the ridge on the standardised features they rotate.

    Attributes
    ----------
    best_alphas_ : dict of int to ndarray of shape (V,)
        Selected alpha per parcel, per subject index.
    scores_ : dict of int to ndarray of shape (n_alphas, V)
        The selection score of every alpha (rows, in the order of ``alphas``) for every parcel, per subject
        index: R² per run averaged over the validation runs, or over the folds' runs with cross-validation
        (NaN where a parcel is constant). ``best_alphas_`` is the row of the largest score.
    coef_ : dict of int to ndarray of shape (F, V)
    intercept_ : dict of int to ndarray of shape (V,)
    mean_, scale_ : dict of int to ndarray of shape (F,)
        Standardisation statistics per subject (training TRs).
    modalities_ : tuple of str
    selected_on_ : {"validation", "cross-validation"}
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
        n_folds: int = 5,
        modalities: Sequence[str] | None = None,
        n_subjects: int | None = None,
        dtype: str = "float32",
        blas_threads: int = 1,
        standardise: bool = True,
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
        self.blas_threads = int(blas_threads)
        self.standardise = bool(standardise)

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

    def _standardise(self, X: np.ndarray, s: int) -> np.ndarray:
        """Features ``(n, F)`` standardised with subject ``s``'s training statistics, in ``dtype``."""
        return ((X - self.mean_[s]) / self.scale_[s]).astype(self.dtype)

    def _stack(self, records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid TRs of ``records``: features (n, F), fMRI (n, V) and the record index of each row (n,)."""
        X_parts, Y_parts, groups = [], [], []
        for g, rec in enumerate(records):
            valid = np.asarray(rec.valid, dtype=bool)
            if valid.any():
                X_parts.append(self._design(rec)[valid])
                Y_parts.append(np.asarray(rec.fmri, dtype=self.dtype)[valid])
                groups.append(np.full(int(valid.sum()), g))
        if not X_parts:
            return np.empty((0, 0), self.dtype), np.empty((0, 0), self.dtype), np.empty(0, int)
        return np.concatenate(X_parts), np.concatenate(Y_parts), np.concatenate(groups)

    def _splits(self, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import GroupKFold, KFold

        n_groups = len(np.unique(groups))
        if n_groups >= 2:
            splitter = GroupKFold(n_splits=min(self.n_folds, n_groups))
            return list(splitter.split(groups, groups=groups))
        splitter = KFold(n_splits=min(self.n_folds, len(groups)), shuffle=False)  # contiguous blocks
        return list(splitter.split(groups))

    def _select(self, scores: np.ndarray) -> np.ndarray:
        """Best alpha per column of ``scores (n_alphas, V)``; the largest alpha where every score is NaN."""
        filled = np.where(np.isnan(scores), -np.inf, scores)
        best = np.argmax(filled, axis=0)
        best[np.all(np.isnan(scores), axis=0)] = len(self.alphas) - 1
        return self.alphas[best]

    def fit(self, records: Sequence[Any], val_records: Sequence[Any] | None = None) -> RidgeEncoder:
        """Fit one ridge model per subject on the valid TRs of its training records.

        Parameters
        ----------
        records : sequence of RunRecord-like
            Training runs (any subjects).
        val_records : sequence of RunRecord-like, optional
            Validation runs: each parcel's alpha is the one with the best validation R² of its subject.
            Without them, alphas are chosen by cross-validation over the training runs.

        Returns
        -------
        self
        """
        records = list(records)
        if not records:
            raise ValueError("RidgeEncoder.fit got no records; pass the training RunRecords")
        self.modalities_ = self.modalities if self.modalities is not None else tuple(records[0].features)
        by_subject, val_by_subject = _by_subject(records), _by_subject(val_records or ())
        expected = range(self.n_subjects) if self.n_subjects is not None else sorted(by_subject)
        self.selected_on_ = "validation" if val_records is not None else "cross-validation"
        self.coef_, self.intercept_, self.best_alphas_, self.mean_, self.scale_ = {}, {}, {}, {}, {}
        self.scores_ = {}
        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            for s in expected:
                X, Y, group = self._stack(by_subject.get(s, []))
                if not len(X):
                    raise ValueError(
                        f"RidgeEncoder: subject index {s} has no training records with valid TRs; "
                        "include its training runs or drop it (n_subjects)"
                    )
                if self.standardise:
                    scale = X.std(axis=0)
                    scale[scale == 0] = 1.0
                    self.mean_[s], self.scale_[s] = X.mean(axis=0), scale
                else:  # the intercept still centres (the ridge path centres X and Y)
                    self.mean_[s], self.scale_[s] = (
                        np.zeros(X.shape[1], X.dtype),
                        np.ones(X.shape[1], X.dtype),
                    )
                X = self._standardise(X, s)
                path = _RidgePath(X, Y)
                if val_records is not None:
                    Xv, Yv, gv = self._stack(val_by_subject.get(s, []))
                    if not len(Xv):
                        raise ValueError(
                            f"RidgeEncoder: subject index {s} has no validation records with valid TRs; "
                            "pass its validation runs, or val_records=None to select alphas by cross-validation"
                        )
                    scores = np.stack(
                        [
                            _run_mean_r2(p, Yv, gv)
                            for p in path.predictions(self._standardise(Xv, s), self.alphas)
                        ]
                    )
                else:
                    folds = []
                    for tr, te in self._splits(group):
                        fold_path = _RidgePath(X[tr], Y[tr])
                        folds.append(
                            [
                                _run_mean_r2(p, Y[te], group[te])
                                for p in fold_path.predictions(X[te], self.alphas)
                            ]
                        )
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        scores = np.nanmean(np.asarray(folds), axis=0)
                self.scores_[s] = scores
                self.best_alphas_[s] = self._select(scores)
                coef, intercept = path.weights(self.best_alphas_[s])
                self.coef_[s] = coef.astype(self.dtype)
                self.intercept_[s] = intercept.astype(self.dtype)
        return self

    @property
    def n_params(self) -> int:
        """Weights and intercepts over all subjects."""
        return int(sum(c.size + b.size for c, b in zip(self.coef_.values(), self.intercept_.values())))

    def predict(self, record: Any) -> np.ndarray:
        """Predicted responses of every TR of a run.

        Parameters
        ----------
        record : RunRecord-like

        Returns
        -------
        pred : ndarray of shape (T, V), float32
        """
        if not hasattr(self, "coef_"):
            raise ValueError("RidgeEncoder.predict called before fit(records)")
        s = int(record.subject_index)
        if s not in self.coef_:
            raise ValueError(
                f"RidgeEncoder: subject index {s} was not fitted (fitted: {sorted(self.coef_)}); "
                "fit with training records of that subject"
            )
        X = self._standardise(self._design(record), s)
        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            pred = X @ self.coef_[s] + self.intercept_[s]
        return np.asarray(pred, dtype=np.float32)
