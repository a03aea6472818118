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
