"""Build the rendered tutorial: the executed notebooks in story order, the method page, the API reference.

Usage (``make docs`` runs the first line; ``make docs SIZE=smoke`` the second)::

    python docs/build.py --size demo
    python docs/build.py --size smoke
    python docs/build.py --size smoke --notebooks /tmp/executed   # executed notebooks from elsewhere

Steps:

1. Find the executed notebooks ``<name>.ipynb`` of every notebook of the story (``mindlib.story.NOTEBOOKS``,
   in the order they run) in ``--notebooks`` (default ``runs/<size>/``, where ``make demo`` leaves them).
   Missing or stale ones (older than their ``.py`` source) are executed first at ``--size`` with papermill,
   writing their results and figures under that folder, never into the committed ``results/`` or
   ``figures/``; ``--no-run`` makes them an error instead.
2. Check each executed notebook: every code cell ran, no cell holds an error, and a notebook that plots
   shows its figures.
3. Assemble a Sphinx source folder ``docs/_build/<size>/src`` (the pages of ``docs/``, the notebooks, one
   API page per ``mindlib`` module) and build it with ``docs/conf.py`` into ``docs/_build/<size>/html``
   with warnings as errors and nitpicky cross-references.
4. Check the HTML: every ``<img>`` points at a file that exists, and every notebook page shows as many
   figures as its executed notebook holds.

Exit status 0 when the site is complete; otherwise the problems are listed, each naming the file.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PAGES = ("index.md", "method.md")  # hand-written pages of docs/, copied as they are
FIGURE_CALL = re.compile(r"\b(plt\.|plotting\.plot_|plotting\.save_figure|\.plot\(|\.imshow\()")


# ---------------------------------------------------------------------------------------------
# executed notebooks
# ---------------------------------------------------------------------------------------------


def story() -> list:
    """The notebook specs in the order the runner executes them (``mindlib.story.NOTEBOOKS``)."""
    sys.path.insert(0, str(ROOT))
    from mindlib import story

    return list(story.NOTEBOOKS)


def _image_outputs(cell: dict) -> int:
    return sum(
        1 for out in cell.get("outputs", []) if any(k.startswith("image/") for k in out.get("data", {}))
    )


def check_executed(path: Path, source: Path | None = None) -> list[str]:
    """Problems of one executed notebook (empty list = fine to render).

    Parameters
    ----------
    path : Path
        The executed ``.ipynb``.
    source : Path, optional
        Its Jupytext ``.py`` source: an executed copy older than the source is stale.

    Returns
    -------
    list of str
        One message per problem, each naming ``path``.
    """
    if not path.is_file():
        return [f"{path}: missing (run the notebooks first: python -m mindlib.notebooks --size <size>)"]
    if source is not None and source.is_file() and path.stat().st_mtime < source.stat().st_mtime:
        return [f"{path}: older than its source {source.name}; run it again"]
    try:
        nb = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"{path}: not a readable notebook ({err})"]
    problems = []
    code = [
        c
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code" and "".join(c.get("source", "")).strip()
    ]
    unexecuted = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    if unexecuted:
        problems.append(
            f"{path}: {len(unexecuted)} of {len(code)} code cells never ran (it is not an executed copy)"
        )
    errors = [
        out.get("ename", "error")
        for c in code
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    if errors:
        problems.append(f"{path}: cells raised {sorted(set(errors))}")
    plots = any(FIGURE_CALL.search("".join(c.get("source", ""))) for c in code)
    if plots and not sum(_image_outputs(c) for c in code):
        problems.append(
            f"{path}: the notebook plots but holds no figure; it was executed with a non-inline matplotlib "
            "backend (unset MPLBACKEND for the kernel, e.g. `env -u MPLBACKEND ...`) and must be run again"
        )
    return problems


def run_notebooks(specs: list, size: str, out_dir: Path) -> None:
    """Execute notebooks at ``size`` into ``out_dir`` with papermill (results and figures under it too)."""
    from mindlib import notebooks

    # Kernels inherit this environment: a non-inline backend (the Makefile's MPLBACKEND=Agg) would leave
    # the executed notebooks without figures.
    os.environ.pop("MPLBACKEND", None)
    params = {"results_dir": str(out_dir / "results"), "fig_dir": str(out_dir / "figures")}
    for spec in specs:
        t0 = time.perf_counter()
        print(f">> executing {spec.name} ({size}) ...", flush=True)
        notebooks.execute(spec, size, out_dir=out_dir, parameters=params)
        print(f"   done in {time.perf_counter() - t0:.0f} s", flush=True)


def collect(size: str, nb_dir: Path, run_missing: bool) -> list[tuple[object, Path]]:
    """The executed notebook of every spec, running the missing or stale ones when allowed."""
    specs = story()
    src_dir = ROOT / "notebooks"

    def problems_of(spec) -> list[str]:
        return check_executed(nb_dir / f"{spec.name}.ipynb", src_dir / f"{spec.name}.py")

    todo = [spec for spec in specs if problems_of(spec)]
    if todo and run_missing:
        # A notebook may read what an earlier one wrote (08 -> 10): rerun from the first one needed onwards.
        first = specs.index(todo[0])
        run_notebooks(specs[first:], size, nb_dir)
    problems = [p for spec in specs for p in problems_of(spec)]
    if problems:
        raise SystemExit("executed notebooks are not ready:\n  " + "\n  ".join(problems))
    return [(spec, nb_dir / f"{spec.name}.ipynb") for spec in specs]


# ---------------------------------------------------------------------------------------------
# the Sphinx source folder
# ---------------------------------------------------------------------------------------------


def modules() -> list[str]:
    """Every public module of mindlib (``mindlib.x``, subpackages included), sorted."""
    import mindlib

    names = ["mindlib"]
    for info in pkgutil.walk_packages(mindlib.__path__, "mindlib."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _first_line(module: str) -> str:
    import importlib

    doc = (importlib.import_module(module).__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def constants(module: str) -> list[tuple[str, str, str]]:
    """Public module-level constants ``(NAME, value, comment)`` that autodoc would leave out.

    autodoc documents module data only when it carries a ``#:`` doc comment; the package documents its
    constants with a trailing ``# comment`` instead, so they are listed here explicitly (``.. py:data::``)
    with that comment as their description. A module with ``__all__`` contributes only names in it.
    """
    import ast
    import importlib

    from sphinx.pycode import ModuleAnalyzer

    mod = importlib.import_module(module)
    path = getattr(mod, "__file__", None)
    if not path or not path.endswith(".py"):
        return []
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    documented = {name for (_, name) in ModuleAnalyzer.for_module(module).find_attr_docs()}
    public = getattr(mod, "__all__", None)
    out = []
    for node in ast.parse(text).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            name = getattr(target, "id", "")
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or name in documented:
                continue
            if public is not None and name not in public:
                continue
            value = repr(getattr(mod, name, None))
            comment = lines[node.end_lineno - 1].partition("  # ")[2].strip()
            out.append((name, value if len(value) <= 70 else "", comment))
    return out


def _api_page(name: str) -> str:
    title = f"``{name}``"
    page = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n"
    for const, value, comment in constants(name):
        page += f"\n.. py:data:: {const}\n"
        if value:
            page += f"   :value: {value}\n"
        if comment:
            page += f"\n   {comment}\n"
    return page


def stage(src: Path, executed: list[tuple[object, Path]]) -> None:
    """Write the Sphinx source folder ``src``: pages, tutorial notebooks, API pages."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for page in PAGES:
        shutil.copy2(DOCS / page, src / page)
    tutorial = src / "tutorial"
    tutorial.mkdir()
    for _, path in executed:
        shutil.copy2(path, tutorial / path.name)
    entries = "\n".join(path.stem for _, path in executed)
    rows = "\n".join(
        f"| [{spec.name[:2]}]({spec.name}.ipynb) | {spec.title} | {spec.learn} |" for spec, _ in executed
    )
    (tutorial / "index.md").write_text(
        "# Tutorial\n\n"
        "The notebooks of `notebooks/`, in the order they run, rendered from one executed run "
        "(study size: {{ size }}). Each one is also a Jupytext `.py` file you can open in JupyterLab "
        "and run yourself.\n\n"
        "| # | notebook | what you learn |\n|---|---|---|\n"
        f"{rows}\n\n"
        "```{toctree}\n:maxdepth: 1\n:hidden:\n\n"
        f"{entries}\n```\n"
    )
    api = src / "api"
    api.mkdir()
    names = modules()
    for name in names:
        (api / f"{name}.rst").write_text(_api_page(name))
    table = "\n".join(f"   * - :mod:`{name}`\n     - {_first_line(name) or ' '}" for name in names)
    (api / "index.rst").write_text(
        "API reference\n=============\n\n"
        "Generated from the numpydoc docstrings of ``mindlib`` (one page per module).\n\n"
        ".. list-table::\n   :header-rows: 1\n   :widths: 25 75\n\n   * - module\n     - what it holds\n"
        f"{table}\n\n"
        ".. toctree::\n   :hidden:\n   :maxdepth: 1\n\n" + "\n".join(f"   {name}" for name in names) + "\n"
    )


def sphinx(src: Path, html_dir: Path, size: str) -> None:
    """Run Sphinx on ``src`` with ``docs/conf.py``; warnings (broken references included) are errors."""
    env = {**os.environ, "MIND_DOCS_SIZE": size}
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-c",
        str(DOCS),
        "-W",
        "--keep-going",
        "-n",
        "-q",
        "-d",
        str(html_dir.parent / "doctrees"),
        str(src),
        str(html_dir),
    ]
    done = subprocess.run(cmd, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"sphinx-build failed (exit {done.returncode}); the warnings above name each file")


# ---------------------------------------------------------------------------------------------
# checking the site
# ---------------------------------------------------------------------------------------------


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def images_of(page: Path) -> list[str]:
    """``src`` of every ``<img>`` of an HTML page."""
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.sources


def check_site(html_dir: Path, executed: list[tuple[object, Path]]) -> list[str]:
    """Problems of the built site: missing pages, images that do not exist, figures lost in rendering."""
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        for source in images_of(page):
            url = urlparse(source)
            if url.scheme == "data":
                continue
            if url.scheme or source.startswith("//"):
                problems.append(f"{page}: image {source} is not part of the site (offline build)")
                continue
            target = (page.parent / unquote(url.path)).resolve()
            if not target.is_file():
                problems.append(f"{page}: image {source} does not exist ({target})")
    for name in ("index.html", "method.html", "tutorial/index.html", "api/index.html"):
        if not (html_dir / name).is_file():
            problems.append(f"{html_dir / name}: page missing")
    for _, path in executed:
        page = html_dir / "tutorial" / f"{path.stem}.html"
        if not page.is_file():
            problems.append(f"{page}: notebook page missing")
            continue
        expected = sum(_image_outputs(c) for c in json.loads(path.read_text())["cells"])
        shown = len(images_of(page))
        if shown < expected:
            problems.append(f"{page}: shows {shown} figures, its executed notebook {path} holds {expected}")
    return problems


def build(size: str, nb_dir: Path, out: Path, run_missing: bool = True) -> Path:
    """Build the site; return the path of its ``index.html``."""
    t0 = time.perf_counter()
    executed = collect(size, nb_dir, run_missing)
    src, html_dir = out / "src", out / "html"
    stage(src, executed)
    if html_dir.exists():
        shutil.rmtree(html_dir)
    sphinx(src, html_dir, size)
    problems = check_site(html_dir, executed)
    if problems:
        raise SystemExit("the built site is incomplete:\n  " + "\n  ".join(problems))
    n_pages = len(list(html_dir.rglob("*.html")))
    n_images = sum(len(images_of(p)) for p in html_dir.rglob("*.html"))
    print(
        f"docs built in {time.perf_counter() - t0:.0f} s: {n_pages} pages, {n_images} images, "
        f"{len(executed)} notebooks at size {size!r} -> {html_dir / 'index.html'}"
    )
    return html_dir / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="demo", help="study size the notebooks run at (smoke, demo, full)")
    ap.add_argument("--notebooks", type=Path, help="folder of executed notebooks (default runs/<size>)")
    ap.add_argument("--out", type=Path, help="build folder (default docs/_build/<size>)")
    ap.add_argument("--no-run", action="store_true", help="fail instead of executing missing notebooks")
    args = ap.parse_args(argv)
    nb_dir = (args.notebooks or ROOT / "runs" / args.size).resolve()
    out = (args.out or DOCS / "_build" / args.size).resolve()
    build(args.size, nb_dir, out, run_missing=not args.no_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
