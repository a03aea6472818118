"""MIND's E expert heads and the sparse dispatch that computes their mixture (docs/method.md §6).

**An expert** ``f_e: R^d -> R^V`` maps one token to all V parcels: ``Linear(d, V)`` (``linear``, the
default, as in the authors' code) or ``d -> h -> V`` with a GELU (``mlp``). The E experts are stored
stacked in one :class:`Experts` module and initialised like ``nn.Linear``.

**Their mixture** is the gate-weighted sum of Eq. 4, ``ŷ_t = Σ_e w_{t,e} f_e(x_t)``, with the weights
``w`` of SADGate (:mod:`mindlib.sadgate`). :meth:`Experts.mix` (what ``MIND.forward`` and
``benchmarks/bench_head.py`` call) computes it in one of two ways:

- ``dense``: every expert on every token (:meth:`Experts.dense`,
  ``einsum('...d,edv->...ev')``), then the weighted sum;
- ``sparse`` (default): only the K selected experts run on each token (:meth:`Experts.sparse`). The
  ``N·K`` (token, slot) pairs are sorted by expert, each expert multiplies its own group of rows
  straight into one preallocated output (:class:`_GroupedLinear`, a custom autograd Function whose
  backward also writes each expert's gradients in place), and the K outputs of a token are brought
  back by a gather with the inverse permutation and combined by one batched ``(1, K) @ (K, V)``
  multiply. Rows move only by gathers, never by ``index_add_`` (a serial scatter on CPU, atomic and
  non-deterministic on CUDA). Equal to dense up to float rounding, since a sparse gate's weights are
  zero outside the K selected experts; about E/K fewer expert FLOPs; activations kept for backward
  grow with K, not E.
  One matmul per expert group was preferred to a padded ``bmm``: equal speed under balanced routing,
  and it does not pay for padding when routing is unbalanced (the padded form was 4-8x slower there).

The module reads in that order: :class:`Experts` (the experts, the dense formula, the sparse
dispatch), then the autograd Functions the sparse dispatch is made of.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mindlib.decoder import uniform_parameter
from mindlib.params import check_choice
from mindlib.sadgate import GateOutput

__all__ = ["Expert", "Dispatch", "EXPERTS", "DISPATCHES", "Experts"]

Expert = Literal["linear", "mlp"]  # expert heads: Linear(d, V) | d -> h -> V MLP
Dispatch = Literal["sparse", "dense"]  # run only the K chosen experts per token | all of them (same formula)
EXPERTS: tuple[str, ...] = get_args(Expert)
DISPATCHES: tuple[str, ...] = get_args(Dispatch)


class Experts(nn.Module):
    """E expert heads stored stacked.

    ``linear``: ``weight`` (E, d, V), ``bias`` (E, V).
    ``mlp``: ``w1`` (E, d, h), ``b1`` (E, h), GELU, ``w2`` (E, h, V), ``b2`` (E, V).
    Each is initialised like ``nn.Linear`` (:func:`mindlib.decoder.uniform_parameter`).

    Parameters
    ----------
    n_experts : int
        E.
    d_model : int
        d, the token width.
    n_parcels : int
        V.
    kind : {"linear", "mlp"}
        The expert head.
    hidden : int
        h, the hidden width of ``mlp`` experts.
    """

    def __init__(
        self, n_experts: int, d_model: int, n_parcels: int, kind: Expert = "linear", hidden: int = 256
    ) -> None:
        super().__init__()
        check_choice(kind, EXPERTS, "Experts(kind)")
        E, d, V, h = n_experts, d_model, n_parcels, hidden
        self.kind = kind
        if kind == "linear":
            self.weight = uniform_parameter((E, d, V), d)
            self.bias = uniform_parameter((E, V), d)
        else:  # "mlp"
            self.w1 = uniform_parameter((E, d, h), d)
            self.b1 = uniform_parameter((E, h), d)
            self.w2 = uniform_parameter((E, h, V), h)
            self.b2 = uniform_parameter((E, V), h)

    @property
    def n_experts(self) -> int:
        """E."""
        return (self.weight if self.kind == "linear" else self.w1).shape[0]

    @property
    def n_parcels(self) -> int:
        """V."""
        return (self.bias if self.kind == "linear" else self.b2).shape[1]

    def dense(self, x: Tensor) -> Tensor:
        """Every expert on every token, ``f_e(x)`` for all e.

        Parameters
        ----------
        x : Tensor of shape (..., d)

        Returns
        -------
        out : Tensor of shape (..., E, V)
        """
        if self.kind == "linear":
            return torch.einsum("...d,edv->...ev", x, self.weight) + self.bias
        h = F.gelu(torch.einsum("...d,edh->...eh", x, self.w1) + self.b1)
        return torch.einsum("...eh,ehv->...ev", h, self.w2) + self.b2

    def mix(self, x: Tensor, gate: GateOutput, dispatch: Dispatch = "sparse") -> Tensor:
        """The gate-weighted sum of the experts, ``ŷ = Σ_e w_e f_e(x)`` (Eq. 4).

        Parameters
        ----------
        x : Tensor of shape (..., d)
            Tokens, e.g. (B, T, d) or (N, d).
        gate : GateOutput
            SADGate's routing for these tokens: ``weights`` (..., E) for ``dense``; ``topk_idx`` and
            ``topk_weights`` (..., K) for ``sparse``.
        dispatch : {"sparse", "dense"}
            ``sparse``: only the K selected experts per token (:meth:`sparse`); exact only when
            ``weights`` is zero outside ``topk_idx``, i.e. a sparse gate (the caller falls back to
            ``dense`` otherwise, as ``MIND.forward`` does). ``dense``: every expert on every token
            (:meth:`dense`), then the weighted sum.

        Returns
        -------
        pred : Tensor of shape (..., V)
        """
        if dispatch == "dense":
            return torch.einsum("...e,...ev->...v", gate.weights, self.dense(x))
        check_choice(dispatch, DISPATCHES, "Experts.mix(dispatch)")
        lead, d = x.shape[:-1], x.shape[-1]
        K = gate.topk_idx.shape[-1]
        out = self.sparse(x.reshape(-1, d), gate.topk_idx.reshape(-1, K), gate.topk_weights.reshape(-1, K))
        return out.reshape(*lead, out.shape[-1])

    def sparse(self, x: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
        """Weighted sum over the selected experts only (grouped linear, gathers, one batched multiply).

        The N·K (token, slot) pairs are sorted by expert (stable); each expert's rows are gathered,
        multiplied by that expert in place (:class:`_GroupedLinear`; for MLP experts twice, GELU in
        between), gathered back to pair order with the inverse permutation and combined by
        ``(N, 1, K) @ (N, K, V)``. Experts that no token selected get zero gradients.

        Parameters
        ----------
        x : Tensor of shape (N, d)
            Flattened tokens.
        idx : LongTensor of shape (N, K)
            Selected experts per token, in ``[0, E)``.
        weights : Tensor of shape (N, K)
            Their gate weights.

        Returns
        -------
        out : Tensor of shape (N, V)
            ``Σ_k weights[n, k] · f_{idx[n, k]}(x[n])``.
        """
        if x.ndim != 2 or idx.ndim != 2 or weights.shape != idx.shape or idx.shape[0] != x.shape[0]:
            raise ValueError(
                f"Experts.sparse needs x (N, d), idx (N, K), weights (N, K); got {tuple(x.shape)}, "
                f"{tuple(idx.shape)}, {tuple(weights.shape)}"
            )
        N, K = idx.shape
        E = self.n_experts
        pair_expert = idx.reshape(-1)  # (N·K,) expert of pair p = n·K + k
        order = torch.argsort(pair_expert, stable=True)  # sorted position i -> pair order[i]
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel(), device=order.device)  # pair p -> sorted position
        counts = torch.bincount(pair_expert, minlength=E).tolist()  # rows per expert (one host sync)
        if len(counts) > E:
            raise ValueError(f"Experts.sparse: expert index {len(counts) - 1} out of range for E={E}")
        dtype = _matmul_dtype(x)  # under autocast: the matmul dtype, operands cast as autocast would
        cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
        rows = torch.div(order, K, rounding_mode="floor")  # token of each sorted pair
        xs = _GatherRows.apply(cast(x), rows, inv, K)  # (N·K, d) grouped by expert
        if self.kind == "linear":
            ys = _GroupedLinear.apply(xs, cast(self.weight), cast(self.bias), counts)  # (N·K, V)
        else:
            hidden = F.gelu(_GroupedLinear.apply(xs, cast(self.w1), cast(self.b1), counts))  # (N·K, h)
            ys = _GroupedLinear.apply(hidden, cast(self.w2), cast(self.b2), counts)  # (N·K, V)
        y = _Permute.apply(ys, inv, order).view(N, K, ys.shape[1])  # (N, K, V) back in token order
        return torch.bmm(weights.unsqueeze(1).to(y.dtype), y).squeeze(1)  # (N, V)


# ------------------------------------------------------------------ sparse dispatch: grouped linear
#
# Why hand-written backward passes: with plain autograd, the per-expert GEMMs of the sparse path are
# wrapped in data movement (``split`` of the sorted rows, ``torch.cat`` of the E outputs, a ``stack``
# of E weight gradients for ``weight.unbind(0)``, ``index_add_`` to scatter the K outputs back, and
# that scatter's backward). The Functions below move rows with gathers only and let every expert's
# matmul write straight into a preallocated output (forward) or gradient (backward,
# ``torch.mm(..., out=...)``). At the authors' shape on an idle 2-core CPU this made forward+backward
# 4-11 % faster than the autograd version (E = 8 / 6) and cut its saved activations from 31 to 25 MB.


class _GatherRows(torch.autograd.Function):
    """``x[rows]``, where ``rows`` lists each of N rows K times in some order (a permutation of N·K pairs).

    Backward is a gather too: ``grad[inv].view(N, K, d).sum(1)``, with ``inv`` the inverse permutation
    (pair ``n·K + k`` -> its position in ``rows``), so no ``index_add_`` is needed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, inv: Tensor, k: int) -> Tensor:
        ctx.save_for_backward(inv)
        ctx.k = k
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (inv,) = ctx.saved_tensors
        n_pairs, d = grad.shape
        grad_x = grad.index_select(0, inv)  # (N·K, d) in pair order n·K + k
        if ctx.k > 1:
            grad_x = grad_x.view(n_pairs // ctx.k, ctx.k, d).sum(1)
        return grad_x, None, None, None


class _Permute(torch.autograd.Function):
    """``y[perm]`` for a permutation ``perm`` of the rows; backward ``grad[inv]`` (a gather, not a scatter)."""

    @staticmethod
    def forward(ctx, y: Tensor, perm: Tensor, inv: Tensor) -> Tensor:
        ctx.save_for_backward(inv)
        return y.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inv,) = ctx.saved_tensors
        return grad.index_select(0, inv), None, None


class _GroupedLinear(torch.autograd.Function):
    """Rows sorted by expert, ``counts[e]`` rows for expert e: ``out[rows of e] = xs[rows of e] @ W[e] + b[e]``.

    Forward writes each expert's ``addmm`` into its rows of one preallocated output; backward writes
    ``grad_xs`` rows, ``grad_W[e]`` and ``grad_b[e]`` in place (an expert with no row gets zeros).
    Saves ``xs`` and ``W`` for backward. Once differentiable (``out=`` matmuls are not recorded).
    """

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
    @once_differentiable
    def backward(ctx, grad: Tensor):
        xs, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = xs.new_empty(xs.shape) if need_x else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = weight.new_empty(weight.shape[0], weight.shape[2]) if need_b else None
        start = 0
        for e, n in enumerate(ctx.counts):
            g = grad[start : start + n]  # (n_e, V_out)
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


def _matmul_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype autocast would give a matmul of ``x`` (None outside autocast, or for float64).

    The ``out=`` matmuls of :class:`_GroupedLinear` are not autocast, so the sparse path casts its
    operands itself, as autocast would for ``addmm``.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return None
