"""The rendered tutorial (``docs/build.py``, ``make docs``) and the method page.

The slow tests build the site at smoke size once per session (the ``smoke_docs`` fixture of conftest.py,
reusing executed notebooks from ``runs/smoke/`` or ``$MIND_DOCS_NOTEBOOKS``) and read it as a browser would
see it: pages in story order, every image present, the figures of every notebook shown. The fast tests
check the checks themselves on small hand-made notebooks and pages.
"""

import html.parser
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from mindlib import notebooks

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
build = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(build)

SECTIONS = (
    "Data",
    "Time",
    "Backbones and the feature store",
    "AFIRE",
    "SADGate",
    "MIND",
    "Objective and training",
    "Baselines",
    "Evaluation",
    "Interpretation",
)


class _Page(html.parser.HTMLParser):
    """Images, link targets and element ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.links, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if attrs.get("id"):
            self.ids.add(attrs["id"])


def read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


# ------------------------------------------------------------------------------------- method page


def test_method_sections_numbered_like_the_citations():
    """docs/method.md has §1..§10 in order, with the titles the code's "docs/method.md §N" citations rely on."""
    text = (ROOT / "docs" / "method.md").read_text()
    headings = re.findall(r"^## §(\d+) (.+)$", text, flags=re.M)
    assert [int(n) for n, _ in headings] == list(range(1, 11))
    assert tuple(title for _, title in headings) == SECTIONS
    for n, title in enumerate(SECTIONS, start=1):  # the table of contents links each section's anchor
        anchor = f"{n}-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        assert f"(#{anchor})" in text, f"method.md's table lacks a link to #{anchor}"


def test_method_names_only_existing_modules():
    """Every ``mindlib.x`` the method page names is a module of the package (no stale names)."""
    text = (ROOT / "docs" / "method.md").read_text()
    named = set(re.findall(r"`mindlib\.([a-z_]+)", text))
    missing = [m for m in sorted(named) if importlib.util.find_spec(f"mindlib.{m}") is None]
    assert not missing, f"docs/method.md names modules that do not exist: {missing}"


# ------------------------------------------------------------------------------ the checks themselves


def _notebook(path: Path, cells: list[dict]) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _code(source: str, outputs=(), count=1) -> dict:
    return {
        "cell_type": "code",
        "source": source,
        "outputs": list(outputs),
        "execution_count": count,
        "metadata": {},
    }


PNG = {
    "output_type": "display_data",
    "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
    "metadata": {},
}


def test_check_executed_accepts_a_complete_notebook(tmp_path):
    nb = _notebook(tmp_path / "a.ipynb", [_code("import matplotlib.pyplot as plt\nplt.plot([1, 2])", [PNG])])
    assert build.check_executed(nb) == []


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([_code("x = 1", count=None)], "never ran"),
        (
            [
                _code(
                    "1/0",
                    [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "", "traceback": []}],
                )
            ],
            "ZeroDivisionError",
        ),
        ([_code("fig, ax = plt.subplots()\nax.plot([1])")], "holds no figure"),
    ],
    ids=["not-executed", "error", "figure-lost"],
)
def test_check_executed_flags(tmp_path, cells, expected):
    nb = _notebook(tmp_path / "b.ipynb", cells)
    problems = build.check_executed(nb)
    assert len(problems) == 1 and expected in problems[0] and str(nb) in problems[0]


def test_check_executed_flags_missing_and_stale(tmp_path):
    assert "missing" in build.check_executed(tmp_path / "none.ipynb")[0]
    nb = _notebook(tmp_path / "c.ipynb", [_code("x = 1")])
    source = tmp_path / "c.py"
    source.write_text("x = 1\n")
    os.utime(nb, (1_000_000, 1_000_000))  # executed long before its source was edited
    assert "older than its source" in build.check_executed(nb, source)[0]


def test_check_site_flags_missing_image_and_lost_figures(tmp_path):
    html_dir = tmp_path / "html"
    (html_dir / "tutorial").mkdir(parents=True)
    (html_dir / "_images").mkdir()
    (html_dir / "_images" / "ok.png").write_bytes(b"\x89PNG")
    for name in ("index.html", "method.html", "api/index.html"):
        (html_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (html_dir / name).write_text('<img src="_images/ok.png">' if name == "index.html" else "")
    (html_dir / "tutorial" / "index.html").write_text('<img src="../_images/gone.png">')
    (html_dir / "tutorial" / "00_x.html").write_text('<img src="../_images/ok.png">')
    nb = _notebook(tmp_path / "00_x.ipynb", [_code("plt.plot()", [PNG, PNG])])
    problems = build.check_site(html_dir, [(None, nb)])
    assert len(problems) == 2
    assert "gone.png does not exist" in problems[0]
    assert "shows 1 figures" in problems[1] and "holds 2" in problems[1]


def test_api_lists_every_module():
    names = build.modules()
    assert "mindlib" in names and "mindlib.sadgate" in names and "mindlib.mind" in names
    assert not [n for n in names if "._" in n]
    consts = {name for name, _, _ in build.constants("mindlib.align")}
    assert {"TR_S", "FEATURE_HZ", "DEFAULT_LAG_TRS"} <= consts


def test_readme_shows_key_figures_and_how_to_build_the_site():
    readme = (ROOT / "README.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert 3 <= len(figures) <= 4, f"the README should show 3-4 key figures inline, it shows {figures}"
    for fig in figures:
        assert (ROOT / fig).is_file(), f"README figure {fig} does not exist"
    assert "make docs" in readme and "docs/_build/" in readme


# ---------------------------------------------------------------------------------- the built site


@pytest.mark.slow
def test_broken_reference_fails_the_build(tmp_path, capfd):
    """The configuration is strict: a reference to a name that does not exist stops the build."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text("# t\n\nSee {py:func}`mindlib.align.no_such_function`.\n")
    with pytest.raises(SystemExit, match="sphinx-build failed"):
        build.sphinx(src, tmp_path / "site" / "html", "smoke")  # the command make docs runs
    assert "no_such_function" in capfd.readouterr().err


@pytest.mark.slow
def test_site_has_every_page_in_story_order(smoke_docs):
    html_dir = smoke_docs
    for name in ("index.html", "method.html", "tutorial/index.html", "api/index.html"):
        assert (html_dir / name).is_file(), name
    tutorial = read_page(html_dir / "tutorial" / "index.html")
    order = [link.split("#")[0].removesuffix(".html") for link in tutorial.links if re.match(r"\d\d_", link)]
    story = [nb.name for nb in notebooks.NOTEBOOKS]
    assert list(dict.fromkeys(order)) == story  # the table lists the notebooks in the order they run
    for module in build.modules():
        assert (html_dir / "api" / f"{module}.html").is_file(), module
    sadgate = read_page(html_dir / "api" / "mindlib.sadgate.html")
    assert {"mindlib.sadgate.SADGate", "mindlib.sadgate.balance_loss"} <= sadgate.ids
    method = read_page(html_dir / "method.html")
    assert {"1-data", "5-sadgate", "10-interpretation"} <= method.ids
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()  # equations render offline
    for page in html_dir.rglob("*.html"):
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert not remote, f"{page} loads {remote} from the network"
    for page in (html_dir / "index.html", html_dir / "tutorial" / "index.html"):
        text = page.read_text()
        assert "{{" not in text and "study size: smoke" in text, f"{page}: the study size is not filled in"


@pytest.mark.slow
def test_site_shows_every_figure(smoke_docs):
    html_dir = smoke_docs
    for nb in notebooks.NOTEBOOKS:
        page = read_page(html_dir / "tutorial" / f"{nb.name}.html")
        assert page.images, f"{nb.name}: the rendered page shows no figure"
        for src in page.images:
            assert (html_dir / "tutorial" / src).resolve().is_file(), f"{nb.name}: {src} missing"
        executed = json.loads((html_dir.parent / "src" / "tutorial" / f"{nb.name}.ipynb").read_text())
        figures = [
            o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})
        ]
        assert len(page.images) == len(figures), (
            f"{nb.name}: {len(page.images)} images for {len(figures)} figures"
        )
    text = (html_dir / "tutorial" / "06_train_mind.html").read_text()
    assert "Traceback" not in text


@pytest.mark.slow
def test_executed_notebooks_keep_figures_when_mplbackend_is_agg(tmp_path, studies_dir, monkeypatch):
    """`make` and the tests export MPLBACKEND=Agg; the kernels must still draw inline, or the site has no figures."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = notebooks.find("01")
    out = notebooks.execute(
        spec, "smoke", out_dir=tmp_path, parameters={"results_dir": str(tmp_path), "fig_dir": ""}
    )
    assert build.check_executed(out) == []
    nb = json.loads(out.read_text())
    assert sum(1 for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})) >= 1
    assert os.environ["MPLBACKEND"] == "Agg"  # the caller's environment is restored
