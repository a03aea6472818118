"""Run the notebook story end to end with papermill (``make demo``, ``make reproduce``, the smoke tests).

The Jupytext percent ``.py`` files in ``notebooks/`` are the source. Each run converts a ``.py`` to a
notebook, executes it with papermill in ``notebooks/`` on the kernel its metadata names (``python3``, as
JupyterLab does) with the parameters of the chosen size, and writes the executed copy to ``runs/<size>/``.
Every notebook writes its key numbers to ``<results_dir>/<name>.json``; the summary printed at the end is
read from those files.

Where things go (``runs/`` is ignored by git, so a clone stays clean):

- by default: executed notebooks ``runs/<size>/*.ipynb``, results ``runs/<size>/results/``, figures
  ``runs/<size>/figures/``, the report ``runs/<size>/reproduction.md``, timings ``runs/<size>/timings.json``;
- with ``--publish`` (``make reproduce``): figures go to the committed ``figures/``, the results files to
  ``papers/results/`` (committed too, so the report can be rebuilt and an interrupted grid resumes on any
  clone; its ``.gitignore`` keeps out the trained models, executed notebooks and logs), the report to
  ``papers/reproduction.md``, the measured times into ``papers/timings.json``, and the README's result and
  notebook-map blocks are refreshed. Nothing else writes there.

Usage::

    python -m mindlib.notebooks --size demo            # all notebooks, demo size (make demo)
    python -m mindlib.notebooks --size smoke --only 01  # one notebook
    python -m mindlib.notebooks --size full --publish   # make reproduce: update figures/ and the report
    python -m mindlib.notebooks --check-pairs           # fail if a .py/.ipynb pair is out of sync
    python -m mindlib.notebooks --sync                  # make sync: re-pair, .ipynb without outputs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mindlib import report
from mindlib.params import check_choice
from mindlib.project import PUBLISHED_FIGURES, PUBLISHED_RESULTS, RESULTS_DIR, SIZES, output_dir, repo_root
from mindlib.story import NOTEBOOKS, NotebookSpec

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
TIMINGS = "papers/timings.json"  # measured run time of every notebook per size, written by --publish


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def find(name: str) -> NotebookSpec:
    """The spec whose name starts with ``name`` (e.g. ``"06"``)."""
    hits = [nb for nb in NOTEBOOKS if nb.name.startswith(name)]
    if len(hits) != 1:
        raise ValueError(f"{name!r} matches {len(hits)} notebooks; names: {[nb.name for nb in NOTEBOOKS]}")
    return hits[0]


def runs_dir(size: str) -> Path:
    """``runs/<size>/`` under the repository root: executed notebooks, results, figures (ignored by git)."""
    check_choice(size, SIZES, "size")
    return repo_root() / "runs" / size


def execute(
    spec: NotebookSpec,
    size: str = "demo",
    out_dir: str | Path | None = None,
    parameters: dict | None = None,
    progress: bool = False,
    out_name: str | None = None,
) -> Path:
    """Convert ``notebooks/<name>.py`` with jupytext and execute it with papermill.

    Parameters
    ----------
    spec : NotebookSpec
    size : {"smoke", "demo", "full"}
    out_dir : path, optional
        Where the executed notebook goes (default ``runs/<size>``).
    parameters : dict, optional
        Extra parameters, applied after the size's overrides (e.g. ``results_dir``, ``fig_dir``).
    progress : bool
        papermill's own bar over cells (the notebooks' ``progress`` parameter is separate).
    out_name : str, optional
        File stem of the executed notebook (default: the notebook's name).

    Returns
    -------
    Path of the executed notebook.

    Notes
    -----
    The kernel is the one the notebook names (``metadata.kernelspec``), as in JupyterLab and for
    papermill started from a shell; the kernel starts in ``notebooks/``.
    """
    import jupytext
    import papermill as pm

    check_choice(size, SIZES, "size")
    src = notebooks_dir() / f"{spec.name}.py"
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    out_dir = Path(out_dir) if out_dir is not None else runs_dir(size)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_name or spec.name
    src_ipynb = out_dir / f"{stem}.source.ipynb"
    nb = jupytext.read(src)
    if not nb.metadata.get("kernelspec", {}).get("name"):
        raise ValueError(
            f"{src}: its Jupytext header names no kernel; add `kernelspec: {KERNELSPEC}` under "
            "`jupyter:` (every notebook of the story uses the python3 kernel)"
        )
    nb.metadata.setdefault("language_info", {"name": "python"})
    jupytext.write(nb, src_ipynb)
    out = out_dir / f"{stem}.ipynb"
    params = {**spec.sizes.get(size, {}), **(parameters or {})}
    # The kernel inherits this environment: a non-inline MPLBACKEND (the tests set Agg) would keep every
    # figure out of the executed notebook.
    backend = os.environ.pop("MPLBACKEND", None)
    try:
        pm.execute_notebook(
            str(src_ipynb),
            str(out),
            parameters=params,
            cwd=str(notebooks_dir()),
            progress_bar=progress,
            log_output=False,
            extra_arguments=[
                "--IPKernelApp.log_level=CRITICAL"
            ],  # no start-up or shutdown chatter from kernels
        )
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
        src_ipynb.unlink(missing_ok=True)
    return out


def pairs_out_of_sync() -> list[str]:
    """Problems of the ``.py``/``.ipynb`` pairs, each with the command that fixes it.

    A pair is out of sync when the ``.ipynb`` is missing, holds outputs (e.g. saved from JupyterLab after a
    run), names no kernel, or differs in cells from its ``.py``.
    """
    import jupytext

    bad = []
    for py in sorted(notebooks_dir().glob("[0-9][0-9]_*.py")):
        ipynb = py.with_suffix(".ipynb")
        if not ipynb.exists():
            bad.append(f"{py.name}: no paired .ipynb (run `make sync`)")
            continue
        a, b = jupytext.read(py), jupytext.read(ipynb)
        if any(c.get("outputs") or c.get("execution_count") for c in b.cells):
            bad.append(
                f"{ipynb.name}: committed with outputs (run `make sync`: it keeps your edits and "
                "rewrites the .ipynb without outputs)"
            )
        for label, nb in ((py.name, a), (ipynb.name, b)):
            if nb.metadata.get("kernelspec") != KERNELSPEC:
                bad.append(
                    f"{label}: kernelspec is {nb.metadata.get('kernelspec')}, expected {KERNELSPEC} "
                    "(add it to the .py header, then run `make sync`)"
                )
        if _cells(a) != _cells(b):
            bad.append(f"{py.name}: cells differ from {ipynb.name} (run `make sync`: the newer file wins)")
    return bad


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def sync() -> list[Path]:
    """``make sync``: carry edits between each ``.py`` and its ``.ipynb``, then rewrite every ``.ipynb`` from
    its ``.py`` without outputs.

    When the cells differ, the newer file wins (an ``.ipynb`` saved from JupyterLab after an edit, or a
    ``.py`` edited in an editor); the ``.py`` header keeps the kernel and the Jupytext settings. Returns the
    notebooks written.
    """
    import jupytext

    written = []
    for py in sorted(notebooks_dir().glob("[0-9][0-9]_*.py")):
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and ipynb.stat().st_mtime > py.stat().st_mtime:
            edited = jupytext.read(ipynb)
            if _cells(edited) != _cells(jupytext.read(py)):
                edited.metadata = jupytext.read(py).metadata  # the header of the source, not Lab's extras
                jupytext.write(edited, py, fmt="py:percent")
                print(
                    f"{py.name}: took the cells of {ipynb.name}, which is newer (`git diff {py}` shows them)"
                )
        nb = jupytext.read(py)
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
        if ipynb.exists():
            _keep_cell_ids(nb, jupytext.read(ipynb))
        jupytext.write(nb, ipynb)
        written.append(ipynb)
    return written


def _keep_cell_ids(nb, old) -> None:
    """Give the cells of ``nb`` the ids they had in ``old`` (same source, else same place and type), so a
    re-sync does not rewrite every id of the ``.ipynb``."""
    by_source = {}
    for c in old.cells:
        by_source.setdefault((c.cell_type, c.source.strip()), c.get("id"))
    used = set()
    for i, c in enumerate(nb.cells):
        same_place = (
            old.cells[i].get("id") if i < len(old.cells) and old.cells[i].cell_type == c.cell_type else None
        )
        for cand in (by_source.get((c.cell_type, c.source.strip())), same_place):
            if cand and cand not in used:
                c.id = cand
                break
        used.add(c.get("id"))


def _merge_timings(path: Path, size: str, seconds: dict) -> dict:
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings.setdefault(size, {}).update(seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    return timings


def _summary(results_dir: Path) -> str:
    rows = []
    for nb in NOTEBOOKS:
        path = results_dir / f"{nb.name}.json"
        if not path.exists():
            rows.append(f"  {nb.name:<24} (no results file)")
            continue
        res = json.loads(path.read_text())
        shown = []
        for k in nb.keys:
            v = res.get(k)
            if isinstance(v, float):
                shown.append(f"{k}={v:.3f}")
            elif isinstance(v, int | str):
                shown.append(f"{k}={v}")
        rows.append(f"  {nb.name:<24} " + "  ".join(shown))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="demo")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 06")
    ap.add_argument(
        "--publish",
        action="store_true",
        help="write figures to the committed figures/, results files to papers/results/, the report to "
        "papers/reproduction.md, the times to papers/timings.json and refresh the README blocks (make reproduce)",
    )
    ap.add_argument("--check-pairs", action="store_true", help="check the .py/.ipynb pairs and exit")
    ap.add_argument(
        "--sync", action="store_true", help="re-pair every notebook, .ipynb without outputs, and exit"
    )
    args = ap.parse_args(argv)
    if args.check_pairs:
        bad = pairs_out_of_sync()
        print("\n".join(bad) if bad else "all notebook pairs in sync")
        return 1 if bad else 0
    if args.sync:
        written = sync()
        print(
            f"wrote {len(written)} notebooks without outputs; "
            + ("\n".join(pairs_out_of_sync()) or "all in sync")
        )
        return 0
    specs = [find(n) for n in args.only] if args.only else list(NOTEBOOKS)
    root = repo_root()
    out = runs_dir(args.size)
    results = Path(output_dir(PUBLISHED_RESULTS if args.publish else RESULTS_DIR, args.size))
    params = {"fig_dir": PUBLISHED_FIGURES, "results_dir": PUBLISHED_RESULTS} if args.publish else {}
    t_all = time.perf_counter()
    for spec in specs:
        t0 = time.perf_counter()
        print(f">> {spec.name} ({args.size}) ...", flush=True)
        nb = execute(spec, args.size, out_dir=out, parameters=params)
        seconds = round(time.perf_counter() - t0, 1)
        print(f"   done in {seconds:.0f} s -> {nb.relative_to(root)}", flush=True)
        _merge_timings(out / "timings.json", args.size, {spec.name: seconds})
        if args.publish:
            _merge_timings(root / TIMINGS, args.size, {spec.name: seconds})
    print(
        f"\nAll {len(specs)} notebooks ran in {(time.perf_counter() - t_all) / 60:.1f} min at size {args.size!r}."
    )
    print(f"Key numbers (from {results.relative_to(root)}/*.json):")
    print(_summary(results))
    report_path = root / "papers" / "reproduction.md" if args.publish else out / "reproduction.md"
    if not args.only:
        timings_dir = (root / TIMINGS).parent if args.publish else out
        report.main(
            [
                "--results-dir",
                str(results),
                "--output",
                str(report_path),
                "--timings-dir",
                str(timings_dir),
                *([] if args.publish else ["--readme", ""]),
            ]
        )
    figs = PUBLISHED_FIGURES if args.publish else f"runs/{args.size}/figures"
    print(
        f"\nExecuted notebooks: runs/{args.size}/   results: {results.relative_to(root)}/   figures: {figs}/   "
        f"report: {report_path.relative_to(root)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
