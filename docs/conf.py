"""Sphinx configuration of the rendered tutorial (built by ``docs/build.py``; ``make docs``).

``docs/build.py`` assembles a source folder under ``docs/_build/<size>/src`` (the pages of ``docs/``, the
executed notebooks in story order, one API page per module) and runs Sphinx on it with this file.
Notebooks are rendered as executed (``nb_execution_mode = "off"``): the site shows exactly the outputs
and figures of the run it was built from.
"""

import os
import re
from pathlib import Path

project = "mind"
author = "the mind authors"
copyright = "the mind authors"  # noqa: A001

extensions = [
    "myst_nb",  # Markdown pages and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into the site: equations render without a network
    "numpydoc",  # the package's docstrings are numpydoc
]

# Notebooks: render what was executed, never execute here.
nb_execution_mode = "off"
nb_merge_streams = True  # one block per stream instead of one per print
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath", "substitution"]
myst_heading_anchors = 3  # "docs/method.md §N" links: #1-data, #2-time, ...
myst_footnote_transition = False

# API reference from the numpydoc docstrings.
autodoc_default_options = {"members": True, "member-order": "bysource", "undoc-members": True}
autodoc_typehints = "none"  # types are in the numpydoc sections, written with shapes
autodoc_class_signature = "mixed"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_class_members_toctree = False

# Broken references fail the build (``sphinx-build -W -n``). References into other libraries cannot be
# resolved offline (no intersphinx inventories): only those are exempt, never mindlib's own names.
nitpicky = True
_EXTERNAL = r"(torch|nn|np|numpy|pd|pandas|scipy|sklearn|matplotlib|plt|h5py|nibabel|nilearn|papermill|jupytext|transformers|tqdm|pathlib|collections|typing|dataclasses|abc)(\..*)?"
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    # private helpers (a leading underscore) are named in prose but are not part of the reference
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*"),
    (
        r"py:.*",
        r"(Path|Tensor|ndarray|DataFrame|Module|Parameter|Generator|Sequence|Mapping|Iterable|Callable|Any|Literal|NamedTuple)",
    ),
]

templates_path = []
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "furo"
html_title = "mind"
html_static_path = []
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

# The size the notebooks were run at, shown on the landing page.
rst_prolog = f"""
.. |size| replace:: {os.environ.get("MIND_DOCS_SIZE", "demo")}
"""
myst_substitutions = {"size": os.environ.get("MIND_DOCS_SIZE", "demo")}
if not re.fullmatch(r"[a-z]+", myst_substitutions["size"]):
    raise ValueError(f"MIND_DOCS_SIZE must be a size name such as 'demo', got {myst_substitutions['size']!r}")


# "docs/method.md §N" in a docstring becomes a link to that section of the method page.
_METHOD = Path(__file__).resolve().parent / "method.md"
_ANCHORS = {
    int(n): f"{n}-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    for n, title in re.findall(r"^## §(\d+) (.+)$", _METHOD.read_text(encoding="utf-8"), flags=re.M)
}


def _link_method(app, what, name, obj, options, lines):
    def link(match):
        n = int(match.group(1))
        if n not in _ANCHORS:
            raise ValueError(f"{name}: cites docs/method.md §{n}, which has no such section")
        return f"`docs/method.md §{n} <../method.html#{_ANCHORS[n]}>`__"

    lines[:] = [re.sub(r"(?<!`)docs/method\.md §(\d+)", link, line) for line in lines]


def _skip_tuple_aliases(app, what, name, obj, skip, options):
    # NamedTuple fields carry the docstring "Alias for field number N"; their class documents them already
    doc = getattr(obj, "__doc__", None) or ""
    return True if doc.startswith("Alias for field number") else skip


def setup(app):
    app.connect("autodoc-process-docstring", _link_method)
    app.connect("autodoc-skip-member", _skip_tuple_aliases)
