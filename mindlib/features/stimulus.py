"""The stimulus as an extractor sees it: a movie's frames, its sound and its timed words.

A :class:`Stimulus` is one Friends half-episode or film part under its feature-store key (``"s01e02a"``,
``"bourne01"``), with a duration in seconds and whichever of its inputs are at hand. Its timestamps are
explicit: video frame ``i`` is shown at ``i / fps`` s, audio sample ``i`` is at ``i / sample_rate`` s and
each word has an onset and a duration in seconds from the stimulus start (docs/method.md §2).
:func:`as_float` and :func:`mono` convert its frames and sound to float32 for the extractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mindlib.align import FEATURE_HZ, TR_S
from mindlib.features.timing import n_bins

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Stimulus", "stimulus_from_transcript_name", "as_float", "mono"]


@dataclass(frozen=True, eq=False)
class Stimulus:
    """One stimulus (a Friends half-episode or a film part) as an extractor sees it.

    Parameters
    ----------
    name : str
        Stimulus key of the feature store (a run without repeat suffix, e.g. ``"s01e02a"``).
    duration_s : float
        Duration in seconds; sets the number of 2 Hz frames (:meth:`n_frames`).
    video : ndarray of shape (N, H, W, 3), optional
        Frames, uint8 (0-255) or float (0-1). Frame ``i`` is shown at ``i / fps`` seconds.
    fps : float, optional
        Video frame rate (Hz); required with ``video``.
    audio : ndarray of shape (n_samples,) or (n_samples, channels), optional
        Sound, float or integer PCM (integers are scaled to [-1, 1]). Sample ``i`` is at
        ``i / sample_rate`` seconds.
    sample_rate : float, optional
        Audio sample rate (Hz); required with ``audio``.
    words : pandas.DataFrame, optional
        Timed words with columns ``word``, ``onset_s``, ``duration_s`` (seconds from the stimulus
        start), as returned by :func:`mindlib.data.transcript_words`.
    sources : tuple of str, optional
        Files the stimulus was read from (a transcript, a movie file);
        :func:`~mindlib.features.store.extract_to_store` records their sizes and modification times in
        the store so stale features are noticed.
    """

    name: str
    duration_s: float
    video: np.ndarray | None = None
    fps: float | None = None
    audio: np.ndarray | None = None
    sample_rate: float | None = None
    words: pd.DataFrame | None = None
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Stimulus name must be a non-empty string, got {self.name!r}")
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(
                f"stimulus {self.name}: duration_s must be a positive number, got {self.duration_s}"
            )
        if self.video is not None:
            if self.fps is None or not self.fps > 0:
                raise ValueError(f"stimulus {self.name}: video needs fps > 0, got fps={self.fps}")
            if self.video.ndim != 4 or self.video.shape[-1] != 3:
                raise ValueError(
                    f"stimulus {self.name}: video must be (N, H, W, 3) RGB frames, got shape {self.video.shape}"
                )
        if self.audio is not None:
            if self.sample_rate is None or not self.sample_rate > 0:
                raise ValueError(
                    f"stimulus {self.name}: audio needs sample_rate > 0, got sample_rate={self.sample_rate}"
                )
            if self.audio.ndim not in (1, 2):
                raise ValueError(
                    f"stimulus {self.name}: audio must be (n_samples,) or (n_samples, channels), "
                    f"got shape {self.audio.shape}"
                )
        if self.words is not None:
            missing = {"word", "onset_s", "duration_s"} - set(self.words.columns)
            if missing:
                raise ValueError(
                    f"stimulus {self.name}: words lacks columns {sorted(missing)}; expected word, onset_s, "
                    "duration_s as returned by mindlib.data.transcript_words"
                )

    def n_frames(self, feature_hz: float = FEATURE_HZ) -> int:
        """Number of feature frames ``T_f = ceil(duration_s * feature_hz)`` covering the stimulus."""
        return n_bins(self.duration_s, feature_hz)

    @classmethod
    def from_transcript(
        cls, path: str | Path, name: str | None = None, duration_s: float | None = None, tr_s: float = TR_S
    ) -> Stimulus:
        """A words-only stimulus from an Algonauts transcript TSV.

        Parameters
        ----------
        path : path
            Transcript TSV (one row per ``tr_s`` chunk; see docs/method.md §1).
        name : str, optional
            Stimulus key; default from the file name (``friends_s01e01a.tsv`` -> ``"s01e01a"``).
        duration_s : float, optional
            Default: number of rows times ``tr_s`` (the transcript has one row per TR).
        """
        from mindlib.data import read_transcript, transcript_words

        path = Path(path)
        if duration_s is None:
            duration_s = len(read_transcript(path)) * tr_s
        return cls(
            name=name or stimulus_from_transcript_name(path),
            duration_s=duration_s,
            words=transcript_words(path),
            sources=(str(path),),
        )


def stimulus_from_transcript_name(path: str | Path) -> str:
    """Stimulus key of a transcript file.

    ``friends_s01e01a.tsv`` -> ``"s01e01a"``; ``movie10_bourne01.tsv`` -> ``"bourne01"``.
    """
    stem = Path(path).stem
    return stem.split("_", 1)[1] if "_" in stem else stem


def as_float(x: np.ndarray) -> np.ndarray:
    """uint8 -> [0, 1], other integers -> [-1, 1], floats unchanged; float32."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    return x.astype(np.float32, copy=False)


def mono(audio: np.ndarray) -> np.ndarray:
    """(n_samples,) or (n_samples, channels) -> (n_samples,) float32, channels averaged, integers scaled."""
    audio = np.asarray(audio)
    scale = float(np.iinfo(audio.dtype).max) if np.issubdtype(audio.dtype, np.integer) else 1.0
    x = audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio.astype(np.float32, copy=False)
    return x / scale if scale != 1.0 else x
