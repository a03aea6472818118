"""Tests for mindlib.afire: config validation, shapes, fusion by hand, missing modalities, time."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindlib import afire
from mindlib.afire import AFIRE, AFIREConfig, aggregate_frames
from mindlib.align import align_features, overlap_matrix

MODS = {"video": 12, "audio": 5, "text": 7}  # name -> F_m
B, T, D = 3, 16, 8


def make_features(seed=0, b=B, t=T):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(b, t, dim, generator=g) for name, dim in MODS.items()}


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("d_model", D)
    kw.setdefault("max_len", 32)
    kw.setdefault("dropout", 0.0)
    return AFIRE(AFIREConfig(MODS, **kw)).eval()


def test_config_accepts_dict_and_tuple():
    cfg = AFIREConfig(MODS)
    assert cfg.modalities == (("video", 12), ("audio", 5), ("text", 7))
    assert cfg.names == ("video", "audio", "text") and cfg.n_modalities == 3
    assert AFIREConfig(tuple(MODS.items())) == cfg
    hash(cfg)  # frozen and hashable


@pytest.mark.parametrize(
    "kw",
    [
        {"fusion": "mean"},
        {"projector": "conv"},
        {"temporal": "lstm"},
        {"d_model": 0},
        {"context_trs": -1},
        {"max_len": 0},
        {"dropout": 1.0},
        {"modality_dropout": -0.1},
        {"temporal": "transformer", "d_model": 10, "n_heads": 4},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        AFIREConfig(MODS, **kw)


def test_config_rejects_bad_modalities():
    with pytest.raises(ValueError):
        AFIREConfig({})
    with pytest.raises(ValueError):
        AFIREConfig((("a", 3), ("a", 4)))
    with pytest.raises(ValueError):
        AFIREConfig({"a": 0})


@pytest.mark.parametrize(
    "projector,fusion,temporal",
    list(itertools.product(afire.PROJECTORS, afire.FUSIONS, afire.TEMPORALS)),
)
def test_shapes_every_mode(projector, fusion, temporal):
    model = make(projector=projector, fusion=fusion, temporal=temporal, n_heads=2, n_layers=1)
    out = model(make_features())
    assert out.shape == (B, T, D)
    assert torch.isfinite(out).all()
    model.train()
    out = model(make_features())
    out.sum().backward()


@pytest.mark.parametrize("fusion", afire.FUSIONS)
@pytest.mark.parametrize("temporal", afire.TEMPORALS)
def test_missing_modality_inference(fusion, temporal):
    model = make(fusion=fusion, temporal=temporal, n_heads=2, n_layers=1)
    feats = make_features()
    mask = torch.tensor([[True, False, True], [False, False, True], [True, True, True]])
    out = model(feats, mask)
    assert out.shape == (B, T, D) and torch.isfinite(out).all()
    # an absent modality has no influence on its row
    feats2 = dict(feats, video=feats["video"] + 100.0)
    out2 = model(feats2, mask)
    torch.testing.assert_close(out2[1], out[1])
    assert not torch.allclose(out2[0], out[0])
    # a modality left out of the dict is absent everywhere
    out3 = model({k: v for k, v in feats.items() if k != "audio"})
    out4 = model(feats, torch.tensor([[True, False, True]] * B))
    torch.testing.assert_close(out3, out4)


def test_all_absent_row_raises():
    model = make()
    mask = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        model(make_features(), mask)
    with pytest.raises(ValueError):
        model({})
    with pytest.raises(ValueError, match="unknown"):
        model(dict(make_features(), depth=torch.zeros(B, T, 2)))
    with pytest.raises(ValueError, match="F_m=12"):
        model(dict(make_features(), video=torch.zeros(B, T, 3)))


def test_too_long_window_names_fix():
    model = make(max_len=10)
    with pytest.raises(ValueError, match="max_len"):
        model(make_features(t=11))
    make(max_len=10, temporal="none")(make_features(t=11))  # no positions, no limit


def _ln(x):
    return F.layer_norm(x, x.shape[-1:])


def test_sum_fusion_by_hand():
    model = make(fusion="sum", temporal="none")
    feats = make_features()
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, True]])
    with torch.no_grad():
        out = model(feats, mask)
        proj = torch.stack([model.projectors[m](feats[n]) for m, n in enumerate(MODS)], dim=2)  # (B, T, M, d)
        expected = []
        for b in range(B):
            present = mask[b]
            expected.append(proj[b][:, present].sum(dim=1) * 3 / present.sum())
        torch.testing.assert_close(out, _ln(torch.stack(expected)))


def test_gated_fusion_by_hand():
    model = make(fusion="gated", temporal="none")
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    feats = make_features()
    mask = torch.tensor([[True, False, True], [True, True, True], [False, True, False]])
    with torch.no_grad():
        out = model(feats, mask)
        proj = torch.stack([model.projectors[m](feats[n]) for m, n in enumerate(MODS)], dim=2)
        logits = np.array([0.5, -1.0, 2.0])
        expected = []
        for b in range(B):
            present = mask[b].numpy()
            w = np.where(present, np.exp(logits), 0.0)
            w = torch.tensor(w / w.sum(), dtype=torch.float32)
            expected.append(torch.einsum("tmd,m->td", proj[b], w))
        torch.testing.assert_close(out, _ln(torch.stack(expected)))


def test_concat_fusion_by_hand():
    model = make(fusion="concat", temporal="none")
    feats = make_features()
    mask = torch.tensor([[True, False, True]] * B)
    with torch.no_grad():
        out = model(feats, mask)
        parts = [model.projectors[m](feats[n]) * float(mask[0, m]) for m, n in enumerate(MODS)]
        expected = _ln(model.fuse(torch.cat(parts, dim=-1)))
    torch.testing.assert_close(out, expected)


def test_temporal_mlp_is_local():
    """A change at TR t reaches only TRs within ±context_trs through the temporal MLP."""
    c = 2
    model = make(temporal="mlp", context_trs=c, fusion="sum")
    feats = make_features()
    t0 = 7
    feats2 = {k: v.clone() for k, v in feats.items()}
    feats2["text"][:, t0] += 5.0
    with torch.no_grad():
        diff = (model(feats2) - model(feats)).abs().amax(dim=(0, 2))  # (T,)
    changed = torch.nonzero(diff > 1e-6).flatten().tolist()
    assert changed == list(range(t0 - c, t0 + c + 1))


def test_modality_dropout_never_drops_all():
    model = make(modality_dropout=0.9).train()
    present = torch.ones(2000, 3, dtype=torch.bool)
    present[::2, 0] = False
    torch.manual_seed(1)
    keep = model._drop_modalities(present)
    assert keep.any(dim=1).all()
    assert not (keep & ~present).any()  # only present modalities are kept
    assert (keep.sum(dim=1) == 1).float().mean() > 0.8  # p=0.9: most rows keep a single modality
    model = make(modality_dropout=0.3).train()
    keep = model._drop_modalities(torch.ones(4000, 3, dtype=torch.bool))
    assert 0.26 < 1 - keep.float().mean() < 0.32  # rate ≈ p, minus the rare all-dropped rescues
    model.eval()
    assert torch.equal(model._drop_modalities(present), present)


def test_modality_dropout_trains_finite():
    model = make(modality_dropout=0.5, fusion="gated").train()
    out = model(make_features())
    assert torch.isfinite(out).all()


def test_aggregate_frames_matches_align():
    rng = np.random.default_rng(0)
    n_frames, n_trs = 40, 26
    frames = rng.normal(size=(n_frames, 6)).astype(np.float32)
    tokens, _ = align_features(frames, n_trs, lags_trs=(0,))
    W = overlap_matrix(n_trs, n_frames)
    out = aggregate_frames(torch.from_numpy(frames)[None].repeat(2, 1, 1), W)
    assert out.shape == (2, n_trs, 6)
    np.testing.assert_allclose(out[1].numpy(), tokens, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        aggregate_frames(torch.zeros(1, 5, 2), np.zeros((3, 4)))


def test_same_seed_same_output():
    feats = make_features()
    a = make(seed=3, temporal="transformer", n_heads=2)(feats)
    b = make(seed=3, temporal="transformer", n_heads=2)(feats)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
