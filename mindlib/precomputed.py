"""Import public precomputed features (one HDF5 per stimulus, once per TR) into the feature store.

Several Algonauts 2025 teams published their features; they are where a user without GPUs for feature
extraction can start (docs/method.md §3). The layout this importer expects, under ``source``::

    source/friends/s1/friends_s01e01a.h5        # a Friends half-episode
    source/friends/s7/friends_s07e01a.h5        # the held-out season: features, no fMRI
    source/movie10/bourne/movie10_bourne01.h5   # a Movie10 film part (repeats share one file: life01)
    source/ood/chaplin/ood_chaplin1.h5          # an out-of-distribution film part

(:func:`mindlib.layout.stimulus_relpath`). Each file holds one dataset per layer, named as the team
named it (``"language_model.layers.20"``, ``"visual/block_12"``: a name may include groups), of shape
``(T, D)``: one row per fMRI TR of that stimulus.

What is written
---------------
A feature store ``<root>/features/<backbone>/`` (:class:`mindlib.data.FeatureStore`) whose modalities
are the groups of layers chosen by name: ``layers={"text": ["lm.layers.12", "lm.layers.20"]}`` stacks
those two datasets into ``text/<stimulus>.npy`` of shape ``(T, 2, D)``, in the order given (the layer
groups of :func:`mindlib.data.layer_groups` then read it like any store).

TR rate, exactly
----------------
The store records ``feature_hz = 1 / tr_s``: row ``k`` describes the stimulus during TR ``k``,
``[k * tr_s, (k + 1) * tr_s)``. The aligner (:func:`mindlib.align.overlap_matrix`) then gives TR ``t`` at
an integer lag of ``L`` TRs exactly row ``t - L`` with weight 1 (no resampling, no interpolation; checked
in ``tests/test_precomputed.py``). Nothing is converted to 2 Hz.

Lengths
-------
A team's files may be a TR or two longer or shorter than the fMRI (or the target sample number). They
are stored as they are; the aligner reads rows up to the fMRI's last TR and masks (training,
:func:`mindlib.data.load_study`) or predicts as 0 (submissions, :mod:`mindlib.submission`) the TRs past
the features' end. The import report gives every stimulus's row count and, where the study folder has
fMRI or target sample numbers for it, the difference in TRs (``delta_trs``, logged when nonzero). Layers
of one modality must agree in length and width within a file (otherwise an error names the file and
layer).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from mindlib import layout
from mindlib.align import TR_S
from mindlib.data import FeatureStore

logger = logging.getLogger(__name__)

PREFIXES = ("friends", "movie10", "ood")  # top folders (and file-name prefixes) of the layout


def find_files(source: str | Path) -> dict[str, Path]:
    """Every stimulus file under ``source`` in the expected layout: ``{stimulus: path}``, sorted.

    Raises
    ------
    FileNotFoundError
        No ``.h5`` file in the layout under ``source``.
    ValueError
        A file whose name is not ``<study>_<stimulus>.h5`` in its layout folder (it names the path it
        should have), or two files for one stimulus.
    """
    source = Path(source)
    found: dict[str, Path] = {}
    for prefix in PREFIXES:
        for path in sorted((source / prefix).rglob("*.h5")):
            stem = path.stem
            if not stem.startswith(f"{prefix}_"):
                raise ValueError(f"{path}: expected a file named {prefix}_<stimulus>.h5 in {source / prefix}")
            stimulus = stem[len(prefix) + 1 :]
            try:
                expected = source / layout.stimulus_relpath(stimulus, ".h5")
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
            if expected != path:
                raise ValueError(f"{path}: stimulus {stimulus!r} belongs at {expected}")
            if stimulus in found:
                raise ValueError(f"two files for stimulus {stimulus!r}: {found[stimulus]} and {path}")
            found[stimulus] = path
    if not found:
        raise FileNotFoundError(
            f"no precomputed feature files under {source}: expected e.g. "
            f"{source / layout.stimulus_relpath('s01e01a', '.h5')} (see mindlib.precomputed)"
        )
    return dict(sorted(found.items()))


def list_layers(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Dataset names (layers) of one file and their shapes, to choose ``layers`` from."""
    out: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, node: out.__setitem__(name, node.shape) if isinstance(node, h5py.Dataset) else None
        )
    return out


def _read_modality(f: h5py.File, path: Path, modality: str, names: Sequence[str]) -> np.ndarray:
    arrays = []
    for name in names:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            available = sorted(list_layers(path))
            raise KeyError(f"{path}: no layer {name!r} (modality {modality!r}); its layers: {available}")
        x = f[name][()]
        if x.ndim != 2:
            raise ValueError(
                f"{path}: layer {name!r} has shape {x.shape}, expected (T, D) with one row per TR"
            )
        if arrays and x.shape != arrays[0].shape:
            raise ValueError(
                f"{path}: layers of modality {modality!r} disagree: {names[0]!r} is {arrays[0].shape}, {name!r} is "
                f"{x.shape}; import layers of other widths as another modality"
            )
        arrays.append(x)
    x = np.stack(arrays, axis=1)  # (T, L, D)
    return x if x.dtype in (np.float16, np.float32) else x.astype(np.float32)


def _expected_trs(root: Path) -> dict[str, int]:
    """TRs per stimulus the study folder knows, from target sample numbers and fMRI dataset shapes.

    Only shapes are read (no fMRI is loaded); the first subject that has a stimulus gives its length.
    """
    out: dict[str, int] = {}
    for subject in layout.SUBJECTS:
        for target_set in layout.TARGET_SETS:
            p = layout.target_samples_path(root, subject, target_set)
            if p.is_file():
                for episode, n in np.load(p, allow_pickle=True).item().items():
                    out.setdefault(str(episode), int(n))
        for study in layout.FMRI_STUDIES:
            p = layout.fmri_path(root, subject, study)
            if p.is_file():
                with h5py.File(p, "r") as f:
                    for key in f:
                        out.setdefault(layout.stimulus_of(layout.run_name(key)), int(f[key].shape[0]))
    return out


def import_features(
    source: str | Path,
    root: str | Path,
    backbone: str,
    layers: Mapping[str, Sequence[str]],
    tr_s: float = TR_S,
    stimuli: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[FeatureStore, pd.DataFrame]:
    """Write precomputed TR-rate features into ``<root>/features/<backbone>/``.

    Parameters
    ----------
    source : str or Path
        Folder in the layout of the module docstring.
    root : str or Path
        Study folder (the one holding ``fmri/``) whose feature store receives them.
    backbone : str
        Name of the new store.
    layers : mapping of str to sequence of str
        ``{modality: [layer dataset names]}``; layers of one modality must share their width ``D``.
    tr_s : float
        The TR the rows are sampled at; the store records ``feature_hz = 1 / tr_s``.
    stimuli : sequence of str, optional
        Import only these (default every file found; one missing is an error).
    overwrite : bool
        Replace a store of that name that describes other modalities.
    progress : bool
        A tqdm bar over files.

    Returns
    -------
    store : FeatureStore
    report : DataFrame
        One row per stimulus and modality: ``stimulus``, ``modality``, ``n_rows`` (TRs of features),
        ``expected_trs`` (from the study's fMRI or target sample numbers; NaN when unknown) and
        ``delta_trs`` (``n_rows - expected_trs``).
    """
    if not layers or any(not names or isinstance(names, str) for names in layers.values()):
        raise ValueError(f"layers must map each modality to a non-empty list of layer names, got {layers!r}")
    if not tr_s > 0:
        raise ValueError(f"tr_s must be > 0, got {tr_s}")
    root = Path(root)
    files = find_files(source)
    if stimuli is not None:
        missing = sorted(set(stimuli) - set(files))
        if missing:
            raise FileNotFoundError(f"no precomputed features for {missing} under {source}")
        files = {s: files[s] for s in stimuli}
    first = next(iter(files.values()))
    with h5py.File(first, "r") as f:
        shapes = {m: _read_modality(f, first, m, names).shape[1:] for m, names in layers.items()}
    store = FeatureStore.create(
        root, backbone, feature_hz=1.0 / tr_s, fusion="precomputed", modalities=shapes, overwrite=overwrite
    )
    expected = _expected_trs(root)
    rows = []
    for stimulus, path in tqdm(files.items(), desc=f"import {backbone}", disable=not progress):
        with h5py.File(path, "r") as f:
            for modality, names in layers.items():
                x = _read_modality(f, path, modality, names)
                if x.shape[1:] != shapes[modality]:
                    raise ValueError(
                        f"{path}: modality {modality!r} is (T, {x.shape[1]}, {x.shape[2]}) but {first.name} gave "
                        f"(T, {shapes[modality][0]}, {shapes[modality][1]}); every file must have the same layers"
                    )
                store.write(stimulus, modality, x)
                n_exp = expected.get(stimulus)
                rows.append(
                    {
                        "stimulus": stimulus,
                        "modality": modality,
                        "n_rows": x.shape[0],
                        "expected_trs": np.nan if n_exp is None else n_exp,
                        "delta_trs": np.nan if n_exp is None else x.shape[0] - n_exp,
                    }
                )
    report = pd.DataFrame(rows)
    off = report[report.delta_trs.fillna(0) != 0]
    if len(off):
        logger.info(
            "%d of %d imported arrays differ from the fMRI length (TRs): %s; the aligner masks or cuts "
            "the difference",
            len(off),
            len(report),
            ", ".join(f"{s}/{m} {int(d):+d}" for s, m, d in zip(off.stimulus, off.modality, off.delta_trs)),
        )
    return store, report
