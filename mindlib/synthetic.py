"""The embedded synthetic study: Algonauts 2025 files with a known ground truth (docs/method.md §1-3, §9).

:func:`make_study` writes a complete study in exactly the Algonauts 2025 layout (:mod:`mindlib.layout`):
fMRI HDF5 files with session-prefixed keys, an atlas NIfTI, per-TR transcripts, feature stores of
three backbones, and the truth behind them in ``<root>/ground_truth/``. Every notebook and test runs
on it by default, so it is built to carry the structure MIND targets (paper §2.3-2.4):

1. **Stimulus.** Each stimulus (a Friends half-episode, a film part) is a sequence of content
   segments of 5-30 s, one of :data:`CONTENT_TYPES`, on a fine time grid (:data:`FINE_HZ`). Latent
   sources per modality (video: low-level, faces, motion; audio: speech, music, effects; text: words,
   context) are smooth in time and their strength depends on the content type. Words (drawn from a
   small vocabulary) are spoken only in dialogue; they drive the text and speech latents and the
   transcripts.
2. **Backbones.** Three lossy, nonlinear views of the latents at 2 Hz, written as feature stores:
   ``tribe`` (per modality, several layers, deeper = more nonlinear and more abstract),
   ``imagebind`` (one joint space per modality, one layer; its video view is image-based and misses
   motion) and ``qwen`` (one fused stream with causal temporal context).
3. **Brain.** A true mixture of experts: :data:`N_MODES` linear maps ("response modes") from the
   latents to the 1000 Schaefer parcels, each network driven by plausible modalities. A gate over
   modes at each instant depends on the content type *and* on a subject-specific bias over modes;
   subject-specific per-parcel gains scale the response. The neural response is convolved with the
   Glover HRF on the fine grid and averaged within each TR ``[t * tr_s, (t + 1) * tr_s)``. AR(1)
   noise sets the per-parcel noise ceiling (higher in Vis / SomMot, lower in Limbic).

4. **Held-out stimuli.** Like the challenge, each size also has Friends season-7 half-episodes and
   out-of-distribution film parts (``chaplin1``, ``wot1``; :attr:`SizeSpec.heldout_runs`): features of
   every backbone, transcripts (none for the silent ``chaplin``) and the target sample numbers
   ``fmri/sub-0X/target_sample_number/*.npy`` are in the study; their fMRI (same subjects, same noise
   level) only under ``ground_truth/fmri/`` (:func:`heldout_fmri_root`), the truth a submission is scored
   against (:mod:`mindlib.submission`). They are made after, and from random streams of their own, so
   every other array is the same as without them.

Ground-truth conventions
------------------------
- ``clean`` is the noise-free fMRI of each run ``(T, V)``; the file signal is ``clean + noise``.
- ``noise_ceiling`` per subject ``(V,)`` is the Pearson r between clean and file signal (float32 as
  stored) over the subject's runs concatenated: the best r any model can reach.
- ``content_tr[t]`` is the content type at the *midpoint of the lagged stimulus window* of TR ``t``,
  i.e. at stimulus time ``(t + 0.5) * tr_s - lag_s`` with ``lag_s = 3 * tr_s = 4.47 s`` (clipped to the
  stimulus start): the same window :func:`mindlib.align.align_features` reads at its default lag.
  ``content_frame[k]`` is the content at the midpoint of 2 Hz frame ``k``.
- ``gates_tr[t]`` is the true gate averaged over that same lagged window (TRs whose window precedes
  the stimulus take the gate at stimulus time 0).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, get_args

import h5py
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import fftconvolve, lfilter

try:  # installed with scikit-learn; only used to keep BLAS single-threaded while writing
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover

    def threadpool_limits(*args, **kwargs):
        return contextlib.nullcontext()


from mindlib import layout
from mindlib.align import DEFAULT_LAG_TRS, FEATURE_HZ, TR_S, overlap_matrix
from mindlib.files import write_json
from mindlib.layout import NETWORKS
from mindlib.params import check_choice

logger = logging.getLogger(__name__)

Size = Literal["smoke", "demo", "full"]
SIZES: tuple[str, ...] = get_args(Size)
CONTENT_TYPES: tuple[str, ...] = ("dialogue", "music", "action", "faces", "scenery")
MODE_NAMES: tuple[str, ...] = ("language", "auditory", "visual-motion", "social")
N_MODES = len(MODE_NAMES)  # E of the true mixture of experts
BACKBONES: tuple[str, ...] = ("tribe", "imagebind", "qwen")
FINE_HZ = 10.0  # latent stimulus grid (Hz); an integer multiple of FEATURE_HZ
LAG_S = DEFAULT_LAG_TRS * TR_S  # 4.47 s, the lag of the ground-truth labels per TR
GENERATOR = "mindlib.synthetic"
FORMAT_VERSION = 2  # 2: held-out stimuli (Friends season 7, OOD films) and their hidden fMRI
ATLAS_SHAPE = (20, 24, 20)  # small labelled volume, 8 mm voxels

# Latent sources: (modality, block, channels). J = 36 channels in all.
BLOCKS: tuple[tuple[str, str, int], ...] = (
    ("video", "lowlevel", 4),
    ("video", "faces", 4),
    ("video", "motion", 4),
    ("audio", "speech", 4),
    ("audio", "music", 4),
    ("audio", "effects", 4),
    ("text", "words", 8),
    ("text", "context", 4),
)
BLOCK_TIMESCALE_S = (0.3, 1.0, 0.25, 0.15, 0.5, 0.3, 0.3, 3.0)  # Gaussian smoothing of each block
# Strength of each block (columns as BLOCKS) under each content type (rows as CONTENT_TYPES).
# speech and words are driven by the spoken words instead (only in dialogue).
BLOCK_AMPLITUDE = np.array(
    [  # lowlvl faces motion speech music effects words context
        [0.4, 0.8, 0.2, 1.0, 0.1, 0.2, 1.0, 1.0],  # dialogue
        [0.5, 0.2, 0.3, 0.0, 1.0, 0.2, 0.0, 0.2],  # music
        [0.7, 0.2, 1.0, 0.0, 0.4, 1.0, 0.0, 0.1],  # action
        [0.4, 1.0, 0.2, 0.0, 0.2, 0.1, 0.0, 0.3],  # faces
        [1.0, 0.0, 0.3, 0.0, 0.3, 0.3, 0.0, 0.1],  # scenery
    ]
)
AMPLITUDE_FLOOR = 0.3  # every non-speech block keeps this much strength whatever the content
# How strongly each network reads each block (rows as NETWORKS, columns as BLOCKS).
NETWORK_LOADING = np.array(
    [  # lowlvl faces motion speech music effects words context
        [1.0, 0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0],  # Vis: video
        [0.0, 0.0, 0.3, 0.8, 0.8, 0.6, 0.0, 0.0],  # SomMot: audio (auditory cortex sits here)
        [0.3, 0.2, 1.0, 0.0, 0.0, 0.1, 0.0, 0.0],  # DorsAttn: video motion
        [0.2, 0.3, 0.4, 0.3, 0.2, 0.5, 0.2, 0.2],  # SalVentAttn: mixed
        [0.0, 0.15, 0.0, 0.05, 0.15, 0.0, 0.05, 0.1],  # Limbic: weak
        [0.1, 0.3, 0.1, 0.2, 0.0, 0.0, 0.7, 0.6],  # Cont: text
        [0.0, 0.4, 0.0, 0.5, 0.0, 0.0, 1.0, 0.8],  # Default: language
    ]
)
# What each response mode emphasises (rows as MODE_NAMES, columns as BLOCKS).
MODE_EMPHASIS = np.array(
    [
        [0.2, 0.3, 0.1, 0.8, 0.1, 0.1, 1.0, 1.0],  # language
        [0.1, 0.1, 0.2, 1.0, 1.0, 1.0, 0.2, 0.1],  # auditory
        [1.0, 0.3, 1.0, 0.1, 0.1, 0.3, 0.1, 0.1],  # visual-motion
        [0.3, 1.0, 0.2, 0.5, 0.1, 0.1, 0.5, 0.5],  # social
    ]
)
MODE_SHARED = 0.4  # weight of the pattern all modes share (the rest is mode-specific)
# Gate logits over modes for each content type (rows as CONTENT_TYPES, columns as MODE_NAMES).
CONTENT_MODE_LOGITS = np.array(
    [
        [4.0, 0.5, 0.0, 1.5],  # dialogue -> language
        [0.0, 4.0, 0.0, 0.0],  # music -> auditory
        [0.0, 0.5, 4.0, 0.0],  # action -> visual-motion
        [0.5, 0.0, 0.0, 4.0],  # faces -> social
        [0.0, 0.0, 3.0, 0.0],  # scenery -> visual-motion
    ]
)
# Target noise ceiling per network (per-parcel jitter +/- 0.08 around it).
NETWORK_CEILING = {
    "Vis": 0.62,
    "SomMot": 0.56,
    "DorsAttn": 0.47,
    "SalVentAttn": 0.40,
    "Limbic": 0.18,
    "Cont": 0.36,
    "Default": 0.42,
}
# Content-type frequencies per kind of film.
CONTENT_PROBS = {
    "friends": (0.55, 0.05, 0.05, 0.20, 0.15),
    "bourne": (0.20, 0.10, 0.40, 0.15, 0.15),
    "life": (0.25, 0.25, 0.10, 0.05, 0.35),
    "chaplin": (0.0, 0.35, 0.30, 0.20, 0.15),  # silent film: no dialogue, no words, no transcript
}
VOCABULARY = (
    "hey", "you", "know", "what", "okay", "oh", "my", "god", "i", "just", "can't", "believe",
    "ross", "rachel", "monica", "chandler", "joey", "phoebe", "coffee", "apartment", "really",
    "so", "the", "a", "is", "it", "that", "we", "are", "not", "this", "no", "yeah", "well",
    "look", "go", "come", "here", "there", "now", "dinosaur", "date", "job", "love", "right",
    "agent", "run", "passport", "bank", "train", "water", "ocean", "whale", "bird", "forest",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeSpec:
    """What one study size holds.

    Attributes
    ----------
    friends_runs, movie_runs : tuple of str
        Run names (repeats of a clip as ``life01_run-1`` / ``life01_run-2``).
    n_trs_range : (int, int)
        Run lengths in TRs are drawn uniformly in this closed range, once per stimulus.
    tribe : tuple of (modality, n_layers, dim)
    imagebind_dim, qwen_dim : int
    missing_runs : dict of str to tuple of str
        Friends half-episodes a subject lacks (mirroring the released data's gaps).
    heldout_runs : tuple of str
        The challenge's held-out stimuli (Friends season 7, OOD film parts): features, transcripts and
        target sample numbers in the study, their fMRI only under ``ground_truth/fmri/``. Not in
        :attr:`runs`.
    """

    friends_runs: tuple[str, ...]
    movie_runs: tuple[str, ...]
    n_trs_range: tuple[int, int]
    tribe: tuple[tuple[str, int, int], ...]
    imagebind_dim: int
    qwen_dim: int
    missing_runs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    heldout_runs: tuple[str, ...] = ()

    @property
    def runs(self) -> tuple[str, ...]:
        return self.friends_runs + self.movie_runs

    @property
    def stimuli(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layout.stimulus_of(r) for r in self.runs))


def _friends(seasons_episodes: dict[int, int]) -> tuple[str, ...]:
    return tuple(
        f"s{s:02d}e{e:02d}{half}"
        for s, n in seasons_episodes.items()
        for e in range(1, n + 1)
        for half in "ab"
    )


SIZE_SPECS: dict[str, SizeSpec] = {
    "smoke": SizeSpec(
        friends_runs=_friends({1: 4}),
        movie_runs=("bourne01", "life01_run-1", "life01_run-2"),
        n_trs_range=(90, 110),
        tribe=(("video", 4, 32), ("audio", 3, 24), ("text", 3, 32)),
        imagebind_dim=32,
        qwen_dim=48,
        missing_runs={"sub-02": ("s01e03a",), "sub-05": ("s01e02a", "s01e02b")},
        heldout_runs=_friends({7: 1}) + ("chaplin1", "chaplin2", "wot1"),
    ),
    "demo": SizeSpec(
        friends_runs=_friends({1: 6})[:12] + _friends({2: 4}),
        movie_runs=("bourne01", "bourne02", "life01_run-1", "life01_run-2"),
        n_trs_range=(160, 220),
        tribe=(("video", 8, 128), ("audio", 6, 64), ("text", 6, 96)),
        imagebind_dim=128,
        qwen_dim=192,
        missing_runs={"sub-02": ("s02e04a",), "sub-05": ("s02e01a", "s02e01b")},
        heldout_runs=_friends({7: 2}) + ("chaplin1", "chaplin2", "mononoke1", "mononoke2", "wot1", "wot2"),
    ),
    "full": SizeSpec(
        friends_runs=_friends({1: 8, 2: 8, 3: 8}),
        movie_runs=(
            "bourne01",
            "bourne02",
            "bourne03",
            "bourne04",
            "life01_run-1",
            "life01_run-2",
            "life02_run-1",
            "life02_run-2",
        ),
        n_trs_range=(350, 450),
        tribe=(("video", 12, 256), ("audio", 8, 128), ("text", 8, 192)),
        imagebind_dim=256,
        qwen_dim=384,
        missing_runs={"sub-02": ("s03e08a",), "sub-05": ("s03e01a", "s03e01b")},
        heldout_runs=_friends({7: 4}) + layout.OOD_RUNS,
    ),
}


def size_spec(size: str) -> SizeSpec:
    """The :class:`SizeSpec` of ``size`` in {"smoke", "demo", "full"} (ValueError otherwise)."""
    check_choice(size, SIZES, "size")
    return SIZE_SPECS[size]


# ----------------------------------------------------------------------------------------------
# Study description
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyInfo:
    """What :func:`make_study` wrote.

    Attributes
    ----------
    root : Path
    size : str
    seed : int
    subjects : tuple of str
    runs : dict of str to tuple of str
        Runs per subject (names without session prefix), missing runs left out.
    backbones : tuple of str
    missing_runs : dict of str to tuple of str
    ground_truth_dir : Path
    n_trs : dict of str to int
        Length of every run in TRs (repeats of a clip share it).
    h5_keys : dict of str to dict of str to str
        HDF5 dataset key of every run per subject (session prefixes differ across subjects).
    heldout_n_trs : dict of str to int
        Target number of TRs of every held-out stimulus (Friends season 7, OOD films): features,
        transcripts and ``fmri/<subject>/target_sample_number/`` files in the study, fMRI only under
        ``ground_truth/fmri/`` (:func:`heldout_fmri_root`).
    """

    root: Path
    size: str
    seed: int
    subjects: tuple[str, ...]
    runs: dict[str, tuple[str, ...]]
    backbones: tuple[str, ...]
    missing_runs: dict[str, tuple[str, ...]]
    ground_truth_dir: Path
    n_trs: dict[str, int] = field(default_factory=dict)
    h5_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    heldout_n_trs: dict[str, int] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per subject and run: study, stimulus, movie, TRs, duration, HDF5 key and file."""
        rows = []
        for subject in self.subjects:
            for run in self.runs[subject]:
                study = layout.study_of(run)
                rows.append(
                    {
                        "subject": subject,
                        "run": run,
                        "study": study,
                        "stimulus": layout.stimulus_of(run),
                        "movie": layout.movie_of(run),
                        "n_trs": self.n_trs.get(run),
                        "duration_s": round(self.n_trs.get(run, 0) * TR_S, 2),
                        "h5_key": self.h5_keys.get(subject, {}).get(run),
                        "fmri_path": str(layout.fmri_path(self.root, subject, study)),
                    }
                )
        return pd.DataFrame(rows)

    def to_json(self) -> dict[str, Any]:
        """The JSON-able description written to ``<root>/study.json`` (paths relative to root)."""
        return {
            "size": self.size,
            "seed": self.seed,
            "subjects": list(self.subjects),
            "runs": {s: list(r) for s, r in self.runs.items()},
            "backbones": list(self.backbones),
            "missing_runs": {s: list(r) for s, r in self.missing_runs.items()},
            "ground_truth_dir": os.path.relpath(self.ground_truth_dir, self.root),
            "n_trs": dict(self.n_trs),
            "h5_keys": {s: dict(k) for s, k in self.h5_keys.items()},
            "heldout_n_trs": dict(self.heldout_n_trs),
        }

    @classmethod
    def from_json(cls, root: str | Path, meta: dict[str, Any]) -> StudyInfo:
        root = Path(root)
        return cls(
            root=root,
            size=meta["size"],
            seed=int(meta["seed"]),
            subjects=tuple(meta["subjects"]),
            runs={s: tuple(r) for s, r in meta["runs"].items()},
            backbones=tuple(meta["backbones"]),
            missing_runs={s: tuple(r) for s, r in meta["missing_runs"].items()},
            ground_truth_dir=root / meta["ground_truth_dir"],
            n_trs={r: int(n) for r, n in meta["n_trs"].items()},
            h5_keys={s: dict(k) for s, k in meta["h5_keys"].items()},
            heldout_n_trs={r: int(n) for r, n in meta.get("heldout_n_trs", {}).items()},
        )


def heldout_fmri_root(root: str | Path) -> Path:
    """``<root>/ground_truth``: the held-out fMRI of a synthetic study, in the Algonauts layout under it.

    ``ground_truth/fmri/sub-01/func/sub-01_task-ood_..._bold.h5`` (and the Friends file with season 7), so
    :func:`mindlib.data.load_fmri` reads it as a study root."""
    return Path(root) / "ground_truth"


def study_json_path(root: str | Path) -> Path:
    """``<root>/study.json``, the description of a synthetic study (absent for real data)."""
    return Path(root) / "study.json"


def read_study_info(root: str | Path) -> StudyInfo:
    """The :class:`StudyInfo` of a synthetic study already on disk."""
    path = study_json_path(root)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: build the study with mindlib.synthetic.make_study({str(root)!r})"
        )
    meta = json.loads(path.read_text())
    if meta.get("generator") != GENERATOR or not meta.get("complete"):
        raise ValueError(
            f"{path} does not describe a complete synthetic study; rebuild it with make_study(..., overwrite=True)"
        )
    return StudyInfo.from_json(root, meta)


# ----------------------------------------------------------------------------------------------
# Parcels
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _parcel_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with files("mindlib").joinpath("atlas", "schaefer1000_7n_fsaverage5.npz").open("rb") as fh:
        names = np.load(fh)["names"].astype(str)
    parts = np.char.split(names, "_")
    hemispheres = np.array([p[1] for p in parts])
    networks = np.array([p[2] for p in parts])
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown or len(names) != layout.N_PARCELS:
        raise ValueError(
            f"unexpected Schaefer labels in mindlib/data: {len(names)} names, unknown networks {unknown}"
        )
    return names, networks, hemispheres


def parcel_networks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schaefer-1000 (7 networks) parcel labels.

    Returns
    -------
    names : ndarray of shape (V,), str
        e.g. ``"7Networks_LH_Vis_1"``.
    networks : ndarray of shape (V,), str
        One of :data:`mindlib.layout.NETWORKS` (``"Vis"``, ``"SomMot"``, ...).
    hemispheres : ndarray of shape (V,), str
        ``"LH"`` or ``"RH"``.
    """
    return tuple(a.copy() for a in _parcel_table())  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Randomness and small helpers
# ----------------------------------------------------------------------------------------------


def _rng(seed: int, *tags: str) -> np.random.Generator:
    """An independent, order-free random stream for ``(seed, *tags)``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *(zlib.crc32(t.encode()) for t in tags)]))


def _block_slices() -> list[slice]:
    edges = np.cumsum([0] + [n for _, _, n in BLOCKS])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


N_LATENT = sum(n for _, _, n in BLOCKS)  # J
_BLOCK_OF_CHANNEL = np.repeat(np.arange(len(BLOCKS)), [n for _, _, n in BLOCKS])  # (J,)


def _block_channels(block: str) -> np.ndarray:
    return next(np.arange(sl.start, sl.stop) for (_, b, _), sl in zip(BLOCKS, _block_slices()) if b == block)


def _modality_channels(modality: str, blocks: tuple[str, ...] | None = None) -> np.ndarray:
    return np.concatenate(
        [
            np.arange(sl.start, sl.stop)
            for (m, b, _), sl in zip(BLOCKS, _block_slices())
            if m == modality and (blocks is None or b in blocks)
        ]
    )


def _n_frames(n_trs: int) -> int:
    """Feature frames covering a run of ``n_trs`` TRs: ``ceil(n_trs * tr_s * feature_hz)``."""
    return int(math.ceil(round(n_trs * TR_S * FEATURE_HZ, 6)))


def _fine_per_frame() -> int:
    ratio = FINE_HZ / FEATURE_HZ
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"FINE_HZ ({FINE_HZ}) must be an integer multiple of FEATURE_HZ ({FEATURE_HZ})")
    return int(round(ratio))


def _smooth(x: np.ndarray, sigma_s: float) -> np.ndarray:
    return gaussian_filter1d(x, sigma=sigma_s * FINE_HZ, axis=0, mode="nearest")


def _causal_ema(x: np.ndarray, tau_frames: float) -> np.ndarray:
    """Exponential moving average over the past (time axis 0), unit DC gain."""
    a = math.exp(-1.0 / tau_frames)
    return lfilter([1.0 - a], [1.0, -a], x, axis=0, zi=a * x[:1])[0]  # starts at steady state x[0]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _film(stimulus: str) -> str:
    movie = layout.movie_of(stimulus)
    return "friends" if movie.startswith("friends") else movie if movie in CONTENT_PROBS else "bourne"


# ----------------------------------------------------------------------------------------------
# Stimuli: content, words, latents
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stimulus:
    name: str
    n_trs: int
    n_frames: int
    content_fine: np.ndarray  # (n_fine,) int
    onehot_fine: np.ndarray  # (n_fine, C) smoothed content fractions
    latent_fine: np.ndarray  # (n_fine, J)
    words: pd.DataFrame  # word, onset_s, duration_s


def _content_segments(
    rng: np.random.Generator, duration_s: float, film: str
) -> list[tuple[float, float, int]]:
    probs = np.asarray(CONTENT_PROBS[film])
    segments, t, prev = [], 0.0, -1
    while t < duration_s:
        length = rng.uniform(5.0, 30.0)
        p = probs.copy()
        if prev >= 0:
            p[prev] = 0.0
        c = int(rng.choice(len(CONTENT_TYPES), p=p / p.sum()))
        segments.append((t, t + length, c))
        t, prev = t + length, c
    return segments


def _spoken_words(rng: np.random.Generator, segments, duration_s: float) -> pd.DataFrame:
    """Words in dialogue segments: utterances of 2-8 words, pauses between them (seconds, ms grid)."""
    dialogue = CONTENT_TYPES.index("dialogue")
    word, onset, dur = [], [], []
    for lo, hi, c in segments:
        if c != dialogue:
            continue
        hi = min(hi, duration_s)
        t = lo + rng.uniform(0.2, 1.0)
        while t < hi - 0.5:
            for _ in range(int(rng.integers(2, 9))):
                d = rng.uniform(0.18, 0.45)
                if t + d > hi:
                    break
                word.append(int(rng.integers(len(VOCABULARY))))
                onset.append(round(t, 3))
                dur.append(round(d, 3))
                t += d + rng.uniform(0.03, 0.12)
            t += rng.uniform(0.4, 1.5)
    return pd.DataFrame(
        {"word_id": np.asarray(word, dtype=int), "onset_s": np.asarray(onset), "duration_s": np.asarray(dur)}
    )


def _make_stimulus(name: str, n_trs: int, seed: int, model: dict[str, np.ndarray]) -> _Stimulus:
    rng = _rng(seed, "stimulus", name)
    n_frames = _n_frames(n_trs)
    n_fine = n_frames * _fine_per_frame()
    duration_s = n_trs * TR_S
    t_fine = np.arange(n_fine) / FINE_HZ  # start of each fine sample

    segments = _content_segments(rng, n_fine / FINE_HZ, _film(name))
    starts = np.array([s for s, _, _ in segments])
    content_fine = np.array([c for _, _, c in segments])[np.searchsorted(starts, t_fine, side="right") - 1]
    onehot_fine = _smooth(np.eye(len(CONTENT_TYPES))[content_fine], 0.5)  # (n_fine, C)

    words = _spoken_words(rng, segments, duration_s)
    word_at = np.full(n_fine, -1)  # vocabulary id spoken in each fine sample
    lo = np.ceil(words["onset_s"].to_numpy() * FINE_HZ - 1e-9).astype(int)
    hi = np.ceil((words["onset_s"] + words["duration_s"]).to_numpy() * FINE_HZ - 1e-9).astype(int)
    for w, a, b in zip(words["word_id"].to_numpy(), lo, hi):
        word_at[a:b] = w
    speaking = (word_at >= 0).astype(float)

    latent = np.zeros((n_fine, N_LATENT))
    for b, ((_, block, _), sl) in enumerate(zip(BLOCKS, _block_slices())):
        noise = _smooth(rng.standard_normal((n_fine, sl.stop - sl.start)), BLOCK_TIMESCALE_S[b])
        noise /= noise.std(axis=0, keepdims=True) + 1e-12
        if block == "speech":
            envelope = _smooth(speaking, 0.05)[:, None]
            latent[:, sl] = envelope * (model["speech_pattern"] + 0.6 * noise)
        elif block == "words":
            emb = np.where(speaking[:, None] > 0, model["word_embedding"][np.maximum(word_at, 0)], 0.0)
            latent[:, sl] = 2.0 * _smooth(emb, BLOCK_TIMESCALE_S[b])
        else:
            amplitude = AMPLITUDE_FLOOR + (1.0 - AMPLITUDE_FLOOR) * (
                onehot_fine @ BLOCK_AMPLITUDE[:, b]
            )  # (n_fine,)
            latent[:, sl] = amplitude[:, None] * noise + onehot_fine @ model["content_offset"][:, sl]
    return _Stimulus(name, n_trs, n_frames, content_fine, onehot_fine, latent, words)


def _frames(x_fine: np.ndarray, n_frames: int) -> np.ndarray:
    """Average a fine-grid signal within each 2 Hz frame ``[k / feature_hz, (k + 1) / feature_hz)``."""
    k = _fine_per_frame()
    return x_fine[: n_frames * k].reshape(n_frames, k, *x_fine.shape[1:]).mean(axis=1)


def _frame_content(stim: _Stimulus) -> np.ndarray:
    """Content type at the midpoint of each 2 Hz frame, shape (T_f,)."""
    k = _fine_per_frame()
    return stim.content_fine[np.arange(stim.n_frames) * k + k // 2]


def _transcript(stim: _Stimulus) -> pd.DataFrame:
    """One row per TR chunk ``[t * tr_s, (t + 1) * tr_s)`` holding the words whose onset falls inside it."""
    onsets = stim.words["onset_s"].to_numpy()
    chunk = np.floor(onsets / TR_S).astype(int)
    chunk[onsets < chunk * TR_S] -= 1  # float edges: keep t * tr_s <= onset < (t + 1) * tr_s exactly
    chunk[onsets >= (chunk + 1) * TR_S] += 1
    rows: list[list[int]] = [[] for _ in range(stim.n_trs)]
    for i, c in enumerate(chunk):
        if 0 <= c < stim.n_trs:
            rows[c].append(i)
    words = [VOCABULARY[w] for w in stim.words["word_id"]]
    durations = stim.words["duration_s"].to_numpy()
    return pd.DataFrame(
        {
            "text_per_tr": [" ".join(words[i] for i in r) for r in rows],
            "words_per_tr": [str([words[i] for i in r]) for r in rows],
            "onsets_per_tr": [str([float(onsets[i]) for i in r]) for r in rows],
            "durations_per_tr": [str([float(durations[i]) for i in r]) for r in rows],
        }
    )


# ----------------------------------------------------------------------------------------------
# The fixed generative model: backbones and brain
# ----------------------------------------------------------------------------------------------


def _make_model(spec: SizeSpec, seed: int) -> dict[str, Any]:
    """Every parameter shared across stimuli and subjects (deterministic by seed)."""
    rng = _rng(seed, "model")
    C, J, E, V = len(CONTENT_TYPES), N_LATENT, N_MODES, layout.N_PARCELS
    model: dict[str, Any] = {
        "content_offset": 0.5 * rng.standard_normal((C, J)),
        "speech_pattern": 1.0 + 0.3 * rng.standard_normal(len(_block_channels("speech"))),
        "word_embedding": rng.standard_normal((len(VOCABULARY), 8)),
    }
    # Brain: E mode maps (E, J, V) = network loading x mode emphasis x (small shared + large
    # mode-specific random pattern): the same latent drives parcels differently in each mode.
    _, networks, _ = _parcel_table()
    net_idx = np.array([NETWORKS.index(n) for n in networks])
    loading = NETWORK_LOADING[net_idx][:, _BLOCK_OF_CHANNEL].T  # (J, V)
    shared = rng.standard_normal((J, V))
    specific = rng.standard_normal((E, J, V))
    emphasis = 0.4 + 0.6 * MODE_EMPHASIS[:, _BLOCK_OF_CHANNEL][:, :, None]  # (E, J, 1)
    model["mode_maps"] = loading[None] * emphasis * (MODE_SHARED * shared[None] + specific) / math.sqrt(J)
    # Backbones.
    tribe = {}
    for modality, n_layers, dim in spec.tribe:
        k = len(_modality_channels(modality))
        tribe[modality] = {
            "w_in": rng.standard_normal((k, dim)) / math.sqrt(k),
            "w": rng.standard_normal((n_layers, dim, dim)) * (1.3 / math.sqrt(dim)),
            "b": 0.1 * rng.standard_normal((n_layers, dim)),
            "content": rng.standard_normal((n_layers, C, dim)),
        }
    model["tribe"] = tribe
    ib_inputs = {
        "video": ("lowlevel", "faces"),
        "audio": None,
        "text": ("words",),
    }  # image-based video: no motion
    model["imagebind"] = {
        "inputs": {m: _modality_channels(m, b) for m, b in ib_inputs.items()},
        "bottleneck": {
            m: rng.standard_normal((len(_modality_channels(m, b)), 6)) for m, b in ib_inputs.items()
        },
        "out": {m: rng.standard_normal((6, spec.imagebind_dim)) / math.sqrt(6) for m in ib_inputs},
        "shared": 0.7 * rng.standard_normal((C, spec.imagebind_dim)),
    }
    model["qwen"] = {
        "w1": rng.standard_normal((J, 2 * spec.qwen_dim)) * (1.5 / math.sqrt(J)),
        "w2": rng.standard_normal((2 * spec.qwen_dim, spec.qwen_dim)) / math.sqrt(2 * spec.qwen_dim),
        "content": 0.3 * rng.standard_normal((C, spec.qwen_dim)),
    }
    return model


def _backbone_features(stim: _Stimulus, model: dict[str, Any], spec: SizeSpec, seed: int) -> dict:
    """Features ``{backbone: {modality: (T_f, L, D) float32}}`` of one stimulus."""
    rng = _rng(seed, "features", stim.name)
    z = _frames(stim.latent_fine, stim.n_frames)  # (T_f, J)
    onehot = _frames(stim.onehot_fine, stim.n_frames)  # (T_f, C)
    T_f = stim.n_frames
    out: dict[str, dict[str, np.ndarray]] = {"tribe": {}, "imagebind": {}, "qwen": {}}

    # tribe: per modality, layer l = l + 1 random tanh layers deep, more content (abstract) info deeper.
    for modality, n_layers, dim in spec.tribe:
        p = model["tribe"][modality]
        x = z[:, _modality_channels(modality)]
        if modality == "text":  # a language model reads context
            x = 0.6 * x + 0.4 * _causal_ema(x, tau_frames=4.0 * FEATURE_HZ)
        h = np.tanh(x @ p["w_in"])
        layers = np.empty((T_f, n_layers, dim))
        for layer in range(n_layers):
            if layer > 0:
                depth = layer / max(n_layers - 1, 1)
                h = np.tanh(h @ p["w"][layer] + p["b"][layer] + 0.5 * depth * (onehot @ p["content"][layer]))
            layers[:, layer] = h
        out["tribe"][modality] = layers + 0.15 * rng.standard_normal(layers.shape)

    # imagebind: one joint space; a low-rank view per modality plus a shared content direction.
    ib = model["imagebind"]
    for modality in ("video", "audio", "text"):
        x = z[:, ib["inputs"][modality]]
        e = np.tanh(x @ ib["bottleneck"][modality]) @ ib["out"][modality] + onehot @ ib["shared"]
        e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-8) * math.sqrt(spec.imagebind_dim)
        out["imagebind"][modality] = (e + 0.1 * rng.standard_normal(e.shape))[:, None, :]

    # qwen: one fused stream with causal context over the past few seconds.
    q = model["qwen"]
    s = 0.4 * z + 0.6 * _causal_ema(z, tau_frames=4.0 * FEATURE_HZ)
    f = np.tanh(np.tanh(s @ q["w1"]) @ q["w2"] + onehot @ q["content"])
    out["qwen"]["fused"] = (f + 0.1 * rng.standard_normal(f.shape))[:, None, :]
    return {b: {m: a.astype(np.float32) for m, a in mods.items()} for b, mods in out.items()}


def _backbone_info(spec: SizeSpec) -> dict[str, dict[str, Any]]:
    return {
        "tribe": {
            "name": "tribe",
            "feature_hz": FEATURE_HZ,
            "fusion": "per-modality",
            "modalities": {m: {"n_layers": n, "dim": d} for m, n, d in spec.tribe},
        },
        "imagebind": {
            "name": "imagebind",
            "feature_hz": FEATURE_HZ,
            "fusion": "joint-space",
            "modalities": {m: {"n_layers": 1, "dim": spec.imagebind_dim} for m in ("video", "audio", "text")},
        },
        "qwen": {
            "name": "qwen",
            "feature_hz": FEATURE_HZ,
            "fusion": "fused-stream",
            "modalities": {"fused": {"n_layers": 1, "dim": spec.qwen_dim}},
        },
    }


@lru_cache(maxsize=1)
def _hrf() -> np.ndarray:
    from nilearn.glm.first_level import glover_hrf

    return glover_hrf(t_r=1.0 / FINE_HZ, oversampling=1, time_length=32.0)  # sums to 1


def _subject_params(subject: str, seed: int) -> dict[str, np.ndarray]:
    rng = _rng(seed, "subject", subject)
    V = layout.N_PARCELS
    _, networks, _ = _parcel_table()
    target = np.array([NETWORK_CEILING[n] for n in networks]) + rng.uniform(-0.08, 0.08, V)
    return {
        "mode_bias": rng.normal(0.0, 1.0, N_MODES),  # (E,) subject preference over response modes
        "gains": np.exp(rng.normal(0.0, 0.3, V)),  # (V,) per-parcel response gain
        "target_ceiling": np.clip(target, 0.05, 0.95),  # (V,)
        "ar1": rng.uniform(0.3, 0.6, V),  # (V,) AR(1) coefficient of the noise per TR
    }


def _clean_response(stim: _Stimulus, params: dict[str, np.ndarray], model: dict[str, Any]) -> dict:
    """Noise-free fMRI of one subject watching one stimulus, and the truth behind it."""
    n_fine, J = stim.latent_fine.shape
    E, V = N_MODES, layout.N_PARCELS
    gate = _softmax(stim.onehot_fine @ CONTENT_MODE_LOGITS + params["mode_bias"])  # (n_fine, E)
    drive = (gate[:, :, None] * stim.latent_fine[:, None, :]).reshape(n_fine, E * J)  # (n_fine, E*J)
    # Convolution, TR averaging and the mode maps are linear: convolve the E*J drives, not V parcels.
    bold = fftconvolve(drive, _hrf()[:, None], axes=0)[:n_fine]  # causal HRF on the fine grid
    W = overlap_matrix(stim.n_trs, n_fine, TR_S, FINE_HZ, 0.0)  # (T, n_fine): TR t = [t tr_s, (t+1) tr_s)
    clean = (W @ bold) @ model["mode_maps"].reshape(E * J, V) * params["gains"]  # (T, V)

    W_lag = overlap_matrix(stim.n_trs, n_fine, TR_S, FINE_HZ, LAG_S)
    gates_tr = W_lag @ gate
    gates_tr[W_lag.sum(axis=1) < 0.5] = gate[0]
    mid = np.floor(((np.arange(stim.n_trs) + 0.5) * TR_S - LAG_S) * FINE_HZ).astype(int)
    content_tr = stim.content_fine[np.clip(mid, 0, n_fine - 1)]
    return {"clean": clean, "gates_tr": gates_tr, "content_tr": content_tr}


def _ar1_noise(rng: np.random.Generator, n_trs: int, phi: np.ndarray) -> np.ndarray:
    """Stationary unit-variance AR(1) noise ``(T, V)`` with per-parcel coefficient ``phi``."""
    w = rng.standard_normal((n_trs, phi.size))
    e = np.empty_like(w)
    e[0] = w[0]
    scale = np.sqrt(1.0 - phi**2)
    for t in range(1, n_trs):
        e[t] = phi * e[t - 1] + scale * w[t]
    return e


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def _atlas_labels(seed: int) -> np.ndarray:
    """A small labelled volume: an ellipsoid brain cut into 1000 Voronoi parcels, LH at x < mid.

    Parcel centres are ordered posterior to anterior within each hemisphere so the Schaefer order
    (Vis first, Default last) runs roughly from the occipital to the frontal end.
    """
    rng = _rng(seed, "atlas")
    nx, ny, nz = ATLAS_SHAPE
    ijk = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), axis=-1)
    centre = (np.array(ATLAS_SHAPE) - 1) / 2.0
    inside = (((ijk - centre) / (np.array(ATLAS_SHAPE) / 2.0)) ** 2).sum(axis=-1) <= 1.0
    labels = np.zeros(ATLAS_SHAPE, dtype=np.int16)
    half = layout.N_PARCELS // 2
    for h, side in enumerate((ijk[..., 0] < nx // 2, ijk[..., 0] >= nx // 2)):
        vox = np.argwhere(inside & side)  # (n, 3)
        centres = vox[rng.choice(len(vox), size=half, replace=False)]
        centres = centres[np.argsort(centres[:, 1], kind="stable")]  # posterior -> anterior
        d = ((vox[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
        labels[tuple(vox.T)] = 1 + h * half + d.argmin(axis=1)
    return labels


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _sessions(spec: SizeSpec, subject_index: int) -> dict[str, str]:
    """HDF5 key per run; session numbers are offset by subject so prefixes differ across subjects."""
    keys = {run: layout.h5_key(run, 1 + subject_index + i // 4) for i, run in enumerate(spec.friends_runs)}
    keys |= {run: layout.h5_key(run, 1 + subject_index + i) for i, run in enumerate(spec.movie_runs)}
    return keys


def _write_all(root: Path, size: str, seed: int) -> StudyInfo:
    spec = size_spec(size)
    model = _make_model(spec, seed)
    names, networks, hemispheres = _parcel_table()
    root.mkdir(parents=True, exist_ok=True)
    gt_dir = root / "ground_truth"
    gt_dir.mkdir(exist_ok=True)

    # Stimuli: lengths, latents, transcripts, features, stimulus-level truth.
    lo, hi = spec.n_trs_range
    n_trs = {s: int(_rng(seed, "length", size, s).integers(lo, hi + 1)) for s in spec.stimuli}
    stimuli = {s: _make_stimulus(s, n_trs[s], seed, model) for s in spec.stimuli}
    infos = _backbone_info(spec)
    for backbone, info in infos.items():
        folder = layout.features_dir(root, backbone)
        for modality in info["modalities"]:
            (folder / modality).mkdir(parents=True, exist_ok=True)
        write_json(folder / "backbone.json", info)

    def write_inputs(s: str, stim, transcript: bool = True) -> None:
        """What the release gives for a stimulus: its transcript (unless silent) and every backbone's features."""
        if transcript:
            path = layout.transcript_path(root, s)
            path.parent.mkdir(parents=True, exist_ok=True)
            _transcript(stim).to_csv(path, sep="\t", index=False)
        for backbone, mods in _backbone_features(stim, model, spec, seed).items():
            for modality, array in mods.items():
                np.save(layout.feature_path(root, backbone, modality, s), array)

    with h5py.File(gt_dir / "stimuli.h5", "w") as f:
        for s, stim in stimuli.items():
            write_inputs(s, stim)
            f.create_dataset(f"content_frame/{s}", data=_frame_content(stim).astype(np.int8))
            f.create_dataset(
                f"latent_frame/{s}", data=_frames(stim.latent_fine, stim.n_frames).astype(np.float32)
            )
    # Held-out stimuli, after the others and from their own random streams (so the rest is unchanged):
    # features, transcripts and target sample numbers in the study, fMRI only as hidden truth below.
    heldout = {s: int(_rng(seed, "length", size, s).integers(lo, hi + 1)) for s in spec.heldout_runs}
    heldout_stimuli = {s: _make_stimulus(s, heldout[s], seed, model) for s in heldout}
    for s, stim in heldout_stimuli.items():
        write_inputs(s, stim, transcript=layout.movie_of(s) not in layout.SILENT_MOVIES)
    target_sets = {
        t: {s: n for s, n in heldout.items() if layout.target_set_of(s) == t} for t in layout.TARGET_SETS
    }

    # Subjects: clean responses, noise, fMRI files, atlas, subject-level truth.
    atlas = _atlas_image(_atlas_labels(seed))
    runs_of, keys_of = {}, {}
    for i, subject in enumerate(layout.SUBJECTS):
        params = _subject_params(subject, seed)
        missing = set(spec.missing_runs.get(subject, ()))
        runs = tuple(r for r in spec.runs if r not in missing)
        keys = {r: k for r, k in _sessions(spec, i).items() if r in runs}
        truth = {
            s: _clean_response(stimuli[s], params, model)
            for s in dict.fromkeys(map(layout.stimulus_of, runs))
        }
        clean_all = np.concatenate([truth[layout.stimulus_of(r)]["clean"] for r in runs])  # (sum T, V)
        ceiling = params["target_ceiling"]
        noise_sd = clean_all.std(axis=0) * np.sqrt(1.0 / ceiling**2 - 1.0)  # (V,)
        measured = {}
        for r in runs:
            noise = _ar1_noise(_rng(seed, "noise", subject, r), n_trs[layout.stimulus_of(r)], params["ar1"])
            measured[r] = (truth[layout.stimulus_of(r)]["clean"] + noise_sd * noise).astype(np.float32)
        achieved = _pearson_columns(clean_all, np.concatenate([measured[r] for r in runs]).astype(np.float64))

        for study in layout.STUDIES:
            path = layout.fmri_path(root, subject, study)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                for r in runs:
                    if layout.study_of(r) == study:
                        f.create_dataset(keys[r], data=measured[r])
        apath = layout.atlas_path(root, subject)
        apath.parent.mkdir(parents=True, exist_ok=True)
        atlas.to_filename(apath)

        with h5py.File(gt_dir / f"{subject}.h5", "w") as f:
            for r in runs:
                t = truth[layout.stimulus_of(r)]
                f.create_dataset(f"clean/{r}", data=t["clean"].astype(np.float32))
                f.create_dataset(f"content_tr/{r}", data=t["content_tr"].astype(np.int8))
                f.create_dataset(
                    f"content_frame/{r}", data=_frame_content(stimuli[layout.stimulus_of(r)]).astype(np.int8)
                )
                f.create_dataset(f"gates_tr/{r}", data=t["gates_tr"].astype(np.float32))
            f.create_dataset("mode_bias", data=params["mode_bias"])
            f.create_dataset("gains", data=params["gains"])
            f.create_dataset("noise_ceiling", data=achieved)
            f.create_dataset("target_ceiling", data=ceiling)
            f.create_dataset("noise_sd", data=noise_sd)
            f.create_dataset("ar1", data=params["ar1"])
        runs_of[subject], keys_of[subject] = runs, keys

        # Held-out stimuli: target sample numbers in the study, fMRI (same noise level) as hidden truth.
        for target_set, counts in target_sets.items():
            if counts:
                tpath = layout.target_samples_path(root, subject, target_set)
                tpath.parent.mkdir(parents=True, exist_ok=True)
                np.save(tpath, dict(counts), allow_pickle=True)
        hidden: dict[str, dict[str, np.ndarray]] = {}
        for j, r in enumerate(heldout_stimuli):
            clean = _clean_response(heldout_stimuli[r], params, model)["clean"]
            noise = _ar1_noise(_rng(seed, "noise", subject, r), heldout[r], params["ar1"])
            key = layout.h5_key(r, 101 + i + j // 4)
            hidden.setdefault(layout.study_of(r), {})[key] = (clean + noise_sd * noise).astype(np.float32)
        for study, datasets in hidden.items():
            path = layout.fmri_path(heldout_fmri_root(root), subject, study)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                for key, x in datasets.items():
                    f.create_dataset(key, data=x)

    np.savez(
        gt_dir / "model.npz",
        mode_maps=model["mode_maps"].astype(np.float32),
        content_mode_logits=CONTENT_MODE_LOGITS,
        network_loading=NETWORK_LOADING,
        block_amplitude=BLOCK_AMPLITUDE,
        hrf=_hrf(),
    )
    write_json(
        gt_dir / "truth.json",
        {
            "content_types": list(CONTENT_TYPES),
            "n_modes": N_MODES,
            "mode_names": list(MODE_NAMES),
            "networks": list(NETWORKS),
            "parcel_names": names.tolist(),
            "parcel_networks": networks.tolist(),
            "parcel_hemispheres": hemispheres.tolist(),
            "latent_blocks": [{"modality": m, "block": b, "channels": n} for m, b, n in BLOCKS],
            "network_ceiling_target": NETWORK_CEILING,
            "tr_s": TR_S,
            "feature_hz": FEATURE_HZ,
            "fine_hz": FINE_HZ,
            "lag_s": LAG_S,
            "content_tr_convention": "content at stimulus time (t + 0.5) * tr_s - lag_s (clipped to 0)",
            "gates_tr_convention": "true gate averaged over [t * tr_s - lag_s, (t + 1) * tr_s - lag_s)",
            "noise_ceiling_convention": "Pearson r of clean vs file signal over the subject's runs concatenated",
        },
    )
    return StudyInfo(
        root=root,
        size=size,
        seed=seed,
        subjects=tuple(layout.SUBJECTS),
        runs=runs_of,
        backbones=BACKBONES,
        missing_runs={s: tuple(r) for s, r in spec.missing_runs.items()},
        ground_truth_dir=gt_dir,
        n_trs={r: n_trs[layout.stimulus_of(r)] for r in spec.runs},
        h5_keys=keys_of,
        heldout_n_trs=heldout,
    )


def _atlas_image(labels: np.ndarray):
    """The atlas volume as a NIfTI image: 8 mm voxels, RAS, centred on the origin."""
    import nibabel as nib

    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = -8.0 * (np.array(labels.shape) - 1) / 2.0
    img = nib.Nifti1Image(labels.astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    return img


_OUR_PATHS = ("fmri", "stimuli", "ground_truth") + tuple(f"features/{b}" for b in BACKBONES)


def _remove_ours(root: Path) -> None:
    for rel in _OUR_PATHS:
        shutil.rmtree(root / rel, ignore_errors=True)
    study_json_path(root).unlink(missing_ok=True)


def make_study(
    root: str | Path,
    size: Size = "smoke",
    seed: int = 0,
    overwrite: bool = False,
) -> StudyInfo:
    """Write the synthetic study (Algonauts 2025 layout plus ground truth) under ``root``.

    Parameters
    ----------
    root : str or Path
        Study folder. Created if absent; an empty folder is fine.
    size : {"smoke", "demo", "full"}
        ``smoke``: 8 Friends half-episodes + bourne01 + life01 seen twice, ~100 TRs per run, 1000
        parcels, small features (seconds). ``demo``: 20 half-episodes + 4 film runs, ~190 TRs per run
        (under a minute). ``full``: 48 half-episodes + 8 film runs, ~400 TRs per run. Held-out stimuli
        without fMRI in the study: smoke 2 season-7 half-episodes + 3 OOD parts, demo 4 + 6, full 8 + all 12.
    seed : int
        Non-negative seed; the study is a deterministic function of ``(size, seed)``.
    overwrite : bool
        Replace a synthetic study of another size or seed at ``root``.

    Returns
    -------
    StudyInfo
        Subjects, runs per subject, run lengths, HDF5 keys, backbones, missing runs, truth folder.

    Notes
    -----
    Idempotent: when ``<root>/study.json`` describes a complete study of the same size and seed, it
    is returned without rewriting anything. A new study is built in a sibling temporary folder and
    renamed into place, so concurrent callers never see half a study.
    """
    size_spec(size)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    root = Path(root)
    meta_path = study_json_path(root)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("generator") != GENERATOR:
            raise ValueError(
                f"{meta_path} was not written by {GENERATOR}; choose another root for the synthetic study"
            )
        if meta.get("complete") and meta.get("format_version") == FORMAT_VERSION:
            if meta["size"] == size and meta["seed"] == seed:
                return StudyInfo.from_json(root, meta)
            if not overwrite:
                raise ValueError(
                    f"{root} holds a synthetic study of size={meta['size']!r}, seed={meta['seed']}, not "
                    f"size={size!r}, seed={seed}: pass overwrite=True to replace it, or choose another root"
                )
        _remove_ours(root)
    elif root.exists() and any((root / p).exists() for p in ("fmri", "stimuli", "features", "ground_truth")):
        raise ValueError(
            f"{root} already holds data but no {meta_path.name}: it is not a synthetic study. "
            "Choose an empty or new folder for make_study."
        )

    start = time.perf_counter()
    fresh = not root.exists() or (root.is_dir() and not any(root.iterdir()))
    build = root.parent / f".{root.name}.tmp-{os.getpid()}" if fresh else root
    if fresh:
        shutil.rmtree(build, ignore_errors=True)
    else:  # in place: mark the study incomplete until the end, so a crash is rebuilt next time
        write_json(meta_path, {"generator": GENERATOR, "format_version": FORMAT_VERSION, "complete": False})
    # Many small matrix products: threaded BLAS only spins (and slows 5x on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        info = _write_all(build, size, seed)
    meta = {"generator": GENERATOR, "format_version": FORMAT_VERSION, "complete": True, **info.to_json()}
    meta["write_seconds"] = round(time.perf_counter() - start, 3)
    write_json(study_json_path(build), meta)
    if fresh:
        try:
            if root.exists():
                root.rmdir()  # empty: make room for the rename
            os.rename(build, root)
        except OSError:  # another process finished first: keep its study if it is the same one
            shutil.rmtree(build, ignore_errors=True)
            other = read_study_info(root)
            if (other.size, other.seed) != (size, seed):
                raise
            return other
    logger.info("wrote synthetic %s study (seed %d) to %s in %.1f s", size, seed, root, meta["write_seconds"])
    return StudyInfo.from_json(root, meta)


# ----------------------------------------------------------------------------------------------
# Reading the truth back
# ----------------------------------------------------------------------------------------------


def load_ground_truth(
    root: str | Path, subjects: tuple[str, ...] | list[str] | None = None
) -> dict[str, Any]:
    """The truth behind a synthetic study.

    Parameters
    ----------
    root : str or Path
        Root of a study written by :func:`make_study`.
    subjects : sequence of str, optional
        Subjects to read (default all); the clean signals of a ``full`` study are large.

    Returns
    -------
    truth : dict
        ``content_types``, ``mode_names``, ``n_modes``, ``networks`` / ``names`` / ``hemispheres``
        ``(V,)`` str arrays, ``mode_maps`` ``(E, J, V)``, ``content_mode_logits`` ``(C, E)``, ``tr_s``,
        ``lag_s``, ``info`` (all of truth.json), ``stimuli`` = {``content_frame``: {stimulus: (T_f,)},
        ``latent_frame``: {stimulus: (T_f, J)}} and ``subjects`` = {subject: {``clean``: {run: (T, V)},
        ``content_tr``: {run: (T,)}, ``content_frame``: {run: (T_f,)}, ``gates_tr``: {run: (T, E)},
        ``mode_bias`` (E,), ``gains`` (V,), ``noise_ceiling`` (V,), ``target_ceiling`` (V,),
        ``noise_sd`` (V,), ``ar1`` (V,)}}.
    """
    gt_dir = Path(root) / "ground_truth"
    info_path = gt_dir / "truth.json"
    if not info_path.exists():
        raise FileNotFoundError(
            f"{info_path} does not exist: {root} is not a synthetic study (real data has no ground truth); "
            "build one with mindlib.synthetic.make_study(root)"
        )
    info = json.loads(info_path.read_text())
    model = np.load(gt_dir / "model.npz")
    out: dict[str, Any] = {
        "content_types": tuple(info["content_types"]),
        "mode_names": tuple(info["mode_names"]),
        "n_modes": int(info["n_modes"]),
        "networks": np.array(info["parcel_networks"]),
        "names": np.array(info["parcel_names"]),
        "hemispheres": np.array(info["parcel_hemispheres"]),
        "mode_maps": model["mode_maps"],
        "content_mode_logits": model["content_mode_logits"],
        "tr_s": float(info["tr_s"]),
        "lag_s": float(info["lag_s"]),
        "info": info,
    }
    with h5py.File(gt_dir / "stimuli.h5", "r") as f:
        out["stimuli"] = {g: {k: f[g][k][()] for k in f[g]} for g in ("content_frame", "latent_frame")}
    wanted = layout.SUBJECTS if subjects is None else tuple(subjects)
    out["subjects"] = {}
    for subject in wanted:
        path = gt_dir / f"{layout.check_subject(subject)}.h5"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: no ground truth for {subject} in {root}")
        with h5py.File(path, "r") as f:
            out["subjects"][subject] = {
                **{
                    g: {r: f[g][r][()] for r in f[g]}
                    for g in ("clean", "content_tr", "content_frame", "gates_tr")
                },
                **{
                    k: f[k][()]
                    for k in ("mode_bias", "gains", "noise_ceiling", "target_ceiling", "noise_sd", "ar1")
                },
            }
    return out
