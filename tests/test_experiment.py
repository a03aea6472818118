"""The shared experiment protocol: selection on validation only, test touched once, save/load, ISG."""

import dataclasses
import typing
from dataclasses import replace

import numpy as np
import pytest
import torch

from mindlib import data, experiment, isg, metrics, models, sadgate, train
from mindlib.afire import AFIREConfig
from mindlib.baselines import MLPConfig, MMoEConfig
from mindlib.mind import MINDConfig
from mindlib.sadgate import SADGateConfig, SADGateOptions

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


def test_a_mistyped_choice_is_rejected_for_every_decoder():
    """mode is MIND's, but a typo is an error whatever the decoder, with the closest choice named."""
    for decoder in experiment.DECODERS:
        with pytest.raises(
            ValueError, match=r"ExperimentConfig\.mode .*got 'tokn' \(did you mean 'token'\?\)"
        ):
            experiment.ExperimentConfig(decoder=decoder, mode="tokn")
    with pytest.raises(ValueError, match=r"ExperimentConfig\.fusion .*'concat', 'sum', 'gated'.*got 'cat'"):
        experiment.ExperimentConfig(decoder="ridge", fusion="cat")
    with pytest.raises(
        ValueError, match=r"ExperimentConfig\.balance .*got 'swich' \(did you mean 'switch'\?\)"
    ):
        experiment.config_from_params(decoder="mlp", balance="swich")


# Where each ExperimentConfig default comes from: the module config field(s) it is passed to, or one of the
# experiment's named defaults. Every field is listed, so a new field must say where its default lives.
MODULE_DEFAULTS = {
    "mode": [(SADGateOptions, "mode"), (MINDConfig, "mode")],
    "n_experts": [(SADGateOptions, "n_experts"), (MINDConfig, "n_experts"), (MMoEConfig, "n_experts")],
    "top_k": [(SADGateOptions, "top_k"), (MINDConfig, "top_k")],
    "hidden": [(MLPConfig, "hidden"), (MMoEConfig, "hidden"), (MINDConfig, "expert_hidden")],
    "expert": [(MINDConfig, "expert")],
    "fusion": [(AFIREConfig, "fusion")],
    "temporal": [(AFIREConfig, "temporal")],
    "modality_dropout": [(AFIREConfig, "modality_dropout")],
    "batch_size": [(train.TrainConfig, "batch_size")],
    "window": [(train.TrainConfig, "window"), (train.Prediction, "window")],
    "stride": [(train.TrainConfig, "stride")],
    "lambda_balance": [(MINDConfig, "lambda_balance")],
    "lambda_bias": [(MINDConfig, "lambda_bias")],
    "balance": [(SADGateOptions, "balance"), (MINDConfig, "balance")],
    "router_subject": [(SADGateOptions, "router_subject"), (MINDConfig, "router_subject")],
    "seed": [(train.TrainConfig, "seed")],
    "device": [(train.TrainConfig, "device")],
}
NAMED_DEFAULTS = {"d_model": "D_MODEL", "epochs": "EPOCHS", "progress": "PROGRESS"}
EXPERIMENT_ONLY = {
    "decoder": "mind",
    "lrs": (1e-3, 3e-3),
    "isg_subjects": (),
    "fir_lags_trs": (2, 3, 4),
    "ridge_components": 0,
}


def _default(cls, name):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def test_every_default_is_a_module_default_or_a_named_experiment_default():
    cfg = experiment.ExperimentConfig()
    names = {f.name for f in dataclasses.fields(cfg)}
    assert names == set(MODULE_DEFAULTS) | set(NAMED_DEFAULTS) | set(EXPERIMENT_ONLY) | {"weight_decays"}
    for name, sources in MODULE_DEFAULTS.items():
        for cls, field in sources:
            assert getattr(cfg, name) == _default(cls, field), (
                f"ExperimentConfig.{name} vs {cls.__name__}.{field}"
            )
    for name, constant in NAMED_DEFAULTS.items():
        assert getattr(cfg, name) == getattr(experiment, constant), name
    # the two on purpose different from fit()'s and AFIRE's own, as their comments say
    assert cfg.d_model != _default(AFIREConfig, "d_model") and cfg.epochs != _default(
        train.TrainConfig, "epochs"
    )
    assert cfg.weight_decays == (_default(train.TrainConfig, "weight_decay"),)
    # the observable defaults results and tests depend on
    assert (cfg.d_model, cfg.epochs, cfg.batch_size, cfg.window, cfg.stride, cfg.hidden) == (
        128,
        15,
        8,
        100,
        50,
        256,
    )
    assert (cfg.n_experts, cfg.top_k, cfg.mode, cfg.balance, cfg.weight_decays, cfg.progress) == (
        8,
        2,
        "both",
        "importance",
        (1e-2,),
        False,
    )
    assert {k: getattr(cfg, k) for k in EXPERIMENT_ONLY} == EXPERIMENT_ONLY


def test_mind_takes_the_gate_options_from_one_declaration(study):
    gate_fields = [f.name for f in dataclasses.fields(SADGateOptions)]
    mind_fields = {f.name: f for f in dataclasses.fields(MINDConfig)}
    for name in gate_fields:  # inherited, not redeclared: the same Field object, so the same default
        assert mind_fields[name] is next(f for f in dataclasses.fields(SADGateOptions) if f.name == name)
    model = experiment.build(
        experiment.ExperimentConfig(decoder="mind", top_k=1, mode="token", d_model=16), study
    )
    gate = model.config.gate_config()
    assert (gate.top_k, gate.mode, gate.d_model, gate.n_subjects) == (1, "token", 16, len(study.subjects))
    assert model.gate.config == gate


def test_choices_are_one_literal_each():
    """Each choice is one Literal; every config annotates its field with that object, the tuple is its args."""
    for cls in (SADGateConfig, MINDConfig, experiment.ExperimentConfig):
        assert typing.get_type_hints(cls)["mode"] is sadgate.Mode
        assert typing.get_type_hints(cls)["balance"] is sadgate.Balance
    assert sadgate.MODES == typing.get_args(sadgate.Mode) == ("both", "token", "prior")
    for name in ("fusion", "temporal"):
        assert (
            typing.get_type_hints(experiment.ExperimentConfig)[name]
            is typing.get_type_hints(AFIREConfig)[name]
        )
    assert (
        typing.get_type_hints(experiment.ExperimentConfig)["expert"]
        is typing.get_type_hints(MINDConfig)["expert"]
    )
    assert experiment.DECODERS == (*models.DECODERS, "ridge")
    assert tuple(models._REGISTRY) == models.DECODERS


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
        isg.loso_study(study, lambda n: experiment.build(cfg, study, n), "sub-04", cfg.train_config())


def test_ridge_uses_fir_delays_and_scores_the_same_trs(study):
    fir = data.with_lags(study, (2, 3, 4))
    assert fir.split == study.split and fir.subjects == study.subjects
    assert all(fir.feature_dims[m] == 3 * study.feature_dims[m] for m in study.modalities)
    assert data.with_lags(study, study.lags_trs) is study
    res = experiment.run(study, experiment.ExperimentConfig(decoder="ridge"))
    assert res.model.mean_[0].shape == (3 * sum(study.feature_dims.values()),)
    # scored on the study's valid TRs (lag 3), not on the smaller FIR mask (lag 4)
    rec = study.select("val")[0]
    fir_rec = next(r for r in fir.select("val") if (r.subject, r.run) == (rec.subject, rec.run))
    assert (~fir_rec.valid).sum() > (~rec.valid).sum()
    expected = metrics.pearson_r(rec.fmri, res.model.predict(fir_rec), mask=rec.valid)
    np.testing.assert_allclose(res.val["per_parcel"]["pearson"][(rec.subject, rec.run)], expected)


def test_ridge_with_pca_runs_the_bounded_design_and_rejects_a_negative_count(study):
    res = experiment.run(study, experiment.ExperimentConfig(decoder="ridge", ridge_components=3))
    assert res.extra["ridge_columns"] == 3 * 3 * len(study.modalities)  # 3 lags x 3 axes per modality
    assert np.isfinite(res.val["pearson"]["mean"]) and res.val["pearson"]["mean"] > 0
    with pytest.raises(ValueError, match="ridge_components"):
        experiment.ExperimentConfig(decoder="ridge", ridge_components=-1)
