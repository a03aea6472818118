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


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    plotting.plot_matrix(np.eye(3), ax=ax, xlabel="x", ylabel="y", xticklabels=list("abc"))
    paths = plotting.save_figure(fig, "eye", tmp_path)
    assert [p.name for p in paths] == ["eye.png", "eye.pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert plotting.save_figure(fig, "eye", "") == []
    plt.close(fig)


def test_network_bars_are_network_means():
    nets = plotting.schaefer_fsaverage5()["networks"]
    values = np.array([plotting.NETWORKS.index(n) for n in nets], dtype=float)
    fig, ax = plt.subplots()
    plotting.plot_network_bars(values, ax=ax)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.arange(len(plotting.NETWORKS)))
    plt.close(fig)
