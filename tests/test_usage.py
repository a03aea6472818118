"""The repository used the way its users meet it, in a fresh ``git clone``: the shell commands the README shows
(and the one notebook 00 prints) run verbatim at smoke size, the runner writes only under ``runs/``, and
afterwards ``git status`` is as clean as before. Only ``--publish`` touches committed files.

``make demo`` and ``make test`` themselves are not rerun here (``make test`` is what runs this file; ``make
demo`` is the runner below at demo size). Commands for real data (``-p dataset /data/...``) are prepared
with papermill, not executed: the data are not here.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)


def _commands(block: str) -> list[str]:
    """The block's commands, one per line once backslash continuations are joined; comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [ln.strip() for ln in joined.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _real_data(cmd: str) -> bool:
    """Commands for real data (``/data/...``) cannot run here: they are checked without running them."""
    return "/data/" in cmd


def _run(cmd: str, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", "-e", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"`{cmd}` failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _status(repo: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory, smoke_study):
    """A clone of this repository's HEAD whose ``.venv`` is this environment and whose ``mindlib`` is its own."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the clean-clone test needs `git clone` of this repository")
    base = tmp_path_factory.mktemp("usage")
    repo = base / "mind"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True, timeout=120)
    (repo / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    assert _status(repo) == "", "a fresh clone must be clean"
    return repo, env


def test_readme_commands_run_verbatim_from_root_and_notebooks_with_the_same_results(clone):
    repo, env = clone
    blocks = [b for b in _bash_blocks((repo / "README.md").read_text()) if "papermill" in b]
    assert blocks, "the README shows no papermill command"
    results = repo / "runs" / "smoke" / "results" / "02_data_and_splits.json"
    seen = []
    for block in blocks:
        lines = _commands(block)
        setup = [ln for ln in lines if ln.startswith("source ")]
        for line in lines:
            if line in setup or _real_data(line):
                continue
            proc = _run("\n".join([*setup, line]), repo, env)
            if "--help-notebook" in line:
                assert "progress: bool (default True)" in proc.stdout and "solutions: bool" in proc.stdout
            elif "02_data_and_splits" in line:
                seen.append((line, json.loads(results.read_text())))
                results.unlink()  # the next run must write it again, to the same place
    starts = {"cd notebooks" in line for line, _ in seen}
    assert starts == {True, False}, "the README must show a run from the root and one from notebooks/"
    assert all(res == seen[0][1] for _, res in seen), "different results from the root and from notebooks/"
    assert sorted(p.name for p in repo.parent.iterdir()) == ["mind"], "a run wrote outside the repository"
    assert not (repo / "notebooks" / "runs").exists() and not (repo / "results").exists()
    assert _status(repo) == ""


def test_real_data_commands_of_the_readme_and_notebook_00_name_real_parameters(clone):
    repo, env = clone
    readme = (repo / "README.md").read_text()
    nb00 = nbformat.read(repo / "notebooks" / "00_overview.ipynb", as_version=4)
    printed = [
        ln.strip()
        for c in nb00.cells
        if c.cell_type == "markdown"
        for b in _bash_blocks(c.source)
        for ln in b.splitlines()
        if ln.strip().startswith("papermill")
    ]
    inline = re.findall(r"`(papermill [^`]*/data/[^`]*)`", readme)
    inline += [
        c for b in _bash_blocks(readme) for c in _commands(b) if c.startswith("papermill") and _real_data(c)
    ]
    assert printed and inline, "notebook 00 and the README show how to run on real data"
    for cmd in printed + inline:
        argv = shlex.split(cmd)
        out = repo / argv[2]
        _run(f"{cmd} --prepare-only", repo, env, timeout=120)
        nb = nbformat.read(out, as_version=4)
        assert nb.metadata.kernelspec.name == "python3"
        declared = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
        for name in argv[argv.index("-p") + 1 :: 3]:
            assert re.search(rf"^{name}: ", declared, flags=re.M), f"`{cmd}` sets {name!r}, not a parameter"
        injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])).source
        assert 'dataset = "/data/algonauts2025"' in injected
    assert _status(repo) == ""


def test_runner_writes_to_runs_and_only_publish_touches_committed_files(clone):
    repo, env = clone
    py = f"{sys.executable} -m mindlib.notebooks --size smoke --only 01"
    _run(py, repo, env)
    assert (repo / "runs" / "smoke" / "results" / "01_temporal_alignment.json").exists()
    assert (repo / "runs" / "smoke" / "figures" / "01_lag.png").exists()
    assert _status(repo) == ""
    timings_before = json.loads((repo / "papers" / "timings.json").read_text())
    _run(f"{py} --publish", repo, env)
    changed = sorted(line[3:] for line in _status(repo).splitlines())
    assert changed and all(
        re.fullmatch(
            r"figures/01_\w+\.png|papers/timings\.json|papers/results/01_temporal_alignment\.json", p
        )
        for p in changed
    ), changed
    assert "papers/results/01_temporal_alignment.json" in changed, "--publish keeps its results files in git"
    timings = json.loads((repo / "papers" / "timings.json").read_text())
    assert timings["smoke"]["01_temporal_alignment"] > 0 and timings["full"] == timings_before["full"]


def test_readme_torchrun_commands_name_real_options(clone):
    """The multi-GPU command cannot run here (no GPUs, no data): every option it passes must be one that
    ``python -m mindlib.distributed`` takes, and its module must start."""
    repo, env = clone
    cmds = [
        c
        for b in _bash_blocks((repo / "README.md").read_text())
        for c in _commands(b)
        if c.startswith("torchrun")
    ]
    assert cmds, "the README shows no torchrun command"
    helptext = _run(f"{sys.executable} -m mindlib.distributed --help", repo, env, timeout=120).stdout
    for cmd in cmds:
        argv = shlex.split(cmd)
        assert argv[argv.index("-m") + 1] == "mindlib.distributed", cmd
        for opt in (a for a in argv[argv.index("-m") + 2 :] if a.startswith("--")):
            assert opt in helptext, f"`{cmd}` passes {opt}, which python -m mindlib.distributed does not take"
