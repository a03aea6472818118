"""The Algonauts 2025 file layout and run names (SPEC §1).

One place for every path and name the reader (:mod:`mindlib.data`), the synthetic study
(:mod:`mindlib.synthetic`) and the feature store agree on::

    <root>/fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5
    <root>/fmri/sub-01/func/sub-01_task-movie10_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5
    <root>/fmri/sub-01/atlas/sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz
    <root>/stimuli/transcripts/friends/s1/friends_s01e01a.tsv
    <root>/stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv
    <root>/features/<backbone>/backbone.json
    <root>/features/<backbone>/<modality>/<stimulus>.npy      # (T_f, L, D) at feature_hz

HDF5 dataset keys carry a session prefix that differs across subjects (``ses-001_task-s01e02a``);
runs are matched on the part after ``task-`` (``s01e02a``, ``bourne01``, ``life01_run-1``).
A *stimulus* is a run without its repeat suffix (``life01_run-2`` -> ``life01``): repeats share features.
"""

from __future__ import annotations

import re
from pathlib import Path

SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-05")
N_PARCELS = 1000
STUDIES = ("friends", "movie10")
SPACE_ATLAS = "space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net"

# Runs absent from the released data (SPEC §1). The reader reports them; it never invents them.
KNOWN_MISSING_RUNS: dict[str, tuple[str, ...]] = {
    "sub-02": ("s05e20a",),
    "sub-05": ("s04e01a", "s04e01b", "s04e13b"),
}

_FRIENDS_RE = re.compile(r"^s(\d{2})e(\d{2})([a-d])$")
_MOVIE_RE = re.compile(r"^([a-z]+)(\d{2})(?:_run-(\d+))?$")
_SUBJECT_RE = re.compile(r"^sub-\d{2}$")


def check_subject(subject: str) -> str:
    """Return ``subject`` if it is written as in the files (``"sub-01"``), else raise ValueError."""
    if not isinstance(subject, str) or not _SUBJECT_RE.match(subject):
        raise ValueError(
            f"subject {subject!r} is not written as in the Algonauts files; use e.g. 'sub-01' "
            f"(known subjects: {', '.join(SUBJECTS)})"
        )
    return subject


def fmri_path(root: str | Path, subject: str, study: str) -> Path:
    """Path of one subject's fMRI HDF5 file for ``study`` in {"friends", "movie10"}."""
    check_subject(subject)
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of {STUDIES}")
    desc = "_desc-s123456" if study == "friends" else ""
    return Path(root) / "fmri" / subject / "func" / f"{subject}_task-{study}_{SPACE_ATLAS}{desc}_bold.h5"


def atlas_path(root: str | Path, subject: str) -> Path:
    """Path of one subject's Schaefer-1000 parcellation in MNI space (NIfTI)."""
    check_subject(subject)
    return Path(root) / "fmri" / subject / "atlas" / f"{subject}_{SPACE_ATLAS}_desc-dseg_parcellation.nii.gz"


def run_name(h5_key: str) -> str:
    """Run name from an HDF5 dataset key: ``"ses-001_task-s01e02a"`` -> ``"s01e02a"``."""
    if "task-" not in h5_key:
        raise ValueError(f"HDF5 key {h5_key!r} has no 'task-' part; expected e.g. 'ses-001_task-s01e02a'")
    return h5_key.split("task-", 1)[1]


def h5_key(run: str, session: int) -> str:
    """HDF5 dataset key for ``run`` in ``session``: ``("s01e02a", 1)`` -> ``"ses-001_task-s01e02a"``."""
    return f"ses-{session:03d}_task-{run}"


def study_of(run: str) -> str:
    """``"friends"`` for Friends half-episodes (``s01e02a``), ``"movie10"`` otherwise."""
    if _FRIENDS_RE.match(run):
        return "friends"
    if _MOVIE_RE.match(run):
        return "movie10"
    raise ValueError(f"run name {run!r} is neither a Friends half-episode (s01e02a) nor a film part (bourne01)")


def stimulus_of(run: str) -> str:
    """The stimulus a run showed: repeats share it (``"life01_run-2"`` -> ``"life01"``)."""
    study_of(run)
    return re.sub(r"_run-\d+$", "", run)


def movie_of(run: str) -> str:
    """The "movie" of the official metric: a Friends season or a film.

    ``"s01e02a"`` -> ``"friends-s01"``; ``"bourne01"`` -> ``"bourne"``; ``"life01_run-1"`` -> ``"life"``.
    """
    m = _FRIENDS_RE.match(run)
    if m:
        return f"friends-s{m.group(1)}"
    m = _MOVIE_RE.match(run)
    if m:
        return m.group(1)
    raise ValueError(f"run name {run!r} is neither a Friends half-episode (s01e02a) nor a film part (bourne01)")


def episode_of(run: str) -> str:
    """The split group: runs sharing a stimulus share it.

    Half-episodes of one episode group together (``"s01e02a"``, ``"s01e02b"`` -> ``"s01e02"``) and
    repeats of one clip group together (``"life01_run-1"`` -> ``"life01"``).
    """
    m = _FRIENDS_RE.match(run)
    if m:
        return f"s{m.group(1)}e{m.group(2)}"
    return stimulus_of(run)


def transcript_path(root: str | Path, run: str) -> Path:
    """Transcript TSV of a run's stimulus.

    ``"s01e01a"`` -> ``stimuli/transcripts/friends/s1/friends_s01e01a.tsv``;
    ``"bourne01"`` -> ``stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv``.
    """
    stim = stimulus_of(run)
    m = _FRIENDS_RE.match(stim)
    base = Path(root) / "stimuli" / "transcripts"
    if m:
        return base / "friends" / f"s{int(m.group(1))}" / f"friends_{stim}.tsv"
    film = movie_of(run)
    return base / "movie10" / film / f"movie10_{stim}.tsv"


def features_dir(root: str | Path, backbone: str) -> Path:
    """Folder of one backbone's feature store: ``<root>/features/<backbone>``."""
    return Path(root) / "features" / backbone


def feature_path(root: str | Path, backbone: str, modality: str, stimulus: str) -> Path:
    """One run's features for one modality: ``features/<backbone>/<modality>/<stimulus>.npy``."""
    return features_dir(root, backbone) / modality / f"{stimulus}.npy"
