"""Algonauts 2025 reader, feature store, splits and training windows (docs/method.md §1-3, §9).

Everything a notebook needs between the files on disk and a batch of windows:

- :func:`load_fmri` reads one subject's HDF5 files into ``{run: (T, V)}`` (runs matched on the part of
  the key after ``task-``, so session prefixes may differ across subjects).
- :func:`read_transcript` / :func:`transcript_words` parse the per-TR transcript TSVs.
- :class:`FeatureStore` reads and writes backbone features ``(T_f, L, D)`` at ``feature_hz``;
  :func:`layer_groups` / :func:`aggregate_layers` average layer groups (docs/method.md §3).
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

Files that are not there or not readable stop the reader, naming the file (docs/method.md §1):

- a subject's Friends or Movie10 file missing is an error (read one study on purpose with
  ``studies=("friends",)``); a dangling symlink (a datalad / git-annex file that was never fetched)
  says ``datalad get <path>``; an empty, truncated or corrupt HDF5 file is named with the fix.
- fMRI values must be finite apart from the NaN of the policy above, and within :data:`FMRI_MAX_ABS`
  (1e6) in magnitude; feature frames must be finite and within :data:`FEATURE_MAX_ABS` (1e6). Both
  bounds sit far above real signals (raw BOLD in scanner units is 1e2-1e4, z-scored BOLD a few units,
  network activations rarely beyond 1e3) and far below what corrupt bytes decode to (random float32
  bit patterns reach 3e38), so a file that breaks them is damaged, not unusual.
- features that stop before the fMRI leave the last TRs uncovered: they are masked with a warning
  naming each run and its count; beyond ``length_tolerance_s`` (:data:`LENGTH_TOLERANCE_S`) it is an
  error.
- a feature store that records its provenance (``backbone.json`` ``"sources"``: each feature file's
  source files with their sizes and modification times, and ``"settings"``: how it was extracted)
  is refused by :func:`load_study` when a source changed or disappeared since, or when
  ``feature_settings`` asks for other settings, unless ``allow_stale=True``.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import shutil
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from mindlib import layout
from mindlib.align import FEATURE_HZ, TR_S, align_features
from mindlib.cache import read_rows
from mindlib.files import atomic_write, write_json
from mindlib.params import check_choice

logger = logging.getLogger(__name__)

LAYER_FRACTIONS = (
    0.6,
    0.8,
    1.0,
)  # docs/method.md §3: three layer groups, ending at 60 %, 80 % and 100 % depth
# Largest accepted gap between feature duration (T_f / feature_hz) and fMRI duration (T * tr_s).
# Algonauts runs record a few TRs past the clip's end and extracted features can stop a frame or two
# early: a few seconds apart is normal, and the uncovered TRs are masked. 15 s (about 10 TRs) or more
# means the wrong stimulus or a truncated extraction.
LENGTH_TOLERANCE_S = 15.0
# Largest accepted magnitude of fMRI values and feature values (see the module docstring).
FMRI_MAX_ABS = 1e6
FEATURE_MAX_ABS = 1e6
SPLIT_NAMES = ("train", "val", "test")
TRANSCRIPT_COLUMNS = ("text_per_tr", "words_per_tr", "onsets_per_tr", "durations_per_tr")

_NO_DATA_HINT = (
    "Point `root` at an Algonauts 2025 folder (the one holding fmri/ and stimuli/), or make the "
    "synthetic study with `mindlib.synthetic.make_study(root)`."
)


# ----------------------------------------------------------------------------------------------
# fMRI
# ----------------------------------------------------------------------------------------------


def load_fmri(
    root: str | Path,
    subject: str,
    *,
    n_parcels: int | None = None,
    studies: Sequence[str] | None = None,
    max_abs: float = FMRI_MAX_ABS,
) -> dict[str, np.ndarray]:
    """Every fMRI run of one subject (Friends and Movie10 files), keyed by run name.

    Parameters
    ----------
    root : str or Path
        Study folder holding ``fmri/<subject>/func/*.h5`` (see :mod:`mindlib.layout`).
    subject : str
        Subject as written in the files, e.g. ``"sub-01"``.
    n_parcels : int, optional
        Expected number of parcels ``V``; default :data:`mindlib.layout.N_PARCELS` (1000).
    studies : sequence of str, optional
        Studies whose files must be there, from :data:`mindlib.layout.FMRI_STUDIES`. Default: every
        training study (:data:`mindlib.layout.STUDIES`) that any subject under ``<root>/fmri`` has a file
        for (:func:`dataset_studies`), so a file the other subjects have is never skipped silently; pass
        ``("friends",)`` to read one on purpose, ``("ood",)`` for the out-of-distribution films.
    max_abs : float
        Largest accepted ``|value|`` (default :data:`FMRI_MAX_ABS`); larger values mean a damaged file.

    Returns
    -------
    runs : dict of str to ndarray of shape (T, V), float32
        Raw (not z-scored) responses, keyed by the run name after ``task-`` (``"s01e02a"``,
        ``"life01_run-1"``), sorted by run name. NaNs are kept (see the module's bad data policy).

    Raises
    ------
    FileNotFoundError
        If a file of ``studies`` is missing, or is a dangling symlink (unfetched datalad file).
        A study no subject has a file for is logged and left out.
    OSError
        If a file is empty, truncated or not HDF5 (naming the file).
    ValueError
        On a duplicate run name, a dataset that is not ``(T, V)``, a wrong parcel count, infinite
        values or values beyond ``max_abs``.

    Warns
    -----
    UserWarning
        Naming file, run and count, for runs with NaN or constant parcels.
    """
    layout.check_subject(subject)
    expected_v = layout.N_PARCELS if n_parcels is None else int(n_parcels)
    notes = []
    if studies is None:
        studies = dataset_studies(root) or layout.STUDIES
        for study in layout.STUDIES:
            if study not in studies:
                notes.append(
                    f"no subject under {root} has a {study} fMRI file; reading {', '.join(studies)} only"
                )
                logger.warning(notes[-1])
    studies = tuple(studies)
    unknown = [s for s in studies if s not in layout.FMRI_STUDIES]
    if unknown or not studies:
        raise ValueError(f"studies must name some of {layout.FMRI_STUDIES}, got {studies}")
    paths = {study: layout.fmri_path(root, subject, study) for study in studies}
    if not any(_present(p) for p in paths.values()):
        listed = "\n  ".join(str(p) for p in paths.values())
        raise FileNotFoundError(
            f"no fMRI for {subject}: none of these files exists:\n  {listed}\n{_NO_DATA_HINT}"
        )
    for study, p in paths.items():
        _check_file(p, f"{subject}'s {study} fMRI file", study)

    runs: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for path in paths.values():
        with _open_h5(path) as f:
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
                try:
                    raw = node[()]
                except OSError as err:
                    raise OSError(
                        f"{path}: key {key!r} (run {run}) cannot be read ({err}); the file is damaged: "
                        f"fetch it again{_fetch_hint(path)}"
                    ) from None
                if raw.ndim != 2:
                    raise ValueError(f"{where} (run {run}): expected shape (T, V), got {raw.shape}")
                if raw.shape[1] != expected_v:
                    raise ValueError(
                        f"{where} (run {run}): {raw.shape[1]} parcels, expected {expected_v} "
                        "(Schaefer-1000 atlas); is this a parcellated Algonauts 2025 file?"
                    )
                x = _checked_values(raw, max_abs, f"{path}: key {key!r} (run {run} of {subject})")
                _warn_bad_parcels(x, f"{path.name}: run {run}")
                runs[run], source[run] = x, where
    for run in layout.KNOWN_MISSING_RUNS.get(subject, ()):
        if run not in runs and layout.study_of(run) in paths:
            logger.info(
                "%s: run %s is absent from the released data (known gap, docs/method.md §1)", subject, run
            )
    for note in notes:  # visible in a notebook; studies= says it on purpose
        warnings.warn(f"{note} (pass studies={tuple(studies)} to read it on purpose)", stacklevel=2)
    return dict(sorted(runs.items()))


def dataset_studies(root: str | Path) -> tuple[str, ...]:
    """Studies (of :data:`mindlib.layout.STUDIES`) that at least one subject under ``<root>/fmri`` has a file for."""
    base = Path(root) / "fmri"
    subjects = [d.name for d in base.iterdir() if d.is_dir()] if base.is_dir() else []
    found = set()
    for d in subjects:
        try:
            subject = layout.check_subject(d)
        except ValueError:
            continue  # not a subject folder
        found.update(s for s in layout.STUDIES if _present(layout.fmri_path(root, subject, s)))
    return tuple(s for s in layout.STUDIES if s in found)


def _fetch_hint(path: Path) -> str:
    return f" (in a datalad dataset: datalad get {path})"


def _check_file(path: Path, what: str, study: str) -> None:
    """A file that must be there and readable: missing, dangling symlink and empty are errors."""
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(
            f"{what} {path} is a dangling symlink (target {os.readlink(path)}): the data were not fetched, as "
            f"in a datalad dataset before `datalad get`. Run: datalad get {path}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {path} is missing, though {study} files are expected (other subjects have theirs, or "
            "studies= names it). Fetch or restore it, or read one study on purpose with studies=('friends',) "
            "or studies=('movie10',)"
        )
    if path.stat().st_size == 0:
        raise OSError(
            f"{what} {path} is empty (0 bytes): an interrupted copy; fetch it again{_fetch_hint(path)}"
        )


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise OSError(
            f"{path} ({path.stat().st_size} bytes) cannot be opened as HDF5: {err}. The file is truncated or "
            f"not HDF5; fetch it again{_fetch_hint(path)}"
        ) from None


def _checked_values(raw: np.ndarray, max_abs: float, where: str) -> np.ndarray:
    """``raw`` as float32 after checking it is numeric, has no infinities and stays within ``max_abs``."""
    if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise ValueError(f"{where}: values of dtype {raw.dtype}, expected numbers")
    with np.errstate(invalid="ignore", over="ignore"):  # damaged bytes: reported below, not as a cast warning
        values = np.asarray(raw, dtype=np.float64)
    n_inf = int(np.isinf(values).sum())
    with np.errstate(invalid="ignore"):
        big = np.abs(values) > max_abs  # False for NaN
    if n_inf or big.any():
        t_bad = np.flatnonzero((np.isinf(values) | big).any(axis=1))
        raise ValueError(
            f"{where}: {n_inf} infinite values and {int(big.sum())} values beyond |x| > {max_abs:g} "
            f"(largest finite |x| = {float(np.nanmax(np.abs(values[np.isfinite(values)]), initial=0)):.3g}) "
            f"in TRs {t_bad[:5].tolist()}{' ...' if t_bad.size > 5 else ''} of {values.shape[0]}: BOLD never "
            "reaches this, the file is damaged. Fetch it again (max_abs= raises the bound if your "
            "values are genuinely this large)"
        )
    return values.astype(np.float32)


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


def features_base(root: str | Path, features_root: str | Path | None = None) -> Path:
    """Folder holding the feature stores: ``features_root`` if given (not empty), else ``<root>/features``.

    A read-only dataset (datalad, shared lab storage) keeps its features elsewhere with ``features_root``.
    """
    if features_root not in (None, ""):
        return Path(features_root).expanduser()
    return layout.features_dir(root, "x").parent  # layout's <root>/features, the default


def list_backbones(root: str | Path, features_root: str | Path | None = None) -> list[str]:
    """Names of the feature stores under :func:`features_base` (folders with a ``backbone.json``), sorted.

    Folders starting with ``.`` (a replacement being written, see :meth:`FeatureStore.create`) are not stores.
    """
    base = features_base(root, features_root)
    if not base.is_dir():
        return []
    return sorted(
        p.name for p in base.iterdir() if not p.name.startswith(".") and (p / "backbone.json").is_file()
    )


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


def file_record(path: str | Path, root: str | Path | None = None) -> dict:
    """Provenance of one source file: ``{"path", "size", "mtime_ns"}`` (bytes, ns).

    The path is relative to ``root`` when the file lies under it (a study folder moved or copied
    elsewhere keeps its provenance), else absolute.
    """
    p = Path(path).resolve()
    st = p.stat()
    shown = p
    if root is not None and p.is_relative_to(Path(root).resolve()):
        shown = p.relative_to(Path(root).resolve())
    return {"path": str(shown), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _identity(info: Mapping) -> dict:
    """What makes two store descriptions the same store: everything but the per-file ``sources``."""
    return {k: v for k, v in info.items() if k != "sources"}


class FeatureStore:
    """One backbone's features on disk: ``<features>/<backbone>/<modality>/<stimulus>.npy``.

    ``<features>`` is ``<root>/features``, or ``features_root`` (:func:`features_base`). Each array is
    ``(T_f, L, D)`` at ``feature_hz`` (float32 or float16); ``backbone.json`` records
    ``{"name", "feature_hz", "fusion", "modalities": {modality: {"n_layers": L, "dim": D}}}`` and, for
    stores written with provenance, ``"settings"`` (how the features were made) and ``"sources"``
    (``{"<modality>/<stimulus>": [file_record, ...]}``, the files each array was made from).

    Parameters
    ----------
    root : str or Path
        Study folder.
    backbone : str
        Backbone name, a folder under the features folder (see :func:`list_backbones`).
    features_root : str or Path, optional
        Features folder outside the study (empty or None: ``<root>/features``).
    """

    def __init__(self, root: str | Path, backbone: str, features_root: str | Path | None = None):
        self.root, self.backbone = Path(root), str(backbone)
        self.features_root = None if features_root in (None, "") else Path(features_root)
        base = features_base(root, features_root)
        self.dir = base / self.backbone
        self._final_dir: Path | None = None  # set while a replacement is being written
        meta = self.dir / "backbone.json"
        if not meta.is_file():
            available = list_backbones(root, features_root)
            raise ValueError(
                f"unknown backbone {backbone!r}: no {meta}; available backbones under {base}: "
                f"{available or 'none'}. " + ("" if available else _NO_DATA_HINT)
            )
        self.info: dict = self._read_info(meta)

    @staticmethod
    def _read_info(meta: Path) -> dict:
        try:
            info = json.loads(meta.read_text())
            info["modalities"] = _normalise_modalities(info["modalities"])
            info["feature_hz"] = float(info["feature_hz"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{meta}: malformed backbone.json ({err!r}); rewrite it with FeatureStore.create"
            ) from None
        return info

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
        settings: Mapping | None = None,
        features_root: str | Path | None = None,
        staged: bool = False,
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
            Replace an existing store **completely**: no file of the old store survives into the new
            one. Without it, a store with the same description (settings included) is reused, so a
            store can be filled in several calls, and another one is refused.
        staged : bool
            With ``overwrite``, write the replacement into a hidden folder beside the old store
            (``.<backbone>.incoming``, not listed by :func:`list_backbones`) that takes the old one's
            place only at :meth:`commit`: an interrupted rewrite leaves the old store whole. Without
            it the old store is deleted now. The writers of :mod:`mindlib.features` stage.
        settings : mapping, optional
            How the features are made (extractor and its options, source folder), recorded in
            ``backbone.json`` as ``"settings"``; part of the store's description.
        features_root : str or Path, optional
            See :class:`FeatureStore`.
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
        if settings is not None:
            info["settings"] = json.loads(json.dumps(dict(settings), default=str))  # as it reads back
        final = features_base(root, features_root) / str(backbone)
        meta = final / "backbone.json"
        d = final
        if meta.is_file():
            old = json.loads(meta.read_text())
            if overwrite and staged:
                d = final.with_name(f".{final.name}.incoming")
                if d.exists():
                    shutil.rmtree(d)  # the leftover of an interrupted replacement
            elif overwrite:
                shutil.rmtree(final)
            elif _identity(old) != info:
                raise ValueError(
                    f"{meta} exists and describes another store ({_identity(old)}); pass overwrite=True to "
                    f"replace it completely, or delete {final}"
                )
            else:
                info = old  # reuse, keeping the sources it records
        for m in info["modalities"]:
            (d / m).mkdir(parents=True, exist_ok=True)
        write_json(d / "backbone.json", info, newline=True)
        if d == final:
            return cls(root, backbone, features_root=features_root)
        store = cls.__new__(cls)
        store.root, store.backbone = Path(root), str(backbone)
        store.features_root = None if features_root in (None, "") else Path(features_root)
        store.dir, store._final_dir, store.info = d, final, cls._read_info(d / "backbone.json")
        return store

    def commit(self) -> FeatureStore:
        """Finish a replacement started by ``create(..., overwrite=True)``: the new store takes the old one's
        place and the old one is deleted. A no-op for a store written in place. Returns ``self``."""
        if self._final_dir is None:
            return self
        final, old = self._final_dir, self._final_dir.with_name(f".{self._final_dir.name}.replaced")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(self.dir, final)
        shutil.rmtree(old, ignore_errors=True)
        self.dir, self._final_dir = final, None
        return self

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

    @property
    def settings(self) -> dict:
        """How the features were made (``backbone.json`` ``"settings"``; empty when not recorded)."""
        return dict(self.info.get("settings") or {})

    def shape(self, modality: str) -> tuple[int, int]:
        """``(L, D)`` of one modality's arrays."""
        spec = self.info["modalities"][self._check_modality(modality)]
        return spec["n_layers"], spec["dim"]

    def path(self, stimulus: str, modality: str) -> Path:
        """File of one stimulus's features for one modality."""
        return self.dir / self._check_modality(modality) / f"{stimulus}.npy"

    def stimuli(self, modality: str) -> list[str]:
        """Stimuli with a feature file for ``modality``, sorted."""
        folder = self.dir / self._check_modality(modality)
        return sorted(
            p.stem for p in folder.glob("*.npy") if not p.name.startswith(".")
        )  # not a write in progress

    def _check_modality(self, modality: str) -> str:
        if modality not in self.info["modalities"]:
            raise ValueError(
                f"backbone {self.backbone!r} has no modality {modality!r}; it has {self.modalities}"
            )
        return modality

    def load(self, stimulus: str, modality: str, max_abs: float = FEATURE_MAX_ABS) -> np.ndarray:
        """Features of one stimulus: ndarray of shape (T_f, L, D), dtype as stored (float32 or float16).

        Raises naming the file for a missing, dangling, unreadable or wrongly shaped file, and for
        frames holding NaN, infinite values or values beyond ``max_abs`` (:data:`FEATURE_MAX_ABS`).
        """
        p = self.path(stimulus, modality)
        if p.is_symlink() and not p.exists():
            raise FileNotFoundError(
                f"{modality} features {p} of backbone {self.backbone!r} are a dangling symlink (not fetched); "
                f"run: datalad get {p}"
            )
        if not p.is_file():
            raise FileNotFoundError(
                f"no {modality} features for run/stimulus {stimulus!r} of backbone {self.backbone!r}: {p} is "
                "missing; extract them (mindlib.features) or drop the run with load_study(runs=...)"
            )
        try:
            x = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise OSError(
                f"{p} ({p.stat().st_size} bytes) cannot be read as a .npy array ({err}); the file is truncated "
                "or damaged: extract or import this stimulus again"
            ) from None
        L, D = self.shape(modality)
        if x.ndim != 3 or x.shape[1:] != (L, D):
            raise ValueError(f"{p}: shape {x.shape}, expected (T_f, {L}, {D}) as backbone.json says")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{p}: dtype {x.dtype}, expected float32 or float16 features")
        peak = np.abs(x).max(axis=(1, 2)) if x.size else np.zeros(x.shape[0], x.dtype)  # NaN where a NaN is
        bad = ~(peak.astype(np.float64) <= max_abs)  # one pass: NaN, inf and too large
        if bad.any():
            frames = np.flatnonzero(bad)
            raise ValueError(
                f"{p}: {frames.size} of {x.shape[0]} frames hold NaN, infinite values or |x| > {max_abs:g} "
                f"(frames {frames[:5].tolist()}{' ...' if frames.size > 5 else ''}, the first at "
                f"{frames[0] / self.feature_hz:.1f} s); a model cannot learn from them. Extract or import "
                "this stimulus again"
            )
        return x

    def write(
        self, stimulus: str, modality: str, array: np.ndarray, sources: Sequence[str | Path] | None = None
    ) -> Path:
        """Save one stimulus's features ``(T_f, L, D)`` (or ``(T_f, D)``, stored as ``(T_f, 1, D)``).

        ``sources``: the files the array was made from; their :func:`file_record` goes into
        ``backbone.json`` so :func:`load_study` can tell when they change.
        """
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
        atomic_write(p, lambda tmp: np.save(tmp, x), suffix=".npy")  # an interrupted write leaves none
        if sources is not None:
            records = [file_record(s, self.root) for s in sources]
            self.info.setdefault("sources", {})[f"{modality}/{stimulus}"] = records
            write_json(self.dir / "backbone.json", self.info, newline=True)
        return p

    def check_fresh(self, stimulus: str, modality: str) -> None:
        """Raise if a source file of ``(stimulus, modality)`` changed or disappeared since it was recorded.

        Stores without recorded sources (hand-made, synthetic) pass. The message says how to rebuild.
        """
        records = (self.info.get("sources") or {}).get(f"{modality}/{stimulus}")
        if not records:
            return
        p = self.path(stimulus, modality)
        for rec in records:
            src = self.root / rec["path"]  # a relative path is under the study root; an absolute one stays
            if not src.exists():
                problem = "no longer exists"
            else:
                now = file_record(src)
                if now["size"] == rec["size"] and now["mtime_ns"] == rec["mtime_ns"]:
                    continue
                problem = (
                    f"changed since: {rec['size']} -> {now['size']} bytes, modified "
                    f"{_when(rec['mtime_ns'])} -> {_when(now['mtime_ns'])}"
                )
                if now["size"] == rec["size"]:
                    problem += " (same size: if you only copied the folder without keeping times, cp -p or rsync -a keep them)"
            how = self.settings.get("made_by", "the function that made this store")
            raise StaleFeaturesError(
                f"features {p} of backbone {self.backbone!r} are stale: their source {src} {problem}. Rebuild "
                f"the store ({how}(..., overwrite=True)), or pass load_study(..., allow_stale=True) to use the "
                "old features anyway"
            )

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}={self.shape(m)}" for m in self.modalities)
        return f"FeatureStore({self.backbone!r}, {self.feature_hz} Hz, {mods})"


class StaleFeaturesError(ValueError):
    """Features older than their sources, or made with other settings than asked for."""


def _when(mtime_ns: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(mtime_ns / 1e9, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def layer_groups(n_layers: int, fractions: Sequence[float] = LAYER_FRACTIONS) -> list[slice]:
    """Consecutive layer groups ending at the given fractions of depth (docs/method.md §3).

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
    held_out_movies: Mapping[str, Iterable[str]] | None = None,
) -> Split:
    """Split runs by episode, stratified by movie (docs/method.md §9), deterministically.

    With ``held_out_movies`` the split is instead the challenge's (docs/method.md §9): whole movies
    (:func:`mindlib.layout.movie_of`: a Friends season such as ``"friends-s06"`` or a film such as
    ``"bourne"``) go to the side that names them, every other run to train; the fractions and the seed are
    then unused. :data:`OFFICIAL_HELD_OUT` is train s1-s5 + Movie10, validate s6, test s7.

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
    held_out_movies : mapping of {"val", "test"} to iterable of str, optional
        Movies held out whole, e.g. ``{"val": ["friends-s06"], "test": ["friends-s07"]}``. A named movie
        with no run here (season 7 of the release has no fMRI) is logged and leaves that side empty.

    Returns
    -------
    Split
    """
    runs = sorted(set(run_names))
    if not runs:
        raise ValueError("split_runs needs at least one run name")
    if held_out_movies is not None:
        return _split_by_movie(runs, held_out_movies)
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


# The challenge's split on real data: train Friends s1-s5 and Movie10, validate s6, test s7 (where its fMRI is)
# (docs/method.md §9).
OFFICIAL_HELD_OUT: dict[str, tuple[str, ...]] = {"val": ("friends-s06",), "test": ("friends-s07",)}


def _split_by_movie(runs: list[str], held_out_movies: Mapping[str, Iterable[str]]) -> Split:
    """Whole movies to val / test as named, the rest to train (see :func:`split_runs`)."""
    unknown = sorted(set(held_out_movies) - {"val", "test"})
    if unknown:
        raise ValueError(f"held_out_movies keys must be 'val' and/or 'test', got {unknown}")
    side_of: dict[str, str] = {}
    for name, movies in held_out_movies.items():
        if isinstance(movies, str):
            raise ValueError(
                f"held_out_movies[{name!r}] must be a list of movies, e.g. ['friends-s06'], got {movies!r}"
            )
        for movie in movies:
            season = movie.startswith("friends-s") and movie[9:].isdigit() and len(movie) == 11
            if not season and not movie.isalpha():
                raise ValueError(
                    f"held_out_movies[{name!r}]: {movie!r} is not a movie name as layout.movie_of writes it "
                    "('friends-s06' for a season, 'bourne' or 'chaplin' for a film)"
                )
            if side_of.setdefault(movie, name) != name:
                raise ValueError(f"movie {movie!r} is held out for both {side_of[movie]!r} and {name!r}")
    present = {layout.movie_of(r) for r in runs}
    for movie in sorted(set(side_of) - present):
        logger.warning(
            "held_out_movies: no run of %r among the runs (movies present: %s); its side gets none of it",
            movie,
            ", ".join(sorted(present)),
        )
    out = {name: [] for name in SPLIT_NAMES}
    for run in runs:
        out[side_of.get(layout.movie_of(run), "train")].append(run)
    return Split(**out)


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
    features_root: Path | None = None  # features folder outside root (None: <root>/features)
    feature_cache: Any = None  # the mindlib.cache.FeatureCache it was loaded through (None: in memory)

    def select(self, split_name: str) -> list[RunRecord]:
        """Records on one side of the split: ``"train"``, ``"val"`` or ``"test"``."""
        check_choice(split_name, SPLIT_NAMES, "split_name")
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


def _present(path: Path) -> bool:
    """A file, or a symlink to one even if it dangles (an unfetched datalad file still names a subject)."""
    return path.exists() or path.is_symlink()


def _subjects_under(root: Path) -> list[str]:
    base = root / "fmri"
    found = []
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            try:
                subject = layout.check_subject(d.name)
            except ValueError:
                continue  # not a subject folder
            if any(_present(layout.fmri_path(root, subject, s)) for s in layout.STUDIES):
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
    features_root: str | Path | None = None,
    studies: Sequence[str] | None = None,
    feature_settings: Mapping | None = None,
    allow_stale: bool = False,
    held_out_movies: Mapping[str, Iterable[str]] | None = None,
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
        Haemodynamic lags in TRs; several are FIR delays concatenated along features (docs/method.md §2).
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
    features_root : str or Path, optional
        Folder of the feature stores when they do not live in ``<root>/features`` (e.g. a read-only
        dataset); None or ``""`` is the default (:func:`features_base`).
    studies : sequence of str, optional
        Studies every subject must have a file for (default: those any subject has, see
        :func:`load_fmri`); ``("friends",)`` reads one on purpose.
    feature_settings : mapping, optional
        Settings the features must have been made with (each key compared with the store's recorded
        ``"settings"`` or with an option of its recorded extractors, e.g. ``{"context_words": 32}``); a
        mismatch raises :class:`StaleFeaturesError`.
    allow_stale : bool
        Use features whose recorded source files changed or disappeared since (default: refuse, naming
        the file and how to rebuild), and features made with other ``feature_settings``.
    held_out_movies : mapping, optional
        Hold out whole seasons or films instead of the random split (:func:`split_runs`), e.g.
        :data:`OFFICIAL_HELD_OUT`.
    feature_cache : mindlib.cache.FeatureCache, optional
        Keep aligned features on disk and memory-map them (bounded memory at the release's size).

    Returns
    -------
    Study
        ``records`` sorted by subject index then run.

    Warns
    -----
    UserWarning
        One warning naming every run whose last TRs lie past the end of its features (masked), with
        the count per run.
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
    store = FeatureStore(root, backbone, features_root=features_root)
    _check_settings(store, feature_settings, allow_stale)
    fmri = {s: load_fmri(root, s, n_parcels=n_parcels, studies=studies) for s in subjects}

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
        if key not in cache and not allow_stale:
            store.check_fresh(
                stimulus, modality
            )  # before any cache: a cached copy of stale features is stale too
        if key not in cache and feature_cache is not None:  # on disk, memory-mapped (mindlib.cache)
            cache[key] = feature_cache.get(
                store,
                stimulus,
                modality,
                n_trs,
                lags_trs,
                layer_fractions,
                tr_s,
                lambda: aligned_now(run, modality, n_trs),
            )
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
    past_end: dict[str, int] = {}  # run -> TRs after the last one its features cover
    for i, s in enumerate(subjects):
        for run in list(fmri[s]):
            raw = fmri[s].pop(run)  # freed once z-scored: raw and z-scored runs are never all held at once
            n_trs = raw.shape[0]
            feats, valid = {}, ~np.isnan(raw).all(axis=1)
            for m in store.modalities:
                feats[m], covered = aligned(run, m, n_trs)
                valid = valid & covered
                if covered.any() and not covered[-1]:
                    tail = n_trs - 1 - int(np.flatnonzero(covered)[-1])
                    past_end[run] = max(past_end.get(run, 0), tail)
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

    if past_end:
        listed = ", ".join(f"{run} ({n} TRs)" for run, n in sorted(past_end.items()))
        warnings.warn(
            f"{store.dir}: the features of {len(past_end)} run(s) end before their fMRI, so their last TRs "
            f"are masked (not trained on, not scored): {listed}. Within length_tolerance_s="
            f"{length_tolerance_s} s this is allowed; beyond it load_study raises. Re-extract from the full "
            "stimulus to use those TRs",
            stacklevel=2,
        )
    all_runs = {r.run for r in records}
    if not all_runs:
        raise ValueError(f"no runs left to load for {subjects} under {root}")
    split = split_runs(all_runs, val_fraction, test_fraction, split_seed, held_out_movies=held_out_movies)
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
        features_root=store.features_root,
        feature_cache=feature_cache,
    )


def with_lags(study: Study, lags_trs: Sequence[float]) -> Study:
    """The same study (subjects, runs and split) with features aligned at other lags (FIR delays).

    Parameters
    ----------
    study : Study
    lags_trs : sequence of float
        Haemodynamic lags in TRs; several give FIR-delayed features (``F_m`` times the number of lags).

    Returns
    -------
    Study
        ``study`` itself when the lags are its own; else the study reloaded from the same files (its
        freshness was checked, or overridden, when ``study`` was loaded) with ``study.split`` kept.
    """
    if tuple(lags_trs) == tuple(study.lags_trs):
        return study
    other = load_study(
        study.root,
        study.backbone,
        subjects=study.subjects,
        lags_trs=tuple(lags_trs),
        layer_fractions=study.layer_fractions,
        tr_s=study.tr_s,
        runs=sorted({r.run for r in study.records}),
        n_parcels=study.n_parcels,
        features_root=study.features_root,
        studies=sorted({layout.study_of(r.run) for r in study.records}),
        feature_cache=study.feature_cache,  # memory-mapped again when it was
        allow_stale=True,  # the same files the study was loaded from: checked (or overridden) then
    )
    return replace(other, split=study.split)


def _check_settings(store: FeatureStore, wanted: Mapping | None, allow_stale: bool) -> None:
    """Raise if the store was made with other settings than ``wanted`` (unless ``allow_stale``)."""
    if not wanted or allow_stale:
        return
    recorded = store.settings
    # top-level settings and each extractor's options (e.g. context_words of the text extractor)
    have = {**{k: v for ex in recorded.get("extractors", []) for k, v in ex.items()}, **recorded}
    differ = {k: (have.get(k, "<not recorded>"), v) for k, v in wanted.items() if have.get(k) != v}
    if differ:
        listed = "; ".join(f"{k}: store has {a!r}, asked for {b!r}" for k, (a, b) in differ.items())
        how = have.get("made_by", "the function that made it")
        raise StaleFeaturesError(
            f"backbone {store.backbone!r} at {store.dir} was made with other settings ({listed}). Rebuild it "
            f"with these settings ({how}(..., overwrite=True)), or pass allow_stale=True to use it anyway"
        )


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


WINDOW_TRS = 100  # T, TRs per training window (docs/method.md §7); every window default reads it
STRIDE_TRS = 50  # TRs between window starts of the training windows


def window_starts(n_trs: int, window: int = WINDOW_TRS, stride: int = STRIDE_TRS) -> list[int]:
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

    def __init__(self, records: Sequence[RunRecord], window: int = WINDOW_TRS, stride: int = STRIDE_TRS):
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
                m: torch.from_numpy(np.ascontiguousarray(read_rows(a, start, stop)))
                for m, a in r.features.items()
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
