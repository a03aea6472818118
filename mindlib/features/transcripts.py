"""Transcripts to text features: a study's transcript TSVs become a ``"minilm"`` text backbone.

:func:`text_features_from_transcripts` reads each transcript (one row per TR, docs/method.md §1) as a
words-only :class:`~mindlib.features.stimulus.Stimulus` and writes its
:class:`~mindlib.features.text.TextEncoderExtractor` features into the store (notebook 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from mindlib import layout
from mindlib.align import TR_S
from mindlib.features.stimulus import Stimulus
from mindlib.features.store import StoreOptions, extract_to_store
from mindlib.features.text import TextEncoderExtractor

if TYPE_CHECKING:  # pragma: no cover
    from mindlib.data import FeatureStore

__all__ = ["text_features_from_transcripts"]


def text_features_from_transcripts(
    root: str | Path,
    backbone: str = "minilm",
    stimuli: Sequence[str] | None = None,
    layers: Sequence[int] = (2, 4, 6),
    context_words: int = 32,
    tr_s: float = TR_S,
    **options: Unpack[StoreOptions],
) -> FeatureStore:
    """Text features of a study's transcripts, written as a new backbone with one modality ``"text"``.

    Each transcript TSV (``layout.transcript_path``; one row per TR) becomes a words-only
    :class:`~mindlib.features.stimulus.Stimulus` lasting ``n_rows * tr_s`` seconds, encoded by
    :class:`~mindlib.features.text.TextEncoderExtractor`.

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
        As in :class:`~mindlib.features.text.TextEncoderExtractor`.
    tr_s : float
        Repetition time in seconds: the duration of one transcript row.
    **options
        ``feature_hz``, ``dtype``, ``overwrite``, ``progress``, ``features_root``
        (:class:`~mindlib.features.store.StoreOptions`), as in
        :func:`~mindlib.features.store.extract_to_store`. ``overwrite=True`` replaces the store
        completely, so a transcript removed since an earlier run leaves no stale array behind.

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
        made_by="mindlib.features.text_features_from_transcripts",
        **options,
    )


class _TranscriptStimuli(Sequence):
    """Words-only stimuli of transcript files, each read only when its turn comes."""

    def __init__(self, paths: Sequence[Path], tr_s: float) -> None:
        self.paths, self.tr_s = list(paths), tr_s

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Stimulus:  # type: ignore[override]
        return Stimulus.from_transcript(self.paths[i], tr_s=self.tr_s)
