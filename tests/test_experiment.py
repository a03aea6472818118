"""The shared experiment protocol: selection on validation only, test touched once, save/load, ISG."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mindlib import data, experiment, metrics, train

TINY = dict(d_model=16, epochs=2, batch_size=8, lrs=(1e-3, 1e-2), hidden=32, n_experts=4)


@pytest.fixture(scope="module")
def study(smoke_study):
    torch.set_num_threads(1)
    return data.load_study(smoke_study, "qwen")


def test_config_validates_and_filters_decoder_options():
    with pytest.raises(ValueError, match="decoder must be one of"):
        experiment.ExperimentConfig(decoder="transformer")
    with pytest.raises(ValueError, match="at least one value"):
        experiment.ExperimentConfig(lrs=())
    assert {"n_experts", "top_k", "mode"} <= set(
        experiment.ExperimentConfig(decoder="mind").decoder_options()
    )
    assert experiment.ExperimentConfig(decoder="baseline").decoder_options() == {}
    cfg = experiment.config_from_params(decoder="mmoe", lrs=[1e-3], unrelated="x", ignore=["unrelated"])
    assert cfg.lrs == (1e-3,) and cfg.decoder == "mmoe"
    with pytest.raises(ValueError, match=r"'lrss' \(did you mean 'lrs'\?\)"):
        experiment.config_from_params(decoder="mmoe", lrss=[1e-3])


def test_selection_ignores_the_test_runs(study):
    """Scrambling the test fMRI changes test scores but not a single selection decision."""
    cfg = experiment.ExperimentConfig(decoder="mind", **TINY)
    clean = experiment.run(study, cfg)
    rng = np.random.default_rng(0)
    scrambled_records = [
        replace(r, fmri=rng.standard_normal(r.fmri.shape).astype(np.float32))
        if study.split.of(r.run) == "test"
        else r
        for r in study.records
    ]
    scrambled = experiment.run(replace(study, records=scrambled_records), cfg)
    assert clean.grid.equals(scrambled.grid)
    assert clean.summary()["val_r"] == scrambled.summary()["val_r"]
    assert clean.summary()["test_r"] != scrambled.summary()["test_r"]
    # the grid picked the best validation cell, and the kept history is that cell's
    best = clean.grid.loc[clean.grid.best_val_r.idxmax()]
    assert max(h["val_r"] for h in clean.history) == pytest.approx(best.best_val_r)
    assert clean.summary()["best_lr"] == best.lr


def test_every_decoder_runs_through_one_protocol(study):
    for decoder in ("baseline", "mlp", "mmoe", "ridge"):
        res = experiment.run(study, experiment.ExperimentConfig(decoder=decoder, **{**TINY, "lrs": (3e-3,)}))
        s = res.summary()
        assert np.isfinite(s["val_r"]) and np.isfinite(s["test_r"]), decoder
        assert res.parcel_r("test").shape == (study.n_parcels,)


def test_save_and_load_reproduce_predictions(study, tmp_path):
    res = experiment.run(study, experiment.ExperimentConfig(decoder="mind", **{**TINY, "lrs": (3e-3,)}))
    experiment.save(res, tmp_path / "m.pt")
    model, cfg = experiment.load(tmp_path / "m.pt", study)
    assert cfg == res.config
    assert not res.model.training and not model.training  # both handed back in eval mode
    per_run = res.per_run_r("test")  # the paired units of mindlib.stats: one r per scored subject/run
    test = study.select("test")
    assert sorted(per_run) == sorted(f"{r.subject}/{r.run}" for r in test)
    rec = test[0]
    pred = train.predict_runs(model, [rec])[0][rec.valid]
    ref = np.mean([np.corrcoef(rec.fmri[rec.valid][:, v], pred[:, v])[0, 1] for v in range(pred.shape[1])])
    assert per_run[f"{rec.subject}/{rec.run}"] == pytest.approx(ref, abs=1e-5)
    val = study.select("val")[:1]
    np.testing.assert_allclose(
        train.predict_runs(model, val)[0], train.predict_runs(res.model, val)[0], atol=1e-6
    )
    with pytest.raises(ValueError, match="holds a 'qwen' model"):
        experiment.load(tmp_path / "m.pt", replace(study, backbone="tribe"))


def test_isg_scores_an_unseen_subject(study):
    cfg = experiment.ExperimentConfig(decoder="mind", isg_subjects=("sub-02",), **{**TINY, "lrs": (3e-3,)})
    s = experiment.run(study, cfg).summary()
    assert np.isfinite(s["isg_r"]) and set(s["isg_per_subject"]) == {"sub-02"}
    with pytest.raises(ValueError, match="not a subject"):
        experiment.loso_run(study, cfg, "sub-04")


def test_noise_ceiling_fraction_is_mean_ratio():
    res = experiment.ExperimentResult(
        experiment.ExperimentConfig(),
        "x",
        None,
        None,
        [],
        val={},
        seconds=0.0,
        n_params=0,
        test={"pearson": {"per_subject": {"sub-01": 0.2, "sub-02": 0.3}}},
    )
    ceilings = {"sub-01": np.array([0.4, 0.4]), "sub-02": np.array([0.5, 0.7])}
    assert experiment.noise_ceiling_fraction(res, ceilings) == pytest.approx((0.2 / 0.4 + 0.3 / 0.6) / 2)


def test_ridge_uses_fir_delays_and_scores_the_same_trs(study):
    fir = experiment.with_lags(study, (2, 3, 4))
    assert fir.split == study.split and fir.subjects == study.subjects
    assert all(fir.feature_dims[m] == 3 * study.feature_dims[m] for m in study.modalities)
    assert experiment.with_lags(study, study.lags_trs) is study
    res = experiment.run(study, experiment.ExperimentConfig(decoder="ridge"))
    assert res.model.mean_[0].shape == (3 * sum(study.feature_dims.values()),)
    # scored on the study's valid TRs (lag 3), not on the smaller FIR mask (lag 4)
    rec = study.select("val")[0]
    fir_rec = next(r for r in fir.select("val") if (r.subject, r.run) == (rec.subject, rec.run))
    assert (~fir_rec.valid).sum() > (~rec.valid).sum()
    expected = metrics.pearson_r(rec.fmri, res.model.predict(fir_rec), mask=rec.valid)
    np.testing.assert_allclose(res.val["per_parcel"]["pearson"][(rec.subject, rec.run)], expected)
