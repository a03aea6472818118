"""Time on the 2 Hz feature grid: frame counts, samples to frames, words to frames (docs/method.md §2).

Frame ``k`` at ``feature_hz`` frames per second covers ``[k / feature_hz, (k + 1) / feature_hz)``. A
stimulus of ``duration_s`` seconds has ``T_f = ceil(duration_s * feature_hz)`` frames (:func:`n_bins`);
a sample timestamped ``i / rate`` belongs to frame ``floor(i * feature_hz / rate)``
(:func:`bin_of_samples`); a timed word weighs in each frame by the fraction of the frame it overlaps
(:func:`word_bins`), and a frame's text feature is the overlap-weighted mean of its words' embeddings
(:func:`pool_words`). Timestamps that land on a frame edge in floating point are settled by
:data:`EPS_TIME`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mindlib.align import FEATURE_HZ

__all__ = ["EPS_TIME", "n_bins", "bin_of_samples", "fill_empty_bins", "word_bins", "pool_words"]

EPS_TIME = 1e-9  # tolerance (in bins) for a timestamp that lands on a bin edge in floating point


def n_bins(duration_s: float, feature_hz: float) -> int:
    """Number of frames ``T_f = ceil(duration_s * feature_hz)`` covering ``duration_s`` seconds, at least 1.

    A duration that ends on a frame edge up to float rounding (:data:`EPS_TIME`) adds no frame.
    """
    if not feature_hz > 0:
        raise ValueError(f"feature_hz must be > 0, got {feature_hz}")
    return max(1, math.ceil(duration_s * feature_hz - EPS_TIME))


def bin_of_samples(n_samples: int, rate: float, feature_hz: float, start: int = 0) -> np.ndarray:
    """Bin of samples ``i = start .. start + n_samples - 1`` timestamped ``i / rate``.

    ``floor(i * feature_hz / rate)`` (with the tolerance :data:`EPS_TIME` for edges), shape (n_samples,).
    """
    return np.floor(np.arange(start, start + n_samples) * (feature_hz / rate) + EPS_TIME).astype(np.int64)


def fill_empty_bins(values: np.ndarray, has_data: np.ndarray) -> np.ndarray:
    """Give each bin without data the value of the nearest earlier bin with data.

    Bins before the first bin with data take the first bin with data; no data at all gives zeros.
    ``values`` is (T_f, D) and ``has_data`` (T_f,) bool.
    """
    if has_data.all():
        return values
    if not has_data.any():
        return np.zeros_like(values)
    idx = np.where(has_data, np.arange(len(has_data)), -1)
    idx = np.maximum.accumulate(idx)  # last bin with data at or before each bin
    idx[idx < 0] = np.argmax(has_data)
    return values[idx]


def word_bins(
    onsets_s: Sequence[float] | np.ndarray,
    durations_s: Sequence[float] | np.ndarray,
    n_frames: int,
    feature_hz: float = FEATURE_HZ,
) -> np.ndarray:
    """Weights placing timed words on the feature grid.

    Word ``j`` covers ``[onset_j, onset_j + duration_j)`` and bin ``k`` covers
    ``[k / feature_hz, (k + 1) / feature_hz)``. Then

    - ``W[k, j] = |word_j ∩ bin_k| * feature_hz``: the fraction of the bin the word overlaps
      (a word covering a whole bin weighs 1 there, half a bin 0.5);
    - a zero-duration word has ``W[k, j] = 1`` in the bin containing its onset
      (``k = floor(onset * feature_hz)``), 0 elsewhere;
    - time outside ``[0, n_frames / feature_hz)`` is dropped (a word there weighs 0 everywhere).

    A bin's feature is the overlap-weighted mean of the embeddings of the words overlapping it,
    ``sum_j W[k, j] e_j / sum_j W[k, j]``, and zero where no word overlaps (:func:`pool_words`).

    Parameters
    ----------
    onsets_s, durations_s : array of shape (n_words,)
        Word onsets and durations in seconds (durations >= 0).
    n_frames : int
        Number of bins ``T_f``.
    feature_hz : float
        Bin rate (Hz).

    Returns
    -------
    W : ndarray of shape (n_frames, n_words), float64
    """
    onsets = np.asarray(onsets_s, dtype=np.float64).reshape(-1)
    durations = np.asarray(durations_s, dtype=np.float64).reshape(-1)
    if onsets.shape != durations.shape:
        raise ValueError(
            f"onsets_s and durations_s differ in length: {onsets.shape[0]} vs {durations.shape[0]}"
        )
    if not (np.isfinite(onsets).all() and np.isfinite(durations).all()):
        raise ValueError("word onsets and durations must be finite numbers")
    if (durations < 0).any():
        raise ValueError(f"word durations must be >= 0; {int((durations < 0).sum())} are negative")
    if n_frames < 0 or not feature_hz > 0:
        raise ValueError(f"need n_frames >= 0 and feature_hz > 0, got {n_frames} and {feature_hz}")
    lo = np.arange(n_frames)[:, None] / feature_hz  # (T_f, 1)
    hi = (np.arange(n_frames)[:, None] + 1) / feature_hz
    overlap = np.clip(
        np.minimum(hi, onsets + durations) - np.maximum(lo, onsets), 0.0, None
    )  # (T_f, n_words)
    W = overlap * feature_hz
    W[W < 1e-9] = 0.0  # a word touching a bin edge does not overlap it
    point = np.flatnonzero(durations == 0)
    k = np.floor(onsets[point] * feature_hz + EPS_TIME).astype(np.int64)
    inside = (k >= 0) & (k < n_frames)
    W[k[inside], point[inside]] = 1.0
    return W


def pool_words(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Overlap-weighted mean of word embeddings per bin; zeros where no word.

    Parameters
    ----------
    embeddings : ndarray of shape (n_words, L, D)
    weights : ndarray of shape (T_f, n_words)
        From :func:`word_bins`.

    Returns
    -------
    frames : ndarray of shape (T_f, L, D), float32
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    total = weights.sum(axis=1)  # (T_f,)
    summed = np.einsum("kj,jld->kld", weights, embeddings)  # (T_f, L, D)
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return (summed * scale[:, None, None]).astype(np.float32)
