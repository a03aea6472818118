"""mindlib.metrics against scipy.stats, sklearn.metrics and hand-computed cases."""

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import r2_score as sk_r2

from mindlib import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(60, 7))
    y_hat = 0.5 * y + rng.normal(size=(60, 7))
    return y, y_hat


def test_pearson_matches_scipy(pair):
    y, y_hat = pair
    r = metrics.pearson_r(y, y_hat)
    assert r.shape == (7,) and r.dtype == np.float64
    expected = [stats.pearsonr(y[:, v], y_hat[:, v]).statistic for v in range(7)]
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-12)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=(40, 6)).astype(float)  # many ties
    y_hat = y + rng.integers(0, 3, size=(40, 6))
    rho = metrics.spearman_r(y, y_hat)
    expected = [stats.spearmanr(y[:, v], y_hat[:, v]).statistic for v in range(6)]
    np.testing.assert_allclose(rho, expected, rtol=1e-12, atol=1e-12)


def test_r2_matches_sklearn_and_can_be_negative(pair):
    y, y_hat = pair
    r2 = metrics.r2_score(y, y_hat)
    np.testing.assert_allclose(r2, sk_r2(y, y_hat, multioutput="raw_values"), rtol=1e-12)
    assert (metrics.r2_score(y, -y) < 0).all()


def test_mask_and_1d_inputs(pair):
    y, y_hat = pair
    mask = np.zeros(60, dtype=bool)
    mask[10:50] = True
    np.testing.assert_allclose(
        metrics.pearson_r(y, y_hat, mask=mask), metrics.pearson_r(y[10:50], y_hat[10:50])
    )
    r1 = metrics.pearson_r(y[:, 0], y_hat[:, 0])
    assert r1.shape == (1,)
    np.testing.assert_allclose(r1[0], stats.pearsonr(y[:, 0], y_hat[:, 0]).statistic)
    with pytest.raises(ValueError, match="mask"):
        metrics.pearson_r(y, y_hat, mask=np.ones(59, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        metrics.pearson_r(y, y_hat[:, :3])


def test_constant_columns_give_nan_and_one_warning(pair):
    y, y_hat = pair
    y = y.copy()
    y[:, 2] = 0.1  # constant truth
    y_hat = y_hat.copy()
    y_hat[:, 4] = 3.0  # constant prediction
    for fn, nan_cols in ((metrics.pearson_r, [2, 4]), (metrics.spearman_r, [2, 4]), (metrics.r2_score, [2])):
        with pytest.warns(RuntimeWarning, match=f"{len(nan_cols)} parcel") as rec:
            out = fn(y, y_hat)
        assert len(rec) == 1
        assert np.isnan(out[nan_cols]).all()
        assert np.isfinite(np.delete(out, nan_cols)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.pearson_r(pair[0], pair[1])  # no warning without constant columns


def test_summarize_parcels_runs_subjects():
    scores = {
        ("sub-01", "a"): np.array([0.2, 0.4, np.nan]),  # 0.3
        ("sub-01", "b"): np.array([0.5, 0.5]),  # 0.5
        ("sub-02", "a"): np.array([0.1, 0.1]),  # 0.1
    }
    out = metrics.summarize(scores)
    assert out["per_run"][("sub-01", "a")] == pytest.approx(0.3)
    assert out["per_subject"] == pytest.approx({"sub-01": 0.4, "sub-02": 0.1})
    assert out["mean"] == pytest.approx(0.25)  # subjects weigh the same


def test_algonauts_score_hand_case():
    rng = np.random.default_rng(2)
    runs = {"s01e01a": 20, "s01e01b": 18, "bourne01": 16}
    V, ex = 3, 2
    targets, preds = {}, {}
    for subject in ("sub-01", "sub-02"):
        targets[subject] = {run: rng.normal(size=(n, V)) for run, n in runs.items()}
        preds[subject] = {run: y + rng.normal(size=y.shape) for run, y in targets[subject].items()}
    out = metrics.algonauts_score(preds, targets, exclude_trs=ex)

    def movie_r(subject, movie_runs):
        y = np.concatenate([targets[subject][r][ex:-ex] for r in movie_runs])
        p = np.concatenate([preds[subject][r][ex:-ex] for r in movie_runs])
        return np.mean([stats.pearsonr(y[:, v], p[:, v]).statistic for v in range(V)])

    expected = {}
    for subject in ("sub-01", "sub-02"):
        friends = movie_r(subject, ["s01e01a", "s01e01b"])
        bourne = movie_r(subject, ["bourne01"])
        assert out["per_movie"][subject] == pytest.approx({"friends-s01": friends, "bourne": bourne})
        expected[subject] = (friends + bourne) / 2
    assert out["per_subject"] == pytest.approx(expected)
    assert out["mean"] == pytest.approx(np.mean(list(expected.values())))


def test_algonauts_score_mismatches_name_subject_and_run():
    rng = np.random.default_rng(4)
    y = {"sub-01": {"s01e01a": rng.normal(size=(20, 2)), "bourne01": rng.normal(size=(20, 2))}}
    with pytest.raises(ValueError, match=r"sub-01.*bourne01"):
        metrics.algonauts_score({"sub-01": {"s01e01a": y["sub-01"]["s01e01a"]}}, y)
    short = {"s01e01a": rng.normal(size=(19, 2)), "bourne01": y["sub-01"]["bourne01"]}
    with pytest.raises(ValueError, match=r"sub-01 run s01e01a"):
        metrics.algonauts_score({"sub-01": short}, y)
    with pytest.raises(ValueError, match="sub-02"):
        metrics.algonauts_score({"sub-02": y["sub-01"]}, y)


def test_repeat_ceiling_and_normalisation():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(100, 4))
    run1, run2 = signal + rng.normal(size=signal.shape), signal + rng.normal(size=signal.shape)
    ceiling = metrics.repeat_ceiling(run1, run2)
    np.testing.assert_allclose(ceiling, [stats.pearsonr(run1[:, v], run2[:, v]).statistic for v in range(4)])
    out = metrics.normalise_by_ceiling(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.2, 0.0, -0.1, np.nan]))
    np.testing.assert_allclose(out, [0.5, np.nan, np.nan, np.nan])


def test_reconstruct_run_averages_overlaps():
    V = 2
    w0 = np.full((4, V), 1.0)  # TRs 0-3
    w1 = np.full((4, V), 3.0)  # TRs 2-5
    out = metrics.reconstruct_run([(0, w0), (2, w1)], n_trs=6)
    np.testing.assert_allclose(out[:, 0], [1, 1, 2, 2, 3, 3])
    assert out.shape == (6, V)


def test_reconstruct_run_refuses_uncovered_trs():
    with pytest.raises(ValueError, match="covered by no window"):
        metrics.reconstruct_run([(0, np.ones((4, 2)))], n_trs=6)
    with pytest.raises(ValueError, match="outside"):
        metrics.reconstruct_run([(4, np.ones((4, 2)))], n_trs=6)


def test_noise_ceiling_fraction_is_mean_ratio():
    per_subject = {"sub-01": 0.2, "sub-02": 0.3, "sub-03": 0.1}  # sub-03 has no ceiling: left out
    ceilings = {"sub-01": np.array([0.4, 0.4]), "sub-02": np.array([0.5, 0.7])}
    assert metrics.noise_ceiling_fraction(per_subject, ceilings) == pytest.approx((0.2 / 0.4 + 0.3 / 0.6) / 2)
    assert np.isnan(metrics.noise_ceiling_fraction({"sub-09": 0.2}, ceilings))
