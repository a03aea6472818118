"""Tests for mindlib.baselines: torch decoders by hand, population init, ridge against sklearn."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

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
from mindlib.mind import ModelOutput

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
