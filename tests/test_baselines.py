"""Tests for mindlib.baselines: torch decoders by hand, population init, ridge against sklearn."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from mindlib.afire import AFIREConfig
from mindlib.baselines import (
    BaselineConfig,
    BaselineDecoder,
    MLPConfig,
    MLPDecoder,
    MMoEConfig,
    MMoEDecoder,
    RidgeEncoder,
)
from mindlib.decoder import ModelOutput

MODS = {"video": 10, "text": 6}
B, T, D, V, S = 3, 9, 8, 5, 3


def afire_cfg(**kw):
    return AFIREConfig(MODS, d_model=D, max_len=16, dropout=0.0, **kw)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, T, f, generator=g) for m, f in MODS.items()}, torch.tensor([2, 0, 2])


DECODERS = [
    (BaselineDecoder, lambda: BaselineConfig(afire_cfg(), S, V, dropout=0.0)),
    (MLPDecoder, lambda: MLPConfig(afire_cfg(), S, V, hidden=6, dropout=0.0)),
    (MMoEDecoder, lambda: MMoEConfig(afire_cfg(), S, V, n_experts=3, hidden=6, dropout=0.0)),
]


@pytest.mark.parametrize("cls,cfg", DECODERS)
def test_shapes_and_output(cls, cfg):
    torch.manual_seed(0)
    model = cls(cfg()).eval()
    feats, subj = batch()
    out = model(feats, subj)
    assert isinstance(out, ModelOutput) and out.gate is None
    assert out.pred.shape == (B, T, V) and out.aux_loss.shape == () and out.aux_loss.item() == 0.0
    out = model(feats, subj, torch.tensor([[True, False], [False, True], [True, True]]))
    assert torch.isfinite(out.pred).all()
    with pytest.raises(ValueError):
        model(feats, torch.tensor([0, 1, S]))


@pytest.mark.parametrize(
    "cfg",
    [
        lambda: BaselineConfig(afire_cfg(), 0, V),
        lambda: MLPConfig(afire_cfg(), S, V, hidden=0),
        lambda: MMoEConfig(afire_cfg(), S, V, n_experts=0),
        lambda: BaselineConfig(afire_cfg(), S, V, dropout=1.0),
    ],
)
def test_configs_validate(cfg):
    with pytest.raises(ValueError):
        cfg()


def test_baseline_by_hand():
    torch.manual_seed(0)
    model = BaselineDecoder(BaselineConfig(afire_cfg(), S, V, dropout=0.0)).eval()
    feats, subj = batch()
    out = model(feats, subj).pred
    x = model.afire(feats)
    for b, s in enumerate(subj.tolist()):
        expected = x[b] @ model.head_weight[s] + model.head_bias[s]
        torch.testing.assert_close(out[b], expected)


def test_mmoe_by_hand():
    torch.manual_seed(0)
    model = MMoEDecoder(MMoEConfig(afire_cfg(), S, V, n_experts=3, hidden=6, dropout=0.0)).eval()
    with torch.no_grad():
        model.gate_bias.normal_()
    feats, subj = batch()
    out = model(feats, subj).pred
    x = model.afire(feats)
    for b, s in enumerate(subj.tolist()):
        for t in (0, T - 1):
            g = torch.softmax(x[b, t] @ model.gate_weight[s] + model.gate_bias[s], dim=0)
            h = sum(g[e] * torch.nn.functional.gelu(x[b, t] @ model.w1[e] + model.b1[e]) for e in range(3))
            expected = h @ model.readout_weight[s] + model.readout_bias[s]
            torch.testing.assert_close(out[b, t], expected, rtol=1e-5, atol=1e-6)


def test_mlp_by_hand():
    torch.manual_seed(0)
    model = MLPDecoder(MLPConfig(afire_cfg(), S, V, hidden=6, dropout=0.0)).eval()
    feats, subj = batch()
    out = model(feats, subj).pred
    x = model.afire(feats) + model.subject_embedding.weight[subj][:, None]
    torch.testing.assert_close(out, model.mlp(x))


@pytest.mark.parametrize("cls,cfg", DECODERS)
def test_add_subject_population_init(cls, cfg):
    torch.manual_seed(0)
    model = cls(cfg()).eval()
    before = [p.detach().clone() for p in model.subject_parameters()]
    new = model.add_subject()
    assert new == S and model.n_subjects == S + 1 and model.config.n_subjects == S + 1
    after = model.subject_parameters()
    assert len(after) == len(before)
    for old, p in zip(before, after):
        assert p.shape[0] == S + 1 and isinstance(p, torch.nn.Parameter)
        torch.testing.assert_close(p[:S], old)
        torch.testing.assert_close(p[S], old.mean(0))
    feats, _ = batch()
    out = model(feats, torch.full((B,), new))
    assert torch.isfinite(out.pred).all()


def test_new_subject_uses_mean_head():
    torch.manual_seed(0)
    model = BaselineDecoder(BaselineConfig(afire_cfg(), S, V, dropout=0.0)).eval()
    W, b = model.head_weight.detach().mean(0), model.head_bias.detach().mean(0)
    new = model.add_subject()
    feats, _ = batch()
    out = model(feats, torch.full((B,), new)).pred
    torch.testing.assert_close(out, model.afire(feats) @ W + b)


# ------------------------------------------------------------------------------------------- ridge


@dataclass
class Rec:  # RunRecord-like
    subject_index: int
    run: str
    fmri: np.ndarray
    features: dict
    valid: np.ndarray


def planted(seed=0, n_runs=4, n_trs=60, noise=0.05, subjects=(0,), F=(6, 4), n_parcels=V):
    rng = np.random.default_rng(seed)
    maps = {s: rng.normal(size=(sum(F), n_parcels)) for s in subjects}
    records = []
    for s in subjects:
        for r in range(n_runs):
            X = rng.normal(size=(n_trs, sum(F))).astype(np.float32)
            Y = X @ maps[s] + noise * rng.normal(size=(n_trs, n_parcels))
            feats = {"a": X[:, : F[0]], "b": X[:, F[0] :]}
            valid = np.ones(n_trs, dtype=bool)
            valid[:3] = False
            records.append(Rec(s, f"run{r}", Y.astype(np.float32), feats, valid))
    return records


def test_ridge_matches_sklearn():
    records = planted(noise=1.0, n_runs=3, n_trs=30)
    alpha = 10.0
    enc = RidgeEncoder(alphas=[alpha], dtype="float64").fit(records[:2])
    X = np.concatenate([np.concatenate([r.features["a"], r.features["b"]], 1)[r.valid] for r in records[:2]])
    Y = np.concatenate([r.fmri[r.valid] for r in records[:2]])
    mean, std = X.mean(0), X.std(0)
    ref = Ridge(alpha=alpha).fit((X - mean) / std, Y)
    test = records[2]
    Xt = np.concatenate([test.features["a"], test.features["b"]], 1)
    expected = ref.predict((Xt - mean) / std)
    pred = enc.predict(test)
    assert pred.shape == (30, V) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(enc.best_alphas_[0], np.full(V, alpha))


def _design(recs):
    X = np.concatenate([np.concatenate([r.features["a"], r.features["b"]], 1)[r.valid] for r in recs])
    Y = np.concatenate([r.fmri[r.valid] for r in recs])
    runs = np.concatenate([np.full(int(r.valid.sum()), i) for i, r in enumerate(recs)])
    return X.astype(np.float64), Y.astype(np.float64), runs


def _mean_run_r2(pred, Y, runs):
    return np.mean(
        [r2_score(Y[runs == g], pred[runs == g], multioutput="raw_values") for g in np.unique(runs)], axis=0
    )


def noisy_parcels(seed=0, n_runs=5, n_trs=40, F=(6, 4), n_parcels=6):
    """Planted maps with noise growing 100-fold across parcels, so the best penalty differs by parcel."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(sum(F), n_parcels))
    noise = np.logspace(-1, 1, n_parcels)
    recs = []
    for r in range(n_runs):
        X = rng.normal(size=(n_trs, sum(F)))
        Y = X @ W + noise * rng.normal(size=(n_trs, n_parcels))
        valid = np.ones(n_trs, dtype=bool)
        valid[:2] = False
        recs.append(Rec(0, f"run{r}", Y, {"a": X[:, : F[0]], "b": X[:, F[0] :]}, valid))
    return recs


ALPHAS = [1e-1, 1.0, 10.0, 100.0, 1e3, 1e4]


def _sklearn_reference(train, alphas, score):
    """Per-parcel best alpha by ``score(alpha) -> (V,)``, then sklearn Ridge refitted on all training TRs."""
    X, Y, _ = _design(train)
    mean, std = X.mean(0), X.std(0)
    best = np.asarray(alphas)[np.argmax([score(a, mean, std) for a in alphas], axis=0)]
    coef = np.stack([Ridge(alpha=a).fit((X - mean) / std, Y[:, v]).coef_ for v, a in enumerate(best)], axis=1)
    intercept = np.array(
        [Ridge(alpha=a).fit((X - mean) / std, Y[:, v]).intercept_ for v, a in enumerate(best)]
    )
    return (
        best,
        lambda rec: (
            (np.concatenate([rec.features["a"], rec.features["b"]], 1) - mean) / std @ coef + intercept
        ),
    )


def test_ridge_cross_validation_matches_sklearn_brute_force():
    from sklearn.model_selection import GroupKFold

    recs = noisy_parcels()
    train, test = recs[:4], recs[4]
    X, Y, runs = _design(train)

    def cv_score(alpha, mean, std):
        Xs = (X - mean) / std
        folds = []
        for tr, te in GroupKFold(n_splits=3).split(Xs, groups=runs):
            pred = Ridge(alpha=alpha).fit(Xs[tr], Y[tr]).predict(Xs[te])
            folds.append(_mean_run_r2(pred, Y[te], runs[te]))
        return np.mean(folds, axis=0)

    best, predict = _sklearn_reference(train, ALPHAS, cv_score)
    assert len(set(best)) > 1  # the parcels disagree, so the per-parcel choice is exercised
    enc = RidgeEncoder(alphas=ALPHAS, n_folds=3, dtype="float64").fit(train)
    assert enc.selected_on_ == "cross-validation"
    np.testing.assert_allclose(enc.best_alphas_[0], best)
    np.testing.assert_allclose(enc.predict(test), predict(test), rtol=1e-4, atol=1e-4)


def test_ridge_selects_alphas_on_validation_runs():
    recs = noisy_parcels(seed=1)
    train, val, test = recs[:3], recs[3:4] + recs[4:], recs[4]
    Xv, Yv, vruns = _design(val)
    X, Y, _ = _design(train)

    def val_score(alpha, mean, std):
        pred = Ridge(alpha=alpha).fit((X - mean) / std, Y).predict((Xv - mean) / std)
        return _mean_run_r2(pred, Yv, vruns)

    best, predict = _sklearn_reference(train, ALPHAS, val_score)
    assert len(set(best)) > 1
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(train, val)
    assert enc.selected_on_ == "validation"
    np.testing.assert_allclose(enc.best_alphas_[0], best)
    scores = np.stack([val_score(a, X.mean(0), X.std(0)) for a in ALPHAS])  # (n_alphas, V), sklearn
    np.testing.assert_allclose(enc.scores_[0], scores, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(enc.predict(test), predict(test), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no validation records"):
        RidgeEncoder(alphas=ALPHAS, n_subjects=2).fit(
            train + [Rec(1, "x", train[0].fmri, train[0].features, train[0].valid)], val
        )


def test_ridge_with_more_features_than_trs_matches_sklearn():
    rng = np.random.default_rng(3)
    n, F_a, F_b = 25, 30, 20
    X = rng.normal(size=(n, F_a + F_b))
    Y = rng.normal(size=(n, V))
    rec = Rec(0, "run0", Y, {"a": X[:, :F_a], "b": X[:, F_a:]}, np.ones(n, dtype=bool))
    enc = RidgeEncoder(alphas=[3.0], dtype="float64").fit([rec])
    Xs = (X - X.mean(0)) / X.std(0)
    np.testing.assert_allclose(
        enc.predict(rec), Ridge(alpha=3.0).fit(Xs, Y).predict(Xs), rtol=1e-4, atol=1e-4
    )
    assert enc.n_params == (F_a + F_b) * V + V


def test_ridge_recovers_planted_map_per_subject():
    records = planted(subjects=(0, 1), n_runs=4)
    train = [r for r in records if r.run != "run3"]
    test = [r for r in records if r.run == "run3"]
    enc = RidgeEncoder(n_folds=3).fit(train)
    assert set(enc.best_alphas_) == {0, 1}
    assert enc.best_alphas_[0].shape == (V,)
    for rec in test:
        pred = enc.predict(rec)
        r = [np.corrcoef(pred[:, v], rec.fmri[:, v])[0, 1] for v in range(V)]
        assert min(r) > 0.9
    # subject 1's model differs from subject 0's (per-subject fits)
    assert not np.allclose(
        enc.predict(test[0]), enc.predict(Rec(1, "x", test[0].fmri, test[0].features, test[0].valid))
    )


def test_ridge_ignores_invalid_trs():
    records = planted(n_runs=3, n_trs=30)
    enc = RidgeEncoder(alphas=[1.0, 100.0]).fit(records)
    corrupted = [Rec(r.subject_index, r.run, r.fmri.copy(), r.features, r.valid) for r in records]
    for r in corrupted:
        r.fmri[~r.valid] = 1e6
    enc2 = RidgeEncoder(alphas=[1.0, 100.0]).fit(corrupted)
    np.testing.assert_allclose(enc.predict(records[0]), enc2.predict(records[0]), rtol=1e-5, atol=1e-5)


def test_ridge_errors():
    records = planted(subjects=(0,), n_runs=2, n_trs=20)
    with pytest.raises(ValueError, match="subject index 1"):
        RidgeEncoder(n_subjects=2).fit(records)
    with pytest.raises(ValueError):
        RidgeEncoder().fit([])
    with pytest.raises(ValueError):
        RidgeEncoder(alphas=[-1.0])
    with pytest.raises(ValueError, match="before fit"):
        RidgeEncoder().predict(records[0])
    enc = RidgeEncoder(alphas=[1.0]).fit(records)
    with pytest.raises(ValueError, match="not fitted"):
        enc.predict(Rec(3, "x", records[0].fmri, records[0].features, records[0].valid))
    with pytest.raises(ValueError, match="lacks modalities"):
        enc.predict(Rec(0, "x", records[0].fmri, {"a": records[0].features["a"]}, records[0].valid))
