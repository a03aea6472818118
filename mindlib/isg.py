"""Inter-subject generalisation: leave-one-subject-out, the code's swap variant, few-shot calibration (docs/method.md §9).

The paper defines ISG as training on S-1 subjects and scoring the held-out one; the authors' code
instead scores a trained subject's runs with predictions made under another trained subject's id.
Both are here, under their own names:

- :func:`loso` (the paper's ISG): train without one subject, give it a new slot initialised at the
  population (``model.add_subject()``: MIND routes with ``B_s = 0`` and the mean subject embedding,
  subject heads use their mean) and score its held-out runs; :func:`loso_study` does it on a loaded study.
- :func:`cross_subject_swap` ("swap ISG", the authors' code): every trained subject scored under
  every other trained subject's id.
- :func:`calibrate_subject`: fit only the new subject's rows of ``model.subject_parameters()`` on its first
  N minutes of data, everything else frozen, for a fixed number of epochs.
- :func:`few_shot_protocol` (what notebook 09 reports): the same budget of N minutes for every decoder,
  drawn at random several times; the calibration strength (epochs, 0 = stay at the population) is chosen
  on held-out minutes of that budget, so a decoder whose calibration overfits a few minutes is held back
  by the subject's own data instead of being compared after a fixed schedule that suits another decoder.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from mindlib import metrics
from mindlib.align import TR_S
from mindlib.data import Study, WindowDataset
from mindlib.progress import progress_bar
from mindlib.train import (
    Prediction,
    TrainConfig,
    TrainResult,
    check_records,
    evaluate,
    fit,
    predict_runs,
    resolve_device,
    run_epoch,
)

__all__ = [
    "CALIBRATION_CONFIG",
    "ISGResult",
    "SwapResult",
    "subjects_of",
    "remap_subjects",
    "loso",
    "loso_study",
    "cross_subject_swap",
    "calibrate_subject",
    "few_shot_protocol",
    "FEW_SHOT_EPOCHS",
]

FEW_SHOT_EPOCHS = (
    0,
    1,
    2,
    5,
    10,
    20,
    30,
)  # calibration strengths tried by few_shot_protocol (0 = population)
CALIBRATION_CONFIG = TrainConfig(
    epochs=30, batch_size=4, lr=1e-2, progress=False
)  # few-shot defaults: few parameters, so a higher constant lr and small batches


@dataclass
class ISGResult:
    """What :func:`loso` returns.

    Attributes
    ----------
    held_out : str
        The subject left out of training.
    subject_index : int
        Its slot in ``model`` (added after training, at the population initialisation).
    scores : dict
        :func:`mindlib.train.evaluate` on the held-out subject's evaluation runs.
    trained_scores : dict or None
        The same on the trained subjects' evaluation runs (the within-subject reference).
    train_result : TrainResult
        The fit on the S-1 subjects (history, best epoch).
    model : nn.Module
        The trained model with the held-out subject's slot added.
    subjects : tuple of str
        Subject of each model slot, in index order (the held-out subject last).
    """

    held_out: str
    subject_index: int
    scores: dict
    trained_scores: dict | None
    train_result: TrainResult
    model: nn.Module
    subjects: tuple[str, ...]


@dataclass
class SwapResult:
    """What :func:`cross_subject_swap` returns ("swap ISG", the authors' code's variant).

    Attributes
    ----------
    table : DataFrame
        One row per (true_subject, used_subject): ``r`` = Pearson r (parcels -> runs) of the true
        subject's runs predicted under the used subject's id.
    swap_isg : float
        Mean ``r`` over the off-diagonal pairs (used subject != true subject).
    diagonal : float
        Mean ``r`` over the diagonal (each subject under its own id), for reference.
    """

    table: pd.DataFrame
    swap_isg: float
    diagonal: float


def subjects_of(records: Sequence) -> tuple[str, ...]:
    """Subjects of the records in subject-index order (each once)."""
    pairs = sorted({(int(r.subject_index), r.subject) for r in records})
    names = tuple(dict.fromkeys(name for _index, name in pairs))
    return names


def remap_subjects(records: Sequence, keep_subjects: Sequence[str]) -> list:
    """Keep the records of some subjects and renumber them ``0..S'-1`` in the order given.

    Parameters
    ----------
    records : list of RunRecord
    keep_subjects : sequence of str
        Subjects to keep; ``keep_subjects[i]`` gets ``subject_index = i``.

    Returns
    -------
    list of RunRecord
        New records (``dataclasses.replace``; arrays are shared, not copied) in the input order.
    """
    keep = list(keep_subjects)
    if len(set(keep)) != len(keep):
        raise ValueError(f"keep_subjects has duplicates: {keep}")
    present = {r.subject for r in records}
    missing = [s for s in keep if s not in present]
    if missing:
        raise ValueError(f"no records for subject(s) {missing}; the records have {sorted(present)}")
    index = {subject: i for i, subject in enumerate(keep)}
    return [replace(r, subject_index=index[r.subject]) for r in records if r.subject in index]


def loso(
    build_fn: Callable[[int], nn.Module],
    records_by_split: Mapping[str, Sequence],
    held_out: str,
    config: TrainConfig | None = None,
    eval_split: str = "test",
    score_trained: bool = True,
    exclude_trs: int = 5,
) -> ISGResult:
    """Leave one subject out: train on the others, score the held-out subject at the population init.

    Parameters
    ----------
    build_fn : callable (n_subjects) -> nn.Module
        Builds a fresh decoder with ``n_subjects`` slots; called after ``torch.manual_seed(config.seed)``.
    records_by_split : dict with keys "train", "val" and ``eval_split``
        Records of every subject per split (e.g. ``{s: study.select(s) for s in ("train", "val", "test")}``).
    held_out : str
        The subject left out, e.g. ``"sub-05"``.
    config : TrainConfig, optional
        Training of the S-1 subjects: their "train" runs, selected on their "val" runs only
        (default ``TrainConfig()``).
    eval_split : str
        Split whose held-out-subject runs are scored ("test", or "val" while developing).
    score_trained : bool
        Also score the trained subjects on ``eval_split`` (within-subject reference).
    exclude_trs : int
        Passed to the official metric.

    Returns
    -------
    ISGResult
    """
    config = TrainConfig() if config is None else config
    for split in ("train", "val", eval_split):
        if split not in records_by_split:
            raise ValueError(f"records_by_split lacks the {split!r} split; it has {sorted(records_by_split)}")
    all_records = [r for split in records_by_split.values() for r in split]
    subjects = subjects_of(all_records)
    if held_out not in subjects:
        raise ValueError(f"held_out subject {held_out!r} is not in the records ({list(subjects)})")
    trained = [s for s in subjects if s != held_out]
    if not trained:
        raise ValueError(f"leaving out {held_out!r} leaves no subject to train on")
    train = remap_subjects([r for r in records_by_split["train"] if r.subject != held_out], trained)
    val = remap_subjects([r for r in records_by_split["val"] if r.subject != held_out], trained)
    held_records = [r for r in records_by_split[eval_split] if r.subject == held_out]
    if not held_records:
        raise ValueError(f"{held_out} has no runs in the {eval_split!r} split to score")

    torch.manual_seed(config.seed)
    model = build_fn(len(trained))
    result = fit(
        model,
        train,
        val,
        config,
        desc=f"LOSO {held_out} held out, lr {config.lr:g} wd {config.weight_decay:g}",
    )
    new_index = int(model.add_subject())
    held_records = [replace(r, subject_index=new_index) for r in held_records]
    scores = evaluate(model, held_records, config.prediction, exclude_trs=exclude_trs)
    trained_scores = None
    if score_trained:
        others = [r for r in records_by_split[eval_split] if r.subject != held_out]
        if others:
            slot = {s: i for i, s in enumerate(trained)}  # the trained subjects' slots in the model
            others = [replace(r, subject_index=slot[r.subject]) for r in others]
            trained_scores = evaluate(model, others, config.prediction, exclude_trs=exclude_trs)
    return ISGResult(
        held_out=held_out,
        subject_index=new_index,
        scores=scores,
        trained_scores=trained_scores,
        train_result=result,
        model=model,
        subjects=(*trained, held_out),
    )


def loso_study(
    study: Study,
    build_fn: Callable[[int], nn.Module],
    held_out: str,
    config: TrainConfig | None = None,
    eval_split: str = "test",
) -> ISGResult:
    """:func:`loso` on a loaded study, as the paper defines ISG: train on every subject but ``held_out`` (their
    training runs, selected on their validation runs), then score ``held_out``'s ``eval_split`` runs through a
    new subject slot at the population initialisation (MIND: ``e_s`` = mean embedding, ``B_s`` = 0; subject
    heads: the mean head).

    Parameters
    ----------
    study : Study
        From :func:`mindlib.data.load_study` (its split is used as is).
    build_fn : callable (n_subjects) -> nn.Module
        A fresh decoder with ``n_subjects`` slots, e.g. ``lambda n: mindlib.experiment.build(cfg, study, n)``.
    held_out : str
        A subject of ``study``.
    config : TrainConfig, optional
        Training of the other subjects (e.g. ``cfg.train_config()``; default ``TrainConfig()``).
    eval_split : str
        Split scored; "val" when the study has no ``eval_split`` runs.

    Returns
    -------
    ISGResult
        Without the trained subjects' scores (``trained_scores`` is None).
    """
    if held_out not in study.subjects:
        raise ValueError(f"held_out={held_out!r} is not a subject of this study: {study.subjects}")
    split = eval_split if study.select(eval_split) else "val"
    return loso(
        build_fn,
        {s: study.select(s) for s in {"train", "val", split}},
        held_out,
        config,
        eval_split=split,
        score_trained=False,
    )


def _mean_r(records: Sequence, preds: Sequence[np.ndarray]) -> float:
    """Pearson r on valid TRs, mean over parcels then runs."""
    per_run = [
        metrics.nanmean(metrics.pearson_r(r.fmri, p, mask=np.asarray(r.valid)))
        for r, p in zip(records, preds)
    ]
    return metrics.nanmean(per_run)


def cross_subject_swap(
    model: nn.Module, records: Sequence, prediction: Prediction = Prediction(), **settings
) -> SwapResult:
    """ "Swap ISG" (the authors' code): score each trained subject's runs under every subject's id.

    Parameters
    ----------
    model : nn.Module
        A trained decoder.
    records : list of RunRecord
        Runs of at least two trained subjects (their ``subject_index`` is their own slot).
    prediction : Prediction
        How :func:`mindlib.train.predict_runs` predicts whole runs.
    **settings
        Fields of ``prediction`` to change for this call (``window=16``).

    Returns
    -------
    SwapResult
        ``table`` (true_subject, used_subject, r), ``swap_isg`` (mean off-diagonal r) and ``diagonal``.
        This is not the paper's ISG (:func:`loso`): every subject here was trained on.
    """
    records = list(records)
    prediction = prediction.with_settings(**settings)
    check_records(model, records, "records")
    subjects = subjects_of(records)
    if len(subjects) < 2:
        raise ValueError(f"cross_subject_swap needs runs of at least two subjects, got {list(subjects)}")
    slot: dict[str, int] = {}
    for r in records:
        if slot.setdefault(r.subject, int(r.subject_index)) != int(r.subject_index):
            raise ValueError(
                f"{r.subject} appears with subject indices {slot[r.subject]} and {r.subject_index}"
            )
    rows = []
    for true_subject in subjects:
        own = [r for r in records if r.subject == true_subject]
        for used_subject in subjects:
            swapped = [replace(r, subject_index=slot[used_subject]) for r in own]
            preds = predict_runs(model, swapped, prediction)
            rows.append(
                {"true_subject": true_subject, "used_subject": used_subject, "r": _mean_r(own, preds)}
            )
    table = pd.DataFrame(rows)
    off = table["true_subject"] != table["used_subject"]
    return SwapResult(
        table=table,
        swap_isg=metrics.nanmean(table.loc[off, "r"]),
        diagonal=metrics.nanmean(table.loc[~off, "r"]),
    )


def _first_minutes(records: Sequence, minutes: float, tr_s: float) -> tuple[list, int]:
    """The first ``round(minutes * 60 / tr_s)`` TRs of the runs, in sorted run order (last run cut)."""
    n_trs = round(minutes * 60.0 / tr_s)
    taken, left = [], n_trs
    for rec in sorted(records, key=lambda r: r.run):
        if left <= 0:
            break
        k = min(left, rec.fmri.shape[0])
        if k == rec.fmri.shape[0]:
            taken.append(rec)
        else:
            taken.append(
                replace(
                    rec,
                    fmri=rec.fmri[:k],
                    features={m: x[:k] for m, x in rec.features.items()},
                    valid=np.asarray(rec.valid)[:k],
                )
            )
        left -= k
    return taken, n_trs - max(left, 0)


def calibrate_subject(
    model: nn.Module,
    subject_index: int,
    records: Sequence,
    minutes: float,
    config: TrainConfig | None = None,
    tr_s: float = TR_S,
    after_epoch: Callable[[int], None] | None = None,
) -> nn.Module:
    """Few-shot calibration: fit only one subject's rows of ``model.subject_parameters()``.

    Every other parameter (and the other rows of the subject tensors) stays bit-identical: all
    parameters are frozen except the subject tensors, a gradient hook zeroes the other rows'
    gradients, and those rows are restored after each optimiser step (AdamW's weight decay would
    otherwise shrink them).

    Parameters
    ----------
    model : nn.Module
        A trained decoder, typically after ``add_subject()``; modified in place.
    subject_index : int
        The slot to calibrate.
    records : list of RunRecord
        Runs of one subject (its training runs); their ``subject_index`` is replaced by ``subject_index``.
    minutes : float
        Amount of data used: the first ``round(minutes * 60 / tr_s)`` TRs, runs taken in sorted run
        order (the last run cut). 0 returns the model unchanged.
    config : TrainConfig, optional
        Default :data:`CALIBRATION_CONFIG` (30 epochs, lr 1e-2, batches of 4). ``epochs``, ``lr``, ``weight_decay``, ``betas``, ``batch_size``, ``window``, ``stride``,
        ``grad_clip``, ``seed``, ``device``, ``amp`` are used; the learning rate is constant (no
        OneCycle: a few minutes give only a few steps). Checkpoint options are ignored.
    tr_s : float
        Repetition time in seconds.
    after_epoch : callable (epochs done) -> None, optional
        Called after each epoch (with 1, 2, ...), e.g. to score held-out minutes (:func:`few_shot_protocol`).

    Returns
    -------
    nn.Module
        The same model object, in eval mode.
    """
    config = CALIBRATION_CONFIG if config is None else config
    if not minutes >= 0 or math.isinf(minutes):
        raise ValueError(f"minutes must be a finite number >= 0, got {minutes!r}")
    if minutes == 0:
        return model
    records = list(records)
    if not records:
        raise ValueError("calibrate_subject() got no records")
    names = {r.subject for r in records}
    if len(names) != 1:
        raise ValueError(f"calibrate_subject() needs the runs of one subject, got {sorted(names)}")
    if not 0 <= subject_index < model.n_subjects:
        raise ValueError(f"subject_index {subject_index} outside the model's {model.n_subjects} slot(s)")
    records = [replace(r, subject_index=subject_index) for r in records]
    check_records(model, records, "records", require_valid=False)
    taken, n_trs = _first_minutes(records, minutes, tr_s)
    if n_trs == 0:
        warnings.warn(
            f"{minutes} min is less than half a TR: the model is unchanged", RuntimeWarning, stacklevel=2
        )
        return model
    available = sum(r.fmri.shape[0] for r in records)
    if n_trs < round(minutes * 60.0 / tr_s):  # the runs hold fewer TRs than asked for
        warnings.warn(
            f"{minutes} min asked for but the subject's runs hold only {available} TRs "
            f"({available * tr_s / 60:.1f} min); calibrating on all of them",
            RuntimeWarning,
            stacklevel=2,
        )
    if not any(np.asarray(r.valid).any() for r in taken):
        raise ValueError(f"the first {minutes} min of {next(iter(names))} hold no valid TR; use more minutes")

    subject_params = list(model.subject_parameters())
    for p in subject_params:
        if p.shape[0] != model.n_subjects:
            raise ValueError(
                f"a subject parameter of shape {tuple(p.shape)} has no leading subject axis of size "
                f"{model.n_subjects}"
            )
    device = resolve_device(config.device)
    model.to(device)
    subject_params = list(model.subject_parameters())  # .to() keeps Parameter objects, but be safe
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    hooks, frozen = [], []
    for p in subject_params:
        row = torch.zeros((p.shape[0],) + (1,) * (p.ndim - 1), dtype=torch.bool, device=p.device)
        row[subject_index] = True
        p.requires_grad_(True)
        hooks.append(p.register_hook(lambda grad, row=row: grad * row))
        frozen.append((p, row, p.detach().clone()))

    @torch.no_grad()
    def restore_other_rows() -> None:
        for p, row, saved in frozen:
            p.copy_(torch.where(row, p, saved))

    optimizer = torch.optim.AdamW(
        subject_params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    dataset = WindowDataset(taken, window=config.window, stride=config.stride)
    try:
        for epoch in range(config.epochs):
            run_epoch(
                model,
                dataset,
                epoch,
                config,
                device,
                optimizer,
                subject_params,
                after_step=restore_other_rows,
            )
            if after_epoch is not None:
                after_epoch(epoch + 1)
    finally:
        for handle in hooks:
            handle.remove()
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad.get(name, True))
    return model.eval()  # a fitted model is handed back ready for inference, as train.fit does


def _draw_minutes(records: Sequence, n_trs: int, rng: np.random.Generator) -> list:
    """``n_trs`` TRs of the runs from a random start: runs in a random order, the first one entered at a random
    TR, consecutive TRs after it (across runs in that order), each piece a record of its own."""
    order = list(rng.permutation(len(records)))
    first = records[order[0]]
    start = int(rng.integers(0, max(first.fmri.shape[0] - min(n_trs, first.fmri.shape[0]), 0) + 1))
    pieces, left = [], n_trs
    for i, j in enumerate(order):
        rec = records[j]
        lo = start if i == 0 else 0
        k = min(left, rec.fmri.shape[0] - lo)
        if k <= 0:
            continue
        pieces.append(
            replace(
                rec,
                fmri=rec.fmri[lo : lo + k],
                features={m: x[lo : lo + k] for m, x in rec.features.items()},
                valid=np.asarray(rec.valid)[lo : lo + k],
            )
        )
        left -= k
        if left == 0:
            break
    return pieces


def _split_tail(pieces: Sequence, n_tail: int) -> tuple[list, list]:
    """Cut the last ``n_tail`` TRs of consecutive ``pieces`` off: (head pieces, tail pieces)."""
    total = sum(p.fmri.shape[0] for p in pieces)
    cut, head, tail, seen = total - n_tail, [], [], 0
    for p in pieces:
        n = p.fmri.shape[0]
        lo, hi = seen, seen + n
        seen = hi
        for part, a, b in ((head, lo, min(hi, cut)), (tail, max(lo, cut), hi)):
            if b > a:
                part.append(
                    replace(
                        p,
                        fmri=p.fmri[a - lo : b - lo],
                        features={m: x[a - lo : b - lo] for m, x in p.features.items()},
                        valid=np.asarray(p.valid)[a - lo : b - lo],
                    )
                )
    return head, tail


def few_shot_protocol(
    model: nn.Module,
    new_index: int,
    calib_records: Sequence,
    eval_records: Sequence,
    minutes_list: Sequence[float],
    n_draws: int = 3,
    holdout_frac: float = 0.25,
    epochs_grid: Sequence[int] = FEW_SHOT_EPOCHS,
    config: TrainConfig | None = None,
    seed: int = 0,
    exclude_trs: int = 5,
    tr_s: float = TR_S,
    progress: bool = False,
) -> pd.DataFrame:
    """A few-shot protocol that is the same for every decoder: one data budget, strength chosen on held-out minutes.

    For each budget of N minutes and each of ``n_draws`` random draws (:func:`_draw_minutes`: random run order
    and start, the same draws for every decoder given the same ``seed``), the drawn N minutes of the new subject
    are split into fitting minutes (the first ``1 - holdout_frac``) and held-out minutes (the rest). The subject
    parameters are calibrated (:func:`calibrate_subject`) on the fitting minutes, and after each epoch count in
    ``epochs_grid`` the held-out minutes are scored; the strength (epoch count, 0 = the population
    initialisation) with the best held-out r is kept, and that model is scored on ``eval_records``. Since 0
    epochs is a candidate, a calibration that hurts on the subject's own held-out data is not taken. No data
    beyond the N minutes is used, for any decoder.

    Parameters
    ----------
    model : nn.Module
        A trained decoder with the new subject's slot ``new_index`` (after ``add_subject()``); not modified.
    new_index : int
    calib_records, eval_records : list of RunRecord
        The new subject's runs to draw minutes from (e.g. its training split) and its scored runs (test split).
    minutes_list : sequence of float
        Budgets N, e.g. ``(0, 2, 5, 10)``.
    n_draws : int
        Random draws of the minutes per budget (their spread is the protocol's uncertainty).
    holdout_frac : float
        Share of each budget held out to choose the strength.
    epochs_grid : sequence of int
        Candidate epoch counts (the strength), including 0.
    config : TrainConfig, optional
        Calibration settings (default :data:`CALIBRATION_CONFIG`); its ``epochs`` is replaced by ``max(epochs_grid)``.
    seed : int
        Seed of the draws.
    exclude_trs, tr_s
        Passed to the official metric, and the repetition time.
    progress : bool
        One bar over the (budget, draw) pairs (``mindlib.progress.progress_bar``).

    Returns
    -------
    DataFrame
        One row per (minutes, draw): ``minutes``, ``draw``, ``n_trs`` (fitting TRs), ``n_holdout_trs``,
        ``epochs`` (chosen), ``holdout_r`` (at the chosen strength; NaN for 0 minutes), ``r`` and
        ``algonauts`` on ``eval_records``.
    """
    config = CALIBRATION_CONFIG if config is None else config
    grid = sorted({int(e) for e in epochs_grid})
    if not grid or grid[0] < 0:
        raise ValueError(f"epochs_grid must hold epoch counts >= 0, got {epochs_grid}")
    if not 0 < holdout_frac < 1:
        raise ValueError(f"holdout_frac must be in (0, 1), got {holdout_frac}")
    if 0 not in grid:
        grid = [0, *grid]
    config = replace(config, epochs=max(grid[-1], 1))
    calib_records = [replace(r, subject_index=new_index) for r in calib_records]
    eval_records = [replace(r, subject_index=new_index) for r in eval_records]
    prediction = config.prediction

    def score(m, records) -> dict:
        return evaluate(m, records, prediction, exclude_trs=exclude_trs)

    zero_shot = score(model, eval_records)
    rows = []
    available = sum(r.fmri.shape[0] for r in calib_records)
    bar = progress_bar(len(minutes_list) * n_draws, "few-shot protocol", disable=not progress, unit="draw")
    for minutes in minutes_list:
        bar.set_postfix(minutes=minutes, refresh=False)
        n_trs = round(float(minutes) * 60.0 / tr_s)
        if n_trs == 0:
            bar.update(n_draws)
            rows += [
                {
                    "minutes": float(minutes),
                    "draw": d,
                    "n_trs": 0,
                    "n_holdout_trs": 0,
                    "epochs": 0,
                    "holdout_r": math.nan,
                    "r": zero_shot["pearson"]["mean"],
                    "algonauts": zero_shot["algonauts"]["mean"],
                }
                for d in range(n_draws)
            ]
            continue
        if n_trs > available:
            raise ValueError(
                f"{minutes} min ({n_trs} TRs) asked for but the calibration runs hold {available} TRs"
            )
        n_hold = max(1, round(holdout_frac * n_trs))
        for draw in range(n_draws):
            rng = np.random.default_rng([seed, draw, n_trs])
            fit_part, held = _split_tail(_draw_minutes(calib_records, n_trs, rng), n_hold)
            candidate = copy.deepcopy(model)
            best = {
                "epochs": 0,
                "r": _mean_r(held, predict_runs(candidate, held, prediction)),
                "state": None,
            }
            params = candidate.subject_parameters

            def after_epoch(done: int, candidate=candidate, held=held, best=best, params=params) -> None:
                if done in grid:
                    r = _mean_r(held, predict_runs(candidate, held, prediction))
                    if r > best["r"]:
                        best.update(epochs=done, r=r, state=[p.detach().clone() for p in params()])

            calibrate_subject(
                candidate,
                new_index,
                fit_part,
                minutes=sum(p.fmri.shape[0] for p in fit_part) * tr_s / 60.0,
                config=config,
                tr_s=tr_s,
                after_epoch=after_epoch,
            )
            chosen = copy.deepcopy(model)
            if best["state"] is not None:
                with torch.no_grad():
                    for p, value in zip(chosen.subject_parameters(), best["state"]):
                        p.copy_(value)
            scores = score(chosen, eval_records)
            rows.append(
                {
                    "minutes": float(minutes),
                    "draw": draw,
                    "n_trs": n_trs - n_hold,
                    "n_holdout_trs": n_hold,
                    "epochs": best["epochs"],
                    "holdout_r": best["r"],
                    "r": scores["pearson"]["mean"],
                    "algonauts": scores["algonauts"]["mean"],
                }
            )
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)
