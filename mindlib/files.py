"""Writing files safely: write beside, then rename; JSON without NaN (tooling shared by every module).

A reader never sees half a file and an interrupted write leaves the previous file intact, because each write goes
to a temporary file in the destination's folder and is then renamed over it (``os.replace`` is atomic within a
file system). JSON has no NaN or infinity, so those floats are written as ``null``; NumPy scalars and arrays
become plain numbers and lists, paths become strings.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "jsonable", "write_json"]


def atomic_write(path: str | Path, write: Callable[[str], Any], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path : path
        Destination; its folder is created if missing.
    write : callable
        Writes the whole content to the file name it is given (e.g. ``lambda f: np.save(f, x)``).
    suffix : str
        Ending of the temporary name (``".npy"`` where the writer would otherwise append one).

    Returns
    -------
    path : Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(x: Any) -> Any:
    """``x`` with NaN and infinite floats as None, NumPy values as Python ones, paths as strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(
    path: str | Path, obj: Any, indent: int = 2, sort_keys: bool = False, newline: bool = False
) -> Path:
    """Write ``jsonable(obj)`` to ``path`` atomically (:func:`atomic_write`); ``newline`` ends the file with one."""
    text = json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys) + ("\n" if newline else "")
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
