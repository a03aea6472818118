"""MIND: the mixture-of-experts integrated decoder (docs/method.md §6-7; paper §2.4-2.5).

``AFIRE -> SADGate -> E experts``: each expert ``f_e: R^d -> R^V`` maps a token to all V parcels and
the prediction is the gate-weighted sum ``ŷ_t = Σ_e w_{t,e} f_e(x_t)`` (Eq. 4). The auxiliary loss
``λ1·L_bal + λ2·‖B‖²_F`` (Eq. 5) is returned with the prediction, never stored on the module.

Two dispatch paths compute the same formula, both in :meth:`Experts.mix` (what ``MIND.forward`` and
``benchmarks/bench_head.py`` call):

- ``dense``: every expert on every token, ``einsum('...d,edv->...ev')``, then the weighted sum;
- ``sparse`` (default): only the K selected experts run on each token (:meth:`Experts.sparse`). The
  ``N·K`` (token, slot) pairs are sorted by expert, each expert multiplies its own group of rows
  straight into one preallocated output (:class:`_GroupedLinear`, a custom autograd Function whose
  backward also writes each expert's gradients in place), and the K outputs of a token are brought
  back by a gather with the inverse permutation and combined by one batched ``(1, K) @ (K, V)``
  multiply. Rows move only by gathers, never by ``index_add_`` (a serial scatter on CPU, atomic and
  non-deterministic on CUDA). Equal to dense up to float rounding; about E/K fewer expert FLOPs;
  activations kept for backward grow with K, not E. When the gate keeps every expert
  (mode="prior" without top-k) ``MIND.forward`` falls back to dense.
  One matmul per expert group was preferred to a padded ``bmm``: equal speed under balanced routing,
  and it does not pay for padding when routing is unbalanced (the padded form was 4-8x slower there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mindlib.afire import AFIRE, AFIREConfig
from mindlib.sadgate import GateOutput, SADGate, SADGateConfig, SADGateOptions

Expert = Literal["linear", "mlp"]  # expert head: Linear(d, V) | d -> h -> V MLP
Dispatch = Literal["sparse", "dense"]  # run only the K chosen experts | all of them (same formula)
EXPERTS: tuple[str, ...] = get_args(Expert)
DISPATCHES: tuple[str, ...] = get_args(Dispatch)


class ModelOutput(NamedTuple):
    """What every torch decoder returns.

    Attributes
    ----------
    pred : Tensor of shape (B, T, V)
        Predicted parcel responses.
    gate : GateOutput or None
        SADGate's routing (MIND), None for decoders without one.
    aux_loss : scalar Tensor
        Regularisation to add to the MSE (``λ1·L_bal + λ2·‖B‖²`` for MIND, 0 otherwise).
    """

    pred: Tensor
    gate: GateOutput | None
    aux_loss: Tensor


@dataclass(frozen=True)
class MINDConfig(SADGateOptions):
    """Configuration of :class:`MIND`: the token interface, S and V, the experts, the loss weights, and the
    gate's :class:`mindlib.sadgate.SADGateOptions` (``n_experts``, ``top_k``, ``mode``, ``prior_top_k``,
    ``balance``, ``bias_init``, ``router_subject``; keyword-only), declared once in :mod:`mindlib.sadgate`."""

    afire: AFIREConfig  # the token interface
    n_subjects: int  # S
    n_parcels: int  # V
    expert: Expert = "linear"  # expert head: Linear(d, V) | d -> h -> V MLP
    expert_hidden: int = 256  # h, MLP expert hidden width
    expert_dropout: float = 0.1  # dropout on the expert input (authors' code)
    dispatch: Dispatch = "sparse"  # run only the K chosen experts | all of them
    lambda_balance: float = 0.01  # λ1, balance loss weight
    lambda_bias: float = 1e-3  # λ2, ‖B‖² weight

    def __post_init__(self) -> None:
        if not isinstance(self.afire, AFIREConfig):
            raise TypeError(f"MINDConfig.afire must be an AFIREConfig, got {type(self.afire).__name__}")
        if self.n_parcels <= 0:
            raise ValueError(f"MINDConfig.n_parcels must be > 0, got {self.n_parcels}")
        super().__post_init__()  # n_experts, top_k, router_subject and every Literal field (mode, expert, ...)
        if self.expert_hidden <= 0:
            raise ValueError(f"MINDConfig.expert_hidden must be > 0, got {self.expert_hidden}")
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"MINDConfig.expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if self.lambda_balance < 0 or self.lambda_bias < 0:
            raise ValueError(
                f"MINDConfig: lambda_balance={self.lambda_balance} and lambda_bias={self.lambda_bias} must be >= 0"
            )
        self.gate_config()  # validates n_subjects

    def gate_config(self) -> SADGateConfig:
        """The SADGate configuration this model uses: d from AFIRE, S, and this config's gate options."""
        return SADGateConfig(d_model=self.afire.d_model, n_subjects=self.n_subjects, **self.gate_options())


def _init_uniform(tensor: Tensor, fan_in: int) -> None:
    """nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


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


class Experts(nn.Module):
    """E expert heads stored stacked.

    ``linear``: ``weight`` (E, d, V), ``bias`` (E, V).
    ``mlp``: ``w1`` (E, d, h), ``b1`` (E, h), GELU, ``w2`` (E, h, V), ``b2`` (E, V).
    Each is initialised like ``nn.Linear``.
    """

    def __init__(
        self, n_experts: int, d_model: int, n_parcels: int, kind: str = "linear", hidden: int = 256
    ) -> None:
        super().__init__()
        E, d, V, h = n_experts, d_model, n_parcels, hidden
        self.kind = kind
        if kind == "linear":
            self.weight = nn.Parameter(torch.empty(E, d, V))
            self.bias = nn.Parameter(torch.empty(E, V))
            _init_uniform(self.weight, d)
            _init_uniform(self.bias, d)
        elif kind == "mlp":
            self.w1 = nn.Parameter(torch.empty(E, d, h))
            self.b1 = nn.Parameter(torch.empty(E, h))
            self.w2 = nn.Parameter(torch.empty(E, h, V))
            self.b2 = nn.Parameter(torch.empty(E, V))
            for p, fan_in in ((self.w1, d), (self.b1, d), (self.w2, h), (self.b2, h)):
                _init_uniform(p, fan_in)
        else:
            raise ValueError(f"Experts kind={kind!r}; choose one of {EXPERTS}")

    @property
    def n_experts(self) -> int:
        """E."""
        return (self.weight if self.kind == "linear" else self.w1).shape[0]

    @property
    def n_parcels(self) -> int:
        """V."""
        return (self.bias if self.kind == "linear" else self.b2).shape[1]

    def mix(self, x: Tensor, gate: GateOutput, dispatch: str = "sparse") -> Tensor:
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
        if dispatch != "sparse":
            raise ValueError(f"Experts.mix: dispatch={dispatch!r}; choose one of {DISPATCHES}")
        lead, d = x.shape[:-1], x.shape[-1]
        K = gate.topk_idx.shape[-1]
        out = self.sparse(x.reshape(-1, d), gate.topk_idx.reshape(-1, K), gate.topk_weights.reshape(-1, K))
        return out.reshape(*lead, out.shape[-1])

    def dense(self, x: Tensor) -> Tensor:
        """Every expert on every token: x (..., d) -> (..., E, V)."""
        if self.kind == "linear":
            return torch.einsum("...d,edv->...ev", x, self.weight) + self.bias
        h = F.gelu(torch.einsum("...d,edh->...eh", x, self.w1) + self.b1)
        return torch.einsum("...eh,ehv->...ev", h, self.w2) + self.b2

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


class MIND(nn.Module):
    """AFIRE tokens -> SADGate -> E experts -> parcel responses (B, T, V).

    Parameters
    ----------
    config : MINDConfig
    """

    def __init__(self, config: MINDConfig) -> None:
        super().__init__()
        if not isinstance(config, MINDConfig):
            raise TypeError(f"MIND needs a MINDConfig, got {type(config).__name__}")
        self.config = config
        self.afire = AFIRE(config.afire)
        self.gate = SADGate(config.gate_config())
        self.expert_dropout = nn.Dropout(config.expert_dropout)
        self.experts = Experts(
            config.n_experts, config.afire.d_model, config.n_parcels, config.expert, config.expert_hidden
        )

    @property
    def n_subjects(self) -> int:
        """S, the number of subject slots."""
        return self.config.n_subjects

    def forward(
        self, features: Mapping[str, Tensor], subject: Tensor, modality_mask: Tensor | None = None
    ) -> ModelOutput:
        """Predict parcel responses.

        Parameters
        ----------
        features : dict of str to Tensor of shape (B, T, F_m)
            TR-aligned features (see :class:`mindlib.afire.AFIRE`).
        subject : LongTensor of shape (B,)
            Subject index of each window, in ``[0, n_subjects)``.
        modality_mask : BoolTensor of shape (B, M), optional
            True where a modality is present.

        Returns
        -------
        ModelOutput
            ``pred`` (B, T, V), ``gate`` (GateOutput), ``aux_loss`` scalar.
        """
        _check_subject(subject, self.n_subjects)
        x = self.afire(features, modality_mask)  # (B, T, d)
        gate = self.gate(x, subject)
        xe = self.expert_dropout(x)  # one dropout mask shared by the experts of a token
        # mode="prior" without top-k keeps every expert: nothing to skip, so the dense formula
        dispatch = self.config.dispatch if self.gate.config.sparse else "dense"
        pred = self.experts.mix(xe, gate, dispatch)  # (B, T, V)
        aux = self.config.lambda_balance * self.gate.balance_loss(gate)
        aux = aux + self.config.lambda_bias * self.gate.bias_penalty()
        return ModelOutput(pred, gate, aux)

    def add_subject(self) -> int:
        """Append a subject slot at the population prior (``e_s`` = mean embedding, ``B_s`` = 0).

        Returns the new index. Parameters are replaced: build optimisers afterwards.
        """
        index = self.gate.add_subject()
        self.config = replace(self.config, n_subjects=self.gate.n_subjects)
        return index

    def subject_parameters(self) -> list[nn.Parameter]:
        """The gate's subject parameters (leading axis S; :meth:`mindlib.sadgate.SADGate.subject_parameters`)."""
        return self.gate.subject_parameters()


def _check_subject(subject: Tensor, n_subjects: int) -> None:
    """Raise a clear error for subject indices outside [0, n_subjects)."""
    if subject.ndim != 1:
        raise ValueError(f"subject must be a LongTensor of shape (B,), got shape {tuple(subject.shape)}")
    if subject.numel() and (int(subject.min()) < 0 or int(subject.max()) >= n_subjects):
        raise ValueError(
            f"subject indices {subject.unique().tolist()} outside [0, {n_subjects}); call add_subject() "
            "for a new subject"
        )
