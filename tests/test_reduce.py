"""The ridge's reduced design (mindlib.reduce) against independent references.

PCA: scikit-learn's exact PCA of the standardised, stacked training features. FIR by shifting: the study loaded at
the FIR lags by :func:`mindlib.data.load_study`, which aligns every lag from the 2 Hz frames.
"""

import numpy as np
import pytest

from mindlib import align, data, reduce
from mindlib.cache import FeatureCache


@pytest.fixture(scope="module")
def study(smoke_study):
    return data.load_study(smoke_study, "tribe")


def _stacked_training(study, modality):
    """Each training stimulus once, its valid TRs (union over the records that show it)."""
    rows = {}
    for rec in study.select("train"):
        a = rec.features[modality]
        mask = rows[id(a)][1] | rec.valid if id(a) in rows else rec.valid
        rows[id(a)] = (a, mask)
    return np.concatenate([a[m] for a, m in rows.values()]).astype(np.float64)


def test_pca_equals_sklearn_on_standardised_training_features(study):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    pcas = reduce.fit_pca(study, n_components=6, progress=False)
    assert set(pcas) == set(study.modalities)
    for m, pca in pcas.items():
        X = _stacked_training(study, m)
        assert pca.n_rows == len(X)
        Z = StandardScaler().fit_transform(X)
        ref = PCA(n_components=6, svd_solver="full").fit(Z)
        np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-6)
        # axes agree up to sign; ours put each axis's largest entry positive
        dots = np.abs(np.sum(pca.components.astype(np.float64) * ref.components_, axis=1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-5)
        rec = study.records[0]
        tokens = pca.transform(rec.features[m])
        want = ref.transform(StandardScaler().fit(X).transform(np.asarray(rec.features[m], dtype=np.float64)))
        signs = np.sign(np.sum(pca.components * ref.components_, axis=1))
        np.testing.assert_allclose(tokens, want * signs, atol=2e-4)


def test_delay_by_shifting_equals_aligning_at_every_lag(smoke_study):
    fir = data.load_study(smoke_study, "tribe", lags_trs=(2, 3, 4))
    shifted = reduce.delay_study(data.load_study(smoke_study, "tribe", lags_trs=(2,)), (2, 3, 4))
    assert shifted.lags_trs == (2.0, 3.0, 4.0) and shifted.feature_dims == fir.feature_dims
    for a, b in zip(fir.records, shifted.records):
        assert (a.subject, a.run) == (b.subject, b.run)
        np.testing.assert_array_equal(a.valid, b.valid)
        for m in fir.modalities:
            np.testing.assert_allclose(b.features[m], a.features[m], rtol=0, atol=1e-6)


def test_reduce_then_delay_keeps_shared_arrays_and_bounds_the_design(smoke_study, tmp_path):
    base = data.load_study(smoke_study, "tribe", lags_trs=(2,), feature_cache=FeatureCache(tmp_path))
    pcas = reduce.fit_pca(base, 4, progress=False)
    fir = reduce.delay_study(reduce.reduce_study(base, pcas, progress=False), (2, 3, 4))
    assert fir.feature_dims == {m: 12 for m in base.modalities}
    assert fir.info["pca_components"] == {m: 4 for m in base.modalities}
    by_stimulus = {}
    for rec in fir.records:  # one array per stimulus, shared by subjects and repeats, as load_study does
        for m in fir.modalities:
            assert rec.features[m].shape == (rec.n_trs, 12)
            assert by_stimulus.setdefault((rec.stimulus, m), rec.features[m]) is rec.features[m]


def test_first_covered_tr_follows_the_overlap_rule():
    for lag in (0, 1, 2, 3, 2.5, 0.3):
        n_frames = 200
        covered = align.overlap_matrix(20, n_frames, lag_s=lag * align.TR_S).sum(axis=1) > 0.5
        assert reduce.first_covered_tr(lag, align.TR_S, align.FEATURE_HZ) == int(np.argmax(covered))


def test_bad_lags_and_components_are_named(study):
    with pytest.raises(ValueError, match=r"lags_trs=\(2,\)"):
        reduce.delay_study(study, (2, 3, 4))  # study at lag 3 cannot give lag 2 by shifting
    with pytest.raises(ValueError, match="whole TRs"):
        reduce.delay_study(study, (3, 3.5))
    with pytest.raises(ValueError, match="n_components"):
        reduce.fit_pca(study, 0)
    fir = reduce.delay_study(study, (3, 4))
    with pytest.raises(ValueError, match="one lag"):
        reduce.reduce_study(fir, reduce.fit_pca(study, 2, progress=False))


def test_ridge_on_every_pca_axis_equals_the_ridge_on_the_standardised_features(smoke_study):
    """PCA keeping every axis is a rotation of the standardised features, and ridge is rotation invariant:
    one subject, Friends only (no repeats), one lag, so both standardise with the same training rows."""
    from mindlib import experiment

    study = data.load_study(smoke_study, "tribe", subjects=["sub-01"], studies=["friends"])
    k = max(study.feature_dims.values())
    full = experiment.run(study, experiment.ExperimentConfig(decoder="ridge", fir_lags_trs=(3,)))
    pca = experiment.run(
        study, experiment.ExperimentConfig(decoder="ridge", fir_lags_trs=(3,), ridge_components=k)
    )
    assert pca.extra["ridge_columns"] == full.extra["ridge_columns"] == sum(study.feature_dims.values())
    np.testing.assert_array_equal(pca.model.best_alphas_[0], full.model.best_alphas_[0])
    for split in ("val", "test"):
        a, b = getattr(pca, split)["pearson"]["per_run"], getattr(full, split)["pearson"]["per_run"]
        np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-4)
