"""Writing the feature store: extractors run over stimuli, arrays checked and staged (docs/method.md §3).

The store AFIRE reads (:class:`mindlib.data.FeatureStore`)::

    <root>/features/<backbone>/backbone.json
    <root>/features/<backbone>/<modality>/<stimulus>.npy      # (T_f, L, D)

:func:`extract_to_store` runs :class:`~mindlib.features.extractor.Extractor` instances over stimuli and
writes it; the adapters (:mod:`mindlib.features.adapters`) and the transcript encoder
(:mod:`mindlib.features.transcripts`) write through the same checks (:func:`check_dtype`,
:func:`checked_cast`, :func:`create_store`). Every writer takes the options of :class:`StoreOptions`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np

from mindlib.align import FEATURE_HZ
from mindlib.features.extractor import Extractor, get_extractor
from mindlib.features.stimulus import Stimulus
from mindlib.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from mindlib.data import FeatureStore

__all__ = [
    "StoreOptions",
    "check_dtype",
    "checked_cast",
    "check_fusion",
    "create_store",
    "extractor_settings",
    "extract_to_store",
]

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class StoreOptions(TypedDict, total=False):
    """The keyword options every writer of the store takes, declared once.

    :func:`extract_to_store` and :func:`~mindlib.features.adapters.import_features` take them as
    parameters (the defaults below); the adapters and
    :func:`~mindlib.features.transcripts.text_features_from_transcripts` pass them on as ``**options``.

    Attributes
    ----------
    feature_hz : float
        Frame rate of the grid (default ``mindlib.align.FEATURE_HZ``, 2 Hz).
    dtype : {"float32", "float16"}
        Storage type (default ``"float32"``; float16 halves the disk).
    overwrite : bool
        Replace an existing store completely (default False).
    progress : bool
        Show a progress bar (default True).
    features_root : path or None
        Features folder outside the study (default None; :func:`mindlib.data.features_base`).
    """

    feature_hz: float
    dtype: str
    overwrite: bool
    progress: bool
    features_root: str | Path | None


def check_dtype(dtype: str) -> np.dtype:
    """The storage dtype ``"float32"`` or ``"float16"`` as a numpy dtype; anything else is a ValueError."""
    if str(dtype) not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    return np.dtype(str(dtype))


def checked_cast(array: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``array`` cast to the storage ``dtype``, after checking it is finite and fits (float16 overflows).

    ``where`` (a file, an extractor on a stimulus) starts the error message.
    """
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: features contain NaN or infinite values")
    if dtype == np.float16 and array.size and float(np.abs(array).max()) > _FLOAT16_MAX:
        raise ValueError(
            f"{where}: values up to {float(np.abs(array).max()):.3g} overflow float16; use dtype='float32'"
        )
    return array.astype(dtype, copy=False)


def check_fusion(fusion: str) -> str:
    """The backbone's fusion label (``"per-modality"``, ``"joint-space"``, ``"fused"``), non-empty."""
    if not isinstance(fusion, str) or not fusion:
        raise ValueError(f"fusion must be a non-empty string (e.g. 'per-modality', 'fused'), got {fusion!r}")
    return fusion


def create_store(
    root: str | Path,
    backbone: str,
    feature_hz: float,
    fusion: str,
    dims: Mapping[str, tuple[int, int]],
    overwrite: bool,
    settings: Mapping | None = None,
    features_root: str | Path | None = None,
) -> FeatureStore:
    """A :class:`mindlib.data.FeatureStore` whose modality ``m`` holds arrays ``(T_f, *dims[m])``.

    Created staged (:meth:`mindlib.data.FeatureStore.create`): with ``overwrite`` the new store takes
    the old one's place only at ``commit()``, so an interrupted writer leaves the old store whole.
    ``settings`` are recorded in ``backbone.json``.
    """
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
        :attr:`~mindlib.features.stimulus.Stimulus.sources` files with their sizes and modification times.
    """
    check_fusion(fusion)
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
    np_dtype = check_dtype(dtype)
    exs = [get_extractor(e) if isinstance(e, str) else e for e in extractors]
    if not exs:
        raise ValueError("extract_to_store needs at least one extractor")
    modalities = [ex.modality for ex in exs]
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"two extractors write the same modality: {modalities}; give each its own modality")

    settings = {"made_by": made_by, "extractors": [extractor_settings(ex) for ex in exs], "dtype": str(dtype)}
    create = functools.partial(create_store, settings=settings, features_root=features_root)
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
            arr = checked_cast(arr, np_dtype, where)
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
