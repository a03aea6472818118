"""Test stand-ins shared by the trainer and ISG tests: a tiny decoder obeying the decoder contract and a
planted problem whose answer is known (fmri = Σ_m X_m W_m · gain_s + bias_s + noise)."""

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mindlib.data import RunRecord

MODALITIES = {"video": 6, "text": 4}
V = 5


class TinyOutput(NamedTuple):
    pred: torch.Tensor
    gate: None
    aux_loss: torch.Tensor


class TinyDecoder(nn.Module):
    """Stand-in decoder obeying the contract: per-modality linear readout, per-subject gain and bias."""

    def __init__(self, modalities=MODALITIES, n_subjects=2, n_parcels=V, dropout=0.2):
        super().__init__()
        self.config = SimpleNamespace(
            afire=SimpleNamespace(modalities=tuple(modalities.items())), n_parcels=n_parcels
        )
        self.readout = nn.ModuleDict({m: nn.Linear(f, n_parcels) for m, f in modalities.items()})
        self.drop = nn.Dropout(dropout)
        self.subject_gain = nn.Parameter(torch.ones(n_subjects, n_parcels))
        self.subject_bias = nn.Parameter(torch.zeros(n_subjects, n_parcels))

    @property
    def n_subjects(self):
        return self.subject_bias.shape[0]

    def forward(self, features, subject, modality_mask=None):
        h = sum(self.readout[m](self.drop(x)) for m, x in features.items())  # (B, T, V)
        pred = h * self.subject_gain[subject][:, None] + self.subject_bias[subject][:, None]
        return TinyOutput(pred, None, 1e-3 * self.subject_bias.pow(2).sum())

    @torch.no_grad()
    def add_subject(self):
        S = self.n_subjects
        self.subject_gain = nn.Parameter(
            torch.cat([self.subject_gain, self.subject_gain.mean(0, keepdim=True)])
        )
        self.subject_bias = nn.Parameter(
            torch.cat([self.subject_bias, self.subject_bias.mean(0, keepdim=True)])
        )
        return S

    def subject_parameters(self):
        return [self.subject_gain, self.subject_bias]


def planted_weights(rng: np.random.Generator) -> dict:
    """True readout per modality, (F_m, V)."""
    return {m: rng.normal(size=(f, V)) / np.sqrt(f) for m, f in MODALITIES.items()}


def planted_records(subjects, runs, weights, rng, n_trs=40, noise=0.5, gain_step=0.5, bias_step=0.3) -> list:
    """Records of ``subjects`` × ``runs``; subject i has gain 1 + i·gain_step and bias i·bias_step; the
    first 3 TRs are invalid (lag not covered); run j is n_trs + j long."""
    records = []
    for run_i, run in enumerate(runs):
        feats = {m: rng.normal(size=(n_trs + run_i, f)).astype(np.float32) for m, f in MODALITIES.items()}
        for s_i, subject in enumerate(subjects):
            signal = (
                sum(feats[m] @ weights[m] for m in MODALITIES) * (1.0 + gain_step * s_i) + bias_step * s_i
            )
            fmri = (signal + noise * rng.normal(size=signal.shape)).astype(np.float32)
            valid = np.ones(len(fmri), dtype=bool)
            valid[:3] = False
            records.append(RunRecord(subject, s_i, run, fmri, feats, valid))
    return records


def spy_on_mix(monkeypatch) -> list:
    """Record the dispatch of every ``Experts.mix`` call (the method ``MIND.forward`` and the benchmark run)."""
    from mindlib.experts import Experts

    calls = []
    mix = Experts.mix

    def spy(self, x, gate, dispatch="sparse"):
        calls.append(dispatch)
        return mix(self, x, gate, dispatch)

    monkeypatch.setattr(Experts, "mix", spy)
    return calls
