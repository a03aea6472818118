"""Plotting helpers: parcel-to-vertex painting checked against the atlas by hand; figures saved to disk."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mindlib import plotting


def test_atlas_has_1000_parcels_and_seven_networks():
    atlas = plotting.schaefer_fsaverage5()
    assert atlas["left"].shape == atlas["right"].shape == (10242,)
    labels = np.union1d(atlas["left"], atlas["right"])
    assert labels.min() == 0 and labels.max() == 1000
    assert set(atlas["networks"]) == set(plotting.NETWORKS)
    # Schaefer numbering: parcels 1..500 left hemisphere, 501..1000 right.
    assert atlas["left"].max() <= 500 and atlas["right"][atlas["right"] > 0].min() > 500


def test_parcels_to_vertices_paints_each_vertex_with_its_parcel_value():
    atlas = plotting.schaefer_fsaverage5()
    values = np.arange(1000, dtype=float) * 10.0
    verts = plotting.parcels_to_vertices(values)
    for hemi in ("left", "right"):
        lab = atlas[hemi].astype(int)
        inside = lab > 0
        np.testing.assert_array_equal(verts[hemi][inside], (lab[inside] - 1) * 10.0)
        assert np.isnan(verts[hemi][~inside]).all()
    with pytest.raises(ValueError, match="one value per Schaefer parcel"):
        plotting.parcels_to_vertices(np.zeros(999))


def test_save_figure_writes_png_at_200_dpi_and_pdf_and_returns_nothing(tmp_path):
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 3))
    plotting.plot_matrix(np.eye(3), ax=ax, xlabel="x", ylabel="y", xticklabels=list("abc"))
    assert plotting.save_figure(fig, "eye", tmp_path) is None  # a cell ending with it prints nothing
    paths = [tmp_path / "eye.png", tmp_path / "eye.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    with Image.open(paths[0]) as im:
        assert round(im.info["dpi"][0]) >= 200
        assert im.size[0] >= 0.8 * 4 * 200  # bbox "tight" trims margins only
    plotting.save_figure(fig, "none", "")
    assert not (tmp_path / "none.png").exists()
    plt.close(fig)


def test_save_figure_takes_a_relative_folder_from_the_repository_root(tmp_path, monkeypatch):
    from mindlib.project import repo_root

    monkeypatch.chdir(tmp_path)
    rel = f"runs/test-{tmp_path.name}"
    fig, _ = plt.subplots()
    try:
        plotting.save_figure(fig, "x", rel)
        assert (repo_root() / rel / "x.png").exists() and not (tmp_path / rel).exists()
    finally:
        import shutil

        shutil.rmtree(repo_root() / rel, ignore_errors=True)
        plt.close(fig)


def test_split_figure_is_categorical_with_a_legend_and_readable_labels():
    import pandas as pd

    runs = [f"s01e{i:02d}a" for i in range(80)]
    desc = pd.DataFrame(
        [
            {"subject": s, "run": r, "split": ("train", "val", "test")[i % 3]}
            for s in ("sub-01", "sub-02")
            for i, r in enumerate(runs)
            if not (s == "sub-02" and i == 5)
        ]
    )
    # by hand: i % 3 gives 27 train, 27 val, 26 test runs per subject; sub-02 lacks run 5 (test)
    ax = plotting.plot_split(desc)
    fig = ax.figure
    assert len(fig.axes) == 1, "no colorbar: the three sides are categories"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["train (54 runs)", "val (54 runs)", "test (51 runs)"] and legend[3] == "missing run"
    grid = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    assert grid[0, 0] == 0 and grid[0, 1] == 1 and grid[0, 2] == 2 and np.isnan(grid[1, 5])
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert len(boxes) == 80
    assert all(a.x1 <= b.x0 + 0.5 for a, b in zip(boxes, boxes[1:])), "x labels overlap"
    with pytest.raises(ValueError, match="split values"):
        plotting.plot_split(desc.assign(split="holdout"))
    plt.close(fig)


def test_table1_bars_are_means_with_seed_std_error_bars_and_an_outside_legend():
    import pandas as pd

    cells = pd.DataFrame(
        [
            {"backbone": "tribe", "decoder": "mind", "seed": 0, "val_r": 0.30},
            {"backbone": "tribe", "decoder": "mind", "seed": 1, "val_r": 0.32},
            {"backbone": "tribe", "decoder": "mind", "seed": 2, "val_r": 0.34},
            {"backbone": "tribe", "decoder": "ridge", "seed": 0, "val_r": 0.20},
        ]
    )
    ax = plotting.plot_table1(cells, ["tribe"], ["mind", "ridge"])
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.32, 0.20])  # hand-computed means
    (bars,) = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    segment = bars.lines[2][0].get_segments()[0]
    np.testing.assert_allclose(segment[:, 1], [0.32 - 0.02, 0.32 + 0.02])  # std over 3 seeds (ddof 1) = 0.02
    assert "3 seeds" in ax.get_title()
    ax.figure.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1, "the legend covers the bars"
    plt.close(ax.figure)


def test_brain_map_labels_views_hemispheres_and_colorbar():
    fig = plotting.plot_brain_map(
        np.linspace(0, 1, 1000), title="tribe · MIND: test r per parcel", label="Pearson r"
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "left hemisphere, lateral",
        "left hemisphere, medial",
        "right hemisphere, medial",
        "right hemisphere, lateral",
    ]
    assert fig.axes[-1].get_ylabel() == "Pearson r"
    assert fig._suptitle.get_text() == "tribe · MIND: test r per parcel"
    plt.close(fig)


def test_network_bars_are_network_means():
    nets = plotting.schaefer_fsaverage5()["networks"]
    values = np.array([plotting.NETWORKS.index(n) for n in nets], dtype=float)
    fig, ax = plt.subplots()
    plotting.plot_network_bars(values, ax=ax)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.arange(len(plotting.NETWORKS)))
    plt.close(fig)


def test_legend_beside_sits_right_of_the_axes_and_covers_no_data():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1, 2], [1.0, 2.0, 3.0], label="bars")
    legend = plotting.legend_beside(ax, title="decoder", frameon=False)
    fig.canvas.draw()
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 > axes_box.x1  # wholly to the right of the axes
    assert axes_box.y1 - 12 < box.y1 <= axes_box.y1 + 1  # top-aligned with them (less the border pad, pixels)
    assert legend.get_title().get_text() == "decoder" and not legend.get_frame_on()
    plt.close(fig)
