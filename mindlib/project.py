"""Project conventions shared by the notebooks: where studies, results and figures live.

Notebooks take the same parameters everywhere (``dataset``, ``size``, ``seed``, ``results_dir``,
``fig_dir``); this module turns them into paths and writes the small results files that tests, tables
and the reproduction report read instead of scraping notebook outputs.

Environment overrides (used by tests and CI): ``MIND_STUDIES_DIR`` (where synthetic studies are built).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ("smoke", "demo", "full")


def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` above this package), else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def studies_dir() -> Path:
    """Folder where synthetic studies are written (``$MIND_STUDIES_DIR`` or ``<repo>/studies``)."""
    return Path(os.environ.get("MIND_STUDIES_DIR", repo_root() / "studies"))


def resolve_dataset(dataset: str = "synthetic", size: str = "demo", seed: int = 0) -> Path:
    """Root folder of the study a notebook runs on.

    Parameters
    ----------
    dataset : str
        ``"synthetic"`` builds (once) and uses the embedded synthetic study of ``size``; anything else
        is the path of an Algonauts 2025 folder (the one holding ``fmri/`` and ``stimuli/``).
    size : {"smoke", "demo", "full"}
        Size of the synthetic study (ignored for real data).
    seed : int
        Seed of the synthetic study.

    Returns
    -------
    root : Path
    """
    if dataset == "synthetic":
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        from mindlib import synthetic

        root = studies_dir() / f"synthetic-{size}-seed{seed}"
        synthetic.make_study(root, size=size, seed=seed)
        return root
    root = Path(dataset).expanduser()
    if not (root / "fmri").is_dir():
        raise FileNotFoundError(
            f"{root} is not an Algonauts 2025 folder: expected {root / 'fmri'} with one folder per subject. "
            "Pass dataset='synthetic' for the embedded study, or the folder that holds fmri/ and stimuli/."
        )
    return root


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def write_results(name: str, results: dict, results_dir: str | Path = "../results") -> Path:
    """Write a notebook's key numbers to ``<results_dir>/<name>.json`` and return the path.

    NaN and infinite floats are written as ``null`` (JSON has no NaN).
    """
    path = Path(results_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(results), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_results(name: str, results_dir: str | Path = "../results") -> dict:
    """Read ``<results_dir>/<name>.json`` written by :func:`write_results`."""
    path = Path(results_dir) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the notebook {name!r} first (make demo)")
    return json.loads(path.read_text())
