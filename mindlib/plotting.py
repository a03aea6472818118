"""Figures: brain maps on fsaverage5, gates, priors, training curves (paper §3.4, Fig. 3).

Every function takes ``ax=None`` (or returns a new figure when it needs several axes), returns what it
drew and never calls ``plt.show()``. :func:`save_figure` writes ``<fig_dir>/<name>.png`` and ``.pdf``.
Brain maps use the Schaefer-1000 (7 networks) labels on fsaverage5 shipped in ``mindlib/data`` and the
fsaverage5 meshes shipped with nilearn (nothing is downloaded).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

NETWORKS = ("Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default")


@lru_cache(maxsize=1)
def schaefer_fsaverage5() -> dict:
    """Schaefer-1000 labels on fsaverage5: ``left``/``right`` (10242,) ints in 1..1000 (0 = medial wall),
    ``names`` (1000,), ``networks`` (1000,) network of each parcel."""
    with files("mindlib").joinpath("data/schaefer1000_7n_fsaverage5.npz").open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        out = {k: z[k] for k in z.files}
    out["networks"] = np.array([str(n).split("_")[2] for n in out["names"]])
    return out


def parcels_to_vertices(values: np.ndarray) -> dict[str, np.ndarray]:
    """Paint parcel values ``(1000,)`` onto fsaverage5 vertices: ``{"left": (10242,), "right": (10242,)}``,
    NaN on the medial wall."""
    values = np.asarray(values, dtype=float)
    atlas = schaefer_fsaverage5()
    if values.shape != (len(atlas["names"]),):
        raise ValueError(f"expected one value per Schaefer parcel, shape ({len(atlas['names'])},), got {values.shape}")
    padded = np.concatenate([[np.nan], values])  # label 0 -> NaN
    return {h: padded[atlas[h].astype(int)] for h in ("left", "right")}


def save_figure(fig, name: str, fig_dir: str | Path | None) -> list[Path]:
    """Save ``fig`` as ``<fig_dir>/<name>.png`` and ``.pdf``; an empty ``fig_dir`` saves nothing."""
    if not fig_dir:
        return []
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = [fig_dir / f"{name}.png", fig_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def plot_brain_map(
    values: np.ndarray,
    title: str = "",
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    fig=None,
):
    """Parcel values ``(1000,)`` on the inflated fsaverage5 surface: lateral and medial views of both
    hemispheres. Returns the figure."""
    from nilearn import datasets, plotting

    mesh = datasets.load_fsaverage("fsaverage5")["inflated"]
    sulc = datasets.load_fsaverage_data("fsaverage5", data_type="sulcal")
    verts = parcels_to_vertices(values)
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    vmin = float(np.percentile(finite, 2)) if vmin is None else vmin
    vmax = float(np.percentile(finite, 98)) if vmax is None else vmax
    fig = fig or plt.figure(figsize=(10, 2.8))
    views = [("left", "lateral"), ("left", "medial"), ("right", "medial"), ("right", "lateral")]
    for i, (hemi, view) in enumerate(views):
        ax = fig.add_subplot(1, 4, i + 1, projection="3d")
        plotting.plot_surf(
            mesh.parts[hemi], surf_map=verts[hemi], bg_map=sulc.data.parts[hemi], hemi=hemi, view=view,
            cmap=cmap, vmin=vmin, vmax=vmax, axes=ax, colorbar=False, bg_on_data=True,
        )
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(sm, ax=fig.axes, shrink=0.6, fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def plot_network_bars(values: np.ndarray, ax=None, label: str = "Pearson r", title: str = ""):
    """Mean of parcel values ``(1000,)`` per Yeo-7 network, as bars. Returns the axes."""
    ax = ax or plt.gca()
    nets = schaefer_fsaverage5()["networks"]
    means = [np.nanmean(np.asarray(values)[nets == n]) for n in NETWORKS]
    ax.bar(NETWORKS, means, color=plt.cm.tab10(np.arange(len(NETWORKS))))
    ax.set_ylabel(label)
    ax.tick_params(axis="x", rotation=45)
    if title:
        ax.set_title(title)
    return ax


def plot_matrix(
    matrix: np.ndarray,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    cmap: str = "viridis",
    xticklabels=None,
    yticklabels=None,
    colorbar: bool = True,
    **imshow_kw,
):
    """A matrix as an image with labelled axes (overlap matrices, gates, priors). Returns the axes."""
    ax = ax or plt.gca()
    im = ax.imshow(np.asarray(matrix), aspect="auto", interpolation="nearest", cmap=cmap, **imshow_kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)), labels=xticklabels, rotation=45, ha="right")
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)), labels=yticklabels)
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    return ax


def plot_history(history: list[dict], ax=None, title: str = ""):
    """Training loss and validation r per epoch from a trainer history. Returns the axes (loss on the left)."""
    ax = ax or plt.gca()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_r"] for h in history], "s-", color="tab:red", label="validation r")
    ax2.set_ylabel("validation r", color="tab:red")
    if title:
        ax.set_title(title)
    return ax
