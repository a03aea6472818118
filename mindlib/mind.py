"""MIND: the mixture-of-experts integrated decoder (SPEC §6-7; paper §2.4-2.5).

``AFIRE -> SADGate -> E experts``: each expert ``f_e: R^d -> R^V`` maps a token to all V parcels and
the prediction is the gate-weighted sum ``ŷ_t = Σ_e w_{t,e} f_e(x_t)`` (Eq. 4). The auxiliary loss
``λ1·L_bal + λ2·‖B‖²_F`` (Eq. 5) is returned with the prediction, never stored on the module.

Two dispatch paths compute the same formula:

- ``dense``: every expert on every token, ``einsum('btd,edv->btev')``, then the weighted sum;
- ``sparse`` (default): only the K selected experts run on each token. The ``N·K`` (token, slot)
  pairs are sorted by expert, each expert multiplies its own group of tokens, and the weighted
  results are added back with ``index_add_``. Equal to dense up to float rounding; about E/K fewer
  expert FLOPs. When the gate keeps every expert (mode="prior" without top-k) it falls back to dense.
  One matmul per expert group was preferred to a padded ``bmm``: equal speed under balanced routing,
  and it does not pay for padding when routing is unbalanced (the padded form was 4-8x slower there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mindlib.afire import AFIRE, AFIREConfig
from mindlib.sadgate import BALANCES, BIAS_INITS, MODES, GateOutput, SADGate, SADGateConfig

EXPERTS = ("linear", "mlp")
DISPATCHES = ("sparse", "dense")


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
class MINDConfig:
    """Configuration of :class:`MIND`."""

    afire: AFIREConfig  # the token interface
    n_subjects: int  # S
    n_parcels: int  # V
    n_experts: int = 8  # E
    top_k: int = 2  # K experts per token
    mode: Literal["both", "token", "prior"] = "both"  # SADGate ablation
    expert: Literal["linear", "mlp"] = "linear"  # expert head: Linear(d, V) | d -> h -> V MLP
    expert_hidden: int = 256  # h, MLP expert hidden width
    expert_dropout: float = 0.1  # dropout on the expert input (authors' code)
    dispatch: Literal["sparse", "dense"] = "sparse"  # run only the K chosen experts | all of them
    lambda_balance: float = 0.01  # λ1, balance loss weight
    lambda_bias: float = 1e-3  # λ2, ‖B‖² weight
    balance: Literal["switch", "importance"] = "switch"  # balance loss kind
    bias_init: Literal["zeros", "normal"] = "zeros"  # subject-bias init
    prior_top_k: bool = False  # mode="prior": Top-K of the prior (extension of the contract)

    def __post_init__(self) -> None:
        if not isinstance(self.afire, AFIREConfig):
            raise TypeError(f"MINDConfig.afire must be an AFIREConfig, got {type(self.afire).__name__}")
        if self.n_parcels <= 0:
            raise ValueError(f"MINDConfig.n_parcels must be > 0, got {self.n_parcels}")
        for field, value, allowed in (
            ("mode", self.mode, MODES),
            ("expert", self.expert, EXPERTS),
            ("dispatch", self.dispatch, DISPATCHES),
            ("balance", self.balance, BALANCES),
            ("bias_init", self.bias_init, BIAS_INITS),
        ):
            if value not in allowed:
                raise ValueError(f"MINDConfig.{field}={value!r}; choose one of {allowed}")
        if self.expert_hidden <= 0:
            raise ValueError(f"MINDConfig.expert_hidden must be > 0, got {self.expert_hidden}")
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"MINDConfig.expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if self.lambda_balance < 0 or self.lambda_bias < 0:
            raise ValueError(
                f"MINDConfig: lambda_balance={self.lambda_balance} and lambda_bias={self.lambda_bias} must be >= 0"
            )
        self.gate_config()  # validates n_subjects, n_experts, top_k

    def gate_config(self) -> SADGateConfig:
        """The SADGate configuration this model uses."""
        return SADGateConfig(
            d_model=self.afire.d_model,
            n_subjects=self.n_subjects,
            n_experts=self.n_experts,
            top_k=self.top_k,
            mode=self.mode,
            prior_top_k=self.prior_top_k,
            balance=self.balance,
            bias_init=self.bias_init,
        )


def _init_uniform(tensor: Tensor, fan_in: int) -> None:
    """nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


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

    def dense(self, x: Tensor) -> Tensor:
        """Every expert on every token: x (B, T, d) -> (B, T, E, V)."""
        if self.kind == "linear":
            return torch.einsum("btd,edv->btev", x, self.weight) + self.bias
        h = F.gelu(torch.einsum("btd,edh->bteh", x, self.w1) + self.b1)
        return torch.einsum("bteh,ehv->btev", h, self.w2) + self.b2

    def sparse(self, x: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
        """Weighted sum over the selected experts only.

        Parameters
        ----------
        x : Tensor of shape (N, d)
            Flattened tokens.
        idx : LongTensor of shape (N, K)
            Selected experts per token.
        weights : Tensor of shape (N, K)
            Their gate weights.

        Returns
        -------
        out : Tensor of shape (N, V)
            ``Σ_k weights[n, k] · f_{idx[n, k]}(x[n])``.
        """
        N, K = idx.shape
        if N == 0:
            V = self.bias.shape[1] if self.kind == "linear" else self.b2.shape[1]
            return x.new_zeros(0, V)
        E = self.weight.shape[0] if self.kind == "linear" else self.w1.shape[0]
        flat_expert = idx.reshape(-1)  # (N*K,) expert of each (token, slot) pair
        order = torch.argsort(flat_expert, stable=True)  # pairs grouped by expert
        token = torch.div(order, K, rounding_mode="floor")  # (N*K,) token of each sorted pair
        gate_w = weights.reshape(-1)[order]  # (N*K,)
        counts = torch.bincount(flat_expert, minlength=E).tolist()  # tokens per expert
        xs = x.index_select(0, token)  # (N*K, d) tokens in expert order
        if self.kind == "linear":
            params = zip(self.weight.unbind(0), self.bias.unbind(0))  # unbind: one gradient stack, not E
        else:
            params = zip(self.w1.unbind(0), self.b1.unbind(0), self.w2.unbind(0), self.b2.unbind(0))
        outs = []
        for group, p in zip(xs.split(counts), params):
            if group.shape[0] == 0:
                continue
            if self.kind == "linear":
                outs.append(torch.addmm(p[1], group, p[0]))  # (n_e, V)
            else:
                hidden = F.gelu(torch.addmm(p[1], group, p[0]))
                outs.append(torch.addmm(p[3], hidden, p[2]))
        y = torch.cat(outs) * gate_w[:, None]  # (N*K, V)
        return y.new_zeros(N, y.shape[1]).index_add_(0, token, y)


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
        if self.config.dispatch == "sparse" and self.gate.config.sparse:
            B, T, d = xe.shape
            pred = self.experts.sparse(
                xe.reshape(B * T, d), gate.topk_idx.reshape(B * T, -1), gate.topk_weights.reshape(B * T, -1)
            ).reshape(B, T, -1)
        else:
            pred = torch.einsum("bte,btev->btv", gate.weights, self.experts.dense(xe))
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
        """``[gate.subject_embedding.weight, gate.subject_bias]`` (leading axis S)."""
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
