"""Project conventions shared by the notebooks: where studies, results and figures live.

Notebooks take the same parameters everywhere (``dataset``, ``size``, ``seed``, ``results_dir``,
``fig_dir``); this module turns them into paths and writes the small results files that tests, tables
and the reproduction report read instead of scraping notebook outputs.

Output paths (``results_dir``, ``fig_dir``) are resolved by :func:`output_dir`: ``{size}`` is replaced by the
study size and a relative path is taken from the repository root, never from the caller's working
directory, so JupyterLab (which starts kernels in ``notebooks/``), papermill started anywhere and the runner
all write to the same place. The defaults, ``runs/{size}/results`` and ``runs/{size}/figures``, are ignored
by git: an ordinary run never touches the committed ``figures/`` (only ``make reproduce`` does).

Environment overrides (used by tests and CI): ``MIND_STUDIES_DIR`` (where synthetic studies are built).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mindlib import synthetic
from mindlib.files import write_json
from mindlib.synthetic import SIZES

RESULTS_DIR = "runs/{size}/results"  # default results_dir of every notebook (relative to the repository root)
FIG_DIR = "runs/{size}/figures"  # default fig_dir of every notebook; "figures" is the committed set
PUBLISHED_FIGURES = "figures"  # fig_dir of a publishing run (the committed set, see figures/README.md)
PUBLISHED_RESULTS = (
    "papers/results"  # results_dir of a publishing run (committed, see papers/results/README.md)
)


def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` above this package), else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def portable_path(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it, else absolute.

    The inverse of :func:`output_dir` for what results files record: a path written this way names the same
    file on every clone (notebook 08's ``.params.json`` files, notebook 12's submission files).
    """
    path, root = Path(path).expanduser().resolve(), repo_root().resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def output_dir(path: str | Path, size: str | None = None) -> Path | str:
    """Resolve an output folder parameter (``results_dir``, ``fig_dir``) the same way from anywhere.

    Parameters
    ----------
    path : str or Path
        ``""`` means "write nothing" and is returned as ``""``; ``{size}`` is replaced by ``size``; a
        relative path is taken from the repository root (:func:`repo_root`), an absolute one is kept.
    size : {"smoke", "demo", "full"}, optional
        The study size, needed when ``path`` holds ``{size}``.

    Returns
    -------
    Path (absolute), or ``""``.
    """
    if path is None or str(path) == "":
        return ""
    text = str(path)
    if "{size}" in text:
        if size not in SIZES:
            raise ValueError(f"output path {text!r} holds {{size}}: pass size, one of {SIZES} (got {size!r})")
        text = text.replace("{size}", size)
    out = Path(text).expanduser()
    return out if out.is_absolute() else repo_root() / out


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


def write_results(name: str, results: dict, results_dir: str | Path) -> Path:
    """Write a notebook's key numbers to ``<results_dir>/<name>.json`` and return the path.

    A relative ``results_dir`` is taken from the repository root (:func:`output_dir`). NaN and infinite
    floats are written as ``null`` (JSON has no NaN).
    """
    return write_json(Path(output_dir(results_dir)) / f"{name}.json", results, sort_keys=True)


def read_results(name: str, results_dir: str | Path) -> dict:
    """Read ``<results_dir>/<name>.json`` written by :func:`write_results` (relative: from the repository root)."""
    path = Path(output_dir(results_dir)) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the notebook {name!r} first (make demo)")
    return json.loads(path.read_text())
