"""Decoder registry: build MIND or a baseline from a name (docs/method.md §6, §8; paper Table 1).

``build_model("mind", afire, n_subjects, n_parcels, top_k=1)`` forwards the options to the decoder's
config, so a grid search or a notebook parameter cell can switch decoders by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal, get_args

from torch import nn

from mindlib.afire import AFIREConfig
from mindlib.baselines import BaselineConfig, BaselineDecoder, MLPConfig, MLPDecoder, MMoEConfig, MMoEDecoder
from mindlib.mind import MIND, MINDConfig
from mindlib.params import check_choice

Decoder = Literal["mind", "baseline", "mlp", "mmoe"]  # the torch decoders of Table 1
DECODERS: tuple[str, ...] = get_args(Decoder)  # names accepted by build_model
_REGISTRY: dict[str, tuple[type, type]] = {
    "mind": (MINDConfig, MIND),
    "baseline": (BaselineConfig, BaselineDecoder),
    "mlp": (MLPConfig, MLPDecoder),
    "mmoe": (MMoEConfig, MMoEDecoder),
}  # one entry per name of Decoder (tests/test_experiment.py checks they agree)


def decoder_options(decoder: str) -> tuple[str, ...]:
    """Option names ``build_model`` accepts for a decoder (its config fields beyond the common ones)."""
    config_cls, _ = _lookup(decoder)
    return tuple(f.name for f in fields(config_cls) if f.name not in ("afire", "n_subjects", "n_parcels"))


def _lookup(decoder: str) -> tuple[type, type]:
    check_choice(decoder, DECODERS, "decoder")
    return _REGISTRY[decoder]


def build_model(
    decoder: str,
    afire: AFIREConfig | Mapping[str, Any],
    n_subjects: int,
    n_parcels: int,
    **options: Any,
) -> nn.Module:
    """Build a decoder by name.

    Parameters
    ----------
    decoder : {"mind", "baseline", "mlp", "mmoe"}
    afire : AFIREConfig or dict
        Token interface; a dict is passed to ``AFIREConfig(**afire)``.
    n_subjects : int
        S.
    n_parcels : int
        V.
    **options
        Fields of the decoder's config (e.g. ``n_experts``, ``top_k``, ``mode`` for MIND;
        ``hidden`` for MLP); see :func:`decoder_options`.

    Returns
    -------
    model : nn.Module
        ``MIND``, ``BaselineDecoder``, ``MLPDecoder`` or ``MMoEDecoder``.

    Raises
    ------
    ValueError
        Unknown decoder name.
    TypeError
        An option the decoder's config does not have.
    """
    config_cls, model_cls = _lookup(decoder)
    if isinstance(afire, Mapping):
        afire = AFIREConfig(**afire)
    valid = decoder_options(decoder)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"build_model({decoder!r}) got unknown option(s) {unknown}; valid options: {list(valid)}"
        )
    config = config_cls(afire=afire, n_subjects=n_subjects, n_parcels=n_parcels, **options)
    return model_cls(config)
