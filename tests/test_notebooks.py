"""Smoke tier: every notebook runs end to end through papermill with tiny parameters.

Each notebook is converted from its Jupytext ``.py`` and executed in ``notebooks/`` on the smoke-size
synthetic study, with its progress bars on and the solutions of its "Try it" exercises executed; the test
then checks the results file it writes (expected keys, finite numbers) and the saved notebook (every
solution printed something, progress bars are one output each, labelled and finished).
The notebooks run in the story's order because later ones read what earlier ones wrote (08 -> 10).
"""

import json
import math

import nbformat
import pytest

from mindlib import notebooks

pytestmark = pytest.mark.slow

TRAINS = {"07_baselines", "06_train_mind", "09_isg", "11_new_backbone"}
MAX_OUTPUTS_PER_CELL = 25  # a cell that trains 4 models keeps 4 bars and a few printed lines


def _finite_numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _finite_numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _finite_numbers(v)
    elif isinstance(x, int | float) and not isinstance(x, bool):
        yield float(x)


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


def _is_bar(text: str) -> bool:
    return "%|" in text and ("step" in text or "budget" in text or "stimulus" in text)


@pytest.mark.parametrize("spec", notebooks.NOTEBOOKS, ids=[nb.name for nb in notebooks.NOTEBOOKS])
def test_notebook_smoke(spec, notebook_runs):  # the docs tests render these afterwards (tests/conftest.py)
    params = {
        "results_dir": str(notebook_runs["results"]),
        "fig_dir": str(notebook_runs["figures"]),
        "solutions": True,
    }
    if spec.name in TRAINS:
        params["progress"] = True
    executed = notebooks.execute(spec, "smoke", out_dir=notebook_runs["runs"], parameters=params)
    res = json.loads((notebook_runs["results"] / f"{spec.name}.json").read_text())
    missing = [k for k in spec.keys if k not in res]
    assert not missing, f"{spec.name} results lack {missing}"
    for k in spec.keys:
        assert res[k] is not None, f"{spec.name}: {k} is null (NaN)"
    numbers = list(_finite_numbers(res))
    assert numbers, f"{spec.name} wrote no numbers"
    assert all(math.isfinite(v) for v in numbers)

    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    solutions = [c for c in code if "solution" in c.metadata.get("tags", [])]
    assert 1 <= len(solutions) <= 3, f"{spec.name}: {len(solutions)} exercise solutions (1 to 3 expected)"
    for i, c in enumerate(solutions, 1):
        assert c.source.startswith("if solutions"), (
            f"{spec.name}: solution {i} is not hidden behind `solutions`"
        )
        assert any(_text(o).strip() for o in c.outputs), f"{spec.name}: solution {i} printed nothing"
    assert not any("[PosixPath(" in _text(o) for c in code for o in c.outputs), (
        f"{spec.name} prints file paths"
    )
    bars = []
    for c in code:
        assert len(c.outputs) <= MAX_OUTPUTS_PER_CELL, f"{spec.name}: a cell stores {len(c.outputs)} outputs"
        for o in c.outputs:
            if o.output_type == "stream":
                assert not _is_bar(o.text), (
                    f"{spec.name}: a progress bar redraw was stored as a stream: {o.text!r}"
                )
            elif _is_bar(_text(o)):
                bars.append(_text(o))
    if spec.name in TRAINS:
        assert bars, f"{spec.name} trains but showed no progress bar"
        assert all("100%|" in b for b in bars), f"{spec.name}: a stored bar is not in its final state: {bars}"
        fits = [b for b in bars if "step" in b]
        assert all(" lr " in f" {b}" and " wd " in b for b in fits), (
            f"{spec.name}: unlabelled training bar: {fits}"
        )
