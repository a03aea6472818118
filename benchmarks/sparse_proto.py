"""Prototype of a leaner sparse dispatch for MIND's linear experts (a proposal for ``mindlib.mind``).

Same maths as :meth:`mindlib.mind.Experts.sparse` (``Σ_k w[n, k] · (x[n] @ W[idx[n, k]] + b[idx[n, k]])``),
same sort-by-expert grouping, but the data movement that autograd adds around the per-expert GEMMs
is replaced by hand-written backward passes:

- rows are moved with gathers only (``index_select`` with a permutation and its inverse), never with
  ``index_add_`` (a serial scatter on CPU), in both directions;
- the E expert GEMMs write straight into one preallocated output (forward) and into preallocated
  gradients (backward, ``torch.mm(..., out=...)``), so there is no ``torch.cat`` of the groups, no
  ``split`` backward and no ``stack`` of E weight gradients (what ``weight.unbind(0)`` costs);
- the gate weights are applied as one batched ``(N, 1, K) @ (N, K, V)`` after un-sorting.

Saved for backward: the sorted tokens ``(N·K, d)`` and the expert outputs ``(N·K, V)``: memory grows
with K, not with E.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _GatherRows(torch.autograd.Function):
    """``x[rows]`` where ``rows`` repeats each of N rows K times in some order (a permutation of N·K pairs).

    Backward is a gather too: ``grad[inv].view(N, K, d).sum(1)`` (``inv`` = inverse permutation).
    """

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, inv: Tensor, k: int) -> Tensor:
        ctx.save_for_backward(inv)
        ctx.k = k
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inv,) = ctx.saved_tensors
        n_pairs, d = grad.shape
        return grad.index_select(0, inv).view(n_pairs // ctx.k, ctx.k, d).sum(1), None, None, None


class _Permute(torch.autograd.Function):
    """``y[perm]`` for a permutation ``perm``; backward ``grad[inv]``."""

    @staticmethod
    def forward(ctx, y: Tensor, perm: Tensor, inv: Tensor) -> Tensor:
        ctx.save_for_backward(inv)
        return y.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inv,) = ctx.saved_tensors
        return grad.index_select(0, inv), None, None


class _GroupedLinear(torch.autograd.Function):
    """Rows grouped by expert, ``counts[e]`` rows each: ``out[g_e] = xs[g_e] @ W[e] + b[e]``."""

    @staticmethod
    def forward(ctx, xs: Tensor, weight: Tensor, bias: Tensor, counts: list[int]) -> Tensor:
        out = xs.new_empty(xs.shape[0], weight.shape[2])
        start = 0
        for e, n in enumerate(counts):
            if n:
                torch.addmm(bias[e], xs[start : start + n], weight[e], out=out[start : start + n])
            start += n
        ctx.save_for_backward(xs, weight)
        ctx.counts = counts
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        xs, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = xs.new_empty(xs.shape) if need_x else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = weight.new_empty(weight.shape[0], weight.shape[2]) if need_b else None
        start = 0
        for e, n in enumerate(ctx.counts):
            g = grad[start : start + n]
            if need_x and n:
                torch.mm(g, weight[e].t(), out=grad_x[start : start + n])
            if need_w:
                if n:
                    torch.mm(xs[start : start + n].t(), g, out=grad_w[e])
                else:
                    grad_w[e].zero_()
            if need_b:
                if n:
                    torch.sum(g, dim=0, out=grad_b[e])
                else:
                    grad_b[e].zero_()
            start += n
        return grad_x, grad_w, grad_b, None


def sparse_linear_experts(x: Tensor, idx: Tensor, weights: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Weighted sum of the selected linear experts.

    Parameters
    ----------
    x : Tensor of shape (N, d)
        Tokens.
    idx : LongTensor of shape (N, K)
        Selected experts per token.
    weights : Tensor of shape (N, K)
        Their gate weights.
    weight : Tensor of shape (E, d, V)
    bias : Tensor of shape (E, V)

    Returns
    -------
    out : Tensor of shape (N, V)
        ``Σ_k weights[n, k] · (x[n] @ weight[idx[n, k]] + bias[idx[n, k]])``.
    """
    N, K = idx.shape
    E = weight.shape[0]
    flat = idx.reshape(-1)  # (N*K,) expert of pair p = n*K + k
    order = torch.argsort(flat, stable=True)  # sorted position i -> pair order[i]
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)  # pair p -> sorted position
    counts = torch.bincount(flat, minlength=E).tolist()
    xs = _GatherRows.apply(x, torch.div(order, K, rounding_mode="floor"), inv, K)  # (N*K, d) by expert
    ys = _GroupedLinear.apply(xs, weight, bias, counts)  # (N*K, V) by expert
    y = _Permute.apply(ys, inv, order).view(N, K, -1)  # (N, K, V) back in token order
    return torch.bmm(weights.unsqueeze(1).to(y.dtype), y).squeeze(1)  # (N, V)
