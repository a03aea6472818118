"""mindlib.isg: leave-one-subject-out, swap ISG and few-shot calibration on a tiny planted problem."""

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mindlib import isg, train
from mindlib.train import TrainConfig
from tests.stand_ins import MODALITIES, TinyDecoder, V, planted_records, planted_weights

SUBJECTS = ("sub-01", "sub-02", "sub-03")
SPLITS = {"train": ("s01e01a", "s01e01b", "bourne01"), "val": ("s01e02a",), "test": ("s01e03a",)}


def make_split_records(n_trs=40, noise=0.5, seed=0):
    """{split: records} with fmri = Σ_m X_m W_m · gain_s + bias_s + noise (shared W: subjects generalise)."""
    rng = np.random.default_rng(seed)
    weights = planted_weights(rng)
    return {
        split: planted_records(
            SUBJECTS, runs, weights, rng, n_trs=n_trs, noise=noise, gain_step=0.3, bias_step=0.5
        )
        for split, runs in SPLITS.items()
    }


CFG = TrainConfig(epochs=4, batch_size=4, window=16, stride=8, lr=5e-2, device="cpu", progress=False)
CALIB = TrainConfig(epochs=3, batch_size=2, window=16, stride=8, lr=5e-2, device="cpu", progress=False)


@pytest.fixture(scope="module")
def splits():
    return make_split_records()


def test_remap_subjects(splits):
    recs = splits["train"]
    out = isg.remap_subjects(recs, ["sub-03", "sub-01"])
    assert {(r.subject, r.subject_index) for r in out} == {("sub-03", 0), ("sub-01", 1)}
    assert len(out) == 2 * len(SPLITS["train"])
    kept = [r for r in recs if r.subject in ("sub-01", "sub-03")]
    assert all(a.fmri is b.fmri and a.run == b.run for a, b in zip(out, kept))  # arrays shared
    assert [r.subject_index for r in recs[:3]] == [0, 1, 2]  # inputs untouched
    with pytest.raises(ValueError, match="sub-07"):
        isg.remap_subjects(recs, ["sub-07"])
    assert isg.subjects_of(recs) == SUBJECTS


def test_loso_end_to_end(splits):
    result = isg.loso(lambda n: TinyDecoder(n_subjects=n), splits, held_out="sub-02", config=CFG)
    assert result.subjects == ("sub-01", "sub-03", "sub-02")
    assert result.subject_index == 2 and result.model.n_subjects == 3
    assert set(result.scores["pearson"]["per_subject"]) == {"sub-02"}
    assert result.scores["pearson"]["mean"] > 0.5  # shared W: the population slot generalises
    assert set(result.trained_scores["pearson"]["per_subject"]) == {"sub-01", "sub-03"}
    assert len(result.train_result.history) == CFG.epochs
    assert not any(m.training for m in result.model.modules())  # handed back in eval mode
    with pytest.raises(ValueError, match="sub-09"):
        isg.loso(lambda n: TinyDecoder(n_subjects=n), splits, held_out="sub-09", config=CFG)


def test_cross_subject_swap_table(splits):
    torch.manual_seed(0)
    model = train.fit(TinyDecoder(n_subjects=len(SUBJECTS)), splits["train"], splits["val"], CFG).model
    out = isg.cross_subject_swap(model, splits["test"], window=16)
    assert isinstance(out.table, pd.DataFrame)
    assert list(out.table.columns) == ["true_subject", "used_subject", "r"]
    assert len(out.table) == len(SUBJECTS) ** 2
    assert set(zip(out.table.true_subject, out.table.used_subject)) == {
        (a, b) for a in SUBJECTS for b in SUBJECTS
    }
    off = out.table[out.table.true_subject != out.table.used_subject]["r"].mean()
    assert out.swap_isg == pytest.approx(off) and np.isfinite(out.diagonal)
    with pytest.raises(ValueError, match="two subjects"):
        isg.cross_subject_swap(model, [r for r in splits["test"] if r.subject == "sub-01"])


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _check_only_row_changed(model, before, subject_names, row):
    for name, p in model.named_parameters():
        if name in subject_names:
            others = [i for i in range(p.shape[0]) if i != row]
            assert torch.equal(p[others], before[name][others]), name
            assert not torch.equal(p[row], before[name][row]), name
        else:
            assert torch.equal(p, before[name]), name


def test_calibrate_subject_changes_only_the_new_rows(splits):
    torch.manual_seed(0)
    model = TinyDecoder(n_subjects=2)
    new = model.add_subject()
    calib = [r for r in splits["train"] if r.subject == "sub-03"]
    before = _snapshot(model)
    grads_before = {name: p.requires_grad for name, p in model.named_parameters()}
    loss_before = _calib_loss(model, calib, new)
    out = isg.calibrate_subject(model, new, calib, minutes=1.0, config=CALIB)
    assert out is model
    assert not any(m.training for m in model.modules())  # handed back in eval mode
    _check_only_row_changed(model, before, {"subject_gain", "subject_bias"}, new)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads_before
    assert _calib_loss(model, calib, new) < loss_before
    # minutes = 0: the population initialisation, untouched
    same = isg.calibrate_subject(model, new, calib, minutes=0, config=CALIB)
    assert same is model
    with pytest.raises(ValueError, match="one subject"):
        isg.calibrate_subject(model, new, splits["train"], minutes=1.0, config=CALIB)


def _calib_loss(model, records, index):
    recs = [replace(r, subject_index=index) for r in records]
    preds = train.predict_runs(model, recs, window=16)
    return float(np.mean([np.mean((p[r.valid] - r.fmri[r.valid]) ** 2) for r, p in zip(recs, preds)]))


def test_first_minutes_takes_runs_in_order(splits):
    calib = [r for r in splits["train"] if r.subject == "sub-01"]  # runs of 40, 41, 42 TRs
    taken, n_trs = isg._first_minutes(calib, minutes=1.5, tr_s=1.49)  # round(90 / 1.49) = 60 TRs
    assert n_trs == 60
    assert [(r.run, r.fmri.shape[0]) for r in taken] == [("bourne01", 42), ("s01e01a", 18)]
    assert all(len(r.valid) == len(r.fmri) == len(r.features["text"]) for r in taken)


def test_calibrate_mind_touches_only_the_new_subject():
    models = pytest.importorskip("mindlib.models")
    from mindlib.afire import AFIREConfig

    recs = make_split_records(n_trs=30)["train"]
    torch.manual_seed(0)
    model = models.build_model(
        "mind", AFIREConfig(modalities=MODALITIES, d_model=8), n_subjects=2, n_parcels=V, n_experts=4
    )
    model.eval()
    new = model.add_subject()
    assert not any(m.training for m in model.modules())  # the new embedding keeps the model's mode
    subject_ids = {id(p) for p in model.subject_parameters()}
    names = {name for name, p in model.named_parameters() if id(p) in subject_ids}
    assert names, "MIND exposes its subject parameters"
    before = _snapshot(model)
    isg.calibrate_subject(model, new, [r for r in recs if r.subject == "sub-03"], minutes=1.0, config=CALIB)
    _check_only_row_changed(model, before, names, new)


def test_draw_minutes_is_random_consecutive_and_reproducible(splits):
    calib = [r for r in splits["train"] if r.subject == "sub-03"]  # runs of 40, 41, 42 TRs
    a = isg._draw_minutes(calib, 60, np.random.default_rng(0))
    assert sum(p.fmri.shape[0] for p in a) == 60 and len({p.run for p in a}) == len(a)
    b = isg._draw_minutes(calib, 60, np.random.default_rng(0))
    assert [(p.run, p.fmri.shape[0]) for p in a] == [(p.run, p.fmri.shape[0]) for p in b]
    draws = {
        tuple((p.run, p.fmri.shape[0]) for p in isg._draw_minutes(calib, 30, np.random.default_rng(s)))
        for s in range(8)
    }
    assert len(draws) > 2  # different starts and run orders
    head, tail = isg._split_tail(a, 15)
    assert sum(p.fmri.shape[0] for p in tail) == 15 and sum(p.fmri.shape[0] for p in head) == 45
    joined = np.concatenate([p.fmri for p in head + tail])
    np.testing.assert_array_equal(joined, np.concatenate([p.fmri for p in a]))


def test_few_shot_protocol_chooses_the_strength_on_held_out_minutes(splits):
    torch.manual_seed(0)
    model = isg.loso(
        lambda n: TinyDecoder(n_subjects=n), splits, held_out="sub-03", config=CFG, score_trained=False
    ).model
    calib = [r for r in splits["train"] if r.subject == "sub-03"]
    held = [r for r in splits["test"] if r.subject == "sub-03"]
    before = _snapshot(model)
    curve = isg.few_shot_protocol(
        model, 2, calib, held, [0, 1.0], n_draws=2, epochs_grid=(0, 1, 3), config=CALIB
    )
    assert list(curve.columns) == [
        "minutes",
        "draw",
        "n_trs",
        "n_holdout_trs",
        "epochs",
        "holdout_r",
        "r",
        "algonauts",
    ]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # deep copies only
    zero = curve[curve.minutes == 0]
    population = train.evaluate(model, [replace(r, subject_index=2) for r in held], window=16)["pearson"][
        "mean"
    ]
    assert zero.r.tolist() == pytest.approx([population] * 2)
    one = curve[curve.minutes == 1.0]
    assert (one.n_trs + one.n_holdout_trs == 40).all() and (one.n_holdout_trs == 10).all()
    # the strength kept is the best on the held-out minutes: each epoch count calibrated afresh by hand
    fit_part, held_out = isg._split_tail(isg._draw_minutes(calib, 40, np.random.default_rng([0, 0, 40])), 10)
    fresh = {}
    for k in (0, 1, 3):
        m = copy.deepcopy(model)
        if k:
            isg.calibrate_subject(m, 2, fit_part, minutes=30 * 1.49 / 60, config=replace(CALIB, epochs=k))
        fresh[k] = (
            isg._mean_r(held_out, train.predict_runs(m, held_out, window=16, stride=8)),
            train.evaluate(m, [replace(r, subject_index=2) for r in held], window=16, stride=8)["pearson"][
                "mean"
            ],
        )
    k_best = max(fresh, key=lambda k: (fresh[k][0], -k))
    assert one.epochs.iloc[0] == k_best
    assert one.holdout_r.iloc[0] == pytest.approx(fresh[k_best][0], abs=1e-6)
    assert one.r.iloc[0] == pytest.approx(fresh[k_best][1], abs=1e-6)
    # a strength that wrecks the subject (a huge learning rate) is rejected on the held-out minutes
    wild = isg.few_shot_protocol(
        model,
        2,
        calib,
        held,
        [1.0],
        n_draws=1,
        epochs_grid=(0, 3),
        config=replace(CALIB, lr=1e3, grad_clip=None),
    )
    assert wild.epochs.tolist() == [0] and wild.r.iloc[0] == pytest.approx(population)
