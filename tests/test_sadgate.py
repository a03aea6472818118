"""Tests for mindlib.sadgate: Top-K routing by hand, modes, balance loss, subject slots."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mindlib.sadgate import GateOutput, SADGate, SADGateConfig, balance_loss, bias_penalty


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("d_model", 6)
    kw.setdefault("n_subjects", 3)
    kw.setdefault("n_experts", 5)
    kw.setdefault("top_k", 2)
    return SADGate(SADGateConfig(**kw))


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "kw",
    [
        {"top_k": 0},
        {"top_k": 6},
        {"mode": "mixed"},
        {"balance": "l2"},
        {"bias_init": "uniform"},
        {"n_subjects": 0},
    ],
)
def test_config_rejects_bad_values(kw):
    base = dict(d_model=4, n_subjects=2, n_experts=5, top_k=2)
    with pytest.raises(ValueError):
        SADGateConfig(**{**base, **kw})


def test_parameter_names_and_init():
    gate = make(n_subjects=4, n_experts=7, d_model=3)
    assert gate.router.weight.shape == (7, 3)
    assert gate.subject_embedding.weight.shape == (4, 3)
    assert gate.global_logits.shape == (7,) and not gate.global_logits.any()
    assert gate.subject_bias.shape == (4, 7) and not gate.subject_bias.any()
    normal = make(bias_init="normal", n_subjects=50, n_experts=40)
    assert 0.8 < normal.subject_bias.std().item() < 1.2


@settings(max_examples=40, deadline=None)
@given(
    E=st.integers(1, 10),
    data=st.data(),
    d=st.integers(1, 16),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["both", "token", "prior_topk"]),
)
def test_exactly_k_weights_sum_to_one(E, data, d, seed, mode):
    K = data.draw(st.integers(1, E))
    kw = dict(mode="prior", prior_top_k=True) if mode == "prior_topk" else dict(mode=mode)
    gate = make(seed=seed, d_model=d, n_experts=E, top_k=K, n_subjects=2, bias_init="normal", **kw)
    g = torch.Generator().manual_seed(seed)
    out = gate(torch.randn(3, 4, d, generator=g), torch.tensor([0, 1, 1]))
    assert out.weights.shape == (3, 4, E) and out.topk_idx.shape == (3, 4, K)
    assert ((out.weights > 0).sum(-1) == K).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(out.weights.gather(-1, out.topk_idx), out.topk_weights)
    torch.testing.assert_close(out.router_probs.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(out.prior.sum(-1), torch.ones(3))


def test_hand_computed_tiny_gate():
    """E=3, K=2, fixed logits: numbers from numpy softmax by hand."""
    gate = make(d_model=2, n_subjects=2, n_experts=3, top_k=2, mode="both")
    router_bias = np.array([0.2, 1.0, -0.5])
    g = np.array([0.3, -0.2, 0.1])
    Bs = np.array([[0.0, 0.0, 0.0], [1.5, -1.0, 0.0]])
    with torch.no_grad():
        gate.router.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
        gate.router.bias.copy_(torch.tensor(router_bias))
        gate.subject_embedding.weight.copy_(torch.tensor([[0.0, 0.0], [0.1, -0.2]]))
        gate.global_logits.copy_(torch.tensor(g))
        gate.subject_bias.copy_(torch.tensor(Bs))
    x = np.array([[[0.4, -0.3]], [[0.4, -0.3]]])  # (B=2, T=1, d=2), same token, subjects 0 and 1
    out = gate(torch.tensor(x, dtype=torch.float32), torch.tensor([0, 1]))
    Wr = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    emb = np.array([[0.0, 0.0], [0.1, -0.2]])
    for s in (0, 1):
        p = softmax(Wr @ (x[s, 0] + emb[s]) + router_bias)
        pi = softmax(g + Bs[s])
        m = p * pi
        keep = np.argsort(-m)[:2]
        w = np.zeros(3)
        w[keep] = m[keep] / m[keep].sum()
        np.testing.assert_allclose(out.router_probs[s, 0].detach().numpy(), p, rtol=1e-5)
        np.testing.assert_allclose(out.prior[s].detach().numpy(), pi, rtol=1e-5)
        np.testing.assert_allclose(out.weights[s, 0].detach().numpy(), w, rtol=1e-5, atol=1e-7)
        assert out.topk_idx[s, 0].tolist() == keep.tolist()
    # subject 1's embedding and prior change its second expert: 1 for subject 0, 2 for subject 1
    assert out.topk_idx[:, 0].tolist() == [[0, 1], [0, 2]]


def test_token_mode_ignores_prior():
    gate = make(mode="token")
    x, subj = torch.randn(2, 5, 6), torch.tensor([0, 2])
    before = gate(x, subj).weights
    with torch.no_grad():
        gate.subject_bias.normal_()
        gate.global_logits.normal_()
    torch.testing.assert_close(gate(x, subj).weights, before, rtol=0, atol=0)


def test_prior_mode_ignores_token():
    for prior_top_k in (False, True):
        gate = make(mode="prior", prior_top_k=prior_top_k, bias_init="normal")
        subj = torch.tensor([0, 2])
        a = gate(torch.randn(2, 5, 6), subj)
        b = gate(torch.randn(2, 5, 6) * 10, subj)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
        expected = a.prior[:, None].expand(2, 5, 5)
        if not prior_top_k:  # the whole prior is the weight; top-k fields are its K largest
            torch.testing.assert_close(a.weights, expected)
            assert (a.weights > 0).all()
            torch.testing.assert_close(
                a.topk_weights, a.prior.topk(2, dim=-1).values[:, None].expand(2, 5, 2)
            )
            assert gate.balance_loss(a).item() == 0.0


def test_subject_changes_routing_in_both_mode():
    gate = make(mode="both")
    with torch.no_grad():
        gate.subject_bias.copy_(torch.tensor([[3.0, 0, 0, 0, -3.0], [0, 0, 0, 0, 0], [-3.0, 0, 0, 0, 3.0]]))
    x = torch.randn(1, 20, 6).expand(3, 20, 6)
    out = gate(x, torch.tensor([0, 1, 2]))
    assert not torch.allclose(out.weights[0], out.weights[2])
    assert (out.weights[0, :, 0] > 0).float().mean() > (out.weights[2, :, 0] > 0).float().mean()


def balance_reference(probs, idx, K, kind):
    probs = probs.reshape(-1, probs.shape[-1]).astype(np.float64)
    E = probs.shape[1]
    imp = probs.mean(axis=0)
    if kind == "importance":
        return E * np.sum(imp**2)
    counts = np.zeros(E)
    for row in idx.reshape(-1, idx.shape[-1]):
        for e in row:
            counts[e] += 1
    load = counts / (probs.shape[0] * K)
    return E * np.sum(imp * load)


def test_balance_loss_uniform_is_one():
    E, K = 4, 2
    probs = torch.full((2, 4, E), 1 / E)
    idx = torch.tensor([[0, 1], [2, 3], [1, 2], [3, 0]]).expand(2, 4, 2)
    gate = GateOutput(probs, probs, torch.full((2, E), 1 / E), idx, torch.full((2, 4, 2), 0.5))
    assert balance_loss(gate, kind="switch").item() == pytest.approx(1.0)
    assert balance_loss(gate, kind="importance").item() == pytest.approx(1.0)
    # a zero router at init is uniform: loss 1 whatever Top-K picks
    g = make(n_experts=E, top_k=K)
    with torch.no_grad():
        g.router.weight.zero_()
        g.router.bias.zero_()
    assert balance_loss(g(torch.randn(2, 3, 6), torch.tensor([0, 1]))).item() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["switch", "importance"])
def test_balance_loss_matches_numpy(kind):
    gate = make(n_experts=6, top_k=3, bias_init="normal")
    with torch.no_grad():
        gate.router.weight.mul_(5)
    out = gate(torch.randn(4, 7, 6), torch.tensor([0, 1, 2, 0]))
    ref = balance_reference(out.router_probs.detach().numpy(), out.topk_idx.numpy(), 3, kind)
    assert balance_loss(out, kind=kind).item() == pytest.approx(ref, rel=1e-5)
    assert ref > 1.0  # non-uniform routing costs more than uniform
    # a mask keeps only the counted tokens
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[:2, :5] = True
    sub = balance_reference(out.router_probs[:2, :5].detach().numpy(), out.topk_idx[:2, :5].numpy(), 3, kind)
    assert balance_loss(out, kind=kind, mask=mask).item() == pytest.approx(sub, rel=1e-5)
    with pytest.raises(ValueError):
        balance_loss(out, kind="l1")


def test_bias_penalty_is_frobenius():
    gate = make(bias_init="normal")
    expected = float(np.sum(gate.subject_bias.detach().numpy().astype(np.float64) ** 2))
    assert bias_penalty(gate).item() == pytest.approx(expected, rel=1e-5)
    assert gate.bias_penalty().item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_every_routing_parameter():
    gate = make(mode="both")
    out = gate(torch.randn(3, 5, 6), torch.tensor([0, 1, 2]))
    target = torch.randn(3, 5, 5)
    loss = (out.weights * target).sum() + balance_loss(out) + bias_penalty(gate)
    loss.backward()
    for name in ("router.weight", "router.bias", "subject_embedding.weight", "global_logits", "subject_bias"):
        grad = dict(gate.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_add_subject_population_init():
    gate = make(bias_init="normal", n_subjects=3)
    emb = gate.subject_embedding.weight.detach().clone()
    new = gate.add_subject()
    assert new == 3 and gate.n_subjects == 4 and gate.config.n_subjects == 4
    torch.testing.assert_close(gate.subject_embedding.weight[3], emb.mean(dim=0))
    torch.testing.assert_close(gate.subject_embedding.weight[:3], emb)
    assert not gate.subject_bias[3].any()
    with torch.no_grad():
        gate.global_logits.copy_(torch.randn(5))
    out = gate(torch.randn(1, 2, 6), torch.tensor([new]))
    torch.testing.assert_close(out.prior[0], gate.population_prior())
    params = gate.subject_parameters()
    assert params[0] is gate.subject_embedding.weight and params[1] is gate.subject_bias
    assert all(p.shape[0] == 4 for p in params)
