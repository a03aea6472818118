"""AFIRE: the agnostic interface from backbone features to TR tokens (docs/method.md §4; paper §2.2).

Per modality ``m`` a projector ``P_m`` maps TR-aligned features ``(B, T, F_m)`` to the shared token
space ``(B, T, d)``; a fusion operator merges the modalities into one token stream; a temporal
module mixes neighbouring TRs. The output tokens ``(B, T, d)`` feed every decoder (MIND and the
baselines), so a new backbone only needs a new :class:`AFIREConfig`.

TR aggregation happens upstream: the data loader applies :func:`mindlib.align.align_features`
(overlap weights ``W`` of shape ``(T, T_f)`` from 2 Hz frames to TRs, with the haemodynamic lag), so
AFIRE receives TR-aligned features. :func:`aggregate_frames` is the torch form of the same
operation for users holding raw 2 Hz frames.

Missing modalities: a ``modality_mask`` of shape ``(B, M)`` (True = present, in
``AFIREConfig.modalities`` order) marks absent inputs; a modality left out of the ``features`` dict
is absent for every row. ``concat`` zeroes an absent modality's projection; ``sum`` and ``gated``
exclude it and renormalise over the present ones. In training, ``modality_dropout`` drops each
modality of each window with that probability, never all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mindlib.params import check_literal_fields

Projector = Literal["linear", "mlp"]  # P_m: Linear | Linear + LayerNorm + GELU + Dropout
Fusion = Literal["concat", "sum", "gated"]  # how the modalities merge into one token stream
Temporal = Literal["mlp", "transformer", "none"]  # the temporal module over neighbouring TRs
PROJECTORS: tuple[str, ...] = get_args(Projector)
FUSIONS: tuple[str, ...] = get_args(Fusion)
TEMPORALS: tuple[str, ...] = get_args(Temporal)


@dataclass(frozen=True)
class AFIREConfig:
    """Configuration of :class:`AFIRE`.

    ``modalities`` is a tuple of ``(name, F_m)`` pairs, in the order used by ``modality_mask``;
    a dict ``{name: F_m}`` is accepted and converted (insertion order kept).
    """

    modalities: tuple[tuple[str, int], ...]  # (name, F_m) per modality, M entries
    d_model: int = 256  # d, token dim
    projector: Projector = "linear"  # mlp = Linear + LayerNorm + GELU + Dropout
    fusion: Fusion = "concat"  # how modalities merge into one stream
    temporal: Temporal = "mlp"  # paper default: lightweight temporal MLP
    context_trs: int = 2  # ±TRs seen by the temporal MLP (depthwise conv kernel 2w+1)
    max_len: int = 512  # longest window in TRs (learned positional embedding)
    n_layers: int = 2  # transformer layers (temporal="transformer")
    n_heads: int = 4  # transformer heads (must divide d_model)
    dropout: float = 0.1  # dropout inside projector / temporal module
    modality_dropout: float = 0.0  # training: P(drop a whole modality of a window)

    def __post_init__(self) -> None:
        mods = self.modalities
        if isinstance(mods, Mapping):
            mods = tuple(mods.items())
        try:
            mods = tuple((str(name), int(dim)) for name, dim in mods)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"AFIREConfig.modalities must be (name, F_m) pairs or a dict {{name: F_m}}, got {self.modalities!r}"
            ) from err
        object.__setattr__(self, "modalities", mods)
        if len(mods) == 0:
            raise ValueError("AFIREConfig.modalities is empty: name at least one (name, F_m) modality")
        names = [name for name, _ in mods]
        if len(set(names)) != len(names):
            raise ValueError(f"AFIREConfig.modalities has duplicate names: {names}")
        for name, dim in mods:
            if dim <= 0:
                raise ValueError(f"AFIREConfig: modality {name!r} has feature dim {dim}; it must be > 0")
        if self.d_model <= 0:
            raise ValueError(f"AFIREConfig.d_model must be > 0, got {self.d_model}")
        check_literal_fields(self)  # projector, fusion, temporal
        if self.context_trs < 0:
            raise ValueError(f"AFIREConfig.context_trs must be >= 0, got {self.context_trs}")
        if self.max_len <= 0:
            raise ValueError(f"AFIREConfig.max_len must be > 0, got {self.max_len}")
        if self.temporal == "transformer":
            if self.n_layers <= 0 or self.n_heads <= 0:
                raise ValueError(
                    f"AFIREConfig: transformer needs n_layers, n_heads > 0, got {self.n_layers}, {self.n_heads}"
                )
            if self.d_model % self.n_heads != 0:
                raise ValueError(
                    f"AFIREConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"AFIREConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"AFIREConfig.modality_dropout must be in [0, 1), got {self.modality_dropout}")

    @property
    def names(self) -> tuple[str, ...]:
        """Modality names, in mask order."""
        return tuple(name for name, _ in self.modalities)

    @property
    def n_modalities(self) -> int:
        """M, the number of modalities."""
        return len(self.modalities)


def aggregate_frames(frames: Tensor, W: Tensor | np.ndarray) -> Tensor:
    """TR tokens from 2 Hz frames: the torch form of ``W @ frames`` (:mod:`mindlib.align`).

    Parameters
    ----------
    frames : Tensor of shape (B, T_f, F)
        Feature frames at ``feature_hz``.
    W : Tensor or ndarray of shape (T, T_f)
        Overlap weights from :func:`mindlib.align.overlap_matrix` (rows sum to 1 where covered).

    Returns
    -------
    tokens : Tensor of shape (B, T, F)
    """
    W = torch.as_tensor(W, dtype=frames.dtype, device=frames.device)
    if frames.ndim != 3 or W.ndim != 2 or W.shape[1] != frames.shape[1]:
        raise ValueError(
            f"aggregate_frames needs frames (B, T_f, F) and W (T, T_f), got {tuple(frames.shape)} and "
            f"{tuple(W.shape)}"
        )
    return torch.einsum("tk,bkf->btf", W, frames)


class TemporalMLP(nn.Module):
    """Residual temporal MLP over a ±w TR window: depthwise conv -> GELU -> Linear -> Dropout, + LayerNorm."""

    def __init__(self, d_model: int, context_trs: int, dropout: float) -> None:
        super().__init__()
        kernel = 2 * context_trs + 1
        self.conv = nn.Conv1d(d_model, d_model, kernel, padding=context_trs, groups=d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        h = self.drop(self.proj(F.gelu(h)))
        return self.norm(x + h)


class AFIRE(nn.Module):
    """Project, fuse and temporally mix TR-aligned modality features into tokens ``(B, T, d)``.

    Parameters
    ----------
    config : AFIREConfig

    Notes
    -----
    Inputs are TR-aligned (see the module docstring): TR aggregation of 2 Hz frames is done upstream
    by :func:`mindlib.align.align_features` or, in torch, :func:`aggregate_frames`.
    """

    def __init__(self, config: AFIREConfig) -> None:
        super().__init__()
        if not isinstance(config, AFIREConfig):
            raise TypeError(f"AFIRE needs an AFIREConfig, got {type(config).__name__}")
        self.config = config
        d, M = config.d_model, config.n_modalities
        projectors = []
        for _, dim in config.modalities:
            if config.projector == "linear":
                projectors.append(nn.Linear(dim, d))
            else:
                projectors.append(
                    nn.Sequential(nn.Linear(dim, d), nn.LayerNorm(d), nn.GELU(), nn.Dropout(config.dropout))
                )
        self.projectors = nn.ModuleList(projectors)  # in config.modalities order
        if config.fusion == "concat":
            self.fuse = nn.Linear(M * d, d)
        elif config.fusion == "gated":
            self.fusion_logits = nn.Parameter(torch.zeros(M))  # softmax over present modalities
        if config.temporal in ("mlp", "transformer"):
            self.pos_embedding = nn.Parameter(torch.randn(config.max_len, d) * 0.02)  # (max_len, d)
        if config.temporal == "mlp":
            self.temporal = TemporalMLP(d, config.context_trs, config.dropout)
        elif config.temporal == "transformer":
            layer = nn.TransformerEncoderLayer(
                d,
                config.n_heads,
                dim_feedforward=4 * d,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.temporal = nn.Sequential(
                nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False), nn.LayerNorm(d)
            )
        else:
            self.temporal = nn.LayerNorm(d)

    def _presence(
        self, features: Mapping[str, Tensor], modality_mask: Tensor | None
    ) -> tuple[int, int, torch.device, Tensor]:
        """Check inputs; return B, T, device and the presence mask (B, M) bool."""
        cfg = self.config
        unknown = sorted(set(features) - set(cfg.names))
        if unknown:
            raise ValueError(
                f"AFIRE got features for unknown modalities {unknown}; configured: {list(cfg.names)}"
            )
        given = [name for name in cfg.names if name in features]
        if not given:
            raise ValueError(f"AFIRE got no features; expected some of {list(cfg.names)}")
        B, T = features[given[0]].shape[:2]
        for name, dim in cfg.modalities:
            if name not in features:
                continue
            x = features[name]
            if x.ndim != 3 or x.shape[0] != B or x.shape[1] != T or x.shape[2] != dim:
                raise ValueError(
                    f"AFIRE: features[{name!r}] has shape {tuple(x.shape)}; expected (B={B}, T={T}, F_m={dim})"
                )
        device = features[given[0]].device
        if modality_mask is None:
            present = torch.ones(B, cfg.n_modalities, dtype=torch.bool, device=device)
        else:
            if tuple(modality_mask.shape) != (B, cfg.n_modalities):
                raise ValueError(
                    f"AFIRE: modality_mask has shape {tuple(modality_mask.shape)}; expected (B={B}, M={cfg.n_modalities})"
                )
            present = modality_mask.to(device=device, dtype=torch.bool).clone()
        for m, name in enumerate(cfg.names):
            if name not in features:
                present[:, m] = False
        if not bool(present.any(dim=1).all()):
            rows = torch.nonzero(~present.any(dim=1)).flatten().tolist()
            raise ValueError(
                f"AFIRE: rows {rows} have every modality absent (modality_mask all False or features missing); "
                "each window needs at least one modality"
            )
        return B, T, device, present

    def _drop_modalities(self, present: Tensor) -> Tensor:
        """Training-time modality dropout: drop each present modality with P = modality_dropout, never all."""
        p = self.config.modality_dropout
        if not self.training or p == 0.0:
            return present
        keep = present & (torch.rand(present.shape, device=present.device) >= p)
        empty = ~keep.any(dim=1)  # (B,) rows where everything was dropped
        if bool(empty.any()):
            scores = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
            rescue = F.one_hot(scores.argmax(dim=1), present.shape[1]).bool()  # one random present modality
            keep = torch.where(empty[:, None], rescue, keep)
        return keep

    def forward(self, features: Mapping[str, Tensor], modality_mask: Tensor | None = None) -> Tensor:
        """Tokens from TR-aligned features.

        Parameters
        ----------
        features : dict of str to Tensor of shape (B, T, F_m)
            TR-aligned features per modality (a modality left out is absent for every row).
        modality_mask : BoolTensor of shape (B, M), optional
            True where modality ``m`` is present, in ``config.modalities`` order.

        Returns
        -------
        tokens : Tensor of shape (B, T, d)
        """
        cfg = self.config
        B, T, device, present = self._presence(features, modality_mask)
        if cfg.temporal != "none" and T > cfg.max_len:
            raise ValueError(
                f"AFIRE: window of T={T} TRs exceeds max_len={cfg.max_len}; use shorter windows or build the "
                f"model with AFIREConfig(max_len>={T})"
            )
        present = self._drop_modalities(present)
        ref = next(features[name] for name in cfg.names if name in features)
        zeros = None
        projected = []  # M tensors (B, T, d)
        for m, (name, _) in enumerate(cfg.modalities):
            if name in features:
                projected.append(self.projectors[m](features[name]))
            else:
                if zeros is None:
                    zeros = ref.new_zeros(B, T, cfg.d_model)
                projected.append(zeros)
        z = torch.stack(projected, dim=2)  # (B, T, M, d)
        weights = present.to(z.dtype)  # (B, M)
        if cfg.fusion == "concat":
            z = z * weights[:, None, :, None]
            x = self.fuse(z.reshape(B, T, cfg.n_modalities * cfg.d_model))
        elif cfg.fusion == "sum":
            scale = cfg.n_modalities / weights.sum(dim=1)  # (B,) M / n_present
            x = torch.einsum("btmd,bm->btd", z, weights * scale[:, None])
        else:
            logits = self.fusion_logits.expand(B, -1).masked_fill(~present, float("-inf"))
            x = torch.einsum("btmd,bm->btd", z, logits.softmax(dim=1))
        if cfg.temporal != "none":
            x = x + self.pos_embedding[:T]
        return self.temporal(x)

    def extra_repr(self) -> str:
        cfg = self.config
        return f"M={cfg.n_modalities}, d={cfg.d_model}, fusion={cfg.fusion!r}, temporal={cfg.temporal!r}"
