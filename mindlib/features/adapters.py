"""Adapters for precomputed features: TRIBE, ImageBind and Qwen2.5-Omni arrays into the store.

The published pipelines write one array per stimulus and modality, in a few layouts and file formats
(:data:`ARRAY_EXTENSIONS`, :func:`load_array`). :func:`import_features` finds them, checks every
array's rank and trailing ``(L, D)`` and every file's stimulus name (:func:`check_stimulus_names`), and
copies them into the store. :func:`import_tribe`, :func:`import_imagebind` and :func:`import_qwen` are
that one path with each pipeline's shapes and fusion filled in (docs/method.md §3, the table of the
three backbones).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Unpack

import numpy as np

from mindlib import layout
from mindlib.align import FEATURE_HZ
from mindlib.features.store import StoreOptions, check_dtype, check_fusion, checked_cast, create_store
from mindlib.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from mindlib.data import FeatureStore

__all__ = [
    "TRIBE_DIMS",
    "IMAGEBIND_DIM",
    "IMAGEBIND_MODALITIES",
    "QWEN_DIM",
    "ARRAY_EXTENSIONS",
    "load_array",
    "import_features",
    "check_stimulus_names",
    "import_tribe",
    "import_imagebind",
    "import_qwen",
]

# Trailing (L, D) of each modality in the published pipelines (docs/method.md §3).
TRIBE_DIMS: dict[str, tuple[int, int]] = {"video": (40, 1408), "text": (28, 3072), "audio": (24, 1024)}
IMAGEBIND_DIM = 1024  # ImageBind joint embedding space (per modality)
IMAGEBIND_MODALITIES = ("video", "audio", "text")
QWEN_DIM = 2048  # Qwen2.5-Omni-3B fused hidden size
ARRAY_EXTENSIONS = (".npy", ".npz", ".pt", ".pth", ".h5", ".hdf5")


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

    Accepted layouts under ``src`` (``ext`` one of npy, npz, pt, pth, h5, hdf5; see
    :func:`~mindlib.features.adapters.load_array`)::

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
    fusion
        As in :func:`~mindlib.features.store.extract_to_store`.
    bare_modality : str, optional
        Modality of files named ``<stimulus>.<ext>`` without a modality.
    feature_hz, dtype, overwrite, progress, features_root
        The store options (:class:`~mindlib.features.store.StoreOptions`), as in
        :func:`~mindlib.features.store.extract_to_store`.
    made_by : str
        The function recorded in ``backbone.json`` ``settings["made_by"]``.

    Returns
    -------
    FeatureStore
        ``backbone.json`` records the import settings and each array's source file (size and time).

    Raises
    ------
    ValueError
        For a stimulus name that is not a store key
        (:func:`~mindlib.features.adapters.check_stimulus_names`): a movie file's name
        (``friends_s01e01a``) or a repeat (``life01_run-1``; repeats share one stimulus's features).
    """
    check_fusion(fusion)
    if rank not in (2, 3, "any"):
        raise ValueError(f"rank must be 2, 3 or 'any', got {rank!r}")
    np_dtype = check_dtype(dtype)
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
        return checked_cast(np.asarray(arr, dtype=np.float32), np_dtype, str(path))

    # One file per modality fixes (L, D) for backbone.json; later files must agree.
    first: dict[str, tuple[str, np.ndarray]] = {}
    for (stimulus, modality), path in files.items():
        if modality not in first:
            first[modality] = (stimulus, load_checked(modality, path))
    dims = {m: (int(a.shape[1]), int(a.shape[2])) for m, (_, a) in first.items()}
    store = create_store(root, backbone, feature_hz, fusion, dims, overwrite, settings, features_root)
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
    **options: Unpack[StoreOptions],
) -> FeatureStore:
    """TRIBE's per-modality, per-layer features ``(T_f, L, D)`` into the store (docs/method.md §3).

    Video V-JEPA2 ``(T_f, 40, 1408)``, text Llama-3.2-3B ``(T_f, 28, 3072)``, audio w2v-BERT
    ``(T_f, 24, 1024)`` (:data:`~mindlib.features.adapters.TRIBE_DIMS`), in the layouts of
    :func:`import_features`; the store records ``fusion="per-modality"``. Wrong rank or shape ->
    ValueError naming the file and the expected shape.

    Parameters
    ----------
    src, root, backbone, modalities
        As in :func:`import_features`.
    expected_dims : dict modality -> (L, D), optional
        None checks only the rank and the consistency of ``(L, D)`` across stimuli.
    **options
        ``feature_hz``, ``dtype``, ``overwrite``, ``progress``, ``features_root``
        (:class:`~mindlib.features.store.StoreOptions`).
    """
    return import_features(
        src,
        root,
        backbone,
        modalities,
        expected_dims,
        rank=3,
        fusion="per-modality",
        made_by="mindlib.features.import_tribe",
        **options,
    )


def import_imagebind(
    src: str | Path,
    root: str | Path,
    backbone: str = "imagebind",
    modalities: Sequence[str] = IMAGEBIND_MODALITIES,
    expected_dim: int | None = IMAGEBIND_DIM,
    **options: Unpack[StoreOptions],
) -> FeatureStore:
    """ImageBind embeddings ``(T_f, 1024)`` per modality into the store as ``(T_f, 1, 1024)``.

    ``(T_f, 1, D)`` files are accepted too (docs/method.md §3); layouts as in :func:`import_features`.
    The store records ``fusion="joint-space"``.

    Parameters
    ----------
    src, root, backbone, modalities
        As in :func:`import_features`.
    expected_dim : int, optional
        Embedding size ``D`` (:data:`~mindlib.features.adapters.IMAGEBIND_DIM`); None checks only
        rank and consistency.
    **options
        ``feature_hz``, ``dtype``, ``overwrite``, ``progress``, ``features_root``
        (:class:`~mindlib.features.store.StoreOptions`).
    """
    dims = None if expected_dim is None else {m: (1, int(expected_dim)) for m in modalities}
    return import_features(
        src,
        root,
        backbone,
        modalities,
        dims,
        rank=2,
        fusion="joint-space",
        made_by="mindlib.features.import_imagebind",
        **options,
    )


def import_qwen(
    src: str | Path,
    root: str | Path,
    backbone: str = "qwen",
    expected_dim: int | None = QWEN_DIM,
    **options: Unpack[StoreOptions],
) -> FeatureStore:
    """Qwen2.5-Omni's single fused stream ``(T_f, 2048)`` into modality ``"fused"`` as ``(T_f, 1, 2048)``.

    Files ``<stimulus>.<ext>``, ``<stimulus>_fused.<ext>`` or ``fused/<stimulus>.<ext>``; the store
    records ``fusion="fused"`` (docs/method.md §3).

    Parameters
    ----------
    src, root, backbone
        As in :func:`import_features`.
    expected_dim : int, optional
        Hidden size ``D`` (:data:`~mindlib.features.adapters.QWEN_DIM`); None checks only rank and
        consistency.
    **options
        ``feature_hz``, ``dtype``, ``overwrite``, ``progress``, ``features_root``
        (:class:`~mindlib.features.store.StoreOptions`).
    """
    dims = None if expected_dim is None else {"fused": (1, int(expected_dim))}
    return import_features(
        src,
        root,
        backbone,
        ("fused",),
        dims,
        rank=2,
        fusion="fused",
        bare_modality="fused",
        made_by="mindlib.features.import_qwen",
        **options,
    )
