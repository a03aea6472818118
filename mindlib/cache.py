"""An on-disk cache of TR-aligned features, read back by memory map (bounded memory; docs/method.md §2-3).

``data.load_study`` holds every run's aligned features in memory: at the Algonauts 2025 training release's shape
with TRIBE's dimensions (16,512 per TR and lag, about 161k stimulus TRs) that is 10.6 GB of float32 for one lag.
With ``load_study(..., feature_cache=FeatureCache(folder))`` each stimulus's aligned features are computed once,
written to ``folder`` (float16 by default: half the bytes, and the precision the backbones' stores already have),
and every later load maps the file instead of reading it (``np.load(mmap_mode="c")``): pages are read when a
window touches them and the kernel may drop them again, so the features no longer need to fit in the process's
anonymous memory. The windows a decoder trains on are the same (float16 rounding aside; ``dtype="float32"`` gives
bit-identical batches), because :class:`mindlib.data.WindowDataset` slices records the same way.
:class:`mindlib.data.WindowDataset` reads each window through :func:`read_rows`, which hands the window's pages
back to the kernel once copied, so an epoch over every stimulus does not leave the whole cache resident in the
process either (its ``VmHWM`` stays near its anonymous memory).

An entry is reused only when it was made from the same source file (path, size, modification time) with the same
alignment (TRs, lags, layer groups, TR, frame rate) and storage dtype; anything else recomputes it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mindlib.files import atomic_write
from mindlib.params import check_choice

__all__ = ["FeatureCache", "DTYPES", "read_rows"]

DTYPES = ("float16", "float32")  # storage types of cached features


class FeatureCache:
    """Aligned features on disk, one ``.npy`` per (backbone, modality, stimulus, alignment).

    Parameters
    ----------
    directory : path
        Where entries go (created on first write); ``<directory>/<backbone>/<modality>/<stimulus>-<key>.npy``
        with the validity mask in ``...-<key>.valid.npy`` and the key's fields in ``...-<key>.json``.
    dtype : {"float16", "float32"}
        Storage type (float16: half the disk and page cache; the decoders compute in float32).
    """

    def __init__(self, directory: str | Path, dtype: str = "float16"):
        check_choice(dtype, DTYPES, "FeatureCache dtype")
        self.directory, self.dtype = Path(directory), dtype
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, dtype={self.dtype!r})"

    def _entry(
        self,
        source: Path,
        backbone: str,
        modality: str,
        stimulus: str,
        n_trs: int,
        lags_trs: Sequence[float],
        layer_fractions: Sequence[float],
        tr_s: float,
        feature_hz: float,
    ):
        st = source.stat()
        fields = {
            "source": str(source.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "n_trs": int(n_trs),
            "lags_trs": [float(x) for x in lags_trs],
            "layer_fractions": [float(x) for x in layer_fractions],
            "tr_s": float(tr_s),
            "feature_hz": float(feature_hz),
            "dtype": self.dtype,
        }
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        stem = self.directory / backbone / modality / f"{stimulus}-{digest}"
        return fields, stem

    def get(
        self,
        store,
        stimulus: str,
        modality: str,
        n_trs: int,
        lags_trs: Sequence[float],
        layer_fractions: Sequence[float],
        tr_s: float,
        compute,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The aligned features ``(T, F)`` (memory-mapped) and their ``covered`` mask ``(T,)`` of one stimulus.

        Parameters
        ----------
        store : mindlib.data.FeatureStore
            Where the stimulus's frames live (its file identifies the entry).
        stimulus, modality : str
        n_trs : int
            T, the run's TRs.
        lags_trs, layer_fractions, tr_s
            The alignment, as passed to :func:`mindlib.data.load_study`.
        compute : callable () -> (tokens (T, F), covered (T,))
            Computes the entry on a miss (``load_study``'s own alignment, with its checks).
        """
        fields, stem = self._entry(
            store.path(stimulus, modality),
            store.backbone,
            modality,
            stimulus,
            n_trs,
            lags_trs,
            layer_fractions,
            tr_s,
            store.feature_hz,
        )
        data, valid, meta = (
            stem.with_suffix(".npy"),
            stem.with_suffix(".valid.npy"),
            stem.with_suffix(".json"),
        )
        if meta.is_file() and data.is_file() and valid.is_file() and json.loads(meta.read_text()) == fields:
            self.hits += 1
            return np.load(data, mmap_mode="c"), np.load(valid)
        self.misses += 1
        tokens, covered = compute()
        stem.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(data, lambda p: np.save(p, np.asarray(tokens, dtype=self.dtype)), suffix=".npy")
        atomic_write(valid, lambda p: np.save(p, np.asarray(covered, dtype=bool)), suffix=".npy")
        # last: marks it complete
        atomic_write(meta, lambda p: Path(p).write_text(json.dumps(fields, sort_keys=True)), suffix="")
        return np.load(data, mmap_mode="c"), np.load(valid)

    def size_bytes(self) -> int:
        """Bytes the cache holds on disk."""
        return (
            sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
            if self.directory.exists()
            else 0
        )


def read_rows(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a feature array; from a memory-mapped cache entry, a copy whose pages go back.

    A window read from a memory map leaves its pages resident in the reading process (they count in its
    ``VmHWM`` although the kernel could drop them). For an :class:`numpy.memmap` this copies the rows and then
    tells the kernel the mapped pages they came from are not needed (``madvise(MADV_DONTNEED)``; the mapping is
    private and never written, so a later read maps the file's bytes again): a whole epoch then keeps only the
    windows it is computing with. Any other array is returned as a view, as before.

    Parameters
    ----------
    a : ndarray of shape (T, F)
    start, stop : int

    Returns
    -------
    ndarray of shape (stop - start, F)
    """
    mm = getattr(a, "_mmap", None)
    if not isinstance(a, np.memmap) or mm is None or not hasattr(mm, "madvise") or not a.flags.c_contiguous:
        return a[start:stop]
    out = np.array(a[start:stop])
    anchor = ctypes.c_char.from_buffer(mm)  # where the mapping starts (a copy-on-write map is writable)
    begin = a.ctypes.data - ctypes.addressof(anchor)  # byte of row 0 within the mapping, for any view
    del anchor
    lo = (begin + start * a.strides[0]) // mmap.PAGESIZE * mmap.PAGESIZE
    hi = min(len(mm), -(-(begin + stop * a.strides[0]) // mmap.PAGESIZE) * mmap.PAGESIZE)
    if hi > lo >= 0:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return out
