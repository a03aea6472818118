"""Reading a trained MIND: gates over whole runs, subject priors, expert usage by content (paper §3.4).

These helpers feed notebooks 05 and 09: what SADGate decided at every TR of a run, how experts divide
content types (the synthetic truth, or speech vs no speech from real transcripts), the subject × expert
prior ``softmax(g + B_s)``, and — on the synthetic study — how well learned experts recover the true
response modes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mindlib import align, data, layout, metrics, train


def gate_runs(model: torch.nn.Module, records: Sequence, window: int = 100, batch_size: int = 16) -> list[np.ndarray]:
    """Gate weights of every TR of whole runs.

    Parameters
    ----------
    model : MIND
        Any decoder whose output has a ``gate`` with ``weights`` ``(B, T, E)``.
    records : list of RunRecord
    window : int
        Window length (as in training); overlapping windows are averaged, the last aligned to the end
        (the covering of :func:`mindlib.train.predict_runs`).

    Returns
    -------
    list of ndarray of shape (T, E), one per record.
    """

    def weights(out):
        if out.gate is None:
            raise ValueError(f"{type(model).__name__} has no gate to read")
        return out.gate.weights

    return train.predict_runs(model, records, window=window, batch_size=batch_size, output=weights)


@torch.no_grad()
def subject_priors(model: torch.nn.Module) -> np.ndarray:
    """The subject prior ``π_s = softmax(g + B_s)`` of every subject, shape ``(S, E)``."""
    gate = model.gate
    return torch.softmax(gate.global_logits[None, :] + gate.subject_bias, dim=-1).cpu().numpy()


def usage_by_label(gates: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_labels: int,
                   valid: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Mean gate weight of each expert per label (content type), shape ``(n_labels, E)``.

    ``gates`` are ``(T, E)`` per run, ``labels`` ``(T,)`` ints in ``[0, n_labels)`` per run; rows of labels
    that never occur are NaN.
    """
    G = np.concatenate([g if valid is None else g[v] for g, v in zip(gates, valid or [None] * len(gates))])
    y = np.concatenate([lab if valid is None else lab[v] for lab, v in zip(labels, valid or [None] * len(labels))])
    out = np.full((n_labels, G.shape[1]), np.nan)
    for c in range(n_labels):
        if (y == c).any():
            out[c] = G[y == c].mean(0)
    return out


def match_experts(learned: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, float]:
    """Correlate learned expert weights with true mode gates over time.

    Parameters
    ----------
    learned : ndarray of shape (N, E)
        Learned gate weights at N TRs.
    true : ndarray of shape (N, M)
        True mode gates at the same TRs.

    Returns
    -------
    corr : ndarray of shape (M, E)
        Pearson r of each true mode with each expert (NaN for an expert that never varies).
    recovery : float
        Mean over true modes of the best ``|r|`` reached by any expert: 1 = every true mode has an expert that
        follows it exactly, 0 = no relation.
    """
    M = true.shape[1]
    corr = np.array([[metrics.pearson_r(true[:, [m]], learned[:, [e]])[0] if learned[:, e].std() > 0 else np.nan
                      for e in range(learned.shape[1])] for m in range(M)])
    with np.errstate(all="ignore"):
        recovery = float(np.nanmean(np.nanmax(np.abs(corr), axis=1)))
    return corr, recovery


def speech_labels(root, record, tr_s: float = align.TR_S, lag_trs: float = align.DEFAULT_LAG_TRS) -> np.ndarray:
    """1 where the stimulus window read by a TR (at the lag) contains a spoken word, else 0: ``(T,)`` ints.

    Real data has no content labels; speech vs no speech comes from the run's transcript TSV.
    """
    words = data.transcript_words(layout.transcript_path(root, record.run))
    t = np.arange(record.n_trs)
    lo, hi = t * tr_s - lag_trs * tr_s, (t + 1) * tr_s - lag_trs * tr_s
    on = words["onset_s"].to_numpy(float)
    return ((on[None, :] >= lo[:, None]) & (on[None, :] < hi[:, None])).any(1).astype(int)


def content_labels(root, records: Sequence) -> tuple[list[np.ndarray], list[str]]:
    """Content label of every TR of each record, and the label names.

    On the synthetic study: the true content type driving each TR (``ground_truth``). On real data, which
    has no content labels: speech vs no speech from the transcripts (:func:`speech_labels`).

    Returns
    -------
    labels : list of ndarray of shape (T,), ints
    names : list of str
    """
    from mindlib import synthetic

    if synthetic.study_json_path(root).exists():
        truth = synthetic.load_ground_truth(root, subjects=sorted({r.subject for r in records}))
        return [truth["subjects"][r.subject]["content_tr"][r.run] for r in records], list(truth["content_types"])
    return [speech_labels(root, r) for r in records], ["no speech", "speech"]


class WithoutModalities(torch.nn.Module):
    """A decoder that sees some modalities as missing at inference (AFIRE's missing-modality mask).

    ``WithoutModalities(model, ["text"])`` predicts as if the text features were absent: AFIRE drops them
    from the fusion (concat: zeros; sum/gated: renormalised over the rest). Use it anywhere a model goes,
    e.g. ``train.evaluate(WithoutModalities(model, ["audio"]), records)``.
    """

    def __init__(self, model: torch.nn.Module, absent: Sequence[str]):
        super().__init__()
        self.model = model
        names = [m for m, _ in model.config.afire.modalities]
        unknown = sorted(set(absent) - set(names))
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; the model has {names}")
        if set(absent) >= set(names):
            raise ValueError("at least one modality must stay present")
        self.register_buffer("present", torch.tensor([m not in absent for m in names]))
        self.config = model.config

    @property
    def n_subjects(self) -> int:
        return self.model.n_subjects

    def forward(self, features, subject, modality_mask=None):
        mask = self.present.expand(subject.shape[0], -1)
        if modality_mask is not None:
            mask = mask & modality_mask
        return self.model(features, subject, modality_mask=mask)
