"""What every torch decoder shares: its output, its subject indices, its initialisation, its size.

MIND (:mod:`mindlib.mind`, docs/method.md §6) and the baselines of Table 1 (:mod:`mindlib.baselines`,
docs/method.md §8) keep one contract, so that training, evaluation and calibration treat them alike:

- ``forward(features, subject, modality_mask=None) -> ModelOutput`` with ``pred`` (B, T, V);
- ``subject`` is a LongTensor (B,) of indices in ``[0, n_subjects)`` (:func:`check_subject_indices`);
- ``add_subject()`` appends a subject slot and ``subject_parameters()`` lists the parameters whose
  leading axis is S (few-shot calibration trains their new row).

Their weight matrices are initialised like ``nn.Linear`` (:func:`uniform_parameter`), and their size is
counted by :func:`n_parameters`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mindlib.sadgate import GateOutput

__all__ = ["ModelOutput", "check_subject_indices", "uniform_parameter", "n_parameters"]


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


def check_subject_indices(subject: Tensor, n_subjects: int) -> None:
    """Check the subject indices of a batch before a decoder uses them.

    Parameters
    ----------
    subject : LongTensor of shape (B,)
        Subject index of each window.
    n_subjects : int
        S, the decoder's number of subject slots: valid indices are ``[0, S)``.

    Raises
    ------
    ValueError
        ``subject`` is not one-dimensional, or holds an index outside ``[0, S)``; the message names the
        indices, the range, and ``add_subject()`` as the way to give a new subject a slot.
    """
    if subject.ndim != 1:
        raise ValueError(f"subject must be a LongTensor of shape (B,), got shape {tuple(subject.shape)}")
    if subject.numel() and (int(subject.min()) < 0 or int(subject.max()) >= n_subjects):
        raise ValueError(
            f"subject indices {subject.unique().tolist()} outside [0, {n_subjects}); call add_subject() "
            "for a new subject"
        )


def uniform_parameter(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """A new parameter initialised like ``nn.Linear``'s weight and bias: ``U(-1/√fan_in, 1/√fan_in)``.

    Stacked heads (E experts, S subjects) store their ``Linear`` weights as one tensor; this gives each
    slice the distribution ``nn.Linear(fan_in, ·)`` would give it.

    Parameters
    ----------
    shape : tuple of int
        Shape of the parameter, e.g. (E, d, V) for E stacked ``Linear(d, V)`` weights, (E, V) for
        their biases.
    fan_in : int
        Input width of the layer the parameter belongs to (d for ``Linear(d, V)``), for the weight and
        the bias alike.

    Returns
    -------
    param : nn.Parameter of shape ``shape``
        Drawn from torch's default generator.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def n_parameters(module: nn.Module, *, trainable_only: bool) -> int:
    """Number of scalar parameters of a module.

    The rule is the caller's to state, since the two counts differ as soon as a parameter is frozen
    (``requires_grad=False``, e.g. a decoder during few-shot calibration): the size of a fitted decoder
    (``ExperimentResult.n_params``, the benchmarks' ``params_M``) counts every parameter; the size of
    what an optimiser would train (AFIRE's parameters in notebook 03) counts the trainable ones.

    Parameters
    ----------
    module : nn.Module
    trainable_only : bool
        Count only the parameters with ``requires_grad``.

    Returns
    -------
    int
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
