"""Reading a trained MIND: gates over whole runs, subject priors, expert usage by content (paper §3.4).

These helpers feed notebooks 08 and 10: what SADGate decided at every TR of a run, how experts divide
content types (the synthetic truth, or speech vs no speech from real transcripts), the subject × expert
prior ``softmax(g + B_s)``, and — on the synthetic study — how well learned experts recover the true
response modes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mindlib import align, data, layout, metrics, sadgate, synthetic, train


def gate_runs(
    model: torch.nn.Module, records: Sequence, prediction: train.Prediction = train.Prediction(), **settings
) -> list[np.ndarray]:
    """Gate weights of every TR of whole runs.

    Parameters
    ----------
    model : MIND
        Any decoder whose output has a ``gate`` with ``weights`` ``(B, T, E)``.
    records : list of RunRecord
    prediction : mindlib.train.Prediction
        Window (as in training), stride, batch size, device, amp; overlapping windows are averaged, the last
        aligned to the end (the covering of :func:`mindlib.train.predict_runs`).
    **settings
        Fields of ``prediction`` to change for this call (``window=50``).

    Returns
    -------
    list of ndarray of shape (T, E), one per record.
    """

    def weights(out):
        if out.gate is None:
            raise ValueError(f"{type(model).__name__} has no gate to read")
        return out.gate.weights

    return train.predict_runs(model, records, prediction, output=weights, **settings)


@torch.no_grad()
def subject_priors(model: torch.nn.Module) -> np.ndarray:
    """The subject prior ``π_s = softmax(g + B_s)`` of every subject, shape ``(S, E)``."""
    gate = model.gate
    return torch.softmax(gate.global_logits[None, :] + gate.subject_bias, dim=-1).cpu().numpy()


def usage_by_label(
    gates: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    n_labels: int,
    valid: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Mean gate weight of each expert per label (content type), shape ``(n_labels, E)``.

    ``gates`` are ``(T, E)`` per run, ``labels`` ``(T,)`` ints in ``[0, n_labels)`` per run; rows of labels
    that never occur are NaN.
    """
    G = np.concatenate([g if valid is None else g[v] for g, v in zip(gates, valid or [None] * len(gates))])
    y = np.concatenate(
        [lab if valid is None else lab[v] for lab, v in zip(labels, valid or [None] * len(labels))]
    )
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
    corr = np.array(
        [
            [
                metrics.pearson_r(true[:, [m]], learned[:, [e]])[0] if learned[:, e].std() > 0 else np.nan
                for e in range(learned.shape[1])
            ]
            for m in range(M)
        ]
    )
    with np.errstate(all="ignore"):
        recovery = float(np.nanmean(np.nanmax(np.abs(corr), axis=1)))
    return corr, recovery


@torch.no_grad()
def subject_logits(model: torch.nn.Module) -> np.ndarray:
    """Each subject's effective prior, the logit offset ``g + B_s + W_r e_s + b_r`` of its routing, ``(S, E)``.

    See :meth:`mindlib.sadgate.SADGate.subject_logits`: in mode "both" ``B_s`` and ``W_r e_s`` route only
    through their sum, so this (not ``softmax(g + B_s)`` alone) is what a subject's routing prefers.
    """
    return model.gate.subject_logits().cpu().numpy()


def mean_routing(gates: Sequence[np.ndarray], records: Sequence) -> tuple[np.ndarray, list[str]]:
    """Mean gate weight of each expert per subject over the valid TRs of its runs.

    Parameters
    ----------
    gates : list of ndarray of shape (T, E)
        :func:`gate_runs` of ``records``.
    records : list of RunRecord

    Returns
    -------
    usage : ndarray of shape (S, E)
        Rows in the order subjects first appear in ``records``.
    subjects : list of str
    """
    if len(gates) != len(records):
        raise ValueError(f"mean_routing: {len(gates)} gate arrays for {len(records)} records")
    subjects = list(dict.fromkeys(r.subject for r in records))
    rows = []
    for s in subjects:
        G = np.concatenate([g[np.asarray(r.valid, bool)] for g, r in zip(gates, records) if r.subject == s])
        rows.append(G.mean(0))
    return np.array(rows), subjects


def match_modes(corr: np.ndarray) -> np.ndarray:
    """One distinct expert per true mode, maximising the summed correlation (Hungarian matching).

    Parameters
    ----------
    corr : ndarray of shape (M, E), M <= E
        ``corr[m, e]`` = r(true mode m's gate, expert e's weight) (:func:`match_experts`); NaN counts as -1.

    Returns
    -------
    expert : ndarray of shape (M,), int
        The expert matched to each true mode (``scipy.optimize.linear_sum_assignment``).
    """
    from scipy.optimize import linear_sum_assignment

    M, E = corr.shape
    if M > E:
        raise ValueError(f"match_modes: {M} true modes but only {E} experts; one expert per mode is needed")
    rows, cols = linear_sum_assignment(np.nan_to_num(corr, nan=-1.0), maximize=True)
    return cols[np.argsort(rows)]


def within_run_correlation(
    learned: Sequence[np.ndarray], true: Sequence[np.ndarray], valid: Sequence[np.ndarray]
) -> np.ndarray:
    """r(true mode gate, learned expert weight) over time, each run centred first, ``(M, E)``.

    Centring every run removes each subject's (and run's) mean routing, so matching experts to modes with
    this matrix does not look at the subject structure the match is then used to score.
    """

    def centred(arrays):
        return np.concatenate(
            [a[np.asarray(v, bool)] - a[np.asarray(v, bool)].mean(0) for a, v in zip(arrays, valid)]
        )

    corr, _ = match_experts(centred(learned), centred(true))
    return corr


def subject_structure(learned: np.ndarray, true: np.ndarray, expert: np.ndarray) -> np.ndarray:
    """How well a learned per-subject quantity follows the true one across matched modes, one r per subject.

    Both are centred over subjects (each mode's population mean removed: what is left is how subjects
    differ), the learned one read at the expert matched to each mode; the score of subject s is the Pearson
    r over the M modes between its learned and true deviations.

    Parameters
    ----------
    learned : ndarray of shape (S, E)
        E.g. :func:`subject_logits`, or the log of :func:`mean_routing`.
    true : ndarray of shape (S, M)
        E.g. the synthetic truth's ``mode_bias`` of each subject (same subject order).
    expert : ndarray of shape (M,), int
        :func:`match_modes`.

    Returns
    -------
    r : ndarray of shape (S,)
        NaN for a subject whose deviations are constant.
    """
    if learned.shape[0] != true.shape[0] or len(expert) != true.shape[1]:
        raise ValueError(
            f"subject_structure: learned {learned.shape}, true {true.shape}, {len(expert)} matched experts"
        )
    a = learned[:, expert]
    a = a - a.mean(0)
    b = true - true.mean(0)
    return metrics.pearson_r(a.T, b.T)


def subject_routing(
    model: torch.nn.Module,
    root,
    records: Sequence,
    prediction: train.Prediction = train.Prediction(),
    **settings,
) -> dict:
    """A trained MIND's subject structure, scored against the synthetic truth after matching experts to modes
    (docs/method.md §5, §10).

    1. gates over whole ``records`` (:func:`gate_runs`); experts matched one-to-one to the true response
       modes by :func:`match_modes` on the within-run correlation of gate weights over time
       (:func:`within_run_correlation`, blind to subject offsets);
    2. each subject's effective prior (:func:`subject_logits`) against its true ``mode_bias`` and its log mean
       routing (:func:`mean_routing`) against the log of its true mean gate, both by :func:`subject_structure`.

    Parameters
    ----------
    model : MIND
    root : path
        A synthetic study (its ``ground_truth/``).
    records : list of RunRecord
        Runs of every subject the model has a slot for (``subject_index`` = its slot), e.g. the val split.
    prediction, **settings
        How the gates are read over whole runs (:func:`gate_runs`; ``window`` as in training).

    Returns
    -------
    dict
        ``subjects`` (S,), ``expert_of_mode`` (M,), ``mode_names``, ``corr`` (M, E) within-run r,
        ``logits`` (S, E) effective priors, ``usage`` (S, E) mean routing, ``true_bias`` (S, M),
        ``true_usage`` (S, M), ``prior_r`` / ``usage_r``: {subject: r}, their means ``prior_r_mean`` and
        ``usage_r_mean``, and ``logit_spread``: std over subjects of the centred effective prior, mean over
        experts (how far subjects are apart), with its parts ``bias_spread`` (``B_s``) and
        ``embedding_spread`` (``W_r e_s``).
    """
    records = list(records)
    gates = gate_runs(model, records, prediction, **settings)
    usage, subjects = mean_routing(gates, records)
    slot = {r.subject: int(r.subject_index) for r in records}
    truth = synthetic.load_ground_truth(root, subjects=subjects)
    true_gates = [truth["subjects"][r.subject]["gates_tr"][r.run] for r in records]
    corr = within_run_correlation(gates, true_gates, [r.valid for r in records])
    expert = match_modes(corr)
    true_usage, _ = mean_routing(true_gates, records)
    true_bias = np.array([truth["subjects"][s]["mode_bias"] for s in subjects])
    logits = subject_logits(model)[[slot[s] for s in subjects]]
    prior_r = subject_structure(logits, true_bias, expert)
    usage_r = subject_structure(np.log(np.clip(usage, 1e-6, None)), np.log(true_usage), expert)
    gate = model.gate
    with torch.no_grad():
        idx = torch.tensor([slot[s] for s in subjects])
        bias = gate.subject_bias[idx].cpu().numpy()
        emb = (gate.subject_embedding.weight[idx] @ gate.router.weight.T).cpu().numpy()
    if not gate.config.router_subject:
        emb = np.zeros_like(emb)

    def spread(a):
        a = a - a.mean(1, keepdims=True)
        return float(a.std(0).mean())

    with np.errstate(all="ignore"):
        return {
            "subjects": subjects,
            "expert_of_mode": expert,
            "mode_names": list(truth["mode_names"]),
            "corr": corr,
            "logits": logits,
            "usage": usage,
            "true_bias": true_bias,
            "true_usage": true_usage,
            "prior_r": dict(zip(subjects, map(float, prior_r))),
            "usage_r": dict(zip(subjects, map(float, usage_r))),
            "prior_r_mean": float(np.nanmean(prior_r)),
            "usage_r_mean": float(np.nanmean(usage_r)),
            "logit_spread": spread(logits),
            "bias_spread": spread(bias),
            "embedding_spread": spread(emb),
        }


ROUTING_SCORES: tuple[str, ...] = (
    "prior_r_mean",
    "usage_r_mean",
    "logit_spread",
    "bias_spread",
    "embedding_spread",
)  # what :func:`routing_scores` keeps of :func:`subject_routing`


def routing_scores(
    model: torch.nn.Module,
    root,
    records: Sequence,
    prediction: train.Prediction = train.Prediction(),
    **settings,
) -> dict[str, float]:
    """One row of notebook 08's parametrisation table (Table 4) for a trained MIND.

    Subject recovery (:data:`ROUTING_SCORES` of :func:`subject_routing`, synthetic studies only) beside both
    balance losses of the trained gate over the same runs (:func:`balance_over_runs`, as ``balance_switch`` and
    ``balance_importance``).

    Parameters
    ----------
    model : MIND
    root : path
        A synthetic study.
    records : list of RunRecord
        Runs of every subject, e.g. the validation split.
    prediction, **settings
        As in :func:`gate_runs` (``window`` as in training).
    """
    rr = subject_routing(model, root, records, prediction, **settings)
    bal = balance_over_runs(model, records, prediction, **settings)
    return {**{k: float(rr[k]) for k in ROUTING_SCORES}, **{f"balance_{k}": v for k, v in bal.items()}}


def missing_modality_scores(
    model: torch.nn.Module, records: Sequence, prediction: train.Prediction = train.Prediction(), **settings
) -> dict[str, float]:
    """Mean Pearson r over ``records`` with each modality removed at inference (one at a time).

    The score with every modality present is the cell's own ``val_r`` (notebook 06's results file), so it is
    not computed again here.

    Parameters
    ----------
    model : a torch decoder built on AFIRE
    records : list of RunRecord
    prediction, **settings
        As in :func:`mindlib.train.evaluate`.

    Returns
    -------
    dict
        ``{"<modality>": r without it, ...}``; empty for a model with a single modality.
    """
    names = [m for m, _ in model.config.afire.modalities]
    return {
        m: train.evaluate(WithoutModalities(model, [m]), records, prediction, **settings)["pearson"]["mean"]
        for m in (names if len(names) > 1 else [])
    }


@torch.no_grad()
def balance_over_runs(
    model: torch.nn.Module, records: Sequence, prediction: train.Prediction = train.Prediction(), **settings
) -> dict[str, float]:
    """Both balance losses (:func:`mindlib.sadgate.balance_loss`) of a gate over every TR of whole runs, in eval mode.

    Reads the router probabilities over the covering windows of :func:`gate_runs` (overlaps averaged) and
    takes the load from the K largest window-averaged gate weights of each TR. ``prediction`` and
    ``**settings`` as in :func:`gate_runs`.
    """
    probs = train.predict_runs(
        model, records, prediction, output=lambda out: out.gate.router_probs, **settings
    )
    weights = gate_runs(model, records, prediction, **settings)
    P = torch.as_tensor(np.concatenate([p[np.asarray(r.valid, bool)] for p, r in zip(probs, records)]))[None]
    W = torch.as_tensor(np.concatenate([w[np.asarray(r.valid, bool)] for w, r in zip(weights, records)]))[
        None
    ]
    K = model.gate.config.top_k
    idx = W.topk(K, dim=-1).indices
    gate = sadgate.GateOutput(W, P, P[:, 0], idx, W.gather(-1, idx))
    return {kind: float(sadgate.balance_loss(gate, kind=kind)) for kind in sadgate.BALANCES}


def repeat_ceilings(records: Sequence) -> dict[str, np.ndarray]:
    """Per subject, the repeat-to-repeat r per parcel (:func:`mindlib.metrics.repeat_ceiling`), averaged over the
    stimuli it saw twice (``life01_run-1`` / ``run-2``: the first two repeats of each), ``{subject: (V,)}``.

    The raw correlation of two noisy repeats; a model scored against one repeat can reach at most about its
    square root (:func:`ceiling_fraction_by_network`). Subjects without a repeated stimulus are absent.
    """
    by_stimulus: dict[tuple[str, str], list] = {}
    for rec in records:
        by_stimulus.setdefault((rec.subject, layout.stimulus_of(rec.run)), []).append(rec)
    out: dict[str, list] = {}
    for (subject, _stimulus), recs in sorted(by_stimulus.items()):
        if len(recs) >= 2:
            a, b = sorted(recs, key=lambda r: r.run)[:2]
            both = (
                np.asarray(a.valid) & np.asarray(b.valid) if a.n_trs == b.n_trs else None
            )  # unequal: metrics decides
            out.setdefault(subject, []).append(metrics.repeat_ceiling(a.fmri, b.fmri, mask=both))
    with np.errstate(all="ignore"):
        return {s: np.nanmean(v, axis=0) for s, v in out.items()}


def ceiling_fraction_by_network(
    parcel_r: np.ndarray, ceiling: np.ndarray, networks: Sequence[str]
) -> dict[str, float]:
    """A score as a fraction of the noise ceiling per network: mean r over the network's parcels divided by
    the mean ceiling over them (a ratio of means, steadier than the mean of per-parcel ratios).

    Parameters
    ----------
    parcel_r : ndarray of shape (V,)
        E.g. test r per parcel, mean over subjects.
    ceiling : ndarray of shape (V,)
        The best r a model can reach per parcel: the synthetic truth's ``noise_ceiling`` (r of clean vs measured
        signal), or on real data ``sqrt(repeat r)`` (:func:`repeat_ceilings`), negative repeat r counted as 0.
    networks : sequence of str, length V
        Network of each parcel (``mindlib.synthetic.parcel_networks()[1]`` or the atlas).

    Returns
    -------
    dict network -> fraction, in the order networks first appear; NaN where the ceiling is not positive.
    """
    parcel_r, ceiling, networks = (
        np.asarray(parcel_r, float),
        np.asarray(ceiling, float),
        np.asarray(networks),
    )
    if not parcel_r.shape == ceiling.shape == networks.shape:
        raise ValueError(
            f"ceiling_fraction_by_network: shapes {parcel_r.shape}, {ceiling.shape}, {networks.shape} differ"
        )
    out = {}
    for net in dict.fromkeys(networks.tolist()):
        sel = networks == net
        c = np.nanmean(ceiling[sel])
        out[net] = float(np.nanmean(parcel_r[sel]) / c) if c > 0 else float("nan")
    return out


def speech_labels(
    root, record, tr_s: float = align.TR_S, lag_trs: float = align.DEFAULT_LAG_TRS
) -> np.ndarray:
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
    if synthetic.study_json_path(root).exists():
        truth = synthetic.load_ground_truth(root, subjects=sorted({r.subject for r in records}))
        return [truth["subjects"][r.subject]["content_tr"][r.run] for r in records], list(
            truth["content_types"]
        )
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
