"""The challenge's end: predict held-out stimuli, write and check the official submission, score it locally.

The Algonauts 2025 challenge (docs/method.md §1, §9) withholds the fMRI of Friends season 7 (phase 1) and
of six out-of-distribution films (phase 2, :data:`mindlib.layout.OOD_MOVIES`). A team predicts them from
features alone and uploads one file per phase. This module goes from trained decoders to that file::

    targets = load_targets(root, "friends-s7")            # {subject: {episode: T}} from the release
    preds, report = predict(models, study, targets)       # one model, or several averaged
    paths = save_submission(preds, targets, "results/submission", "friends-s7")   # checked, .npy + .zip
    score(preds, load_heldout_fmri(fmri_root, targets))   # wherever the held-out fMRI exists

Command line (the same steps; ``--model`` repeated averages an ensemble)::

    python -m mindlib.submission --dataset synthetic --size demo --model results/models/06_train_mind.pt

Files it reads (:mod:`mindlib.layout`)
--------------------------------------
``fmri/sub-0X/target_sample_number/sub-0X_friends-s7_fmri_samples.npy`` and ``..._ood_fmri_samples.npy``:
a pickled dict ``{episode: number of TRs}`` per subject (``np.load(..., allow_pickle=True).item()``). Its
keys are the episode names the submission must use (``s07e01a``, ``chaplin1``).

The format the scorer takes
---------------------------
One ``.npy`` holding a dict ``{subject: {episode: ndarray (T, 1000)}}``: all four subjects, every episode
of the target file, ``T`` exactly the target number of TRs, 1000 float columns, no NaN. It is uploaded
zipped (``fmri_predictions_friends_s7.zip`` holding ``fmri_predictions_friends_s7.npy``).
:func:`check_submission` enforces each rule before anything is written, naming subject and episode.

Alignment and lengths
---------------------
Features are aligned to the target TRs exactly as for training: :func:`mindlib.data.aggregate_layers`
with the study's layer groups, then :func:`mindlib.align.align_features` with the study's ``tr_s``, the
store's ``feature_hz`` and the study's lags. The target number of TRs is authoritative. Features lasting
longer than the target are cut by the aligner (frames past the last TR's window are not read). TRs whose
lagged stimulus window has no features (the first TRs, at a 3-TR lag, and any TR past the features' end
when they stop early) are masked during training; here they are predicted as 0, the per-run mean of the
z-scored fMRI the decoders are trained on, and counted per stimulus in the report (``n_uncovered``). A gap
between feature and target durations above :data:`mindlib.data.LENGTH_TOLERANCE_S` (15 s) is an error,
as in :func:`mindlib.data.load_study`: it means the wrong stimulus or a truncated extraction.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mindlib import layout, metrics
from mindlib.align import align_features
from mindlib.data import LENGTH_TOLERANCE_S, RunRecord, Study, aggregate_layers, load_fmri

if TYPE_CHECKING:  # torch is imported only when a prediction is made
    from mindlib.train import Prediction

logger = logging.getLogger(__name__)

# File stems of the uploads, one per target set (the .npy and the .zip that holds it).
SUBMISSION_STEMS = {"friends-s7": "fmri_predictions_friends_s7", "ood": "fmri_predictions_ood"}
EXCLUDE_TRS = 5  # TRs the official scorer drops at each end of every episode


# ----------------------------------------------------------------------------------------------
# Target sample numbers
# ----------------------------------------------------------------------------------------------


def read_target_samples(root: str | Path, subject: str, target_set: str) -> dict[str, int]:
    """One subject's target sample numbers ``{episode: T}``, checked.

    Parameters
    ----------
    root : str or Path
        Study folder (Algonauts 2025 layout).
    subject : str
        ``"sub-01"``.
    target_set : {"friends-s7", "ood"}

    Returns
    -------
    dict of str to int
        Episodes sorted by name.

    Raises
    ------
    FileNotFoundError
        The file is absent.
    ValueError
        Not a pickled dict, an episode name of another set, or a count that is not a positive integer.
    """
    path = layout.target_samples_path(root, subject, target_set)
    if not path.is_file():
        raise FileNotFoundError(
            f"no target sample numbers for {subject} ({target_set}): {path} is missing. It comes with the "
            "Algonauts 2025 release (fmri/<subject>/target_sample_number/); the synthetic study writes it"
        )
    try:
        raw = np.load(path, allow_pickle=True)
        value = raw.item() if raw.dtype == object and raw.shape == () else raw
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read it as a .npy file ({err})") from None
    if not isinstance(value, dict) or not value:
        raise ValueError(
            f"{path}: expected a pickled non-empty dict {{episode: number of TRs}}, got {type(value).__name__}"
        )
    out = {}
    for episode, n in value.items():
        try:
            wrong_set = layout.target_set_of(str(episode)) != target_set
        except ValueError:
            wrong_set = True
        if wrong_set:
            raise ValueError(
                f"{path}: episode {episode!r} is not an episode of the {target_set!r} target set"
            )
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 2 * EXCLUDE_TRS:
            raise ValueError(
                f"{path}: episode {episode!r} has target {n!r}; expected an integer number of TRs above "
                f"{2 * EXCLUDE_TRS} (the scorer drops {EXCLUDE_TRS} at each end)"
            )
        out[str(episode)] = int(n)
    return dict(sorted(out.items()))


def load_targets(
    root: str | Path, target_set: str, subjects: Sequence[str] = layout.SUBJECTS
) -> dict[str, dict[str, int]]:
    """Target sample numbers of every subject ``{subject: {episode: T}}``.

    Raises ValueError when subjects disagree on the episodes or on an episode's length (every subject saw
    the same stimuli), naming both subjects and the episode.
    """
    targets = {layout.check_subject(s): read_target_samples(root, s, target_set) for s in subjects}
    first = subjects[0]
    for s in subjects[1:]:
        a, b = targets[first], targets[s]
        if set(a) != set(b):
            raise ValueError(
                f"target sample numbers ({target_set}) disagree: {first} lists {sorted(set(a) - set(b))} that {s} "
                f"lacks and {s} lists {sorted(set(b) - set(a))} that {first} lacks; check "
                f"{layout.target_samples_path(root, s, target_set)}"
            )
        for episode in a:
            if a[episode] != b[episode]:
                raise ValueError(
                    f"target sample numbers ({target_set}) disagree for episode {episode}: {a[episode]} TRs for "
                    f"{first}, {b[episode]} for {s}"
                )
    return targets


# ----------------------------------------------------------------------------------------------
# Prediction without fMRI
# ----------------------------------------------------------------------------------------------


def prediction_records(
    study: Study,
    targets: Mapping[str, Mapping[str, int]],
    length_tolerance_s: float = LENGTH_TOLERANCE_S,
) -> tuple[list[RunRecord], pd.DataFrame]:
    """Records for stimuli with features but no fMRI, aligned exactly as ``study``'s training records.

    Parameters
    ----------
    study : Study
        The study the decoders were trained on: its backbone, subjects (their order is the model's
        subject index), lags, layer groups and ``tr_s`` are reused.
    targets : dict subject -> dict episode -> int
        From :func:`load_targets`.
    length_tolerance_s : float
        Largest accepted gap between feature and target durations (see the module's length policy).

    Returns
    -------
    records : list of RunRecord
        One per subject and episode; ``fmri`` is a read-only zero array of shape (T, V) (no data, only the
        length the predictor needs), ``valid`` the TRs covered by features at every lag.
    report : DataFrame
        One row per episode: ``episode``, ``n_trs`` (target), ``n_frames`` and ``feature_s`` (shortest
        modality), ``target_s``, ``gap_s`` (feature minus target duration) and ``n_uncovered`` (TRs without
        features, predicted as 0).
    """
    from mindlib.data import FeatureStore

    store = FeatureStore(study.root, study.backbone)
    cache: dict[tuple[str, int], tuple[dict[str, np.ndarray], np.ndarray, int]] = {}
    rows, records = {}, []
    for subject, episodes in targets.items():
        if subject not in study.subjects:
            raise ValueError(
                f"{subject} has target sample numbers but the study (and so the model) has no slot for it; "
                f"the model knows {study.subjects}"
            )
        index = study.subjects.index(subject)
        for episode, n_trs in episodes.items():
            key = (layout.stimulus_of(episode), int(n_trs))
            if key not in cache:
                feats, covered, n_frames = {}, np.ones(n_trs, dtype=bool), []
                for m in store.modalities:
                    frames = aggregate_layers(store.load(key[0], m), study.layer_fractions)  # (T_f, G*D)
                    feat_s, target_s = frames.shape[0] / store.feature_hz, n_trs * study.tr_s
                    if abs(feat_s - target_s) > length_tolerance_s:
                        raise ValueError(
                            f"episode {episode}: features {store.path(key[0], m)} last {feat_s:.2f} s "
                            f"({frames.shape[0]} frames at {store.feature_hz:g} Hz) but the target is {n_trs} TRs "
                            f"({target_s:.2f} s), more than length_tolerance_s={length_tolerance_s} apart; "
                            "re-extract the features from the full stimulus"
                        )
                    feats[m], cov = align_features(
                        frames, n_trs, study.tr_s, store.feature_hz, study.lags_trs
                    )
                    covered &= cov
                    n_frames.append(frames.shape[0])
                cache[key] = (feats, covered, min(n_frames))
                feat_s = min(n_frames) / store.feature_hz
                rows[key] = {
                    "episode": episode,
                    "n_trs": int(n_trs),
                    "n_frames": min(n_frames),
                    "feature_s": round(feat_s, 3),
                    "target_s": round(n_trs * study.tr_s, 3),
                    "gap_s": round(feat_s - n_trs * study.tr_s, 3),
                    "n_uncovered": int((~covered).sum()),
                }
            feats, covered, _ = cache[key]
            fmri = np.broadcast_to(np.zeros((1, 1), np.float32), (int(n_trs), study.n_parcels))
            records.append(RunRecord(subject, index, episode, fmri, feats, covered))
    report = pd.DataFrame(list(rows.values()))
    return records, report


def predict(
    models: object | Sequence[object],
    study: Study,
    targets: Mapping[str, Mapping[str, int]],
    prediction: Prediction | None = None,
    **settings,
) -> tuple[dict[str, dict[str, np.ndarray]], pd.DataFrame]:
    """Predict every target episode of every subject, averaging several models when given.

    Parameters
    ----------
    models : decoder or sequence of decoders
        Torch decoders (``mindlib.experiment.load``) predicted through :func:`mindlib.train.predict_runs`,
        or objects with ``.predict(record) -> (T, V)`` (``RidgeEncoder``). Several (seeds, decoders) are
        averaged TR by TR: the ensemble.
    study : Study
        The study the models were trained on (see :func:`prediction_records`).
    targets : dict subject -> dict episode -> int
    prediction : mindlib.train.Prediction, optional
        How :func:`mindlib.train.predict_runs` predicts whole runs (``window``: the models' training
        window); default ``Prediction()``.
    **settings
        Fields of ``prediction`` to change for this call (``window=40``, ``device="cuda"``).

    Returns
    -------
    predictions : dict subject -> dict episode -> ndarray of shape (T, V), float32
        ``T`` exactly the target; TRs without features are 0 (see the module's length policy).
    report : DataFrame
        From :func:`prediction_records`.
    """
    import torch

    from mindlib.train import Prediction, predict_runs

    prediction = (prediction or Prediction()).with_settings(**settings)
    models = list(models) if isinstance(models, list | tuple) else [models]
    if not models:
        raise ValueError("predict() needs at least one model")
    records, report = prediction_records(study, targets)
    total = [np.zeros(r.fmri.shape, np.float64) for r in records]
    for model in models:
        if isinstance(model, torch.nn.Module):
            preds = predict_runs(model, records, prediction)
        elif callable(getattr(model, "predict", None)):
            preds = [np.asarray(model.predict(r)) for r in records]
        else:
            raise TypeError(
                f"predict() takes torch decoders or objects with .predict(record); got {type(model).__name__}"
            )
        for acc, p in zip(total, preds):
            acc += p
    out: dict[str, dict[str, np.ndarray]] = {}
    for r, acc in zip(records, total):
        y = (acc / len(models)).astype(np.float32)
        y[~r.valid] = 0.0
        out.setdefault(r.subject, {})[r.run] = y
    n_bad = report.loc[report.n_uncovered > 0]
    if len(n_bad):
        logger.info(
            "TRs without features, predicted as 0: %s",
            ", ".join(f"{e} {n}" for e, n in zip(n_bad.episode, n_bad.n_uncovered)),
        )
    return out, report


# ----------------------------------------------------------------------------------------------
# The submission file
# ----------------------------------------------------------------------------------------------


def check_submission(
    submission: Mapping,
    targets: Mapping[str, Mapping[str, int]],
    n_parcels: int = layout.N_PARCELS,
    subjects: Sequence[str] = layout.SUBJECTS,
) -> None:
    """Check every format rule of the official scorer; raise ValueError naming subject and episode.

    Rules: a dict with exactly ``subjects`` (all four), each a dict with exactly the episodes of
    ``targets[subject]``, each value a floating ndarray of shape ``(T, n_parcels)`` with ``T`` the target
    number of TRs, and no NaN or infinite value.
    """
    if not isinstance(submission, Mapping):
        raise ValueError(
            f"a submission is a dict {{subject: {{episode: (T, {n_parcels})}}}}, got {type(submission).__name__}"
        )
    for subject in subjects:
        if subject not in submission:
            raise ValueError(
                f"submission lacks subject {subject!r}: the scorer needs all of {list(subjects)}"
            )
        if subject not in targets:
            raise ValueError(f"no target sample numbers for subject {subject!r}")
    extra = sorted(set(submission) - set(subjects))
    if extra:
        raise ValueError(
            f"submission has subjects {extra} the scorer does not know; keep only {list(subjects)}"
        )
    for subject in subjects:
        episodes, wanted = submission[subject], targets[subject]
        if not isinstance(episodes, Mapping):
            raise ValueError(
                f"submission[{subject!r}] must be a dict {{episode: array}}, got {type(episodes).__name__}"
            )
        for episode in wanted:
            if episode not in episodes:
                raise ValueError(
                    f"submission[{subject!r}] lacks episode {episode!r} (the target file lists {len(wanted)} episodes)"
                )
        extra = sorted(set(episodes) - set(wanted))
        if extra:
            raise ValueError(
                f"submission[{subject!r}] has episodes {extra} that the target file does not list"
            )
        for episode, n_trs in wanted.items():
            y, where = episodes[episode], f"submission[{subject!r}][{episode!r}]"
            if not isinstance(y, np.ndarray):
                raise ValueError(f"{where} is a {type(y).__name__}, expected a numpy array")
            if not np.issubdtype(y.dtype, np.floating):
                raise ValueError(f"{where} has dtype {y.dtype}, expected floats (float32)")
            if y.ndim != 2:
                raise ValueError(f"{where} has shape {y.shape}, expected ({n_trs}, {n_parcels})")
            if y.shape[0] != n_trs:
                raise ValueError(
                    f"{where} has {y.shape[0]} rows but the target is {n_trs} TRs; predict exactly the target "
                    "number of TRs (submission.predict does)"
                )
            if y.shape[1] != n_parcels:
                raise ValueError(f"{where} has {y.shape[1]} columns, expected {n_parcels} (Schaefer parcels)")
            n_nan = int(np.isnan(y).sum())
            if n_nan:
                raise ValueError(f"{where} contains {n_nan} NaN value(s); the scorer rejects NaN")
            if not np.isfinite(y).all():
                raise ValueError(f"{where} contains infinite values")


def save_submission(
    submission: Mapping[str, Mapping[str, np.ndarray]],
    targets: Mapping[str, Mapping[str, int]],
    out_dir: str | Path,
    target_set: str,
) -> dict[str, Path]:
    """Check, then write ``<out_dir>/<stem>.npy`` (float32 arrays) and ``<stem>.zip`` (the upload).

    Returns
    -------
    dict
        ``{"npy": path, "zip": path}``; ``stem`` is :data:`SUBMISSION_STEMS` ``[target_set]``.
    """
    if target_set not in SUBMISSION_STEMS:
        raise ValueError(f"unknown target set {target_set!r}; expected one of {tuple(SUBMISSION_STEMS)}")
    check_submission(submission, targets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = SUBMISSION_STEMS[target_set]
    npy, archive = out_dir / f"{stem}.npy", out_dir / f"{stem}.zip"
    plain = {s: {e: np.asarray(y, dtype=np.float32) for e, y in eps.items()} for s, eps in submission.items()}
    np.save(npy, plain, allow_pickle=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(npy, arcname=npy.name)
    return {"npy": npy, "zip": archive}


def load_submission(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a submission ``.npy`` (or the ``.zip`` holding it) back into the dict."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".npy")]
            if len(names) != 1:
                raise ValueError(f"{path}: expected one .npy inside, found {names}")
            with z.open(names[0]) as fh:
                return np.load(fh, allow_pickle=True).item()
    return np.load(path, allow_pickle=True).item()


# ----------------------------------------------------------------------------------------------
# Local scoring
# ----------------------------------------------------------------------------------------------


def load_heldout_fmri(
    fmri_root: str | Path, targets: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, np.ndarray]]:
    """The target episodes' fMRI wherever it exists under ``fmri_root`` (``{subject: {episode: (T, V)}}``).

    ``fmri_root`` is a folder in the Algonauts layout: a real release that includes them (the OOD fMRI
    in ``task-ood`` files, season 7 in the Friends file) or a synthetic study's hidden truth
    (:func:`mindlib.synthetic.heldout_fmri_root`). Subjects or episodes without fMRI are left out (an
    empty dict when none has any; a subject whose file lacks some episodes is logged as a warning naming
    them); an episode whose length differs from its target is an error.
    """
    studies = sorted({layout.study_of(e) for eps in targets.values() for e in eps})
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, episodes in targets.items():
        paths = [layout.fmri_path(fmri_root, subject, st) for st in studies]
        present = tuple(st for st, p in zip(studies, paths) if p.is_file())
        if not present:
            continue
        runs = {}
        for st in present:
            for run, y in load_fmri(fmri_root, subject, studies=(st,)).items():
                if layout.study_of(run) != st:
                    raise ValueError(
                        f"{layout.fmri_path(fmri_root, subject, st)} holds run {run!r}, which is not a run of the {st!r} study; "
                        "each task-<study> file holds only its study's runs"
                    )
                runs[run] = y
        found = {}
        for episode, n_trs in episodes.items():
            if episode in runs:
                if runs[episode].shape[0] != n_trs:
                    raise ValueError(
                        f"{subject} {episode}: the fMRI under {fmri_root} has {runs[episode].shape[0]} TRs but the "
                        f"target sample number is {n_trs}"
                    )
                found[episode] = runs[episode]
        lacking = sorted(set(episodes) - set(found))
        if lacking:
            logger.warning(
                "%s: no held-out fMRI under %s for %s; scoring the other episodes only",
                subject,
                fmri_root,
                ", ".join(lacking),
            )
        if found:
            out[subject] = found
    if out and set(targets) - set(out):
        logger.warning(
            "no held-out fMRI under %s for %s; scoring the other subjects only",
            fmri_root,
            ", ".join(sorted(set(targets) - set(out))),
        )
    return out


def score(
    submission: Mapping[str, Mapping[str, np.ndarray]],
    truth: Mapping[str, Mapping[str, np.ndarray]],
    exclude_trs: int = EXCLUDE_TRS,
) -> dict:
    """The official metric (:func:`mindlib.metrics.algonauts_score`) on the episodes ``truth`` holds.

    Movies are grouped as the scorer groups them (:func:`mindlib.layout.movie_of`: ``chaplin1`` and
    ``chaplin2`` are ``chaplin``; a Friends season is one movie).
    """
    if not truth:
        raise ValueError("no held-out fMRI to score against (load_heldout_fmri found none)")
    preds = {s: {e: submission[s][e] for e in eps} for s, eps in truth.items()}
    return metrics.algonauts_score(preds, truth, exclude_trs=exclude_trs)


# ----------------------------------------------------------------------------------------------
# From trained models to the files
# ----------------------------------------------------------------------------------------------


def load_models(paths: Iterable[str | Path], root: str | Path, **study_kwargs) -> tuple[Study, list, list]:
    """The study of the models' backbone and the models saved by :func:`mindlib.experiment.save`.

    Returns ``(study, models, configs)``; every model must be of the first one's backbone.
    """
    import torch

    from mindlib import data, experiment

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("load_models needs at least one model file (results/models/06_train_mind.pt)")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"no model at {p}: run notebook 06 (make demo) or pass another --model")
    backbone = torch.load(paths[0], map_location="cpu", weights_only=False)["backbone"]
    study = data.load_study(root, backbone, **study_kwargs)
    loaded = []
    for p in paths:
        try:
            loaded.append(experiment.load(p, study))
        except RuntimeError as err:  # load_state_dict: shapes of another study (size, backbone dims, lags)
            raise ValueError(
                f"{p} does not fit the {backbone!r} study at {root}: it was trained on another study (size, "
                f"feature dimensions or lags); retrain it on this study with notebook 06. ({str(err)[:200]}...)"
            ) from None
    return study, [m for m, _ in loaded], [c for _, c in loaded]


def write(
    models: Sequence[object],
    study: Study,
    out_dir: str | Path,
    target_sets: Sequence[str] = layout.TARGET_SETS,
    fmri_root: str | Path | None = None,
    prediction: Prediction | None = None,
    **settings,
) -> dict:
    """Predict, check and save every target set found in ``study.root``; score where fMRI exists.

    ``prediction`` and ``**settings`` are passed to :func:`predict`.

    Returns ``{target_set: {"files": {...}, "report": DataFrame, "score": dict or None,
    "predictions": dict}}``; a target set without target sample numbers is an error.
    """
    out = {}
    for target_set in target_sets:
        targets = load_targets(study.root, target_set)
        preds, report = predict(models, study, targets, prediction, **settings)
        files = save_submission(preds, targets, out_dir, target_set)
        truth = load_heldout_fmri(fmri_root, targets) if fmri_root is not None else {}
        out[target_set] = {
            "files": files,
            "report": report,
            "predictions": preds,
            "score": score(preds, truth) if truth else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from mindlib import project, synthetic

    ap = argparse.ArgumentParser(
        prog="python -m mindlib.submission",
        description="Predict the held-out stimuli from trained models and write the checked submission files.",
    )
    ap.add_argument("--dataset", default="synthetic", help="'synthetic' or an Algonauts 2025 folder")
    ap.add_argument("--size", default="demo", help="synthetic study size: smoke | demo | full")
    ap.add_argument(
        "--model",
        action="append",
        required=True,
        help="model file from mindlib.experiment.save; repeat to average an ensemble",
    )
    ap.add_argument("--targets", nargs="+", default=list(layout.TARGET_SETS), choices=layout.TARGET_SETS)
    ap.add_argument("--out", default="results/submission", help="folder for the .npy and .zip files")
    ap.add_argument(
        "--truth",
        default="auto",
        help="folder with held-out fMRI to score against; 'auto': the synthetic hidden truth or the "
        "dataset itself; 'none': do not score",
    )
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = project.resolve_dataset(args.dataset, size=args.size)
    study, models, configs = load_models(args.model, root)
    if args.truth == "auto":
        fmri_root = synthetic.heldout_fmri_root(root) if synthetic.study_json_path(root).exists() else root
    else:
        fmri_root = None if args.truth == "none" else Path(args.truth)
    results = write(
        models, study, args.out, args.targets, fmri_root, window=configs[0].window, device=args.device
    )
    for target_set, res in results.items():
        print(
            f"{target_set}: {res['files']['zip']} ({len(res['report'])} episodes, "
            f"{int(res['report'].n_uncovered.sum())} TRs without features predicted as 0)"
        )
        if res["score"] is not None:
            per_movie = pd.DataFrame(res["score"]["per_movie"]).mean(axis=1)
            print(
                f"  local score (official metric) {res['score']['mean']:.4f}; per movie: "
                + ", ".join(f"{m} {r:.3f}" for m, r in per_movie.items())
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
