"""Scores of an encoding model: per-parcel correlations, the official metric, noise ceilings (docs/method.md §9, §1).

Every score is computed per parcel over time on arrays of shape ``(T, V)`` (time-major, parcels
last) and returns an array of shape ``(V,)``. Averages go parcels -> runs -> subjects and skip NaN
(:func:`summarize`). The official Algonauts 2025 metric (:func:`algonauts_score`) concatenates the runs
of one "movie" (a Friends season or a film, :func:`mindlib.layout.movie_of`) after dropping the
first and last 5 TRs of each run.

A parcel whose values do not vary over the scored time points has no correlation: it scores NaN
(with one warning naming how many parcels) instead of a silent 0, and NaN-aware averages skip it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from mindlib.layout import movie_of

__all__ = [
    "pearson_r",
    "spearman_r",
    "r2_score",
    "summarize",
    "nanmean",
    "algonauts_score",
    "repeat_ceiling",
    "normalise_by_ceiling",
    "noise_ceiling_fraction",
    "reconstruct_run",
]


# ---------------------------------------------------------------------------------------------
# per-parcel scores
# ---------------------------------------------------------------------------------------------


def _as_2d(y, name: str) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an array of shape (T, V) or (T,), got shape {arr.shape}")
    return arr


def _prepare(y_true, y_pred, mask) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (T, V) copies of both arrays, restricted to the time points in ``mask``."""
    yt = _as_2d(y_true, "y_true")
    yp = _as_2d(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}; both must be (T, V)")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (yt.shape[0],):
            raise ValueError(
                f"mask must be a boolean array of shape (T,) = ({yt.shape[0]},), "
                f"got dtype {mask.dtype} and shape {mask.shape}"
            )
        yt, yp = yt[mask], yp[mask]
    return yt, yp


def _constant_columns(y: np.ndarray) -> np.ndarray:
    """(V,) bool: True where a column takes a single value (or there are no time points)."""
    if y.shape[0] == 0:
        return np.ones(y.shape[1], dtype=bool)
    return np.ptp(y, axis=0) == 0


def _warn_constant(n: int, what: str, stacklevel: int = 3) -> None:
    if n:
        warnings.warn(
            f"{n} parcel(s) have constant {what} over the scored time points; "
            f"their score is NaN (skipped by NaN-aware averages)",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


def _pearson(yt: np.ndarray, yp: np.ndarray, stacklevel: int) -> np.ndarray:
    constant = _constant_columns(yt) | _constant_columns(yp)
    _warn_constant(int(constant.sum()), "truth or prediction", stacklevel=stacklevel + 1)
    yt = yt - yt.mean(axis=0)
    yp = yp - yp.mean(axis=0)
    num = (yt * yp).sum(axis=0)
    den = np.sqrt((yt * yt).sum(axis=0) * (yp * yp).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def pearson_r(y_true, y_pred, mask=None) -> np.ndarray:
    """Pearson correlation per parcel over time.

    Parameters
    ----------
    y_true, y_pred : array of shape (T, V) or (T,)
        Measured and predicted responses (a 1-D array is one parcel, ``(T, 1)``).
    mask : bool array of shape (T,), optional
        Time points to score (e.g. ``RunRecord.valid``); all when None.

    Returns
    -------
    r : ndarray of shape (V,), float64
        NaN where either array is constant over the scored time points (one warning names the count).
    """
    yt, yp = _prepare(y_true, y_pred, mask)
    return _pearson(yt, yp, stacklevel=3)


def spearman_r(y_true, y_pred, mask=None) -> np.ndarray:
    """Spearman rank correlation per parcel: Pearson r of the average ranks over time.

    Parameters and returns as :func:`pearson_r`; ties get their average rank.
    """
    yt, yp = _prepare(y_true, y_pred, mask)
    if yt.shape[0] == 0:
        return _pearson(yt, yp, stacklevel=3)
    return _pearson(rankdata(yt, axis=0), rankdata(yp, axis=0), stacklevel=3)


def r2_score(y_true, y_pred, mask=None) -> np.ndarray:
    """Coefficient of determination per parcel, ``1 - SSE / SST`` (negative when worse than the mean).

    Parameters
    ----------
    y_true, y_pred : array of shape (T, V) or (T,)
    mask : bool array of shape (T,), optional

    Returns
    -------
    r2 : ndarray of shape (V,), float64
        NaN where ``y_true`` is constant over the scored time points (one warning names the count).
    """
    yt, yp = _prepare(y_true, y_pred, mask)
    constant = _constant_columns(yt)
    _warn_constant(int(constant.sum()), "truth", stacklevel=3)
    sse = ((yt - yp) ** 2).sum(axis=0)
    sst = ((yt - yt.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - sse / sst
    r2[constant] = np.nan
    return r2


# ---------------------------------------------------------------------------------------------
# averages
# ---------------------------------------------------------------------------------------------


def nanmean(values) -> float:
    """Mean ignoring NaN: the average of scores, some of them undefined (a parcel constant in a run).

    Unlike ``np.nanmean``, all-NaN or empty input gives NaN without a ``RuntimeWarning``.

    Parameters
    ----------
    values : array-like of any shape
        Scores, e.g. per-parcel r (V,) or per-run means; flattened.

    Returns
    -------
    float
        The mean over the non-NaN entries, NaN when there is none.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def summarize(scores: Mapping[tuple[str, str], np.ndarray]) -> dict:
    """Average per-parcel scores over parcels, then runs, then subjects, skipping NaN.

    Parameters
    ----------
    scores : dict mapping (subject, run) to an array of shape (V,)
        e.g. ``{("sub-01", "s01e01a"): pearson_r(y, y_hat)}``.

    Returns
    -------
    dict
        ``{"mean": float, "per_subject": {subject: float}, "per_run": {(subject, run): float}}``;
        each subject weighs the same in ``mean`` whatever its number of runs.
    """
    if not scores:
        raise ValueError("summarize() got no scores; pass a dict {(subject, run): (V,) array}")
    per_run = {key: nanmean(value) for key, value in scores.items()}
    by_subject: dict[str, list[float]] = {}
    for (subject, _run), value in per_run.items():
        by_subject.setdefault(subject, []).append(value)
    per_subject = {subject: nanmean(values) for subject, values in by_subject.items()}
    return {"mean": nanmean(list(per_subject.values())), "per_subject": per_subject, "per_run": per_run}


def algonauts_score(
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    targets: Mapping[str, Mapping[str, np.ndarray]],
    exclude_trs: int = 5,
    valid: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict:
    """The official Algonauts 2025 score (docs/method.md §1).

    Per subject and movie (:func:`mindlib.layout.movie_of`: a Friends season or a film): drop the
    first and last ``exclude_trs`` TRs of each run, concatenate the movie's runs in sorted run order,
    Pearson r per parcel over time, mean over parcels; then mean over movies, mean over subjects.

    Parameters
    ----------
    predictions, targets : dict subject -> dict run -> array of shape (T, V)
        Same subjects, same runs and same shapes in both.
    exclude_trs : int
        TRs dropped at each end of every run (5 in the challenge).
    valid : dict subject -> dict run -> bool array of shape (T,), optional
        TRs that may be scored at all (e.g. ``RunRecord.valid``); dropped TRs are removed before
        concatenation, on top of ``exclude_trs``. None scores every TR, as the challenge does.

    Returns
    -------
    dict
        ``{"per_subject": {subject: r}, "per_movie": {subject: {movie: r}}, "mean": r}``. Parcel means
        skip NaN (constant parcels).

    Raises
    ------
    ValueError
        For a prediction holding NaN or infinite values, naming subject, run and the number of
        parcels: the official scorer rejects any NaN, so a parcel left unpredicted is never silently
        dropped from the mean.
    """
    if exclude_trs < 0:
        raise ValueError(f"exclude_trs must be >= 0, got {exclude_trs}")
    if set(predictions) != set(targets):
        only_pred = sorted(set(predictions) - set(targets))
        only_true = sorted(set(targets) - set(predictions))
        raise ValueError(
            f"predictions and targets cover different subjects: only in predictions {only_pred}, "
            f"only in targets {only_true}"
        )
    if not targets:
        raise ValueError("algonauts_score() got no subjects")
    per_movie: dict[str, dict[str, float]] = {}
    per_subject: dict[str, float] = {}
    for subject in sorted(targets):
        pred_runs, true_runs = predictions[subject], targets[subject]
        if set(pred_runs) != set(true_runs):
            missing = sorted(set(true_runs) - set(pred_runs))
            extra = sorted(set(pred_runs) - set(true_runs))
            raise ValueError(
                f"{subject}: predictions lack runs {missing} and have extra runs {extra} "
                f"compared with the targets"
            )
        if not true_runs:
            raise ValueError(f"{subject}: no runs to score")
        by_movie: dict[str, list[str]] = {}
        for run in sorted(true_runs):
            by_movie.setdefault(movie_of(run), []).append(run)
        per_movie[subject] = {}
        for movie, runs in by_movie.items():
            yt_parts, yp_parts = [], []
            for run in runs:
                yt = _as_2d(true_runs[run], f"targets[{subject!r}][{run!r}]")
                yp = _as_2d(pred_runs[run], f"predictions[{subject!r}][{run!r}]")
                if yt.shape != yp.shape:
                    raise ValueError(
                        f"{subject} run {run}: prediction has shape {yp.shape} but the target has shape "
                        f"{yt.shape}"
                    )
                bad = ~np.isfinite(yp).all(axis=0)
                if bad.any():
                    raise ValueError(
                        f"{subject} run {run}: the prediction holds NaN or infinite values in {int(bad.sum())} "
                        f"of {yp.shape[1]} parcels (first: {np.flatnonzero(bad)[:5].tolist()}); the official "
                        "Algonauts scorer rejects any NaN. Predict every parcel (e.g. check the features of "
                        "this run, or fill a parcel you cannot predict with 0)"
                    )
                n = yt.shape[0]
                if n <= 2 * exclude_trs:
                    raise ValueError(
                        f"{subject} run {run}: {n} TRs leave nothing after dropping {exclude_trs} "
                        f"at each end; lower exclude_trs"
                    )
                keep = np.zeros(n, dtype=bool)
                keep[exclude_trs : n - exclude_trs] = True
                if valid is not None:
                    mask = np.asarray(valid[subject][run], dtype=bool)
                    if mask.shape != (n,):
                        raise ValueError(
                            f"{subject} run {run}: valid mask has shape {mask.shape}, expected ({n},)"
                        )
                    keep &= mask
                yt_parts.append(yt[keep])
                yp_parts.append(yp[keep])
            r = _pearson(np.concatenate(yt_parts), np.concatenate(yp_parts), stacklevel=3)
            per_movie[subject][movie] = nanmean(r)
        per_subject[subject] = nanmean(list(per_movie[subject].values()))
    return {
        "per_subject": per_subject,
        "per_movie": per_movie,
        "mean": nanmean(list(per_subject.values())),
    }


# ---------------------------------------------------------------------------------------------
# noise ceiling
# ---------------------------------------------------------------------------------------------


def repeat_ceiling(run1, run2, mask=None) -> np.ndarray:
    """Repeat-to-repeat noise ceiling: Pearson r per parcel between two repeats of one stimulus.

    ``life01_run-1`` vs ``life01_run-2`` (docs/method.md §1: 0.230 for Hidden Figures, 0.161 for Life). It is
    the correlation a perfect model of the stimulus-driven signal would reach against a single
    repeat only if the two repeats' noise were its only limit; the raw repeat correlation is reported
    (no Spearman-Brown correction), as the published anchors are.

    Repeats of one clip can differ by a TR or two at the end (the released Life and Hidden Figures
    repeats have 306 and 307 TRs): both start at the clip's onset, so their first ``min(T1, T2)`` TRs
    are the common ones. Those are scored, and a warning reports how many TRs were trimmed.

    Parameters
    ----------
    run1, run2 : array of shape (T1, V) and (T2, V)
        The same subject's fMRI for two presentations of the same stimulus.
    mask : bool array of shape (min(T1, T2),), optional
        Common TRs to score.

    Returns
    -------
    ceiling : ndarray of shape (V,)

    Warns
    -----
    UserWarning
        When ``T1 != T2``, naming both lengths and the number of common TRs scored.
    """
    a, b = _as_2d(run1, "run1"), _as_2d(run2, "run2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"run1 has {a.shape[1]} parcels but run2 has {b.shape[1]}; both must be (T, V)")
    if a.shape[0] != b.shape[0]:
        n = min(a.shape[0], b.shape[0])
        warnings.warn(
            f"repeats have {a.shape[0]} and {b.shape[0]} TRs: scoring their first {n} common TRs "
            f"({abs(a.shape[0] - b.shape[0])} TR(s) trimmed from the end of the longer repeat)",
            stacklevel=2,
        )
        a, b = a[:n], b[:n]
    a, b = _prepare(a, b, mask)
    return _pearson(a, b, stacklevel=3)


def normalise_by_ceiling(r, ceiling) -> np.ndarray:
    """A score as a fraction of its noise ceiling, ``r / ceiling``.

    Parameters
    ----------
    r, ceiling : array-like, broadcastable (e.g. both of shape (V,))

    Returns
    -------
    ndarray
        ``r / ceiling`` where ``ceiling > 0``; NaN where the ceiling is 0, negative or NaN (no
        reliable signal to be a fraction of). Values above 1 are kept: they flag a noisy ceiling.
    """
    r = np.asarray(r, dtype=np.float64)
    ceiling = np.asarray(ceiling, dtype=np.float64)
    r, ceiling = np.broadcast_arrays(r, ceiling)
    out = np.full(r.shape, np.nan)
    ok = ceiling > 0  # False for NaN too
    out[ok] = r[ok] / ceiling[ok]
    return out


def noise_ceiling_fraction(per_subject_r: Mapping[str, float], ceilings: Mapping[str, np.ndarray]) -> float:
    """The share of the explainable signal a model reaches: mean over subjects of (mean parcel r) / (mean
    parcel noise ceiling).

    Parameters
    ----------
    per_subject_r : dict subject -> float
        Each subject's mean Pearson r (``summarize(...)["per_subject"]``, e.g.
        ``mindlib.train.evaluate(...)["pearson"]["per_subject"]``).
    ceilings : dict subject -> array of shape (V,)
        Each subject's noise ceiling per parcel (the synthetic truth, or :func:`repeat_ceiling`).

    Returns
    -------
    float
        Over the subjects present in both; NaN when none is.
    """
    fr = [per_subject_r[s] / float(np.nanmean(ceilings[s])) for s in per_subject_r if s in ceilings]
    return float(np.mean(fr)) if fr else float("nan")


# ---------------------------------------------------------------------------------------------
# whole runs from windows
# ---------------------------------------------------------------------------------------------


def reconstruct_run(window_preds: Sequence[tuple[int, np.ndarray]], n_trs: int) -> np.ndarray:
    """Put overlapping window predictions back on a run's TR grid, averaging where they overlap.

    Parameters
    ----------
    window_preds : list of (start, array of shape (W, V))
        Each window's first TR in the run and its predictions; windows may differ in length.
    n_trs : int
        Number of TRs ``T`` of the run.

    Returns
    -------
    pred : ndarray of shape (T, V), float32
        Mean of every window prediction covering each TR.

    Raises
    ------
    ValueError
        If a window lies outside ``[0, T)`` or a TR is covered by no window: uncovered TRs are never
        filled with zeros (docs/method.md §9; the authors' code scores such zeros).
    """
    if n_trs <= 0:
        raise ValueError(f"n_trs must be positive, got {n_trs}")
    if not window_preds:
        raise ValueError("reconstruct_run() got no windows")
    total = None
    count = np.zeros(n_trs, dtype=np.int64)
    for start, pred in window_preds:
        pred = np.asarray(pred, dtype=np.float64)
        if pred.ndim != 2:
            raise ValueError(f"window at TR {start} must have shape (W, V), got {pred.shape}")
        if total is None:
            total = np.zeros((n_trs, pred.shape[1]))
        if pred.shape[1] != total.shape[1]:
            raise ValueError(
                f"window at TR {start} has {pred.shape[1]} parcels, others have {total.shape[1]}"
            )
        stop = start + pred.shape[0]
        if start < 0 or stop > n_trs:
            raise ValueError(f"window [{start}, {stop}) lies outside the run's {n_trs} TRs")
        total[start:stop] += pred
        count[start:stop] += 1
    uncovered = np.flatnonzero(count == 0)
    if uncovered.size:
        raise ValueError(
            f"{uncovered.size} of {n_trs} TRs are covered by no window (first: {uncovered[:5].tolist()}); "
            f"use window starts that cover the run (the last window aligned to the run's end)"
        )
    return (total / count[:, None]).astype(np.float32)
