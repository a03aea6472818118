"""Shared test set-up: headless plotting, offline hubs, a session-wide folder for synthetic studies."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS problems; see the Makefile

import pytest


@pytest.fixture(scope="session")
def studies_dir(tmp_path_factory):
    """A session folder for synthetic studies, exported as MIND_STUDIES_DIR (notebook kernels inherit it)."""
    path = tmp_path_factory.mktemp("studies")
    old = os.environ.get("MIND_STUDIES_DIR")
    os.environ["MIND_STUDIES_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MIND_STUDIES_DIR", None)
    else:
        os.environ["MIND_STUDIES_DIR"] = old


@pytest.fixture(scope="session")
def smoke_study(studies_dir):
    """Root of the smoke-size synthetic study (built once per session)."""
    from mindlib.project import resolve_dataset

    return resolve_dataset("synthetic", size="smoke", seed=0)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Unit tests use tiny tensors: one torch thread avoids OpenMP spin-waiting on a 2-core machine
    (measured 50x faster when another process is busy). Notebook kernels are separate processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the rendered tutorial (tests/test_docs.py, tests/test_browser.py) --------------------------------


def pytest_collection_modifyitems(config, items):
    """Run the docs and browser tests last, so they reuse the notebooks the notebook smoke tests executed."""
    late = ("test_docs.py", "test_browser.py")
    items.sort(key=lambda item: late.index(item.path.name) + 1 if item.path.name in late else 0)


@pytest.fixture(scope="session")
def notebook_runs(tmp_path_factory, studies_dir):
    """Session folders of the notebook smoke tests: executed notebooks, results files, figures."""
    base = tmp_path_factory.mktemp("nb")
    return {"runs": base / "runs", "results": base / "results", "figures": base / "figures"}


@pytest.fixture(scope="session")
def smoke_docs(studies_dir, notebook_runs, tmp_path_factory):
    """The tutorial site at smoke size (``docs/build.py``), built once per session; its ``html`` folder.

    Executed notebooks come from ``$MIND_DOCS_NOTEBOOKS``, else from this session's notebook smoke tests when
    they executed every notebook (they run first), else ``runs/smoke/`` (where the notebook runner leaves
    them); ``docs/build.py`` executes the missing or stale ones there first (minutes).
    """
    import subprocess
    import sys
    from pathlib import Path

    from mindlib.story import NOTEBOOKS

    root = Path(__file__).resolve().parent.parent
    tested = notebook_runs["runs"]
    every = tested.is_dir() and all((tested / f"{nb.name}.ipynb").is_file() for nb in NOTEBOOKS)
    nb_dir = Path(os.environ.get("MIND_DOCS_NOTEBOOKS") or (tested if every else root / "runs" / "smoke"))
    out = tmp_path_factory.mktemp("docs")
    cmd = [
        sys.executable,
        str(root / "docs" / "build.py"),
        "--size",
        "smoke",
        "--notebooks",
        str(nb_dir),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"docs/build.py failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return out / "html"
