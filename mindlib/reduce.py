"""The ridge's design matrix at real size: features reduced by PCA, FIR delays as row shifts (docs/method.md §8).

At the Algonauts 2025 training release's shape with TRIBE's dimensions (16,512 per TR and lag), the FIR ridge's
full design is 49,536 columns: 33 GB of float32 features for three lags and a 20 GB float64 Gram matrix per
subject. Two exact steps bring it into a few GB, in the order a user runs them:

1. :func:`fit_pca` / :func:`reduce_study`: per modality, the features are standardised with the training
   stimuli's mean and standard deviation and projected on their first ``n_components`` principal axes (as the
   official challenge baseline does, with PCA per modality). The PCA is the eigendecomposition of the
   correlation matrix accumulated stimulus by stimulus in float64, so memory is ``F_m² × 8`` bytes per
   modality plus one stimulus at a time: the features can stay memory-mapped
   (:class:`mindlib.cache.FeatureCache`). Each stimulus counts once however many subjects or repeats saw it.
2. :func:`delay_study`: FIR delays from tokens aligned at one lag, by shifting rows. The window of TR ``t`` at
   lag ``b + s`` TRs is the window of TR ``t - s`` at lag ``b`` (:mod:`mindlib.align`), so for integer shifts
   ``s ≥ 0`` and ``b ≥ 0`` the delayed tokens equal :func:`mindlib.align.align_features` at those lags (up to
   float rounding of the overlap weights), rows before the stimulus are zero and masked, exactly as there. The
   shift is applied to the reduced tokens, so the three lags cost ``3 × n_components`` columns.

The accuracy cost of step 1 is measured on the demo study by ``python -m benchmarks --only ridge_pca`` (table in
the README); step 2 costs nothing (``tests/test_reduce.py`` compares it with :func:`mindlib.data.load_study` at the
same lags).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mindlib.align import overlap_matrix
from mindlib.data import Study, with_lags
from mindlib.progress import progress_bar

__all__ = ["ModalityPCA", "fit_pca", "reduce_study", "delay_study", "first_covered_tr", "reduced_fir_study"]


@dataclass(frozen=True)
class ModalityPCA:
    """PCA of one modality's standardised features.

    Attributes
    ----------
    mean, scale : ndarray of shape (F_m,), float64
        Training mean and standard deviation (1 where a feature is constant).
    components : ndarray of shape (k, F_m), float32
        Principal axes, by decreasing variance; each axis's largest-magnitude entry is positive.
    explained_variance_ratio : ndarray of shape (k,)
        Share of the standardised features' total variance along each axis.
    n_rows : int
        Training TRs the PCA was fitted on (each stimulus once).
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    n_rows: int

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Reduced tokens ``(T, k)`` float32 of features ``x (T, F_m)`` (masked TRs are transformed too)."""
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)
        return z @ self.components.T


def _training_arrays(study: Study, modality: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each distinct feature array of ``split``'s records once, with the union of its records' valid TRs."""
    arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for rec in study.select(split):
        a = rec.features[modality]
        if id(a) in arrays:
            arrays[id(a)] = (a, arrays[id(a)][1] | rec.valid)
        else:
            arrays[id(a)] = (a, np.asarray(rec.valid, dtype=bool).copy())
    return list(arrays.values())


def fit_pca(
    study: Study, n_components: int, split: str = "train", progress: bool = True
) -> dict[str, ModalityPCA]:
    """Per-modality PCA of the standardised features of ``split``'s stimuli (valid TRs, each stimulus once).

    Parameters
    ----------
    study : Study
        From :func:`mindlib.data.load_study` (features in memory or memory-mapped).
    n_components : int
        k, axes kept per modality (at most the modality's dimension).
    split : {"train", "val", "test"}
        Whose stimuli the statistics come from: the training runs, so nothing is learnt from validation or test.
    progress : bool
        A progress bar over modalities and stimuli.

    Returns
    -------
    pcas : dict of str to ModalityPCA
        One per modality of the study.

    Raises
    ------
    ValueError
        ``n_components < 1``, or ``split`` has no valid TRs.
    """
    import scipy.linalg

    if n_components < 1:
        raise ValueError(f"fit_pca: n_components must be >= 1, got {n_components}")
    pcas = {}
    for m in study.modalities:
        arrays = _training_arrays(study, m, split)
        n = int(sum(mask.sum() for _, mask in arrays))
        if n < 2:
            raise ValueError(
                f"fit_pca: the {split!r} runs of {study.root} have {n} valid TRs; PCA needs >= 2"
            )
        dim = int(arrays[0][0].shape[1])
        total, squares = np.zeros(dim), np.zeros(dim)
        for a, mask in arrays:  # pass 1: mean and standard deviation
            x = np.asarray(a[mask], dtype=np.float64)
            total += x.sum(axis=0)
            squares += np.einsum("tf,tf->f", x, x)
        mean = total / n
        scale = np.sqrt(np.clip(squares / n - mean**2, 0.0, None))
        scale[scale <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
        gram = np.zeros((dim, dim))
        desc = f"PCA {m} ({dim} → {min(n_components, dim)})"
        # pass 2: the correlation matrix, one stimulus at a time
        for a, mask in progress_bar(len(arrays), desc, not progress, "stimulus", iterable=arrays):
            z = (np.asarray(a[mask], dtype=np.float64) - mean) / scale
            gram += z.T @ z
        k = min(int(n_components), dim)
        eigvals, eigvecs = scipy.linalg.eigh(gram / n, subset_by_index=[dim - k, dim - 1], check_finite=False)
        eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1].T  # (k,), (k, F_m) by decreasing variance
        signs = np.sign(eigvecs[np.arange(k), np.argmax(np.abs(eigvecs), axis=1)])
        eigvecs *= signs[:, None]
        trace = float(np.trace(gram) / n)
        pcas[m] = ModalityPCA(mean, scale, eigvecs.astype(np.float32), np.clip(eigvals, 0, None) / trace, n)
    return pcas


def reduce_study(study: Study, pcas: dict[str, ModalityPCA], progress: bool = True) -> Study:
    """The same study with every record's features replaced by their PCA tokens (in memory, float32).

    Arrays shared by subjects and repeats stay shared. ``feature_dims`` become the kept axes per modality and
    ``info["pca_components"]`` records them.

    Parameters
    ----------
    study : Study
    pcas : dict of str to ModalityPCA
        From :func:`fit_pca` on this study (every modality).

    Returns
    -------
    Study
    """
    missing = [m for m in study.modalities if m not in pcas]
    if missing:
        raise ValueError(
            f"reduce_study: no PCA for modalities {missing}; fit_pca(study, ...) gives every one"
        )
    if len(study.lags_trs) != 1:
        raise ValueError(
            f"reduce_study: the study has lags {study.lags_trs}; reduce it at one lag, then delay_study adds the "
            "FIR lags on the reduced tokens"
        )
    done: dict[int, np.ndarray] = {}
    records = []
    for rec in progress_bar(len(study.records), "PCA tokens", not progress, "run", iterable=study.records):
        feats = {}
        for m in study.modalities:
            a = rec.features[m]
            if id(a) not in done:
                done[id(a)] = pcas[m].transform(a)
            feats[m] = done[id(a)]
        records.append(replace(rec, features=feats))
    dims = {m: pcas[m].n_components for m in study.modalities}
    info = {**study.info, "pca_components": dims}
    return replace(study, records=records, feature_dims=dims, info=info)


def first_covered_tr(lag_trs: float, tr_s: float, feature_hz: float) -> int:
    """Index of the first TR whose stimulus window at ``lag_trs`` overlaps the stimulus (alignment's own rule)."""
    n_trs = int(math.ceil(max(lag_trs, 0.0))) + 2
    n_frames = int(math.ceil(n_trs * tr_s * feature_hz)) + 1
    covered = overlap_matrix(n_trs, n_frames, tr_s, feature_hz, lag_trs * tr_s).sum(axis=1) > 0.5
    return int(np.argmax(covered))


def delay_study(study: Study, lags_trs: Sequence[float]) -> Study:
    """FIR delays by shifting the tokens of a study aligned at one lag.

    Parameters
    ----------
    study : Study
        Aligned at one lag ``b ≥ 0`` (``study.lags_trs == (b,)``), usually reduced by :func:`reduce_study`.
    lags_trs : sequence of float
        FIR lags in TRs; the smallest must be ``b`` and each ``lag - b`` a whole number of TRs.

    Returns
    -------
    Study
        Features ``(T, F_m × n_lags)`` per modality, lag blocks in the order of ``lags_trs`` (as
        :func:`mindlib.data.load_study` with ``lags_trs`` concatenates them); a TR is valid where it was valid and
        every lag's window is covered.

    Raises
    ------
    ValueError
        The study has several lags, or the lags are not whole-TR shifts up from ``b``; align at the smallest lag
        instead (``data.load_study(..., lags_trs=(min(lags),))``).
    """
    lags = tuple(float(x) for x in lags_trs)
    if len(study.lags_trs) != 1:
        raise ValueError(f"delay_study: the study already has lags {study.lags_trs}; pass a study at one lag")
    base = float(study.lags_trs[0])
    shifts = [lag - base for lag in lags]
    if not lags or base < 0 or min(lags) != base or any(abs(s - round(s)) > 1e-9 for s in shifts):
        raise ValueError(
            f"delay_study: lags {lags} must start at the study's lag {base:g} (>= 0) and step by whole TRs; "
            f"load the study at lags_trs=({min(lags, default=base):g},) first"
        )
    shifts_int = [int(round(s)) for s in shifts]
    first = first_covered_tr(base, study.tr_s, study.feature_hz) + max(shifts_int)
    done: dict[int, np.ndarray] = {}
    records = []
    for rec in study.records:
        feats = {}
        for m in study.modalities:
            if id(rec.features[m]) not in done:
                a = np.asarray(rec.features[m])
                out = np.zeros((a.shape[0], a.shape[1] * len(lags)), dtype=np.float32)
                for j, s in enumerate(shifts_int):
                    out[s:, j * a.shape[1] : (j + 1) * a.shape[1]] = a[: a.shape[0] - s]
                done[id(rec.features[m])] = out
            feats[m] = done[id(rec.features[m])]
        valid = np.asarray(rec.valid, dtype=bool).copy()
        valid[:first] = False
        records.append(replace(rec, features=feats, valid=valid))
    dims = {m: d * len(lags) for m, d in study.feature_dims.items()}
    return replace(study, records=records, feature_dims=dims, lags_trs=lags)


def reduced_fir_study(
    study: Study, lags_trs: Sequence[float], n_components: int, progress: bool = True
) -> tuple[Study, dict[str, ModalityPCA]]:
    """The ridge's bounded design: ``study`` at its first FIR lag, PCA-reduced per modality, delayed by shifts.

    Parameters
    ----------
    study : Study
        Any lag; it is reloaded at ``min(lags_trs)`` (:func:`mindlib.data.with_lags`, through its feature cache
        when it has one) unless it is already aligned there.
    lags_trs : sequence of float
        FIR lags in TRs, whole-TR steps up from the smallest.
    n_components : int
        k per modality (:func:`fit_pca`, on the training runs).

    Returns
    -------
    fir : Study
        Features ``(T, k × n_lags)`` per modality.
    pcas : dict of str to ModalityPCA
    """
    base = with_lags(study, (min(float(x) for x in lags_trs),))
    pcas = fit_pca(base, n_components, progress=progress)
    return delay_study(reduce_study(base, pcas, progress=progress), lags_trs), pcas
