"""The Algonauts 2025 file layout and run names (docs/method.md §1).

One place for every path and name the reader (:mod:`mindlib.data`), the synthetic study
(:mod:`mindlib.synthetic`) and the feature store agree on::

    <root>/fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5
    <root>/fmri/sub-01/func/sub-01_task-movie10_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5
    <root>/fmri/sub-01/atlas/sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz
    <root>/stimuli/transcripts/friends/s1/friends_s01e01a.tsv
    <root>/stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv
    <root>/stimuli/transcripts/ood/mononoke/ood_mononoke1.tsv          # none for the silent chaplin
    <root>/fmri/sub-01/target_sample_number/sub-01_friends-s7_fmri_samples.npy   # pickled {episode: T}
    <root>/fmri/sub-01/target_sample_number/sub-01_ood_fmri_samples.npy
    <root>/fmri/sub-01/func/sub-01_task-ood_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5
    <root>/features/<backbone>/backbone.json
    <root>/features/<backbone>/<modality>/<stimulus>.npy      # (T_f, L, D) at feature_hz

HDF5 dataset keys carry a session prefix that differs across subjects (``ses-001_task-s01e02a``);
runs are matched on the part after ``task-`` (``s01e02a``, ``bourne01``, ``life01_run-1``, ``chaplin1``).
A *stimulus* is a run without its repeat suffix (``life01_run-2`` -> ``life01``): repeats share features.

The challenge's held-out stimuli (docs/method.md §1): Friends season 7 (fMRI withheld in phase 1) and the
out-of-distribution films :data:`OOD_MOVIES`, in parts with one unpadded digit (``chaplin1``, ``wot2``).
Their *target sample numbers* (:func:`target_samples_path`) give the number of TRs a submission must
predict per episode; :mod:`mindlib.submission` reads them.
"""

from __future__ import annotations

import re
from pathlib import Path

SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-05")
N_PARCELS = 1000
STUDIES = ("friends", "movie10")  # the training studies, read by mindlib.data.load_fmri by default
FMRI_STUDIES = (*STUDIES, "ood")  # every task-<study> fMRI file of the release
OOD_MOVIES = ("chaplin", "mononoke", "passepartout", "planetearth", "pulpfiction", "wot")
OOD_RUNS = tuple(f"{movie}{part}" for movie in OOD_MOVIES for part in (1, 2))
SILENT_MOVIES = ("chaplin",)  # no transcript is released for these
HELDOUT_SEASON = 7  # Friends season whose fMRI the challenge withheld (phase 1)
# What a submission predicts: the name of each target sample number file (one per subject).
TARGET_SETS = ("friends-s7", "ood")
SPACE_ATLAS = "space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net"
# the seven networks of the Schaefer "Par7Net" labels (Yeo 2011), in the atlas's order
NETWORKS: tuple[str, ...] = ("Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default")

# Runs absent from the released data (docs/method.md §1). The reader reports them; it never invents them.
KNOWN_MISSING_RUNS: dict[str, tuple[str, ...]] = {
    "sub-02": ("s05e20a",),
    "sub-05": ("s04e01a", "s04e01b", "s04e13b"),
}

_FRIENDS_RE = re.compile(r"^s(\d{2})e(\d{2})([a-d])$")
_MOVIE_RE = re.compile(r"^([a-z]+)(\d{2})(?:_run-(\d+))?$")
_OOD_RE = re.compile(rf"^({'|'.join(OOD_MOVIES)})([1-9])$")
_SUBJECT_RE = re.compile(r"^sub-\d{2}$")
_BAD_RUN = (
    "is neither a Friends half-episode (s01e02a), a film part (bourne01) nor an OOD film part (chaplin1)"
)


def check_subject(subject: str) -> str:
    """Return ``subject`` if it is written as in the files (``"sub-01"``), else raise ValueError."""
    if not isinstance(subject, str) or not _SUBJECT_RE.match(subject):
        raise ValueError(
            f"subject {subject!r} is not written as in the Algonauts files; use e.g. 'sub-01' "
            f"(known subjects: {', '.join(SUBJECTS)})"
        )
    return subject


def fmri_path(root: str | Path, subject: str, study: str) -> Path:
    """Path of one subject's fMRI HDF5 file for ``study`` in {"friends", "movie10", "ood"}."""
    check_subject(subject)
    if study not in FMRI_STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of {FMRI_STUDIES}")
    desc = "_desc-s123456" if study == "friends" else ""
    return Path(root) / "fmri" / subject / "func" / f"{subject}_task-{study}_{SPACE_ATLAS}{desc}_bold.h5"


def atlas_path(root: str | Path, subject: str) -> Path:
    """Path of one subject's Schaefer-1000 parcellation in MNI space (NIfTI)."""
    check_subject(subject)
    return Path(root) / "fmri" / subject / "atlas" / f"{subject}_{SPACE_ATLAS}_desc-dseg_parcellation.nii.gz"


def target_samples_path(root: str | Path, subject: str, target_set: str) -> Path:
    """One subject's target sample numbers: a pickled ``{episode: number of TRs}`` saved with ``np.save``.

    ``("sub-01", "friends-s7")`` -> ``fmri/sub-01/target_sample_number/sub-01_friends-s7_fmri_samples.npy``;
    ``target_set="ood"`` -> ``..._ood_fmri_samples.npy``.
    """
    check_subject(subject)
    if target_set not in TARGET_SETS:
        raise ValueError(f"unknown target set {target_set!r}; expected one of {TARGET_SETS}")
    return Path(root) / "fmri" / subject / "target_sample_number" / f"{subject}_{target_set}_fmri_samples.npy"


def target_set_of(run: str) -> str | None:
    """The target set a run belongs to: ``"friends-s7"``, ``"ood"``, or None for a training run."""
    study = study_of(run)
    if study == "ood":
        return "ood"
    m = _FRIENDS_RE.match(run)
    return "friends-s7" if m and int(m.group(1)) == HELDOUT_SEASON else None


def run_name(h5_key: str) -> str:
    """Run name from an HDF5 dataset key: ``"ses-001_task-s01e02a"`` -> ``"s01e02a"``."""
    if "task-" not in h5_key:
        raise ValueError(f"HDF5 key {h5_key!r} has no 'task-' part; expected e.g. 'ses-001_task-s01e02a'")
    return h5_key.split("task-", 1)[1]


def h5_key(run: str, session: int) -> str:
    """HDF5 dataset key for ``run`` in ``session``: ``("s01e02a", 1)`` -> ``"ses-001_task-s01e02a"``."""
    return f"ses-{session:03d}_task-{run}"


def _film_match(run: str) -> re.Match | None:
    """Match of an OOD film part (``chaplin1``) or a Movie10 film part (``bourne01``).

    OOD stems take one digit: ``chaplin01`` is an error, not a Movie10 name."""
    m = _OOD_RE.match(run)
    if m:
        return m
    m = _MOVIE_RE.match(run)
    if m and m.group(1) in OOD_MOVIES:
        raise ValueError(
            f"run name {run!r}: out-of-distribution film parts have one unpadded digit, e.g. 'chaplin1'"
        )
    return m


def study_of(run: str) -> str:
    """``"friends"`` for Friends half-episodes (``s01e02a``), ``"ood"`` for the OOD films (``chaplin1``),
    ``"movie10"`` for the other film parts (``bourne01``)."""
    if _FRIENDS_RE.match(run):
        return "friends"
    m = _film_match(run)
    if m:
        return "ood" if m.re is _OOD_RE else "movie10"
    raise ValueError(f"run name {run!r} {_BAD_RUN}")


def stimulus_of(run: str) -> str:
    """The stimulus a run showed: repeats share it (``"life01_run-2"`` -> ``"life01"``)."""
    study_of(run)
    return re.sub(r"_run-\d+$", "", run)


def movie_of(run: str) -> str:
    """The "movie" of the official metric: a Friends season or a film.

    ``"s01e02a"`` -> ``"friends-s01"``; ``"bourne01"`` -> ``"bourne"``; ``"life01_run-1"`` -> ``"life"``;
    ``"chaplin2"`` -> ``"chaplin"`` (the official scorer groups ``chaplin1`` and ``chaplin2``).
    """
    m = _FRIENDS_RE.match(run)
    if m:
        return f"friends-s{m.group(1)}"
    m = _film_match(run)
    if m:
        return m.group(1)
    raise ValueError(f"run name {run!r} {_BAD_RUN}")


def episode_of(run: str) -> str:
    """The split group: runs sharing a stimulus share it.

    Half-episodes of one episode group together (``"s01e02a"``, ``"s01e02b"`` -> ``"s01e02"``) and
    repeats of one clip group together (``"life01_run-1"`` -> ``"life01"``).
    """
    m = _FRIENDS_RE.match(run)
    if m:
        return f"s{m.group(1)}e{m.group(2)}"
    return stimulus_of(run)


def stimulus_relpath(run: str, suffix: str) -> Path:
    """Where the release keeps per-stimulus files, relative to their folder.

    ``("s01e01a", ".tsv")`` -> ``friends/s1/friends_s01e01a.tsv``; ``("bourne01", ".h5")`` ->
    ``movie10/bourne/movie10_bourne01.h5``; ``("chaplin1", ".h5")`` -> ``ood/chaplin/ood_chaplin1.h5``.
    Transcripts and the public precomputed features (:mod:`mindlib.precomputed`) use this layout.
    """
    stim = stimulus_of(run)
    study = study_of(stim)
    m = _FRIENDS_RE.match(stim)
    folder = f"s{int(m.group(1))}" if m else movie_of(stim)
    return Path(study) / folder / f"{study}_{stim}{suffix}"


def transcript_path(root: str | Path, run: str) -> Path:
    """Transcript TSV of a run's stimulus.

    ``"s01e01a"`` -> ``stimuli/transcripts/friends/s1/friends_s01e01a.tsv``;
    ``"bourne01"`` -> ``stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv``;
    ``"wot1"`` -> ``stimuli/transcripts/ood/wot/ood_wot1.tsv``.
    """
    return Path(root) / "stimuli" / "transcripts" / stimulus_relpath(run, ".tsv")


def features_dir(root: str | Path, backbone: str) -> Path:
    """Folder of one backbone's feature store: ``<root>/features/<backbone>``."""
    return Path(root) / "features" / backbone


def feature_path(root: str | Path, backbone: str, modality: str, stimulus: str) -> Path:
    """One run's features for one modality: ``features/<backbone>/<modality>/<stimulus>.npy``."""
    return features_dir(root, backbone) / modality / f"{stimulus}.npy"
