"""Smoke tier: every notebook runs end to end through papermill with tiny parameters.

Each notebook is converted from its Jupytext ``.py`` and executed in ``notebooks/`` on the smoke-size
synthetic study; the test then checks the results file it writes (expected keys, finite numbers).
The notebooks run in the story's order because later ones read what earlier ones wrote (08 -> 09).
"""

import json
import math

import pytest

from mindlib import notebooks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def out_dirs(tmp_path_factory, studies_dir):
    base = tmp_path_factory.mktemp("nb")
    return {"runs": base / "runs", "results": base / "results", "figures": base / "figures"}


def _finite_numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _finite_numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _finite_numbers(v)
    elif isinstance(x, int | float) and not isinstance(x, bool):
        yield float(x)


@pytest.mark.parametrize("spec", notebooks.NOTEBOOKS, ids=[nb.name for nb in notebooks.NOTEBOOKS])
def test_notebook_smoke(spec, out_dirs):
    params = {"results_dir": str(out_dirs["results"]), "fig_dir": str(out_dirs["figures"])}
    notebooks.execute(spec, "smoke", out_dir=out_dirs["runs"], parameters=params)
    res = json.loads((out_dirs["results"] / f"{spec.name}.json").read_text())
    missing = [k for k in spec.keys if k not in res]
    assert not missing, f"{spec.name} results lack {missing}"
    for k in spec.keys:
        assert res[k] is not None, f"{spec.name}: {k} is null (NaN)"
    numbers = list(_finite_numbers(res))
    assert numbers, f"{spec.name} wrote no numbers"
    assert all(math.isfinite(v) for v in numbers)
