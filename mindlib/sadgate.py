"""SADGate: subject-aware dynamic gating of experts (docs/method.md §5, §7; paper §2.3, §2.5).

Two routers decide which experts read a token ``x_t`` of subject ``s``:

- token router (Eq. 1): ``p_t = softmax(W_r (x_t + e_s) + b_r)``, ``e_s`` a learnable subject
  embedding on the routing path only;
- subject prior router (Eq. 2): ``π_s = softmax(g + B_s)``, ``g`` global expert logits (init 0),
  ``B`` a subject–expert bias (init 0 = population prior; ``bias_init="normal"`` is the authors' N(0, 1)).

Combination (Eq. 3, ``mode="both"``): ``m_t = p_t ⊙ π_s``; keep the K largest entries, renormalise
them to sum 1, zero elsewhere. Ablations: ``mode="token"`` (Top-K of ``p_t``, prior ignored) and
``mode="prior"`` (``w = π_s`` for every token, router ignored; Top-K of ``π_s`` if ``prior_top_k``).

Regularisers are returned to the caller, never stored on the module: :func:`balance_loss`
(``E·ΣImp²`` by default, or importance × load; = 1 at uniform routing) and :func:`bias_penalty` (``‖B‖²_F``).

**One subject offset, two parametrisations.** In mode "both", ``Renorm(TopK(softmax(W_r(x + e_s) + b_r) ⊙
softmax(g + B_s)))`` equals ``Renorm(TopK(softmax(W_r x + o_s)))`` with ``o_s = g + B_s + W_r e_s + b_r``
(:meth:`SADGate.subject_logits`): ``B_s`` and ``W_r e_s`` route only through their sum, and the ‖B‖² penalty
makes the model carry the subject effect in ``W_r e_s``; read a subject's preference from ``subject_logits``,
not from ``softmax(g + B_s)``. Which parametrisation recovers subjects best at equal accuracy is measured, not
assumed: notebook 08's Table 4 trains the paper's, one without ``e_s`` on the router path
(``router_subject=False``, no redundancy), one with ``B_s`` unpenalised (``lambda_bias=0`` in MIND) and one
with the paper's balance loss (``balance="switch"``), over seeds, and scores each against the synthetic truth
(``mindlib.grid.PARAMETRISATIONS``, ``mindlib.analysis.routing_scores``; the figures are in
``papers/reproduction.md``). The paper's parametrisation is the default; the others are options.

**Balance loss.** The default ``"importance"`` (``E·ΣImp²``, what the authors' code computes) and the paper's
``"switch"`` (``E·ΣImp·Load``, Eq. 6) are both rows of notebook 08's Tables 2 and 4 (validation r, subject
recovery). The default was chosen by that measurement (docs/method.md §7): equal validation r on every backbone,
better subject recovery; the paper's loss is an option.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from mindlib.params import check_choice, check_literal_fields

Mode = Literal["both", "token", "prior"]  # Table 2: p_t ⊙ π_s (Eq. 3) | p_t only | π_s only
Balance = Literal["switch", "importance"]  # E·ΣImp·Load (paper Eq. 6) | E·ΣImp² (authors' code)
BiasInit = Literal["zeros", "normal"]  # B init: population prior | N(0, 1) (authors' code)
MODES: tuple[str, ...] = get_args(Mode)
BALANCES: tuple[str, ...] = get_args(Balance)
BIAS_INITS: tuple[str, ...] = get_args(BiasInit)


@dataclass(frozen=True, kw_only=True)
class SADGateOptions:
    """How SADGate routes, everything but the data-given ``d`` and ``S``: declared once, here.

    :class:`SADGateConfig` adds ``d_model`` and ``n_subjects``; :class:`mindlib.mind.MINDConfig` takes these
    options as they are (so ``build_model("mind", ..., top_k=1, mode="token")`` sets them) and hands them to
    its gate (:meth:`mindlib.mind.MINDConfig.gate_config`). Keyword-only.
    """

    n_experts: int = 8  # E
    top_k: int = 2  # K experts kept per token
    mode: Mode = "both"  # Table 2 ablation
    prior_top_k: bool = False  # mode="prior": keep only the K largest prior weights (extension of the paper)
    balance: Balance = "importance"  # balance-loss kind (chosen by measurement: docs/method.md §7)
    bias_init: BiasInit = "zeros"  # subject-bias init
    router_subject: bool = True  # e_s on the token router's input (Eq. 1) | False: subjects act through B_s only (see module doc)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.n_experts <= 0:
            raise ValueError(f"{name}.n_experts must be > 0, got {self.n_experts}")
        if not isinstance(self.router_subject, bool):
            raise ValueError(f"{name}.router_subject must be True or False, got {self.router_subject!r}")
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError(
                f"{name}.top_k={self.top_k} must satisfy 1 <= top_k <= n_experts={self.n_experts}"
            )
        check_literal_fields(self)

    def gate_options(self) -> dict:
        """The :class:`SADGateOptions` fields of this config, ``{name: value}``."""
        return {f.name: getattr(self, f.name) for f in fields(SADGateOptions)}

    @property
    def sparse(self) -> bool:
        """True when each token keeps exactly K experts (False only for mode="prior" without top-k)."""
        return self.mode != "prior" or self.prior_top_k


@dataclass(frozen=True)
class SADGateConfig(SADGateOptions):
    """Configuration of :class:`SADGate`: the token dim and subject count, plus :class:`SADGateOptions`."""

    d_model: int  # d, token dim
    n_subjects: int  # S

    def __post_init__(self) -> None:
        if self.d_model <= 0:
            raise ValueError(f"SADGateConfig.d_model must be > 0, got {self.d_model}")
        if self.n_subjects <= 0:
            raise ValueError(f"SADGateConfig.n_subjects must be > 0, got {self.n_subjects}")
        super().__post_init__()


class GateOutput(NamedTuple):
    """What SADGate decided for a batch.

    Attributes
    ----------
    weights : Tensor of shape (B, T, E)
        Expert weights ``w_t``; each row sums to 1 (K non-zeros, except mode="prior" without top-k
        where all E entries of ``π_s`` are used).
    router_probs : Tensor of shape (B, T, E)
        The distribution the selection was made from, before the prior: ``p_t`` of the token router
        (modes "both", "token"); in mode "prior" the router is not run and this is ``π_s`` broadcast.
        The balance loss reads it.
    prior : Tensor of shape (B, E)
        Subject prior ``π_s`` of each window's subject (returned in every mode).
    topk_idx : LongTensor of shape (B, T, K)
        Indices of the K largest weights, largest first.
    topk_weights : Tensor of shape (B, T, K)
        ``weights`` at ``topk_idx`` (they sum to 1, except in mode="prior" without top-k where they
        are the K largest prior weights and sum to less).
    """

    weights: Tensor
    router_probs: Tensor
    prior: Tensor
    topk_idx: Tensor
    topk_weights: Tensor


def _keep_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the k largest entries of ``scores`` (..., E), renormalised; return (weights, idx, kept)."""
    values, idx = scores.topk(k, dim=-1)  # (..., K), largest first
    kept = values / values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    weights = torch.zeros_like(scores).scatter(-1, idx, kept)
    return weights, idx, kept


class SADGate(nn.Module):
    """Subject-aware Top-K gate over E experts.

    Parameters
    ----------
    config : SADGateConfig

    Attributes
    ----------
    router : nn.Linear
        ``W_r, b_r`` of the token router, d -> E.
    subject_embedding : nn.Embedding
        ``e_s``, shape (S, d), init N(0, 0.02²) so every subject starts near the population.
    global_logits : nn.Parameter of shape (E,)
        ``g``, init 0.
    subject_bias : nn.Parameter of shape (S, E)
        ``B``, init 0 (or N(0, 1) with ``bias_init="normal"``).
    """

    def __init__(self, config: SADGateConfig) -> None:
        super().__init__()
        if not isinstance(config, SADGateConfig):
            raise TypeError(f"SADGate needs a SADGateConfig, got {type(config).__name__}")
        self.config = config
        S, d, E = config.n_subjects, config.d_model, config.n_experts
        self.router = nn.Linear(d, E)
        self.subject_embedding = nn.Embedding(S, d)
        nn.init.normal_(self.subject_embedding.weight, std=0.02)
        self.global_logits = nn.Parameter(torch.zeros(E))
        bias = torch.randn(S, E) if config.bias_init == "normal" else torch.zeros(S, E)
        self.subject_bias = nn.Parameter(bias)

    @property
    def n_subjects(self) -> int:
        """S, the number of subject slots."""
        return self.config.n_subjects

    def subject_prior(self, subject: Tensor) -> Tensor:
        """``π_s = softmax(g + B_s)`` for each subject, shape (B, E)."""
        return (self.global_logits + self.subject_bias[subject]).softmax(dim=-1)

    def population_prior(self) -> Tensor:
        """The prior of a new subject (``B_s = 0``): ``softmax(g)``, shape (E,)."""
        return self.global_logits.softmax(dim=-1)

    def forward(self, x: Tensor, subject: Tensor) -> GateOutput:
        """Route tokens.

        Parameters
        ----------
        x : Tensor of shape (B, T, d)
            AFIRE tokens.
        subject : LongTensor of shape (B,)
            Subject index of each window.

        Returns
        -------
        GateOutput
        """
        cfg = self.config
        B, T, d = x.shape
        if d != cfg.d_model:
            raise ValueError(f"SADGate: tokens have d={d}, config.d_model={cfg.d_model}")
        if subject.shape != (B,):
            raise ValueError(f"SADGate: subject must have shape (B={B},), got {tuple(subject.shape)}")
        prior = self.subject_prior(subject)  # (B, E)
        K = cfg.top_k
        if cfg.mode == "prior":
            probs = prior[:, None, :].expand(B, T, cfg.n_experts)  # (B, T, E)
            if cfg.prior_top_k:
                weights, idx, kept = _keep_top_k(probs, K)
            else:
                weights = probs
                kept, idx = probs.topk(K, dim=-1)
            return GateOutput(weights, probs, prior, idx, kept)
        if cfg.router_subject:
            logits = self.router(x + self.subject_embedding(subject)[:, None])  # (B, T, E)
        else:
            logits = self.router(x)  # the subject enters through B_s alone
        probs = logits.softmax(dim=-1)
        scores = probs * prior[:, None, :] if cfg.mode == "both" else probs
        weights, idx, kept = _keep_top_k(scores, K)
        return GateOutput(weights, probs, prior, idx, kept)

    def balance_loss(self, gate: GateOutput, mask: Tensor | None = None) -> Tensor:
        """:func:`balance_loss` of the configured kind; 0 in mode="prior" without top-k (nothing to balance)."""
        if not self.config.sparse:
            return gate.weights.new_zeros(())
        return balance_loss(gate, kind=self.config.balance, mask=mask)

    def bias_penalty(self) -> Tensor:
        """``‖B‖²_F`` (see :func:`bias_penalty`)."""
        return bias_penalty(self)

    @torch.no_grad()
    def add_subject(self) -> int:
        """Append one subject slot at the population: ``e_s`` = mean of the rows, ``B_s`` = 0.

        Returns the new subject's index. The parameter objects are replaced, so build optimisers
        after calling it.
        """
        old_emb, old_bias = self.subject_embedding.weight, self.subject_bias
        S = old_emb.shape[0]
        emb = nn.Embedding(S + 1, old_emb.shape[1], device=old_emb.device, dtype=old_emb.dtype)
        emb.weight.copy_(torch.cat([old_emb, old_emb.mean(dim=0, keepdim=True)]))
        self.subject_embedding = emb.train(self.training)  # keeps the mode the model was in (eval after fit)
        self.subject_bias = nn.Parameter(torch.cat([old_bias, old_bias.new_zeros(1, old_bias.shape[1])]))
        self.config = replace(self.config, n_subjects=S + 1)
        return S

    def subject_parameters(self) -> list[nn.Parameter]:
        """Parameters with a leading subject axis S that routing reads: ``[subject_embedding.weight,
        subject_bias]``, or ``[subject_bias]`` with ``router_subject=False`` (``e_s`` is then unused)."""
        if not self.config.router_subject:
            return [self.subject_bias]
        return [self.subject_embedding.weight, self.subject_bias]

    @torch.no_grad()
    def subject_logits(self) -> Tensor:
        """Each subject's effective prior: the token-independent logit offset of its routing, shape (S, E).

        In mode "both", ``Renorm(TopK(softmax(W_r (x + e_s) + b_r) ⊙ softmax(g + B_s)))`` equals
        ``Renorm(TopK(softmax(W_r x + o_s)))`` with ``o_s = g + B_s + W_r e_s + b_r``: ``B_s`` and
        ``W_r e_s`` are two parametrisations of one per-subject offset, and only their sum routes. Mode
        "token" drops ``g + B_s``, mode "prior" drops ``W_r e_s + b_r``; ``router_subject=False`` drops
        ``W_r e_s``. Softmax ignores a constant added to every expert, so compare offsets after centring.
        """
        cfg = self.config
        S, E = cfg.n_subjects, cfg.n_experts
        out = self.subject_bias.new_zeros(S, E)
        if cfg.mode != "token":
            out = out + self.global_logits + self.subject_bias
        if cfg.mode != "prior":
            out = out + self.router.bias
            if cfg.router_subject:
                out = out + self.subject_embedding.weight @ self.router.weight.T
        return out

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"S={cfg.n_subjects}, E={cfg.n_experts}, K={cfg.top_k}, mode={cfg.mode!r}, "
            f"router_subject={cfg.router_subject}"
        )


def balance_loss(gate: GateOutput, kind: Balance | None = None, mask: Tensor | None = None) -> Tensor:
    """Load-balancing loss of the token router (docs/method.md §7; paper Eq. 6).

    ``Imp_e`` = mean over tokens of ``router_probs[..., e]``; ``Load_e`` = fraction of tokens whose
    Top-K includes ``e``, divided by K (so ``Σ_e Load_e = 1``).

    - ``kind="importance"``: ``E · Σ_e Imp_e²`` (authors' code; the default).
    - ``kind="switch"``: ``E · Σ_e Imp_e · Load_e`` (paper). Gradients flow through ``Imp``.

    Both equal 1 at uniform routing and grow as routing collapses.

    Parameters
    ----------
    gate : GateOutput
    kind : {"importance", "switch"}, optional
        None: the default of :class:`SADGateOptions` ``balance``.
    mask : BoolTensor of shape (B, T), optional
        True for tokens that count (e.g. not padding). No counted token gives 0.

    Returns
    -------
    loss : scalar Tensor
    """
    if kind is None:
        kind = SADGateOptions.balance  # the one default
    check_choice(kind, BALANCES, "balance_loss(kind)")
    probs = gate.router_probs  # (B, T, E)
    B, T, E = probs.shape
    K = gate.topk_idx.shape[-1]
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=probs.device)
    if mask.shape != (B, T):
        raise ValueError(f"balance_loss: mask must have shape (B={B}, T={T}), got {tuple(mask.shape)}")
    w = mask.to(probs.dtype)  # (B, T)
    n_tokens = w.sum().clamp_min(1.0)
    importance = torch.einsum("bte,bt->e", probs, w) / n_tokens  # (E,)
    if kind == "importance":
        return E * (importance**2).sum()
    chosen = torch.zeros_like(probs).scatter(-1, gate.topk_idx, 1.0)  # (B, T, E) 1 where in Top-K
    load = torch.einsum("bte,bt->e", chosen, w) / (n_tokens * K)  # (E,)
    return E * (importance * load.detach()).sum()


def bias_penalty(gate_module: SADGate) -> Tensor:
    """``‖B‖²_F``, the squared Frobenius norm of the subject–expert bias (paper Eq. 5)."""
    return (gate_module.subject_bias**2).sum()
