"""Sphinx configuration of the rendered tutorial (built by ``docs/build.py``; ``make docs``).

``docs/build.py`` assembles a source folder under ``docs/_build/<size>/src`` (the pages of ``docs/``, the
executed notebooks in story order, one API page per module) and runs Sphinx on it with this file.
Notebooks are rendered as executed (``nb_execution_mode = "off"``): the site shows exactly the outputs
and figures of the run it was built from.
"""

import os
import re

project = "mind"
author = "the mind authors"
copyright = "the mind authors"  # noqa: A001

extensions = [
    "myst_nb",  # Markdown pages and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
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
    (r"py:.*", r"(Path|Tensor|ndarray|DataFrame|Module|Parameter|Generator|Sequence|Mapping|Iterable|Callable|Any|Literal|NamedTuple)"),
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
