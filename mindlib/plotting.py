"""Figures: brain maps on fsaverage5, gates, priors, training curves (paper §3.4, Fig. 3).

Every function takes ``ax=None`` (or returns a new figure when it needs several axes), returns what it
drew and never calls ``plt.show()``. :func:`save_figure` writes ``<fig_dir>/<name>.png`` (at
:data:`DPI`) and ``.pdf``; a relative ``fig_dir`` is taken from the repository root.
Brain maps use the Schaefer-1000 (7 networks) labels on fsaverage5 shipped in ``mindlib/data`` and the
fsaverage5 meshes shipped with nilearn (nothing is downloaded). Legends go beside the axes
(:func:`legend_beside`), never over the data.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mindlib.layout import NETWORKS
from mindlib.project import output_dir

SPLITS = ("train", "val", "test")
SPLIT_COLORS = {
    "train": "#66c2a5",
    "val": "#fc8d62",
    "test": "#8da0cb",
}  # ColorBrewer Set2, colour-blind safe
DPI = 200  # resolution of saved PNGs


@lru_cache(maxsize=1)
def schaefer_fsaverage5() -> dict:
    """Schaefer-1000 labels on fsaverage5: ``left``/``right`` (10242,) ints in 1..1000 (0 = medial wall),
    ``names`` (1000,), ``networks`` (1000,) network of each parcel."""
    with files("mindlib").joinpath("atlas/schaefer1000_7n_fsaverage5.npz").open("rb") as fh:
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
        raise ValueError(
            f"expected one value per Schaefer parcel, shape ({len(atlas['names'])},), got {values.shape}"
        )
    padded = np.concatenate([[np.nan], values])  # label 0 -> NaN
    return {h: padded[atlas[h].astype(int)] for h in ("left", "right")}


def save_figure(fig, name: str, fig_dir: str | Path | None) -> None:
    """Save ``fig`` as ``<fig_dir>/<name>.png`` (:data:`DPI` dots per inch) and ``.pdf``.

    An empty ``fig_dir`` saves nothing (the figure is still shown in a notebook). A relative ``fig_dir`` is
    taken from the repository root (``mindlib.project.output_dir``). Returns nothing, so a notebook cell
    that ends with this call prints nothing.
    """
    if not fig_dir:
        return
    fig_dir = Path(output_dir(fig_dir))
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_dir / f"{name}.png", dpi=DPI, bbox_inches="tight")
    fig.savefig(fig_dir / f"{name}.pdf", bbox_inches="tight")


def legend_beside(ax, *args, **kwargs):
    """A legend to the right of the axes, top-aligned, so that it never covers the data.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    *args, **kwargs
        Passed on to ``ax.legend`` (handles, labels, ``title``, ``fontsize``, ``frameon``, ...).

    Returns
    -------
    matplotlib.legend.Legend
    """
    return ax.legend(*args, loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


def plot_brain_map(
    values: np.ndarray,
    title: str = "",
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    fig=None,
    label: str = "Pearson r",
):
    """Parcel values ``(1000,)`` on the inflated fsaverage5 surface: lateral and medial views of both
    hemispheres, each titled with its hemisphere and view, and a colorbar labelled ``label``.

    Name the split (and the model) in ``title``, e.g. ``"tribe · MIND: test r per parcel"``. Colour limits
    default to the 2nd and 98th percentiles of the finite values. Returns the figure.
    """
    from nilearn import datasets, plotting

    mesh = datasets.load_fsaverage("fsaverage5")["inflated"]
    sulc = datasets.load_fsaverage_data("fsaverage5", data_type="sulcal")
    verts = parcels_to_vertices(values)
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    vmin = float(np.percentile(finite, 2)) if vmin is None else vmin
    vmax = float(np.percentile(finite, 98)) if vmax is None else vmax
    fig = fig or plt.figure(figsize=(12, 3.6))
    views = [("left", "lateral"), ("left", "medial"), ("right", "medial"), ("right", "lateral")]
    for i, (hemi, view) in enumerate(views):
        ax = fig.add_subplot(1, 4, i + 1, projection="3d")
        plotting.plot_surf(
            mesh.parts[hemi],
            surf_map=verts[hemi],
            bg_map=sulc.data.parts[hemi],
            hemi=hemi,
            view=view,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            axes=ax,
            colorbar=False,
            bg_on_data=True,
        )
        ax.set_title(f"{hemi} hemisphere, {view}", fontsize=10, y=0.95)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    cbar = fig.colorbar(sm, ax=fig.axes, shrink=0.6, fraction=0.02, pad=0.01)
    cbar.set_label(label)
    if title:
        fig.suptitle(title, y=0.9)
    return fig


def plot_split(desc, ax=None, title: str = "split of every subject's runs"):
    """Which side (train / val / test) each subject's runs are on, one categorical colour per side.

    Parameters
    ----------
    desc : DataFrame
        One row per run record with columns ``subject``, ``run`` and ``split`` (``Study.describe()``).
    ax : matplotlib Axes, optional
    title : str

    Returns
    -------
    ax : the axes (runs on x, subjects on y; blank cells are runs a subject does not have).
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    unknown = sorted(set(desc["split"]) - set(SPLITS))
    if unknown:
        raise ValueError(f"split values must be among {SPLITS}, got {unknown}")
    subjects = sorted(desc["subject"].unique())
    runs = sorted(desc["run"].unique())
    grid = np.full((len(subjects), len(runs)), np.nan)
    for subject, run, side in zip(desc["subject"], desc["run"], desc["split"]):
        grid[subjects.index(subject), runs.index(run)] = SPLITS.index(side)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8.0, 0.13 * len(runs)), 1.2 + 0.35 * len(subjects)))
    cmap = ListedColormap([SPLIT_COLORS[s] for s in SPLITS])
    ax.imshow(
        grid,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        norm=BoundaryNorm(np.arange(len(SPLITS) + 1) - 0.5, len(SPLITS)),
    )
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    fontsize = float(np.clip(0.9 * 72 * width_in / max(len(runs), 1), 4, 9))  # labels never overlap
    ax.set_xticks(range(len(runs)), labels=runs, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(subjects)), labels=subjects)
    ax.set_xlabel("run")
    ax.set_title(title)
    counts = {s: int((desc["split"] == s).sum()) for s in SPLITS}
    legend_beside(
        ax,
        handles=[Patch(color=SPLIT_COLORS[s], label=f"{s} ({counts[s]} runs)") for s in SPLITS]
        + [Patch(facecolor="white", edgecolor="0.6", label="missing run")],
        frameon=False,
    )
    return ax


def plot_table1(
    cells,
    backbones=None,
    decoders=None,
    metric: str = "val_r",
    ax=None,
    ylabel: str = "validation r",
    title: str = "Table 1: decoders on each backbone",
):
    """Table 1 as grouped bars: mean of ``metric`` over seeds per backbone and decoder, ± one standard
    deviation over seeds as error bars (none where a cell has one seed), legend outside the bars.

    Parameters
    ----------
    cells : DataFrame
        One row per executed cell with columns ``backbone``, ``decoder`` and ``metric`` (one row per seed).
    backbones, decoders : list of str, optional
        Order of the groups and of the bars (default: order of appearance).
    metric : str
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : the axes; one bar container per decoder.
    """
    backbones = list(backbones) if backbones is not None else list(dict.fromkeys(cells["backbone"]))
    decoders = list(decoders) if decoders is not None else list(dict.fromkeys(cells["decoder"]))
    g = cells.groupby(["backbone", "decoder"])[metric]
    mean, std, n = g.mean(), g.std(), g.count()
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.4 * len(backbones) + 0.1 * len(backbones) * len(decoders), 3.2))
    width = 0.8 / len(decoders)
    x = np.arange(len(backbones))
    for i, dec in enumerate(decoders):
        keys = [(b, dec) for b in backbones]
        heights = np.array([mean.get(k, np.nan) for k in keys], dtype=float)
        spread = np.array([std.get(k, np.nan) if n.get(k, 0) > 1 else np.nan for k in keys], dtype=float)
        centres = x - 0.4 + width * (i + 0.5)
        ax.bar(centres, heights, width, label=dec, color=plt.cm.tab10(i))
        has = np.isfinite(spread)  # error bars only where several seeds ran
        if has.any():
            ax.errorbar(centres[has], heights[has], yerr=spread[has], fmt="none", ecolor="k", capsize=2, lw=1)
    ax.set_xticks(x, labels=backbones)
    ax.set_ylabel(ylabel)
    seeds = int(n.max()) if len(n) else 0
    ax.set_title(title + (f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""))
    legend_beside(ax, title="decoder", frameon=False)
    return ax


def plot_ablations(afire, sadgate, recovery: str | None = "prior_r_mean"):
    """Notebook 08's Tables 3 and 4 side by side (first backbone of each).

    Parameters
    ----------
    afire : DataFrame
        Table 3 cells: ``variant``, ``backbone``, ``seed``, ``val_r`` and one ``without <modality>`` column each.
    sadgate : DataFrame
        Table 4 cells: ``variant``, ``backbone``, ``seed``, ``val_r`` and (synthetic studies) ``recovery``.
    recovery : str or None
        The subject-recovery column of ``sadgate``; None draws validation r alone.

    Returns
    -------
    Figure
        Left: validation r with every modality and with each one removed at inference, per AFIRE variant.
        Right: validation r against subject recovery per parametrisation. Error bars: ± std over seeds.
    """
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.6), layout="constrained")
    a = afire[afire["backbone"] == afire["backbone"].iloc[0]]
    cols = ["val_r", *[c for c in a if c.startswith("without ")]]
    g = a.groupby("variant", sort=False)[cols]
    mean, std = g.mean(), g.std()
    width = 0.8 / len(cols)
    x = np.arange(len(mean))
    for i, c in enumerate(cols):
        centres = x - 0.4 + width * (i + 0.5)
        axes[0].bar(
            centres, mean[c], width, label="all modalities" if c == "val_r" else c, color=plt.cm.tab10(i)
        )
        if std[c].notna().any():
            axes[0].errorbar(centres, mean[c], yerr=std[c], fmt="none", ecolor="k", capsize=2, lw=1)
    axes[0].set_xticks(x, labels=list(mean.index))
    axes[0].set_ylabel("validation r")
    axes[0].set_title(f"Table 3: AFIRE variants, {a['backbone'].iloc[0]}")
    legend_beside(axes[0], fontsize=7, frameon=False)
    b = sadgate[sadgate["backbone"] == sadgate["backbone"].iloc[0]]
    cols = ["val_r", *([recovery] if recovery else [])]
    g = b.groupby("variant", sort=False)[cols]
    mean, std = g.mean(), g.std()
    for i, (name, row) in enumerate(mean.iterrows()):
        y, yerr = (row[recovery], std.loc[name, recovery]) if recovery else (i, None)
        axes[1].errorbar(
            row["val_r"],
            y,
            xerr=std.loc[name, "val_r"],
            yerr=yerr,
            fmt="o",
            capsize=2,
            color=plt.cm.tab10(i),
            label=name,
        )
    axes[1].set_xlabel("validation r")
    axes[1].set_ylabel("subject recovery r (effective prior)" if recovery else "variant")
    axes[1].set_title(f"Table 4: SADGate parametrisations, {b['backbone'].iloc[0]}")
    legend_beside(axes[1], fontsize=7, frameon=False)
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
    colorbar_label: str = "",
    **imshow_kw,
):
    """A matrix as an image with labelled axes (overlap matrices, gates, priors), its colour bar labelled with
    ``colorbar_label``. Returns the axes."""
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
        ax.figure.colorbar(im, ax=ax, label=colorbar_label)
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
