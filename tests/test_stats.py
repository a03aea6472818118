"""mindlib.stats against scipy and hand-computed cases."""

import numpy as np
import pytest
from scipy import stats as sps

from mindlib import stats


def test_bootstrap_of_two_units_is_the_hand_enumerated_distribution():
    # resampling 2 units: means 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4) -> the 95 % percentile interval is [0, 1]
    assert stats.paired_bootstrap(np.array([0.0, 1.0]), n_boot=4000) == (0.0, 1.0)
    # a 50 % interval lies inside the middle mass
    assert stats.paired_bootstrap(np.array([0.0, 1.0]), n_boot=4000, confidence=0.5) == (0.5, 0.5)


def test_bootstrap_matches_scipy_percentile_bootstrap():
    d = np.random.default_rng(1).normal(0.02, 0.05, size=40)
    low, high = stats.paired_bootstrap(d, n_boot=20000, seed=3)
    ref = sps.bootstrap((d,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(4))
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)


def test_seed_resampling_widens_the_interval_when_seeds_disagree():
    units = np.random.default_rng(0).normal(0.0, 0.01, size=30)
    d = np.stack([units + 0.05, units - 0.05])  # two seeds that disagree by 0.1
    lo1, hi1 = stats.paired_bootstrap(d[:1] * 0 + d.mean(0))  # their average alone
    lo2, hi2 = stats.paired_bootstrap(d)
    assert hi2 - lo2 > 5 * (hi1 - lo1)
    assert lo2 < -0.04 and hi2 > 0.04


def test_paired_t_matches_scipy_ttest_rel():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.3, 0.05, 25), rng.normal(0.29, 0.05, 25)
    t, p = stats.paired_t(a, b)
    ref = sps.ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-10)
    assert np.isnan(stats.paired_t(a[:1], b[:1])[0])


def test_seed_interval_matches_scipy_ttest_rel_interval():
    a, b = np.array([0.31, 0.33, 0.30, 0.34]), np.array([0.30, 0.30, 0.31, 0.31])
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert stats.seed_interval(a - b) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert all(np.isnan(stats.seed_interval(np.array([0.1]))))


def test_compare_pairs_seeds_reuses_a_single_seed_and_words_the_claim():
    units = [f"sub-0{s}/run{r}" for s in (1, 2) for r in range(5)]
    mind = {
        0: {u: 0.30 + 0.001 * i for i, u in enumerate(units)},
        1: {u: 0.31 + 0.001 * i for i, u in enumerate(units)},
    }
    ridge = {0: dict.fromkeys(units, 0.25)}  # one deterministic fit, paired with every seed of MIND
    res = stats.compare(mind, ridge, n_boot=2000)
    assert (res.n_units, res.n_seeds) == (10, 2)
    assert res.mean == pytest.approx(0.0595)
    assert res.excludes_zero and res.low > 0.05
    assert "MIND higher than ridge (the interval excludes 0; 10 runs × 2 seeds)" in res.claim("MIND", "ridge")
    assert res.interval().startswith("+0.059 [95 % CI +0.05")
    ci = sps.ttest_rel(
        [0.3045, 0.3145], [0.25, 0.25]
    ).confidence_interval()  # per-seed means of MIND vs ridge
    assert f"across the 2 seeds alone {ci.low:+.3f} to {ci.high:+.3f}" in res.claim()
    same = stats.compare(
        {0: dict(zip(units, np.linspace(-1, 1, 10)))}, {0: dict.fromkeys(units, 0.0)}, n_boot=2000
    )
    assert not same.excludes_zero and "no difference resolved" in same.claim()
    with pytest.raises(ValueError, match="other runs"):
        stats.compare(mind, {0: dict.fromkeys(units[:-1], 0.2)})
    with pytest.raises(ValueError, match="no common seed"):
        stats.compare(mind, {2: dict.fromkeys(units, 0.2), 3: dict.fromkeys(units, 0.2)})


def test_too_few_runs_make_no_claim():
    units = ["sub-01/a", "sub-01/b", "sub-02/a"]
    res = stats.compare(
        {0: dict.fromkeys(units, 0.3)}, {0: {"sub-01/a": 0.1, "sub-01/b": 0.2, "sub-02/a": 0.15}}, n_boot=500
    )
    assert res.low > 0 and not res.excludes_zero
    assert "too few paired runs for a claim (3 runs × 1 seed; at least 5 needed)" in res.claim()
