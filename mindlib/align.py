"""Time: 2 Hz feature frames to fMRI TRs (docs/method.md §2; paper §2.1).

Everything is in seconds on explicit grids. Feature frame ``k`` (rate ``feature_hz``) covers
``[k / feature_hz, (k + 1) / feature_hz)``. The token for fMRI TR ``t`` is built from the stimulus
window ``[t * tr_s - lag_s, (t + 1) * tr_s - lag_s)``: the haemodynamic lag shifts the stimulus
window back in time. Frames are weighted by their overlap with that window, divided by the covered
length, so each covered row sums to 1 and an uncovered row is all zero (that TR is masked downstream).

Never "3 frames per TR": 3 x 0.5 s = 1.5 s is not 1.49 s and drifts by 5 s at TR 500.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse

TR_S = 1.49  # Algonauts 2025 repetition time (s)
FEATURE_HZ = 2.0  # rate of backbone feature frames (Hz)
DEFAULT_LAG_TRS = 3  # haemodynamic lag: 3 TRs = 4.47 s (TRIBE and the official baseline)


def overlap_matrix(
    n_trs: int,
    n_frames: int,
    tr_s: float = TR_S,
    feature_hz: float = FEATURE_HZ,
    lag_s: float = 0.0,
) -> np.ndarray:
    """Overlap weights that turn feature frames into TR tokens.

    Parameters
    ----------
    n_trs : int
        Number of fMRI TRs ``T``.
    n_frames : int
        Number of feature frames ``T_f`` at ``feature_hz``.
    tr_s : float
        Repetition time in seconds (any positive value).
    feature_hz : float
        Feature frame rate in Hz (any positive value).
    lag_s : float
        Haemodynamic lag in seconds: TR ``t`` reads the stimulus window
        ``[t * tr_s - lag_s, (t + 1) * tr_s - lag_s)``. May be negative or zero.

    Returns
    -------
    W : ndarray of shape (n_trs, n_frames)
        ``W[t, k]`` = overlap of frame ``k`` with the window of TR ``t``, divided by the part of that
        window covered by frames. Rows sum to 1 where the window is covered at all, 0 elsewhere.
        Tokens are ``W @ frames``.
    """
    if n_trs < 0 or n_frames < 0:
        raise ValueError(f"n_trs and n_frames must be >= 0, got {n_trs} and {n_frames}")
    if not (tr_s > 0 and feature_hz > 0):
        raise ValueError(f"tr_s and feature_hz must be > 0, got tr_s={tr_s}, feature_hz={feature_hz}")
    t = np.arange(n_trs, dtype=np.float64)[:, None]
    k = np.arange(n_frames, dtype=np.float64)[None, :]
    win_lo, win_hi = t * tr_s - lag_s, (t + 1) * tr_s - lag_s  # (T, 1)
    frame_lo, frame_hi = k / feature_hz, (k + 1) / feature_hz  # (1, T_f)
    overlap = np.clip(np.minimum(win_hi, frame_hi) - np.maximum(win_lo, frame_lo), 0.0, None)  # (T, T_f)
    covered = overlap.sum(axis=1, keepdims=True)  # (T, 1) seconds of the window covered by frames
    # Overlaps shorter than float noise are not coverage (a window touching a frame edge).
    eps = 1e-9 * max(tr_s, 1.0 / feature_hz)
    overlap[overlap < eps] = 0.0
    covered = overlap.sum(axis=1, keepdims=True)
    return np.divide(overlap, covered, out=np.zeros_like(overlap), where=covered > 0)


def lag_seconds(lag_trs: float, tr_s: float = TR_S) -> float:
    """Lag in seconds for a lag given in TRs (``lag_trs * tr_s``)."""
    return float(lag_trs) * float(tr_s)


def align_features(
    frames: np.ndarray,
    n_trs: int,
    tr_s: float = TR_S,
    feature_hz: float = FEATURE_HZ,
    lags_trs: Sequence[float] = (DEFAULT_LAG_TRS,),
) -> tuple[np.ndarray, np.ndarray]:
    """TR tokens from 2 Hz frames, at one lag or several (FIR delays).

    Parameters
    ----------
    frames : ndarray of shape (T_f, F)
        Feature frames at ``feature_hz``.
    n_trs : int
        Number of fMRI TRs ``T`` of the run.
    tr_s, feature_hz : float
        Time grids (see :func:`overlap_matrix`).
    lags_trs : sequence of float
        Haemodynamic lags in TRs. One lag gives ``(T, F)``; several (FIR delays, as in voxelwise
        encoding models) concatenate the tokens at each lag along features: ``(T, F * n_lags)``.

    Returns
    -------
    tokens : ndarray of shape (T, F * n_lags), float32
    covered : ndarray of shape (T,), bool
        True where every lag's stimulus window is covered by frames; False rows are zero and must
        be masked out of losses and scores.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2:
        raise ValueError(f"frames must be (T_f, F), got shape {frames.shape}")
    if len(lags_trs) == 0:
        raise ValueError("lags_trs must name at least one lag")
    blocks, covered = [], np.ones(n_trs, dtype=bool)
    frames64 = frames.astype(np.float64)
    for lag in lags_trs:
        W = overlap_matrix(n_trs, frames.shape[0], tr_s, feature_hz, lag_seconds(lag, tr_s))
        # a TR overlaps a handful of frames: the sparse product sums the same terms as W @ frames, far faster
        blocks.append(np.asarray(scipy.sparse.csr_matrix(W) @ frames64).astype(np.float32))
        covered &= W.sum(axis=1) > 0.5
    return np.concatenate(blocks, axis=1), covered


def naive_frames_per_tr(n_trs: int, n_frames: int, frames_per_tr: int = 3) -> np.ndarray:
    """The drifting alternative, for teaching only: TR ``t`` averages frames ``[3t, 3t + 3)``.

    This is what integer frames-per-TR pooling does; at 2 Hz and TR 1.49 s it assumes 1.5 s TRs and
    drifts by 0.01 s per TR (5 s, more than 3 TRs, by TR 500). Returns ``(n_trs, n_frames)``.
    """
    W = np.zeros((n_trs, n_frames))
    for t in range(n_trs):
        lo, hi = t * frames_per_tr, min((t + 1) * frames_per_tr, n_frames)
        if hi > lo:
            W[t, lo:hi] = 1.0 / (hi - lo)
    return W
