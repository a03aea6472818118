"""Tests for mindlib.mind: shapes, sparse == dense, gradients, E=1 reduction, aux loss, new subjects.

The sparse dispatch (grouped linear with hand-written backward passes) is checked against the dense
formula on forward and every gradient, with float64 ``gradcheck``, and on its edge cases: experts
with no token, all tokens on one expert, K = 1, K = E, E = 1, N not a multiple of E, N = 0, autocast.
"""

import pytest
import torch
import torch.nn.functional as F

from mindlib.afire import AFIREConfig
from mindlib.mind import MIND, Experts, MINDConfig, ModelOutput, _GroupedLinear
from mindlib.sadgate import GateOutput, balance_loss, bias_penalty
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


def test_sparse_dispatch_unbalanced_and_empty_experts():
    torch.manual_seed(0)
    experts = Experts(6, 4, 3, "linear")
    x = torch.randn(10, 4)
    idx = torch.tensor([[0, 1]] * 9 + [[5, 0]])  # experts 2-4 get no tokens
    w = torch.rand(10, 2)
    out = experts.sparse(x, idx, w)
    dense = experts.dense(x[None])[0]  # (N, E, V)
    expected = (dense.gather(1, idx[:, :, None].expand(10, 2, 3)) * w[:, :, None]).sum(1)
    torch.testing.assert_close(out, expected)


def routing(N, E, K, kind="random", seed=0, dtype=torch.float32):
    """(idx (N, K), top-K weights (N, K), dense weights (N, E)): K distinct experts per token.

    kind: "random" | "lopsided" (expert E-1 gets no token, expert 0 most) | "one" (every token keeps
    expert 0 first).
    """
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(N, E, generator=g, dtype=dtype)
    if kind == "lopsided" and E > K:
        scores[:, 0] += 2.0
        scores[:, E - 1] = -1.0
    elif kind == "one":
        scores[:, 0] += 2.0
    idx = scores.topk(K, dim=-1).indices
    tw = torch.rand(N, K, generator=g, dtype=dtype) + 0.1
    return idx, tw


def mix_both(experts, x, idx, tw):
    """Sparse and dense ``Experts.mix`` on the same routing; the dense weights are built from ``tw``."""
    E = experts.n_experts
    weights = torch.zeros(*idx.shape[:-1], E, dtype=tw.dtype).scatter(-1, idx, tw)
    gate = GateOutput(weights, weights, weights, idx, tw)
    return experts.mix(x, gate, "sparse"), experts.mix(x, gate, "dense")


@pytest.mark.parametrize("expert", ["linear", "mlp"])
@pytest.mark.parametrize(
    "N,E,K,kind",
    [
        (10, 4, 2, "random"),
        (11, 4, 2, "lopsided"),  # N not a multiple of E; expert 3 gets no token
        (7, 5, 2, "one"),  # every token on expert 0
        (9, 3, 1, "random"),  # K = 1
        (9, 3, 1, "lopsided"),  # K = 1, expert 2 empty
        (6, 3, 3, "random"),  # K = E: every expert on every token
        (5, 1, 1, "random"),  # E = 1
        (1, 4, 2, "random"),  # one token: at most K groups are not empty
    ],
)
def test_sparse_equals_dense_forward_and_gradients(expert, N, E, K, kind):
    torch.manual_seed(1)
    experts = Experts(E, 6, 5, expert, hidden=4)
    idx, tw = routing(N, E, K, kind)
    x = torch.randn(N, 6)
    results = []
    for path in (0, 1):
        xx, ww = x.clone().requires_grad_(), tw.clone().requires_grad_()
        experts.zero_grad(set_to_none=True)
        out = mix_both(experts, xx, idx, ww)[path]
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append([out, xx.grad, ww.grad] + [p.grad.clone() for p in experts.parameters()])
    names = ["out", "x.grad", "weights.grad"] + [n for n, _ in experts.named_parameters()]
    for name, a, b in zip(names, *results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    if kind in ("lopsided", "one") and E > K:  # experts no token chose: zero gradients, not None
        unused = sorted(set(range(E)) - set(idx.unique().tolist()))
        assert unused
        for p in experts.parameters():
            assert p.grad is not None and not p.grad[unused].any()


@pytest.mark.parametrize("expert", ["linear", "mlp"])
def test_sparse_gradcheck_float64(expert):
    """Every input of the custom backward passes (tokens, gate weights, expert parameters) in float64."""
    torch.manual_seed(0)
    experts = Experts(4, 3, 2, expert, hidden=3).double()
    idx, tw = routing(5, 4, 2, "lopsided", dtype=torch.float64)  # expert 3 gets no token
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    tw.requires_grad_()
    params = tuple(experts.parameters())  # gradcheck perturbs these in place: the module sees it
    assert torch.autograd.gradcheck(lambda x, w, *_: experts.sparse(x, idx, w), (x, tw, *params))


def test_grouped_linear_gradcheck_with_empty_groups():
    g = torch.Generator().manual_seed(0)
    counts = [2, 0, 3, 1, 0]
    xs = torch.randn(sum(counts), 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda xs, w, b: _GroupedLinear.apply(xs, w, b, counts), (xs, w, b))
    out = _GroupedLinear.apply(xs, w, b, counts)
    expert = torch.repeat_interleave(torch.arange(5), torch.tensor(counts))
    torch.testing.assert_close(out, torch.einsum("nd,ndv->nv", xs, w[expert]) + b[expert])
    # only the parameters need gradients (tokens frozen upstream)
    w.grad = None
    _GroupedLinear.apply(xs.detach(), w, b, counts).sum().backward()
    assert w.grad is not None and not w.grad[[1, 4]].any()


def test_sparse_handles_no_tokens_and_non_contiguous_inputs():
    experts = Experts(3, 4, 5, "mlp", hidden=6)
    x = torch.zeros(0, 4, requires_grad=True)
    w = torch.zeros(0, 2, requires_grad=True)
    out = experts.sparse(x, torch.zeros(0, 2, dtype=torch.long), w)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert x.grad.shape == (0, 4) and not experts.w1.grad.any()

    torch.manual_seed(0)
    base = torch.randn(4, 9)
    x = base.t()  # (9, 4), not contiguous
    idx, tw = routing(9, 3, 2, "random")
    a, b = mix_both(experts, x, idx.t().contiguous().t(), tw)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sparse_rejects_bad_routing():
    experts = Experts(3, 4, 5)
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="out of range"):
        experts.sparse(x, torch.tensor([[0, 3], [1, 2]]), torch.rand(2, 2))
    with pytest.raises(ValueError, match="needs x"):
        experts.sparse(x, torch.tensor([[0, 1]]), torch.rand(1, 2))
    with pytest.raises(ValueError, match="needs x"):
        experts.sparse(x, torch.tensor([[0, 1], [1, 2]]), torch.rand(2, 3))


def test_sparse_backward_is_once_differentiable():
    experts = Experts(3, 4, 5)
    x = torch.randn(6, 4, requires_grad=True)
    idx, tw = routing(6, 3, 2)
    (gx,) = torch.autograd.grad(experts.sparse(x, idx, tw).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


def test_mix_shapes_and_dispatch_names():
    torch.manual_seed(0)
    experts = Experts(4, 6, 5, "linear")
    x = torch.randn(2, 3, 6)
    idx, tw = routing(6, 4, 2)
    a, b = mix_both(experts, x, idx.view(2, 3, 2), tw.view(2, 3, 2))
    assert a.shape == b.shape == (2, 3, 5)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    flat = mix_both(experts, x.view(6, 6), idx, tw)[0]  # (N, d) tokens give (N, V)
    torch.testing.assert_close(flat, a.view(6, 5))
    gate = GateOutput(torch.zeros(6, 4), torch.zeros(6, 4), torch.zeros(6, 4), idx, tw)
    with pytest.raises(ValueError, match="dispatch"):
        experts.mix(x.view(6, 6), gate, "lazy")


@pytest.mark.parametrize("expert", ["linear", "mlp"])
def test_sparse_under_autocast(expert):
    """bf16 autocast (what training uses on CUDA; checked here on CPU): same result as dense, fp32 grads."""
    torch.manual_seed(0)
    experts = Experts(4, 16, 5, expert, hidden=8)
    x = torch.randn(2, 7, 16)
    idx, tw = routing(14, 4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = mix_both(experts, x, idx.view(2, 7, 2), tw.view(2, 7, 2))
    assert a.dtype == b.dtype == torch.bfloat16
    torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05)
    a.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in experts.parameters())


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
