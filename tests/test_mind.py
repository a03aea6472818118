"""Tests for mindlib.mind: shapes, sparse == dense, gradients, E=1 reduction, aux loss, new subjects.

The whole model with the sparse dispatch against the same weights with the dense formula, forward and
every gradient; the expert bank's own checks are in tests/test_experts.py.
"""

import pytest
import torch
import torch.nn.functional as F

from mindlib.afire import AFIREConfig
from mindlib.decoder import ModelOutput
from mindlib.mind import MIND, MINDConfig
from mindlib.sadgate import balance_loss, bias_penalty
from tests.stand_ins import spy_on_mix

MODS = {"video": 10, "text": 6}
B, T, D, V, S = 3, 12, 8, 7, 3


def afire_cfg(**kw):
    kw.setdefault("d_model", D)
    kw.setdefault("max_len", 32)
    kw.setdefault("dropout", 0.0)
    return AFIREConfig(MODS, **kw)


def make(seed=0, afire=None, **kw):
    torch.manual_seed(seed)
    kw.setdefault("n_experts", 4)
    kw.setdefault("top_k", 2)
    kw.setdefault("expert_dropout", 0.0)
    kw.setdefault("expert_hidden", 5)
    return MIND(MINDConfig(afire or afire_cfg(), n_subjects=S, n_parcels=V, **kw)).eval()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(B, T, f, generator=g) for m, f in MODS.items()}
    return feats, torch.tensor([0, 2, 1]), torch.randn(B, T, V, generator=g)


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "mixed"},
        {"expert": "conv"},
        {"dispatch": "lazy"},
        {"top_k": 5},
        {"n_parcels": 0},
        {"expert_dropout": 1.5},
        {"lambda_balance": -1.0},
        {"balance": "l2"},
    ],
)
def test_config_rejects_bad_values(kw):
    base = dict(afire=afire_cfg(), n_subjects=S, n_parcels=V, n_experts=4)
    with pytest.raises(ValueError):
        MINDConfig(**{**base, **kw})
    with pytest.raises(TypeError):
        MINDConfig(afire={"video": 3}, n_subjects=S, n_parcels=V)


@pytest.mark.parametrize("expert", ["linear", "mlp"])
@pytest.mark.parametrize("mode", ["both", "token", "prior"])
@pytest.mark.parametrize("dispatch", ["sparse", "dense"])
def test_shapes(expert, mode, dispatch):
    model = make(expert=expert, mode=mode, dispatch=dispatch)
    feats, subj, _ = batch()
    out = model(feats, subj)
    assert isinstance(out, ModelOutput)
    assert out.pred.shape == (B, T, V) and out.gate.weights.shape == (B, T, 4)
    assert out.aux_loss.shape == () and torch.isfinite(out.aux_loss)


@pytest.mark.parametrize("expert", ["linear", "mlp"])
@pytest.mark.parametrize(
    "mode,prior_top_k", [("both", False), ("token", False), ("prior", True), ("prior", False)]
)
def test_sparse_equals_dense(expert, mode, prior_top_k):
    kw = dict(expert=expert, mode=mode, prior_top_k=prior_top_k, bias_init="normal", n_experts=5, top_k=2)
    sparse, dense = make(dispatch="sparse", **kw), make(dispatch="dense", **kw)
    dense.load_state_dict(sparse.state_dict())
    feats, subj, y = batch()
    outs = []
    for model in (sparse, dense):
        out = model(feats, subj)
        (F.mse_loss(out.pred, y) + out.aux_loss).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0].pred, outs[1].pred, rtol=1e-5, atol=1e-6)
    grads_s = dict(sparse.named_parameters())
    for name, p in dense.named_parameters():
        gs, gd = grads_s[name].grad, p.grad
        if gd is None:
            assert gs is None or not gs.any(), name
            continue
        torch.testing.assert_close(gs, gd, rtol=1e-5, atol=1e-6, msg=name)


def test_sparse_equals_dense_in_training_with_dropout():
    sparse = make(dispatch="sparse", expert_dropout=0.3).train()
    dense = make(dispatch="dense", expert_dropout=0.3).train()
    dense.load_state_dict(sparse.state_dict())
    feats, subj, _ = batch()
    torch.manual_seed(5)
    a = sparse(feats, subj).pred
    torch.manual_seed(5)
    b = dense(feats, subj).pred
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "mode,prior_top_k,dispatch,expected",
    [
        ("both", False, "sparse", "sparse"),
        ("prior", True, "sparse", "sparse"),
        ("prior", False, "sparse", "dense"),  # every expert kept: the dense formula
        ("both", False, "dense", "dense"),
    ],
)
def test_forward_dispatch_goes_through_mix(monkeypatch, mode, prior_top_k, dispatch, expected):
    calls = spy_on_mix(monkeypatch)
    model = make(mode=mode, prior_top_k=prior_top_k, dispatch=dispatch)
    feats, subj, _ = batch()
    assert model(feats, subj).pred.shape == (B, T, V)
    assert calls == [expected]


def test_gradients_reach_gate_and_experts():
    for expert in ("linear", "mlp"):
        model = make(mode="both", expert=expert).train()
        feats, subj, y = batch()
        out = model(feats, subj)
        (F.mse_loss(out.pred, y) + out.aux_loss).backward()
        names = [
            "gate.router.weight",
            "gate.subject_embedding.weight",
            "gate.global_logits",
            "gate.subject_bias",
        ]
        names += ["experts.weight", "experts.bias"] if expert == "linear" else ["experts.w1", "experts.w2"]
        names += ["afire.projectors.0.weight"]
        params = dict(model.named_parameters())
        for name in names:
            assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


def test_single_expert_is_a_linear_head():
    model = make(n_experts=1, top_k=1)
    feats, subj, _ = batch()
    out = model(feats, subj)
    tokens = model.afire(feats)
    expected = F.linear(tokens, model.experts.weight[0].T, model.experts.bias[0])
    torch.testing.assert_close(out.pred, expected)
    assert torch.all(out.gate.weights == 1.0)


def test_aux_loss_formula():
    model = make(lambda_balance=0.3, lambda_bias=0.7, bias_init="normal")
    feats, subj, _ = batch()
    out = model(feats, subj)
    expected = 0.3 * balance_loss(out.gate) + 0.7 * bias_penalty(model.gate)
    torch.testing.assert_close(out.aux_loss, expected)
    dense_prior = make(mode="prior", lambda_balance=0.3, lambda_bias=0.7, bias_init="normal")
    out = dense_prior(feats, subj)
    torch.testing.assert_close(out.aux_loss, 0.7 * bias_penalty(dense_prior.gate))


def test_same_seed_same_output():
    feats, subj, _ = batch()
    a = make(seed=4, expert="mlp")(feats, subj).pred
    b = make(seed=4, expert="mlp")(feats, subj).pred
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = make(seed=5, expert="mlp")(feats, subj).pred
    assert not torch.allclose(a, c)


def test_add_subject_population_and_hand_prediction():
    model = make(bias_init="normal")
    with torch.no_grad():
        model.gate.global_logits.copy_(torch.tensor([0.5, -0.2, 0.1, 0.0]))
    emb = model.gate.subject_embedding.weight.detach().clone()
    new = model.add_subject()
    assert new == S and model.n_subjects == S + 1 and model.config.n_subjects == S + 1
    torch.testing.assert_close(model.gate.subject_embedding.weight[new], emb.mean(0))
    assert not model.gate.subject_bias[new].any()
    params = model.subject_parameters()
    assert params[0] is model.gate.subject_embedding.weight and params[1] is model.gate.subject_bias

    feats, _, _ = batch()
    subj = torch.full((B,), new)
    out = model(feats, subj)
    with torch.no_grad():  # by hand, with the mean embedding and the population prior softmax(g)
        x = model.afire(feats)
        p = model.gate.router(x + emb.mean(0)).softmax(-1)
        pi = torch.tensor([0.5, -0.2, 0.1, 0.0]).softmax(-1)
        m = p * pi
        vals, idx = m.topk(2, dim=-1)
        w = torch.zeros_like(m).scatter(-1, idx, vals / vals.sum(-1, keepdim=True))
        per_expert = torch.einsum("btd,edv->btev", x, model.experts.weight) + model.experts.bias
        expected = (w[..., None] * per_expert).sum(2)
    torch.testing.assert_close(out.pred, expected, rtol=1e-5, atol=1e-6)


def test_subject_out_of_range_raises():
    model = make()
    feats, _, _ = batch()
    with pytest.raises(ValueError, match="add_subject"):
        model(feats, torch.tensor([0, 1, S]))


def test_missing_modality_finite():
    for fusion in ("concat", "sum", "gated"):
        model = make(afire=afire_cfg(fusion=fusion))
        feats, subj, _ = batch()
        out = model(feats, subj, torch.tensor([[True, False], [False, True], [True, True]]))
        assert torch.isfinite(out.pred).all()
