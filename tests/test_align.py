"""Tests for mindlib.align: 2 Hz frames to TRs by overlap (docs/method.md §2)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mindlib import align


def dense_overlap(n_trs, n_frames, tr_s, feature_hz, lag_s, step=1e-3):
    """Independent reference: sample time on a fine grid and count shared samples (TR, frame)."""
    t = (np.arange(int(np.ceil(n_frames / feature_hz / step))) + 0.5) * step  # stimulus time (s)
    t = t[t < n_frames / feature_hz]
    frame = np.floor(t * feature_hz).astype(int)
    tr = np.floor((t + lag_s) / tr_s).astype(int)  # stimulus time s is read by TR t when t*tr_s <= s + lag_s
    keep = (tr >= 0) & (tr < n_trs)
    counts = np.zeros((n_trs, n_frames))
    np.add.at(counts, (tr[keep], frame[keep]), 1.0)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def test_tr_1_5_at_2_hz_averages_three_frames():
    W = align.overlap_matrix(4, 12, tr_s=1.5, feature_hz=2.0)
    np.testing.assert_allclose(W, np.kron(np.eye(4), np.full((1, 3), 1 / 3)), atol=1e-12)


def test_tr_1_49_first_rows_by_hand():
    W = align.overlap_matrix(3, 10, tr_s=1.49, feature_hz=2.0)
    # TR 0 = [0, 1.49): frames [0, .5) [.5, 1) fully, [1, 1.5) for 0.49 s
    np.testing.assert_allclose(W[0, :3], np.array([0.5, 0.5, 0.49]) / 1.49, atol=1e-12)
    # TR 1 = [1.49, 2.98): 0.01 s of frame 2, frames 3 and 4 fully, 0.48 s of frame 5
    np.testing.assert_allclose(W[1, 2:6], np.array([0.01, 0.5, 0.5, 0.48]) / 1.49, atol=1e-9)
    # TR 2 = [2.98, 4.47): 0.02 s of frame 5, frames 6-7 fully, 0.47 s of frame 8
    np.testing.assert_allclose(W[2, 5:9], np.array([0.02, 0.5, 0.5, 0.47]) / 1.49, atol=1e-9)
    assert W[0, 3:].sum() == 0 and W[1, :2].sum() == 0 and W[1, 6:].sum() == 0


def test_rows_sum_to_one_where_covered_zero_elsewhere():
    # 10 frames = 5 s; TRs of 1.49 s: TR 3 = [4.47, 5.96) is partly covered, TR 4 not at all
    W = align.overlap_matrix(5, 10, tr_s=1.49, feature_hz=2.0)
    np.testing.assert_allclose(W.sum(axis=1), [1, 1, 1, 1, 0], atol=1e-12)
    # the partly covered TR reads only the frame it overlaps (renormalised to the covered part)
    np.testing.assert_allclose(W[3, 8:], [0.03 / 0.53, 0.5 / 0.53], atol=1e-9)


def test_partial_last_tr_uses_only_the_covered_frame():
    W = align.overlap_matrix(2, 4, tr_s=1.5, feature_hz=2.0)  # 2 s of frames, TR 1 = [1.5, 3)
    np.testing.assert_allclose(W[1], [0, 0, 0, 1], atol=1e-12)


def test_no_drift_at_tr_500_but_naive_pooling_drifts():
    n_trs, n_frames = 520, 1560
    frames = np.zeros((n_frames, 1))
    k = 1491  # frame [745.5, 746.0) s; TR 500 covers [745.0, 746.49)
    frames[k] = 1.0
    tokens = align.overlap_matrix(n_trs, n_frames, tr_s=1.49, feature_hz=2.0) @ frames
    assert np.flatnonzero(tokens[:, 0]).tolist() == [500]
    naive = align.naive_frames_per_tr(n_trs, n_frames) @ frames
    assert np.flatnonzero(naive[:, 0]).tolist() == [497]  # 3 TRs (4.5 s) off


def test_lag_of_one_tr_shifts_rows_by_one():
    W0 = align.overlap_matrix(12, 40, tr_s=1.49, feature_hz=2.0)
    W1 = align.overlap_matrix(12, 40, tr_s=1.49, feature_hz=2.0, lag_s=1.49)
    assert W1[0].sum() == 0  # TR 0 would read [-1.49, 0): before the stimulus
    np.testing.assert_allclose(W1[1:], W0[:-1], atol=1e-9)


def test_negative_lag_reads_later_stimulus():
    W0 = align.overlap_matrix(6, 20, tr_s=1.5, feature_hz=2.0)
    Wm = align.overlap_matrix(6, 20, tr_s=1.5, feature_hz=2.0, lag_s=-1.5)
    np.testing.assert_allclose(Wm[:-1], W0[1:], atol=1e-12)


@pytest.mark.parametrize(
    "tr_s, feature_hz, lag_s", [(1.49, 2.0, 0.0), (1.49, 2.0, 4.47), (0.7, 3.0, 1.1), (2.0, 1.3, -0.8)]
)
def test_matches_dense_sampling_reference(tr_s, feature_hz, lag_s):
    W = align.overlap_matrix(15, 31, tr_s, feature_hz, lag_s)
    ref = dense_overlap(15, 31, tr_s, feature_hz, lag_s)
    np.testing.assert_allclose(W, ref, atol=5e-3)


def test_naive_frames_per_tr_rows():
    W = align.naive_frames_per_tr(3, 8)
    np.testing.assert_allclose(W[0, :3], 1 / 3)
    np.testing.assert_allclose(W[2, 6:8], 1 / 2)  # the last TR has only two frames left
    np.testing.assert_allclose(W.sum(axis=1), 1)


def test_align_features_concatenates_lags_and_masks():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((40, 5))  # 20 s at 2 Hz
    tokens, covered = align.align_features(frames, 14, tr_s=1.49, feature_hz=2.0, lags_trs=(0, 1, 3))
    assert tokens.shape == (14, 15) and tokens.dtype == np.float32
    for j, lag in enumerate((0, 1, 3)):
        W = align.overlap_matrix(14, 40, 1.49, 2.0, lag * 1.49)
        np.testing.assert_allclose(tokens[:, 5 * j : 5 * (j + 1)], W @ frames, rtol=1e-5, atol=1e-6)
    # lag 3 leaves TRs 0-2 uncovered; lag 0 leaves TR 13 = [19.37, 20.86) partly covered
    assert covered.tolist() == [False] * 3 + [True] * 11
    np.testing.assert_array_equal(tokens[:3, 10:], 0)


def test_align_features_default_lag_is_three_trs():
    frames = np.ones((100, 2))
    tokens, covered = align.align_features(frames, 30)
    assert align.DEFAULT_LAG_TRS == 3 and align.lag_seconds(3) == pytest.approx(4.47)
    assert covered.tolist() == [False] * 3 + [True] * 27
    np.testing.assert_allclose(tokens[covered], 1.0, rtol=1e-6)  # rows are averages
    np.testing.assert_array_equal(tokens[~covered], 0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: align.overlap_matrix(-1, 5),
        lambda: align.overlap_matrix(5, 5, tr_s=0.0),
        lambda: align.overlap_matrix(5, 5, feature_hz=-2.0),
        lambda: align.align_features(np.zeros(10), 5),
        lambda: align.align_features(np.zeros((10, 2)), 5, lags_trs=()),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


@settings(max_examples=60, deadline=None)
@given(
    n_trs=st.integers(0, 25),
    n_frames=st.integers(0, 60),
    tr_s=st.floats(0.3, 3.0),
    feature_hz=st.floats(0.5, 8.0),
    lag_s=st.floats(-5.0, 10.0),
)
def test_overlap_matrix_properties(n_trs, n_frames, tr_s, feature_hz, lag_s):
    W = align.overlap_matrix(n_trs, n_frames, tr_s, feature_hz, lag_s)
    assert W.shape == (n_trs, n_frames)
    assert (W >= 0).all()
    sums = W.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | (sums == 0.0))
    lo = np.arange(n_trs) * tr_s - lag_s  # each TR's stimulus window [lo, lo + tr_s)
    end = n_frames / feature_hz
    overlap = np.minimum(lo + tr_s, end) - np.maximum(lo, 0.0)
    assume(np.all(np.abs(overlap) > 1e-6))  # skip windows that just touch the frames' edge
    np.testing.assert_array_equal(sums > 0, overlap > 0)
    # the weighted frame centre lies within the window, widened by half a frame
    centres = (np.arange(n_frames) + 0.5) / feature_hz
    covered = sums > 0
    centre = W[covered] @ centres
    half = 0.5 / feature_hz + 1e-9
    assert np.all(centre >= lo[covered] - half) and np.all(centre <= lo[covered] + tr_s + half)
