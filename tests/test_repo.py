"""The repository's promises: one dependency list, paired notebooks with a kernel, outputs that land in the
repository wherever a run starts, pair advice that works, README commands and times that are measured."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from mindlib import notebooks, project
from mindlib.project import read_results, write_results

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_parses_and_installs_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "mind"
    deps = env["dependencies"]
    assert any(str(d).startswith("python=3.11") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(p.startswith("-e .") for p in pip), "environment.yml must install the package from pyproject"


def test_pyproject_pins_torch_below_2_14():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if d.startswith("torch")]
    assert torch and "<2.14" in torch[0]
    assert project["name"] == "mindlib"


def test_readme_quick_start_commands_are_make_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", quick, flags=re.M)
    assert commands == ["demo", "test"], commands
    for target in commands:
        assert re.search(rf"^{target}:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_notebook_is_listed_and_paired():
    on_disk = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert on_disk == sorted(nb.name for nb in notebooks.NOTEBOOKS)
    assert notebooks.pairs_out_of_sync() == []


def test_notebooks_have_one_parameters_cell_and_no_path_hacks():
    import jupytext

    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(py)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{py.name}: {len(tagged)} parameters cells"
        text = py.read_text()
        assert "sys.path" not in text and "%run" not in text, py.name


def test_results_round_trip_writes_nan_as_null(tmp_path):
    write_results("x", {"a": 1.5, "b": float("nan"), "c": [1, 2]}, tmp_path)
    assert read_results("x", tmp_path) == {"a": 1.5, "b": None, "c": [1, 2]}


def test_papermill_reads_every_parameter_with_its_help():
    """`papermill --help-notebook` must see every parameter (a '=' inside a comment hides the line)."""
    import jupytext
    from papermill.translators import PythonTranslator

    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        cell = next(c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
        lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        params = PythonTranslator.inspect({"source": cell.source})
        assert len(params) == len(lines), f"{py.name}: papermill parsed {[p.name for p in params]} of {lines}"
        assert all(p.help for p in params), f"{py.name}: every parameter needs a trailing comment"


def test_every_notebook_names_the_python3_kernel():
    """The kernel ipykernel installs in every environment (the make venv, the conda env): papermill and
    JupyterLab need it in the notebook's metadata, in the .py header and in the .ipynb alike."""
    assert notebooks.KERNELSPEC["name"] == "python3"
    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        assert jupytext.read(py).metadata.get("kernelspec") == notebooks.KERNELSPEC, py.name
        nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        assert nb.metadata.get("kernelspec") == notebooks.KERNELSPEC, py.with_suffix(".ipynb").name
    assert "kernelspec" in (ROOT / "jupytext.toml").read_text()


def _parameters(py: Path) -> dict[str, tuple[str, str]]:
    """name -> (type, help) parsed from the parameters cell by hand: `name: type = value  # help`."""
    cell = next(c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
    out = {}
    for line in cell.source.splitlines():
        m = re.match(r"^(\w+): (\w+) = .*?  # (.+)$", line)
        assert m, f"{py.name}: parameter line {line!r} is not `name: type = value  # help`"
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def test_papermill_help_notebook_lists_every_parameter_with_type_and_help():
    """`papermill --help-notebook` from a shell, as a user runs it (06), and through its CLI entry point for
    every other notebook."""
    from click.testing import CliRunner
    from papermill.cli import papermill

    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        ipynb = py.with_suffix(".ipynb")
        if py.stem == "06_train_mind":
            exe = Path(sys.executable).with_name("papermill")
            proc = subprocess.run(
                [str(exe), "--help-notebook", str(ipynb.relative_to(ROOT))],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            text = proc.stdout
        else:
            result = CliRunner().invoke(papermill, ["--help-notebook", str(ipynb)])
            assert result.exit_code == 0, result.output
            text = result.output
        for name, (kind, help_text) in _parameters(py).items():
            assert f"{name}: {kind} (default" in text, f"{ipynb.name}: papermill does not list {name}: {kind}"
            assert " ".join(help_text.split()) in " ".join(text.split()), f"{ipynb.name}: no help for {name}"


def test_training_notebooks_have_progress_and_all_have_solutions_and_repo_relative_outputs():
    trains = {"06", "07", "09", "11"}
    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        params = _parameters(py)
        assert params["solutions"][0] == "bool", py.name
        assert ("progress" in params) == (py.name[:2] in trains), py.name
        src = jupytext.read(py).cells
        assert [c for c in src if "parameters" in c.metadata.get("tags", [])][0].source.count(
            '"runs/{size}/'
        ) == 2
        text = py.read_text()
        assert (
            "project.output_dir(results_dir, size)" in text and "project.output_dir(fig_dir, size)" in text
        ), py.name


def test_output_dir_resolves_from_the_repository_root_wherever_the_caller_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a shell anywhere else, e.g. papermill started in notebooks/
    assert project.output_dir("runs/{size}/results", "smoke") == ROOT / "runs" / "smoke" / "results"
    assert project.output_dir("figures") == ROOT / "figures"
    assert project.output_dir(tmp_path / "x") == tmp_path / "x"
    assert project.output_dir("") == ""
    with pytest.raises(ValueError, match="size"):
        project.output_dir("runs/{size}/results")
    write_results("r", {"a": 1}, tmp_path / "abs")
    assert json.loads((tmp_path / "abs" / "r.json").read_text()) == {"a": 1}


def test_default_outputs_are_ignored_by_git_and_committed_figures_are_not():
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    for path in (
        "runs/smoke/results/06_train_mind.json",
        "runs/demo/figures/02_split.png",
        "runs/demo/06.ipynb",
        "runs/full/reproduction.md",
        "results/x.json",
        "studies/synthetic-smoke-seed0/study.json",
    ):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
    for path in ("figures/02_split.png", "papers/reproduction.md", "papers/timings.json", "runs/README.md"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 1, path


def test_pair_check_advice_after_a_jupyterlab_save_works(tmp_path, monkeypatch):
    """Save from JupyterLab = the .ipynb is newer, holds outputs and an edit; `make sync` (notebooks.sync)
    must carry the edit into the .py, strip the outputs and leave the .py header as it was."""
    for suffix in (".py", ".ipynb"):
        shutil.copy(ROOT / "notebooks" / f"01_temporal_alignment{suffix}", tmp_path)
    monkeypatch.setattr(notebooks, "notebooks_dir", lambda: tmp_path)
    py, ipynb = tmp_path / "01_temporal_alignment.py", tmp_path / "01_temporal_alignment.ipynb"
    header = py.read_text().split("# %%", 1)[0]
    assert notebooks.pairs_out_of_sync() == []
    nb = nbformat.read(ipynb, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="study root: /x\n")]
    code.execution_count = 1
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    md.source += "\n\nA note added in JupyterLab."
    nb.metadata["language_info"] = {"name": "python", "version": "3.11"}
    nbformat.write(nb, ipynb)
    os.utime(ipynb, (py.stat().st_mtime + 10, py.stat().st_mtime + 10))
    advice = notebooks.pairs_out_of_sync()
    assert any("outputs" in a and "make sync" in a for a in advice), advice
    notebooks.sync()
    assert notebooks.pairs_out_of_sync() == []
    assert "A note added in JupyterLab." in py.read_text()
    assert py.read_text().split("# %%", 1)[0] == header, "make sync changed the .py header"
    again = nbformat.read(ipynb, as_version=4)
    assert not any(c.get("outputs") or c.get("execution_count") for c in again.cells if c.cell_type == "code")
    assert again.metadata.get("kernelspec") == notebooks.KERNELSPEC


def test_make_help_prints_the_measured_times():
    """`make help` reads papers/timings.json (written by `make reproduce`), not typed numbers, and names the
    notebooks it has no time for (a new notebook before the next publishing run)."""
    timings = json.loads((ROOT / "papers" / "timings.json").read_text())
    names = {nb.name for nb in notebooks.NOTEBOOKS}
    assert set(timings["demo"]) <= names and set(timings.get("full", {})) <= names, (
        "timings of renamed notebooks"
    )
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for size, target in (("demo", "make demo"), ("full", "make reproduce")):
        minutes = sum(timings[size].values()) / 60
        line = next(ln for ln in out.splitlines() if ln.startswith(target))
        assert f"{minutes:.1f} min" in line, (size, line)
        missing = [nb.name[:2] for nb in notebooks.NOTEBOOKS if nb.name not in timings[size]]
        assert (f"{', '.join(missing)} not yet measured" in line) == bool(missing), (size, line)
    assert not re.search(r"~\s*\d", out), "make help holds a typed estimate"


def test_progress_bar_redraws_a_bounded_number_of_times(capsys):
    """Outside a kernel it is a tqdm bar on stderr; 1000 steps redraw it about 20 times, not 1000."""
    from mindlib.progress import PROGRESS_UPDATES, progress_bar

    bar = progress_bar(1000, "lr 0.003 wd 0.01")
    for _ in range(1000):
        bar.set_postfix(epoch="1/1", refresh=False)
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    redraws = err.count("\r")
    assert 2 <= redraws <= PROGRESS_UPDATES + 3, redraws
    assert "lr 0.003 wd 0.01" in err and "1000/1000" in err


def test_every_module_is_listed_in_the_package_docstring_and_the_readme():
    """mindlib/__init__ and the README's layout block name every module and subpackage with one line each."""
    import re

    import mindlib

    root = Path(__file__).resolve().parent.parent
    modules = sorted(p.stem for p in (root / "mindlib").glob("*.py") if p.stem != "__init__")
    modules += sorted(p.parent.name for p in (root / "mindlib").glob("*/__init__.py"))
    readme = (root / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    for name, text in (("mindlib/__init__.py", mindlib.__doc__), ("README.md", layout)):
        listed = re.findall(r"^\s+([a-z_]+)\s{2,}\S", text, flags=re.M)
        missing = [m for m in modules if m not in listed]
        assert not missing, f"{name} does not list the modules {missing}"
        assert len(listed) == len(set(listed)), f"{name} lists a module twice"


def _package_sources():
    import ast

    for path in sorted((project.repo_root() / "mindlib").rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_package_imports_are_absolute_and_use_no_private_names_of_other_modules():
    import ast

    relative, private = [], []
    for path, tree in _package_sources():
        modules = set()  # names bound to mindlib modules in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    relative.append(f"{path.name}:{node.lineno}")
                if (node.module or "").startswith("mindlib"):
                    private += [
                        f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")
                    ]
                    if node.module == "mindlib":
                        modules |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                modules |= {a.asname for a in node.names if a.name.startswith("mindlib.") and a.asname}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                private.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not relative, f"relative imports (use `from mindlib... import`): {relative}"
    assert not private, f"private names used across modules (make them public or keep them inside): {private}"


def test_no_import_cycles_even_through_imports_inside_functions():
    import ast

    graph = {}
    for path, tree in _package_sources():
        parts = path.relative_to(project.repo_root()).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(tree):  # module level and inside functions alike
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mindlib"):
                if node.module == "mindlib":
                    targets |= {f"mindlib.{a.name}" for a in node.names}
                else:
                    targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("mindlib.")}
        graph[name] = targets - {name}
    graph = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    state, cycles = {}, []

    def visit(m, trail):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(trail[trail.index(t) :] + [t]))
            elif t not in state:
                visit(t, trail + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert len(graph) > 40 and not cycles, f"import cycles: {cycles}"


def _name_patterns(names: list[str], placeholder: str) -> list[re.Pattern]:
    """Figure names as regular expressions; ``placeholder`` matches an f-string field or a ``<name>``."""
    return [
        re.compile(re.sub(placeholder, ".+", re.escape(n).replace(r"\{", "{").replace(r"\}", "}")) + "$")
        for n in names
    ]


def test_committed_figures_are_the_ones_notebooks_draw_and_figures_readme_lists():
    """No stale figure: every committed PNG is drawn by a notebook's save_figure and has a row in
    figures/README.md, and every row names a committed file (make reproduce rewrites them all)."""
    drawn = re.findall(
        r"save_figure\([^,]+,\s*f?\"([^\"]+)\"",
        "".join(p.read_text() for p in (ROOT / "notebooks").glob("*.py")),
    )
    listed = re.findall(r"^\| `([^`]+)\.png` \|", (ROOT / "figures" / "README.md").read_text(), flags=re.M)
    committed = sorted(p.stem for p in (ROOT / "figures").glob("*.png"))
    drawn_re, listed_re = _name_patterns(drawn, r"\{[^}]+\}"), _name_patterns(listed, r"<[^>]+>")
    assert not [f for f in committed if not any(p.match(f) for p in drawn_re)], (
        "committed figures no notebook draws"
    )
    assert not [f for f in committed if not any(p.match(f) for p in listed_re)], (
        "figures missing from figures/README.md"
    )
    assert not [n for n, p in zip(listed, listed_re) if not any(p.match(f) for f in committed)], (
        "rows without a file"
    )
