"""Algonauts 2025 reader, feature store, splits and training windows (SPEC §1-3, §9).

Everything a notebook needs between the files on disk and a batch of windows:

- :func:`load_fmri` reads one subject's HDF5 files into ``{run: (T, V)}`` (runs matched on the part of
  the key after ``task-``, so session prefixes may differ across subjects).
- :func:`read_transcript` / :func:`transcript_words` parse the per-TR transcript TSVs.
- :class:`FeatureStore` reads and writes backbone features ``(T_f, L, D)`` at ``feature_hz``;
  :func:`layer_groups` / :func:`aggregate_layers` average layer groups (SPEC §3).
- :func:`load_study` ties fMRI and features together into :class:`RunRecord` s (TR-aligned with
  :func:`mindlib.align.align_features`, fMRI z-scored per run) and a :class:`Split` by episode.
- :func:`window_starts`, :class:`WindowDataset`, :func:`collate_windows` cut runs into training windows.

Bad data policy (NaN or constant parcels)
-----------------------------------------
:func:`load_fmri` returns the raw values and warns, naming the file, the run and the number of
parcels that contain NaN or are constant over the run. :func:`zscore` sets NaN entries to 0 *after*
z-scoring (the run's mean) and constant parcels to all 0. Scores (``mindlib.metrics``) treat a constant
column as NaN and average over parcels with a nan-mean, so a parcel that is entirely NaN or constant is
left out of the scores instead of counted as r = 0. TRs whose fMRI row is entirely NaN are masked
(``RunRecord.valid`` False).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from . import layout
from .align import FEATURE_HZ, TR_S, align_features

logger = logging.getLogger(__name__)

LAYER_FRACTIONS = (0.6, 0.8, 1.0)  # SPEC §3: three layer groups, ending at 60 %, 80 % and 100 % depth
# Largest accepted gap between feature duration (T_f / feature_hz) and fMRI duration (T * tr_s).
# Algonauts runs record a few TRs past the clip's end and extracted features can stop a frame or two
# early: a few seconds apart is normal, and the uncovered TRs are masked. 15 s (about 10 TRs) or more
# means the wrong stimulus or a truncated extraction.
LENGTH_TOLERANCE_S = 15.0
SPLIT_NAMES = ("train", "val", "test")
TRANSCRIPT_COLUMNS = ("text_per_tr", "words_per_tr", "onsets_per_tr", "durations_per_tr")

_NO_DATA_HINT = (
    "Point `root` at an Algonauts 2025 folder (the one holding fmri/ and stimuli/), or make the "
    "synthetic study with `mindlib.synthetic.make_study(root)`."
)


# ----------------------------------------------------------------------------------------------
# fMRI
# ----------------------------------------------------------------------------------------------


def load_fmri(root: str | Path, subject: str, *, n_parcels: int | None = None) -> dict[str, np.ndarray]:
    """Every fMRI run of one subject (Friends and Movie10 files), keyed by run name.

    Parameters
    ----------
    root : str or Path
        Study folder holding ``fmri/<subject>/func/*.h5`` (see :mod:`mindlib.layout`).
    subject : str
        Subject as written in the files, e.g. ``"sub-01"``.
    n_parcels : int, optional
        Expected number of parcels ``V``; default :data:`mindlib.layout.N_PARCELS` (1000).

    Returns
    -------
    runs : dict of str to ndarray of shape (T, V), float32
        Raw (not z-scored) responses, keyed by the run name after ``task-`` (``"s01e02a"``,
        ``"life01_run-1"``), sorted by run name. NaNs are kept (see the module's bad data policy).

    Raises
    ------
    FileNotFoundError
        If neither of the subject's files exists. One missing file is logged and allowed.
    ValueError
        On a duplicate run name, a dataset that is not ``(T, V)`` or a wrong parcel count.

    Warns
    -----
    UserWarning
        Naming file, run and count, for runs with NaN or constant parcels.
    """
    layout.check_subject(subject)
    expected_v = layout.N_PARCELS if n_parcels is None else int(n_parcels)
    paths = {study: layout.fmri_path(root, subject, study) for study in layout.STUDIES}
    present = {study: p for study, p in paths.items() if p.is_file()}
    if not present:
        listed = "\n  ".join(str(p) for p in paths.values())
        raise FileNotFoundError(
            f"no fMRI for {subject}: none of these files exists:\n  {listed}\n{_NO_DATA_HINT}"
        )
    for study, p in paths.items():
        if study not in present:
            logger.warning("%s: no %s fMRI file at %s; reading the other study only", subject, study, p)

    runs: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for path in present.values():
        with h5py.File(path, "r") as f:
            for key in sorted(f.keys()):
                run = layout.run_name(key)
                where = f"{path.name}, key {key!r}"
                if run in runs:
                    raise ValueError(
                        f"duplicate run {run!r} for {subject}: {where} and {source[run]} both hold it; "
                        "keep one dataset per run in the HDF5 files"
                    )
                node = f[key]
                if not isinstance(node, h5py.Dataset):
                    raise ValueError(f"{where}: expected a (T, V) dataset, found a group")
                x = np.asarray(node[()], dtype=np.float32)
                if x.ndim != 2:
                    raise ValueError(f"{where} (run {run}): expected shape (T, V), got {x.shape}")
                if x.shape[1] != expected_v:
                    raise ValueError(
                        f"{where} (run {run}): {x.shape[1]} parcels, expected {expected_v} "
                        "(Schaefer-1000 atlas); is this a parcellated Algonauts 2025 file?"
                    )
                _warn_bad_parcels(x, f"{path.name}: run {run}")
                runs[run], source[run] = x, where
    for run in layout.KNOWN_MISSING_RUNS.get(subject, ()):
        if run not in runs and layout.study_of(run) in present:
            logger.info("%s: run %s is absent from the released data (known gap, SPEC §1)", subject, run)
    return dict(sorted(runs.items()))


def _bad_parcels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(V,)`` of parcels with any NaN, and of parcels constant over time (or all NaN)."""
    has_nan = np.isnan(x).any(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        span = np.nanmax(x, axis=0) - np.nanmin(x, axis=0) if len(x) else np.zeros(x.shape[1])
    constant = ~(span > 0)  # NaN span (all-NaN column) counts as constant
    return has_nan, constant


def _warn_bad_parcels(x: np.ndarray, where: str) -> None:
    has_nan, constant = _bad_parcels(x)
    n_nan, n_const = int(has_nan.sum()), int(constant.sum())
    if n_nan or n_const:
        warnings.warn(
            f"{where}: {n_nan} of {x.shape[1]} parcels contain NaN and {n_const} are constant or all NaN; "
            "after z-scoring NaN entries are set to 0 and constant parcels are all 0 (left out of the "
            "parcel mean of scores)",
            stacklevel=3,
        )


def zscore(x: np.ndarray) -> np.ndarray:
    """Z-score one run per parcel over time (population std, ``ddof=0``, as ``scipy.stats.zscore``).

    Parameters
    ----------
    x : array of shape (T, V)

    Returns
    -------
    z : ndarray of shape (T, V), float32
        NaN entries are ignored for the statistics and set to 0 afterwards; constant (or all-NaN)
        parcels are all 0.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"zscore expects (T, V), got shape {x.shape}")
    _, constant = _bad_parcels(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
    std = np.where(constant, 1.0, std)
    z = (x - mean) / std
    z[:, constant] = 0.0
    z[np.isnan(z)] = 0.0
    return z.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Transcripts
# ----------------------------------------------------------------------------------------------


def _parse_list(cell: str, path: Path, row: int, column: str) -> list:
    """A list literal cell; empty cell or ``[]`` is no speech."""
    text = cell.strip()
    if text in ("", "[]", "nan", "NaN"):
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ValueError(
            f"{path}: row {row} (line {row + 2}), column {column}: cannot parse {cell!r} as a Python "
            f"list literal ({err.__class__.__name__})"
        ) from None
    if not isinstance(value, list | tuple):
        raise ValueError(
            f"{path}: row {row} (line {row + 2}), column {column}: expected a list, got {cell!r}"
        )
    return list(value)


def _parse_text(cell: str) -> str:
    """``text_per_tr`` is plain text in the release; a list literal of strings is joined by spaces."""
    text = cell.strip()
    if text in ("", "[]", "nan", "NaN"):
        return ""
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text  # e.g. "[laughs]": plain text that looks like a list
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return " ".join(value)
    return text


def read_transcript(path: str | Path) -> pd.DataFrame:
    """One transcript TSV: one row per TR chunk, list columns parsed.

    Parameters
    ----------
    path : str or Path
        A TSV with columns ``text_per_tr``, ``words_per_tr``, ``onsets_per_tr``, ``durations_per_tr``
        (see :func:`mindlib.layout.transcript_path`); list cells are Python list literals stored as
        strings, an empty cell or ``[]`` means no speech in that TR.

    Returns
    -------
    DataFrame
        Index ``tr_index`` (0, 1, ...); ``text_per_tr`` str, ``words_per_tr`` list of str,
        ``onsets_per_tr`` and ``durations_per_tr`` lists of float (seconds from the stimulus start).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; missing column, malformed cell or lists of different lengths (naming file and row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no transcript at {path}")
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in TRANSCRIPT_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(TRANSCRIPT_COLUMNS)}")
    rows = []
    for i, rec in enumerate(raw[list(TRANSCRIPT_COLUMNS)].itertuples(index=False)):
        text, words, onsets, durations = rec
        words = [str(w) for w in _parse_list(words, path, i, "words_per_tr")]
        onsets = _parse_list(onsets, path, i, "onsets_per_tr")
        durations = _parse_list(durations, path, i, "durations_per_tr")
        if not (len(words) == len(onsets) == len(durations)):
            raise ValueError(
                f"{path}: row {i} (line {i + 2}): {len(words)} words but {len(onsets)} onsets and "
                f"{len(durations)} durations"
            )
        try:
            onsets, durations = [float(v) for v in onsets], [float(v) for v in durations]
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: row {i} (line {i + 2}): onsets and durations must be numbers"
            ) from None
        rows.append((_parse_text(text), words, onsets, durations))
    df = pd.DataFrame(rows, columns=list(TRANSCRIPT_COLUMNS))
    df.index.name = "tr_index"
    return df


def transcript_words(path: str | Path) -> pd.DataFrame:
    """One row per spoken word of a transcript TSV.

    Returns
    -------
    DataFrame
        Columns ``word`` (str), ``onset_s`` and ``duration_s`` (float, seconds from the stimulus
        start) and ``tr_index`` (int, the TSV row the word was listed in), in file order.
    """
    df = read_transcript(path)
    records = [
        (w, on, dur, tr)
        for tr, (words, onsets, durations) in enumerate(
            zip(df["words_per_tr"], df["onsets_per_tr"], df["durations_per_tr"])
        )
        for w, on, dur in zip(words, onsets, durations)
    ]
    out = pd.DataFrame(records, columns=["word", "onset_s", "duration_s", "tr_index"])
    return out.astype({"word": object, "onset_s": np.float64, "duration_s": np.float64, "tr_index": np.int64})


# ----------------------------------------------------------------------------------------------
# Feature store
# ----------------------------------------------------------------------------------------------


def list_backbones(root: str | Path) -> list[str]:
    """Names of the feature stores under ``<root>/features`` (folders with a ``backbone.json``), sorted."""
    base = Path(root) / "features"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "backbone.json").is_file())


def _normalise_modalities(modalities: Mapping) -> dict[str, dict[str, int]]:
    out = {}
    for name, spec in modalities.items():
        if isinstance(spec, Mapping):
            n_layers, dim = spec["n_layers"], spec["dim"]
        else:
            n_layers, dim = spec
        if int(n_layers) < 1 or int(dim) < 1:
            raise ValueError(f"modality {name!r}: n_layers and dim must be >= 1, got {n_layers}, {dim}")
        out[str(name)] = {"n_layers": int(n_layers), "dim": int(dim)}
    if not out:
        raise ValueError("a feature store needs at least one modality")
    return out


class FeatureStore:
    """One backbone's features on disk: ``<root>/features/<backbone>/<modality>/<stimulus>.npy``.

    Each array is ``(T_f, L, D)`` at ``feature_hz`` (float32 or float16); ``backbone.json`` records
    ``{"name", "feature_hz", "fusion", "modalities": {modality: {"n_layers": L, "dim": D}}}``.

    Parameters
    ----------
    root : str or Path
        Study folder.
    backbone : str
        Backbone name, a folder under ``<root>/features`` (see :func:`list_backbones`).
    """

    def __init__(self, root: str | Path, backbone: str):
        self.root, self.backbone = Path(root), str(backbone)
        self.dir = layout.features_dir(root, backbone)
        meta = self.dir / "backbone.json"
        if not meta.is_file():
            available = list_backbones(root)
            raise ValueError(
                f"unknown backbone {backbone!r}: no {meta}; available backbones under {self.root / 'features'}: "
                f"{available or 'none'}. " + ("" if available else _NO_DATA_HINT)
            )
        info = json.loads(meta.read_text())
        try:
            info["modalities"] = _normalise_modalities(info["modalities"])
            info["feature_hz"] = float(info["feature_hz"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{meta}: malformed backbone.json ({err!r}); rewrite it with FeatureStore.create"
            ) from None
        self.info: dict = info

    @classmethod
    def create(
        cls,
        root: str | Path,
        backbone: str,
        feature_hz: float = FEATURE_HZ,
        fusion: str = "none",
        modalities: Mapping | None = None,
        *,
        overwrite: bool = False,
    ) -> FeatureStore:
        """Write ``backbone.json`` (and the modality folders) and return the store.

        Parameters
        ----------
        feature_hz : float
            Frame rate of the arrays.
        fusion : str
            How the backbone combines modalities (free text, e.g. ``"none"``, ``"joint-space"``, ``"fused"``).
        modalities : mapping
            ``{modality: (n_layers, dim)}`` or ``{modality: {"n_layers": L, "dim": D}}``.
        overwrite : bool
            Replace a different existing ``backbone.json``. An identical one is always reused.
        """
        if modalities is None:
            raise ValueError("FeatureStore.create needs modalities, e.g. {'video': (40, 1408)}")
        if not feature_hz > 0:
            raise ValueError(f"feature_hz must be > 0, got {feature_hz}")
        info = {
            "name": str(backbone),
            "feature_hz": float(feature_hz),
            "fusion": str(fusion),
            "modalities": _normalise_modalities(modalities),
        }
        d = layout.features_dir(root, backbone)
        meta = d / "backbone.json"
        if meta.is_file() and not overwrite:
            old = json.loads(meta.read_text())
            if old != info:
                raise ValueError(
                    f"{meta} exists and describes another store ({old}); pass overwrite=True or delete {d}"
                )
        for m in info["modalities"]:
            (d / m).mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(info, indent=2) + "\n")
        return cls(root, backbone)

    @property
    def name(self) -> str:
        return self.info.get("name", self.backbone)

    @property
    def feature_hz(self) -> float:
        return self.info["feature_hz"]

    @property
    def fusion(self) -> str:
        return self.info.get("fusion", "")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.info["modalities"])

    def shape(self, modality: str) -> tuple[int, int]:
        """``(L, D)`` of one modality's arrays."""
        spec = self.info["modalities"][self._check_modality(modality)]
        return spec["n_layers"], spec["dim"]

    def path(self, stimulus: str, modality: str) -> Path:
        """File of one stimulus's features for one modality."""
        return layout.feature_path(self.root, self.backbone, self._check_modality(modality), stimulus)

    def stimuli(self, modality: str) -> list[str]:
        """Stimuli with a feature file for ``modality``, sorted."""
        return sorted(p.stem for p in (self.dir / self._check_modality(modality)).glob("*.npy"))

    def _check_modality(self, modality: str) -> str:
        if modality not in self.info["modalities"]:
            raise ValueError(
                f"backbone {self.backbone!r} has no modality {modality!r}; it has {self.modalities}"
            )
        return modality

    def load(self, stimulus: str, modality: str) -> np.ndarray:
        """Features of one stimulus: ndarray of shape (T_f, L, D), dtype as stored (float32 or float16)."""
        p = self.path(stimulus, modality)
        if not p.is_file():
            raise FileNotFoundError(
                f"no {modality} features for run/stimulus {stimulus!r} of backbone {self.backbone!r}: {p} is "
                "missing; extract them (mindlib.features) or drop the run with load_study(runs=...)"
            )
        x = np.load(p)
        L, D = self.shape(modality)
        if x.ndim != 3 or x.shape[1:] != (L, D):
            raise ValueError(f"{p}: shape {x.shape}, expected (T_f, {L}, {D}) as backbone.json says")
        return x

    def write(self, stimulus: str, modality: str, array: np.ndarray) -> Path:
        """Save one stimulus's features ``(T_f, L, D)`` (or ``(T_f, D)``, stored as ``(T_f, 1, D)``)."""
        if not stimulus or "/" in stimulus or "\\" in stimulus:
            raise ValueError(f"stimulus name {stimulus!r} must be a plain file name, e.g. 's01e01a'")
        x = np.asarray(array)
        if x.ndim == 2:
            x = x[:, None, :]
        L, D = self.shape(modality)
        if x.ndim != 3 or x.shape[1:] != (L, D):
            raise ValueError(
                f"{modality} features for {stimulus!r} have shape {np.shape(array)}, expected (T_f, {L}, {D})"
            )
        if x.dtype not in (np.float32, np.float16):
            x = x.astype(np.float32)
        p = self.path(stimulus, modality)
        p.parent.mkdir(parents=True, exist_ok=True)
        # write beside, then rename: a reader never sees half a file, an interrupted write leaves none
        tmp = p.with_name(f".{p.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, x)
        os.replace(tmp, p)
        return p

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}={self.shape(m)}" for m in self.modalities)
        return f"FeatureStore({self.backbone!r}, {self.feature_hz} Hz, {mods})"


def layer_groups(n_layers: int, fractions: Sequence[float] = LAYER_FRACTIONS) -> list[slice]:
    """Consecutive layer groups ending at the given fractions of depth (SPEC §3).

    Boundaries are ``b_i = round(f_i * L)`` (half up), clipped to ``[1, L]`` and made non-decreasing;
    group ``i`` holds layers ``[b_{i-1}, b_i)`` with ``b_{-1} = 0``. Empty groups are dropped, so
    ``L = 1`` gives one group and ``L = 10`` gives ``[0:6], [6:8], [8:10]``.

    Parameters
    ----------
    n_layers : int
        ``L`` >= 1.
    fractions : sequence of float
        Increasing fractions in ``(0, 1]``.

    Returns
    -------
    list of slice
        ``G`` slices over the layer axis.
    """
    if int(n_layers) != n_layers or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers}")
    fr = [float(f) for f in fractions]
    if not fr or any(not 0 < f <= 1 for f in fr) or any(b < a for a, b in zip(fr, fr[1:])):
        raise ValueError(f"fractions must be non-decreasing values in (0, 1], got {tuple(fractions)}")
    L = int(n_layers)
    bounds = [min(max(math.floor(f * L + 0.5 + 1e-9), 1), L) for f in fr]
    bounds = np.maximum.accumulate(bounds).tolist()
    groups, lo = [], 0
    for hi in bounds:
        if hi > lo:
            groups.append(slice(lo, hi))
        lo = hi
    return groups


def aggregate_layers(x: np.ndarray, fractions: Sequence[float] = LAYER_FRACTIONS) -> np.ndarray:
    """Mean over each layer group, groups concatenated along features.

    Parameters
    ----------
    x : array of shape (T_f, L, D)
    fractions : sequence of float
        See :func:`layer_groups`.

    Returns
    -------
    ndarray of shape (T_f, G * D), float32
        Block ``g`` (columns ``g*D:(g+1)*D``) is the mean of group ``g``'s layers.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"aggregate_layers expects (T_f, L, D), got shape {x.shape}")
    groups = layer_groups(x.shape[1], fractions)
    return np.concatenate([x[:, g].astype(np.float32).mean(axis=1) for g in groups], axis=1)


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Run names on each side of the split (each run in exactly one list, each list sorted)."""

    train: list[str]
    val: list[str]
    test: list[str]

    def of(self, run: str) -> str:
        """``"train"``, ``"val"`` or ``"test"`` for one run."""
        for name in SPLIT_NAMES:
            if run in getattr(self, name):
                return name
        raise KeyError(f"run {run!r} is in no split")


def _n_of(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))  # round half up


def split_runs(
    run_names: Iterable[str],
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Split runs by episode, stratified by movie (SPEC §9), deterministically.

    Rule:

    1. Group runs by :func:`mindlib.layout.episode_of` (half-episodes ``a/b/c/d`` of one episode, and
       repeats ``run-1/run-2`` of one clip, share a group and so a side).
    2. Within each movie (:func:`mindlib.layout.movie_of`), sort its groups and shuffle them with
       ``numpy.random.default_rng([seed, crc32(movie)])`` (so a movie's split does not depend on
       which other movies are present); the first ``round(test_fraction * n)`` groups go to test,
       the next ``round(val_fraction * n)`` to val, the rest to train (``n`` groups in that movie,
       rounding half up).
    3. With 3 or more groups in all and a positive fraction, test and val each get at least one group:
       if one is empty it takes the next train group of the movie with the most train groups (ties
       by movie name), test first.

    Parameters
    ----------
    run_names : iterable of str
        Run names (duplicates allowed, e.g. the union over subjects).
    val_fraction, test_fraction : float
        Fractions of each movie's groups, in ``[0, 1)`` with a sum below 1.
    seed : int
        Shuffling seed.

    Returns
    -------
    Split
    """
    runs = sorted(set(run_names))
    if not runs:
        raise ValueError("split_runs needs at least one run name")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got {val_fraction}, {test_fraction}"
        )
    groups_of_movie: dict[str, dict[str, list[str]]] = {}
    for run in runs:
        groups_of_movie.setdefault(layout.movie_of(run), {}).setdefault(layout.episode_of(run), []).append(
            run
        )

    side: dict[str, str] = {}  # group -> split name
    train_queue: dict[str, list[str]] = {}  # movie -> its train groups in shuffled order
    for movie in sorted(groups_of_movie):
        groups = sorted(groups_of_movie[movie])
        rng = np.random.default_rng([seed, zlib.crc32(movie.encode())])
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_test = min(_n_of(test_fraction, len(order)), len(order))
        n_val = min(_n_of(val_fraction, len(order)), len(order) - n_test)
        for i, g in enumerate(order):
            side[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
        train_queue[movie] = order[n_test + n_val :]

    n_groups = len(side)
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        n_train = sum(len(q) for q in train_queue.values())
        if n_groups >= 3 and fraction > 0 and name not in side.values() and n_train >= 2:
            movie = max(sorted(train_queue), key=lambda m: len(train_queue[m]))  # first of the largest
            side[train_queue[movie].pop(0)] = name

    out = {name: [] for name in SPLIT_NAMES}
    for movie_groups in groups_of_movie.values():
        for g, members in movie_groups.items():
            out[side[g]].extend(members)
    return Split(**{name: sorted(v) for name, v in out.items()})


# ----------------------------------------------------------------------------------------------
# Study
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class RunRecord:
    """One subject's run, ready for training.

    Attributes
    ----------
    subject : str
    subject_index : int
        Index into :attr:`Study.subjects`.
    run : str
    fmri : ndarray of shape (T, V), float32
        Z-scored per run and parcel (:func:`zscore`).
    features : dict of str to ndarray of shape (T, F_m), float32
        TR-aligned, lagged tokens per modality; repeats and subjects share the same array object.
    valid : ndarray of shape (T,), bool
        TR covered by features at every lag and fMRI present.
    """

    subject: str
    subject_index: int
    run: str
    fmri: np.ndarray
    features: dict[str, np.ndarray]
    valid: np.ndarray

    @property
    def n_trs(self) -> int:
        return int(self.fmri.shape[0])

    @property
    def stimulus(self) -> str:
        return layout.stimulus_of(self.run)

    @property
    def movie(self) -> str:
        return layout.movie_of(self.run)

    def __repr__(self) -> str:
        feats = ", ".join(f"{m}={a.shape}" for m, a in self.features.items())
        return (
            f"RunRecord({self.subject} #{self.subject_index}, {self.run}, fmri={self.fmri.shape}, {feats}, "
            f"valid={int(self.valid.sum())}/{self.n_trs})"
        )


@dataclass(eq=False)
class Study:
    """Every run of every subject, aligned to one backbone, with the split (see :func:`load_study`)."""

    records: list[RunRecord]
    subjects: tuple[str, ...]
    modalities: tuple[str, ...]
    feature_dims: dict[str, int]  # F_m = G_m * D_m * n_lags
    n_parcels: int
    backbone: str
    root: Path
    split: Split
    tr_s: float = TR_S
    feature_hz: float = FEATURE_HZ
    lags_trs: tuple[float, ...] = (3,)
    layer_fractions: tuple[float, ...] = LAYER_FRACTIONS
    info: dict = field(default_factory=dict)  # the feature store's backbone.json

    def select(self, split_name: str) -> list[RunRecord]:
        """Records on one side of the split: ``"train"``, ``"val"`` or ``"test"``."""
        if split_name not in SPLIT_NAMES:
            raise ValueError(f"split_name must be one of {SPLIT_NAMES}, got {split_name!r}")
        keep = set(getattr(self.split, split_name))
        return [r for r in self.records if r.run in keep]

    def describe(self) -> pd.DataFrame:
        """One row per record: subject, run, movie, split, n_trs, n_valid."""
        return pd.DataFrame(
            [
                (r.subject, r.run, r.movie, self.split.of(r.run), r.n_trs, int(r.valid.sum()))
                for r in self.records
            ],
            columns=["subject", "run", "movie", "split", "n_trs", "n_valid"],
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(getattr(self.split, n))}" for n in SPLIT_NAMES)
        return (
            f"Study({self.backbone!r}, {len(self.records)} records, subjects={self.subjects}, "
            f"feature_dims={self.feature_dims}, V={self.n_parcels}, runs: {sizes})"
        )


def _subjects_under(root: Path) -> list[str]:
    base = root / "fmri"
    found = []
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            try:
                subject = layout.check_subject(d.name)
            except ValueError:
                continue  # not a subject folder
            if any(layout.fmri_path(root, subject, s).is_file() for s in layout.STUDIES):
                found.append(subject)
    return found


def load_study(
    root: str | Path,
    backbone: str,
    subjects: Sequence[str] | None = None,
    lags_trs: Sequence[float] = (3,),
    layer_fractions: Sequence[float] = LAYER_FRACTIONS,
    tr_s: float = TR_S,
    length_tolerance_s: float = LENGTH_TOLERANCE_S,
    runs: Iterable[str] | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    n_parcels: int | None = None,
    feature_cache=None,
) -> Study:
    """Load fMRI and one backbone's features into TR-aligned records, with a split.

    Parameters
    ----------
    root : str or Path
        Study folder (Algonauts 2025 layout or a synthetic study).
    backbone : str
        Feature store under ``<root>/features`` (:func:`list_backbones`).
    subjects : sequence of str, optional
        Default: every subject with an fMRI file under ``<root>/fmri``, sorted. Their order is
        ``RunRecord.subject_index``.
    lags_trs : sequence of float
        Haemodynamic lags in TRs; several are FIR delays concatenated along features (SPEC §2).
    layer_fractions : sequence of float
        Layer groups (:func:`layer_groups`).
    tr_s : float
        Repetition time in seconds.
    length_tolerance_s : float
        Largest accepted gap between feature duration ``T_f / feature_hz`` and fMRI duration
        ``T * tr_s`` (default :data:`LENGTH_TOLERANCE_S`, 15 s). Within it, TRs not covered by
        features are masked; beyond it, ValueError.
    runs : iterable of str, optional
        Keep only these runs (a run no subject has is an error).
    val_fraction, test_fraction, split_seed
        Passed to :func:`split_runs`, called on the union of runs over subjects so a stimulus lies on
        the same side for every subject.
    n_parcels : int, optional
        Expected ``V`` (default 1000), passed to :func:`load_fmri`.
    feature_cache : mindlib.cache.FeatureCache, optional
        Keep aligned features on disk and memory-map them (bounded memory at the release's size).

    Returns
    -------
    Study
        ``records`` sorted by subject index then run.
    """
    root = Path(root)
    lags_trs = tuple(lags_trs)
    if not lags_trs:
        raise ValueError("lags_trs must name at least one lag, e.g. (3,)")
    if not length_tolerance_s >= 0:
        raise ValueError(f"length_tolerance_s must be >= 0, got {length_tolerance_s}")
    if subjects is None:
        subjects = _subjects_under(root)
        if not subjects:
            raise FileNotFoundError(f"no subject with fMRI under {root / 'fmri'}. {_NO_DATA_HINT}")
    subjects = tuple(layout.check_subject(s) for s in subjects)
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"subjects listed twice: {subjects}")
    store = FeatureStore(root, backbone)
    fmri = {s: load_fmri(root, s, n_parcels=n_parcels) for s in subjects}

    if runs is not None:
        wanted = set(runs)
        unknown = sorted(wanted - {r for per_subject in fmri.values() for r in per_subject})
        if unknown:
            raise ValueError(f"runs {unknown} are in no subject's fMRI files ({', '.join(subjects)})")
        fmri = {s: {r: x for r, x in per_subject.items() if r in wanted} for s, per_subject in fmri.items()}

    feature_dims = {
        m: len(layer_groups(store.shape(m)[0], layer_fractions)) * store.shape(m)[1] * len(lags_trs)
        for m in store.modalities
    }
    cache: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}

    def aligned(run: str, modality: str, n_trs: int) -> tuple[np.ndarray, np.ndarray]:
        stimulus = layout.stimulus_of(run)
        key = (stimulus, modality, n_trs)
        if key not in cache and feature_cache is not None:  # on disk, memory-mapped (mindlib.cache)
            cache[key] = feature_cache.get(store, stimulus, modality, n_trs, lags_trs, layer_fractions, tr_s,
                                           lambda: aligned_now(run, modality, n_trs))
        if key not in cache:
            cache[key] = aligned_now(run, modality, n_trs)
        return cache[key]

    def aligned_now(run: str, modality: str, n_trs: int) -> tuple[np.ndarray, np.ndarray]:
        stimulus = layout.stimulus_of(run)
        frames = aggregate_layers(store.load(stimulus, modality), layer_fractions)  # (T_f, G*D)
        feat_s, fmri_s = frames.shape[0] / store.feature_hz, n_trs * tr_s
        if abs(feat_s - fmri_s) > length_tolerance_s:
            raise ValueError(
                f"run {run}: features {store.path(stimulus, modality)} last {feat_s:.2f} s "
                f"({frames.shape[0]} frames at {store.feature_hz} Hz) but the fMRI lasts {fmri_s:.2f} s "
                f"({n_trs} TRs of {tr_s} s), more than length_tolerance_s={length_tolerance_s} apart. "
                "Re-extract the features from the full stimulus, check tr_s and feature_hz, or drop "
                "the run with runs=..."
            )
        return align_features(frames, n_trs, tr_s, store.feature_hz, lags_trs)

    records = []
    for i, s in enumerate(subjects):
        for run, raw in fmri[s].items():
            n_trs = raw.shape[0]
            feats, valid = {}, ~np.isnan(raw).all(axis=1)
            for m in store.modalities:
                feats[m], covered = aligned(run, m, n_trs)
                valid = valid & covered
            n_masked = n_trs - int(valid.sum())
            if n_masked:
                logger.info(
                    "%s %s: %d of %d TRs masked (no features at every lag, or no fMRI)",
                    s,
                    run,
                    n_masked,
                    n_trs,
                )
            records.append(RunRecord(s, i, run, zscore(raw), feats, valid))

    all_runs = {r.run for r in records}
    if not all_runs:
        raise ValueError(f"no runs left to load for {subjects} under {root}")
    split = split_runs(all_runs, val_fraction, test_fraction, split_seed)
    n_parcels_found = {r.fmri.shape[1] for r in records}
    return Study(
        records=records,
        subjects=subjects,
        modalities=store.modalities,
        feature_dims=feature_dims,
        n_parcels=n_parcels_found.pop(),
        backbone=backbone,
        root=root,
        split=split,
        tr_s=float(tr_s),
        feature_hz=store.feature_hz,
        lags_trs=lags_trs,
        layer_fractions=tuple(layer_fractions),
        info=store.info,
    )


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


def window_starts(n_trs: int, window: int = 100, stride: int = 50) -> list[int]:
    """Start TRs of the windows that cover a run.

    Windows start every ``stride`` TRs; the last one is aligned to the run's end so every TR is
    covered (``n_trs=230`` -> ``[0, 50, 100, 130]``). A run no longer than ``window`` gives ``[0]``.
    """
    if n_trs < 1 or window < 1 or stride < 1:
        raise ValueError(f"n_trs, window and stride must be >= 1, got {n_trs}, {window}, {stride}")
    if n_trs <= window:
        return [0]
    starts = list(range(0, n_trs - window + 1, stride))
    if starts[-1] != n_trs - window:
        starts.append(n_trs - window)
    return starts


class WindowDataset(torch.utils.data.Dataset):
    """Windows of ``window`` TRs (stride ``stride``) over a list of records.

    Item ``i`` is a dict: ``"features"`` ``{m: float tensor (T, F_m)}``, ``"fmri"`` ``(T, V)``,
    ``"mask"`` ``(T,)`` bool (``RunRecord.valid``), ``"subject"`` long scalar, ``"record"`` (index into
    ``records``) and ``"start"`` (first TR). ``T = window`` except for runs shorter than the window;
    :func:`collate_windows` pads those.
    """

    def __init__(self, records: Sequence[RunRecord], window: int = 100, stride: int = 50):
        self.records, self.window, self.stride = list(records), int(window), int(stride)
        self.index = [
            (i, start)
            for i, r in enumerate(self.records)
            for start in window_starts(r.n_trs, self.window, self.stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        rec_i, start = self.index[i]
        r = self.records[rec_i]
        stop = min(start + self.window, r.n_trs)
        return {
            "features": {
                m: torch.from_numpy(np.ascontiguousarray(a[start:stop])) for m, a in r.features.items()
            },
            "fmri": torch.from_numpy(np.ascontiguousarray(r.fmri[start:stop])),
            "mask": torch.from_numpy(np.ascontiguousarray(r.valid[start:stop])),
            "subject": torch.tensor(r.subject_index, dtype=torch.long),
            "record": rec_i,
            "start": start,
        }


def collate_windows(items: Sequence[dict], length: int | None = None) -> dict:
    """Stack window items into a batch, zero-padding short windows at the end with mask False.

    Parameters
    ----------
    items : sequence of dict
        :class:`WindowDataset` items.
    length : int, optional
        Pad to this many TRs (e.g. the dataset's ``window``:
        ``functools.partial(collate_windows, length=window)``); default the longest item.

    Returns
    -------
    dict
        ``"features"`` ``{m: (B, T, F_m)}``, ``"fmri"`` ``(B, T, V)``, ``"mask"`` ``(B, T)`` bool,
        ``"subject"``, ``"record"``, ``"start"`` and ``"length"`` (TRs before padding), each ``(B,)`` long.
    """
    if not items:
        raise ValueError("collate_windows needs at least one item")
    lengths = [it["fmri"].shape[0] for it in items]
    T = max(lengths) if length is None else int(length)
    if T < max(lengths):
        raise ValueError(f"length={T} is shorter than a window of {max(lengths)} TRs")

    def pad(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == T:
            return x
        return torch.cat([x, x.new_zeros((T - x.shape[0], *x.shape[1:]))])

    return {
        "features": {m: torch.stack([pad(it["features"][m]) for it in items]) for m in items[0]["features"]},
        "fmri": torch.stack([pad(it["fmri"]) for it in items]),
        "mask": torch.stack([pad(it["mask"]) for it in items]),
        "subject": torch.stack([torch.as_tensor(it["subject"], dtype=torch.long) for it in items]),
        "record": torch.tensor([int(it["record"]) for it in items], dtype=torch.long),
        "start": torch.tensor([int(it["start"]) for it in items], dtype=torch.long),
        "length": torch.tensor(lengths, dtype=torch.long),
    }
