"""Bring your own backbone: extractors, the feature-store writer, adapters, transcripts.

AFIRE is backbone-agnostic: it reads any per-modality array ``(T_f, L, D)`` on the 2 Hz grid of
docs/method.md §2 (frame ``k`` covers ``[k / feature_hz, (k + 1) / feature_hz)``) from the feature store
of docs/method.md §3. This subpackage fills that store in three ways: **extractors** turn a stimulus into
features (a new backbone is one :class:`~mindlib.features.extractor.Extractor` subclass plus one
``@register_extractor`` line), **adapters** copy features precomputed by the field's pipelines (TRIBE,
ImageBind, Qwen2.5-Omni), and **transcripts** become a text backbone (notebook 11).

Submodules::

    stimulus      the Stimulus an extractor reads: frames, sound, timed words, each with its timestamps
    timing        the 2 Hz grid: frame counts, samples to frames, words to frames and their pooling
    extractor     the Extractor interface and its registry (register_extractor, get_extractor)
    text          "minilm-text": contextual word embeddings from the offline all-MiniLM-L6-v2
    lowlevel      "audio-envelope" and "video-lowlevel": weight-free acoustic and visual descriptors
    torch_module  "torch-module": any loaded torch model that returns hidden states
    store         the store writer: extract_to_store, its checks and its options (StoreOptions)
    adapters      TRIBE, ImageBind and Qwen arrays into the store (import_tribe, import_imagebind, ...)
    transcripts   a study's transcripts to a text backbone (text_features_from_transcripts)

The names below are the public surface; ``from mindlib import features; features.import_tribe(...)``.
Heavy libraries (``transformers``, ``torch``, ``scipy.signal``, ``h5py``) are imported only inside the
functions that need them.
"""

from mindlib.features.adapters import import_features, import_imagebind, import_qwen, import_tribe
from mindlib.features.extractor import Extractor, available_extractors, get_extractor, register_extractor
from mindlib.features.lowlevel import AudioEnvelopeExtractor, VideoLowLevelExtractor
from mindlib.features.stimulus import Stimulus, stimulus_from_transcript_name
from mindlib.features.store import extract_to_store
from mindlib.features.text import TextEncoderExtractor
from mindlib.features.timing import pool_words, word_bins
from mindlib.features.torch_module import TorchModuleExtractor
from mindlib.features.transcripts import text_features_from_transcripts

__all__ = [
    "Stimulus",
    "stimulus_from_transcript_name",
    "word_bins",
    "pool_words",
    "Extractor",
    "register_extractor",
    "available_extractors",
    "get_extractor",
    "TextEncoderExtractor",
    "AudioEnvelopeExtractor",
    "VideoLowLevelExtractor",
    "TorchModuleExtractor",
    "extract_to_store",
    "import_features",
    "import_tribe",
    "import_imagebind",
    "import_qwen",
    "text_features_from_transcripts",
]
