"""MIND: the mixture-of-experts integrated decoder (docs/method.md §6-7; paper §2.4-2.5).

``AFIRE -> SADGate -> E experts``: AFIRE (:mod:`mindlib.afire`) turns the features of a window into TR
tokens ``x_t`` (B, T, d); SADGate (:mod:`mindlib.sadgate`) routes each token to K of E experts with the
weights ``w_t`` (B, T, E); the experts (:mod:`mindlib.experts`), each ``f_e: R^d -> R^V``, give the
prediction as the gate-weighted sum ``ŷ_t = Σ_e w_{t,e} f_e(x_t)`` (Eq. 4). Only the K selected experts
run on a token (``dispatch="sparse"``, equal to the dense formula up to float rounding); when the gate
keeps every expert (mode="prior" without top-k) ``MIND.forward`` uses the dense formula. The auxiliary
loss ``λ1·L_bal + λ2·‖B‖²_F`` (Eq. 5) is returned with the prediction in a
:class:`~mindlib.decoder.ModelOutput`, never stored on the module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from torch import Tensor, nn

from mindlib.afire import AFIRE, AFIREConfig
from mindlib.decoder import ModelOutput, check_subject_indices
from mindlib.experts import Dispatch, Expert, Experts
from mindlib.sadgate import SADGate, SADGateConfig, SADGateOptions


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
        check_subject_indices(subject, self.n_subjects)
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
