"""Tests for mindlib.experts: the sparse dispatch against the dense formula (Eq. 4), and its autograd.

The sparse dispatch (grouped linear with hand-written backward passes) is checked against the dense
formula on forward and every gradient, with float64 ``gradcheck``, and on its edge cases: experts
with no token, all tokens on one expert, K = 1, K = E, E = 1, N not a multiple of E, N = 0, autocast.
"""

import pytest
import torch

from mindlib.experts import Experts, _GroupedLinear
from mindlib.sadgate import GateOutput


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
