"""The repository's promises: one dependency list, paired notebooks, README commands that are tested."""

import re
import tomllib
from pathlib import Path

import yaml

from mindlib import notebooks
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
