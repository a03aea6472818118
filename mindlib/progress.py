"""Progress bars for long loops: an ETA, a bounded number of redraws, one output per bar in a notebook.

The long loops of the package (a fit's epochs, few-shot budgets, feature extraction and imports) show a
:func:`progress_bar`: a tqdm bar that redraws at most about :data:`PROGRESS_UPDATES` times. Inside a
Jupyter kernel (JupyterLab, papermill) it is one display output updated in place, so a saved notebook
holds one output per bar, showing its last state; elsewhere it is an ordinary tqdm bar on stderr.
"""

from __future__ import annotations

import math

from tqdm import tqdm

__all__ = ["PROGRESS_UPDATES", "progress_bar"]

PROGRESS_UPDATES = 20  # a progress bar redraws at most about this many times


class _DisplayLine:
    """A file for tqdm inside a Jupyter kernel: every redraw replaces the text of one display output.

    JupyterLab shows it live; papermill and nbclient apply the updates to the same output, so a saved
    notebook holds one output per bar, showing its last state.
    """

    def __init__(self) -> None:
        from IPython.display import display

        self._handle = display({"text/plain": ""}, raw=True, display_id=True)
        self.encoding = "utf-8"  # tqdm draws unicode blocks

    def write(self, text: str) -> None:
        lines = [x for x in text.replace("\n", "\r").split("\r") if x.strip()]
        if lines:
            self._handle.update({"text/plain": lines[-1]}, raw=True)

    def flush(self) -> None:
        pass


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def progress_bar(
    total: int | None,
    desc: str,
    disable: bool = False,
    unit: str = "step",
    updates: int = PROGRESS_UPDATES,
    iterable=None,
):
    """A tqdm bar that redraws at most about ``updates`` times, with an ETA.

    In a Jupyter kernel (JupyterLab, papermill) the bar is one display output updated in place, so a saved
    notebook stores one output per bar however long the loop; elsewhere it is an ordinary tqdm bar on
    stderr. Either way it redraws every ``total / updates`` steps and at most every 0.5 s.

    Parameters
    ----------
    total : int or None
        Number of updates the loop makes (None: unknown, no ETA).
    desc : str
        Label, e.g. ``"lr 0.003 wd 0.01"``.
    disable : bool
        No bar at all.
    unit : str
    updates : int
        Upper bound on redraws between the first and the last.
    iterable : iterable, optional
        Wrap it, as ``tqdm(iterable)`` does.
    """
    file = _DisplayLine() if not disable and _in_kernel() else None
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=disable,
        unit=unit,
        file=file,
        ncols=100 if file else None,
        dynamic_ncols=file is None,
        miniters=max(1, math.ceil((total or 0) / max(updates, 1))),
        mininterval=0.5,
    )
