"""Tests for mindlib.precomputed: public per-stimulus HDF5 features (once per TR) into the feature store."""

import h5py
import numpy as np
import pytest

from mindlib import align, data, layout, precomputed, submission

LAYERS = {"text": ["lm/layers.4", "lm/layers.8"], "video": ["vision.block12"]}
# stimulus: (rows in the public file, TRs of its fMRI or target); off-by-one on purpose
LENGTHS = {
    "s01e01a": (30, 30),
    "s01e01b": (28, 28),
    "bourne01": (27, 26),
    "s07e01a": (17, 22),
    "chaplin1": (18, 18),
}


def _public_file(source, stimulus, n_rows, rng):
    path = source / layout.stimulus_relpath(stimulus, ".h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "lm/layers.4": rng.standard_normal((n_rows, 8)),
        "lm/layers.8": rng.standard_normal((n_rows, 8)),
        "vision.block12": rng.standard_normal((n_rows, 5)).astype(np.float16),
        "lm/layers.0": np.zeros((n_rows, 3)),
    }
    with h5py.File(path, "w") as f:
        for name, x in arrays.items():
            f.create_dataset(name, data=x)
    return arrays


@pytest.fixture()
def layout_dirs(tmp_path):
    rng = np.random.default_rng(0)
    source, root = tmp_path / "public", tmp_path / "study"
    arrays = {s: _public_file(source, s, rows, rng) for s, (rows, _) in LENGTHS.items()}
    for study in ("friends", "movie10"):
        path = layout.fmri_path(root, "sub-01", study)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            for i, (s, (_, n)) in enumerate(LENGTHS.items()):
                if layout.study_of(s) == study and layout.target_set_of(s) is None:
                    f.create_dataset(layout.h5_key(s, i + 1), data=rng.standard_normal((n, layout.N_PARCELS)))
    for target_set, stim in (("friends-s7", "s07e01a"), ("ood", "chaplin1")):
        p = layout.target_samples_path(root, "sub-01", target_set)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, {stim: LENGTHS[stim][1]}, allow_pickle=True)
    return source, root, arrays


def test_import_writes_the_chosen_layers_and_reports_lengths(layout_dirs):
    source, root, arrays = layout_dirs
    assert set(precomputed.find_files(source)) == set(LENGTHS)
    assert precomputed.list_layers(source / "ood/chaplin/ood_chaplin1.h5")["lm/layers.8"] == (18, 8)
    store, report = precomputed.import_features(source, root, "public", LAYERS, progress=False)
    assert store.feature_hz == pytest.approx(1 / align.TR_S)
    assert store.shape("text") == (2, 8) and store.shape("video") == (1, 5)
    for s, a in arrays.items():
        np.testing.assert_array_equal(
            store.load(s, "text"), np.stack([a["lm/layers.4"], a["lm/layers.8"]], 1).astype(np.float32)
        )
        np.testing.assert_array_equal(store.load(s, "video")[:, 0], a["vision.block12"])
    delta = report[report.modality == "text"].set_index("stimulus").delta_trs.to_dict()
    assert delta == {s: rows - n for s, (rows, n) in LENGTHS.items()}


def test_tr_rate_features_align_exactly(layout_dirs):
    source, root, arrays = layout_dirs
    precomputed.import_features(source, root, "public", LAYERS, progress=False)
    study = data.load_study(root, "public", subjects=["sub-01"], layer_fractions=(1.0,), lags_trs=(3,))
    for rec in study.records:
        a = arrays[rec.run]
        frames = (a["lm/layers.4"] + a["lm/layers.8"]) / 2  # the one layer group: mean of the two layers
        T = rec.n_trs
        expected = np.zeros((T, 8))
        expected[3:] = frames[: T - 3]  # TR t reads row t - 3, weight 1: no resampling
        np.testing.assert_allclose(rec.features["text"], expected, rtol=1e-5, atol=1e-6)
        assert not rec.valid[:3].any() and rec.valid[3:].all()  # bourne01's extra row is simply not read
    # season 7: 5 rows short of the target; at a 3-TR lag TRs 20 and 21 would read rows 17 and 18
    targets = submission.load_targets(root, "friends-s7", subjects=["sub-01"])
    records, report = submission.prediction_records(study, targets)
    (rec,) = records
    assert rec.fmri.shape == (22, layout.N_PARCELS) and list(np.flatnonzero(~rec.valid)) == [0, 1, 2, 20, 21]
    assert report.n_uncovered.tolist() == [5] and report.gap_s.tolist() == pytest.approx([-5 * align.TR_S])


def test_import_errors_name_the_file_and_layer(layout_dirs, tmp_path):
    source, root, _ = layout_dirs
    with pytest.raises(KeyError, match="lm/layers.99"):
        precomputed.import_features(source, root, "bad", {"text": ["lm/layers.99"]}, progress=False)
    with pytest.raises(ValueError, match="lm/layers.0"):
        precomputed.import_features(
            source, root, "bad", {"text": ["lm/layers.4", "lm/layers.0"]}, progress=False
        )
    with pytest.raises(FileNotFoundError, match="s09e01a"):
        precomputed.import_features(source, root, "bad", LAYERS, stimuli=["s09e01a"], progress=False)
    misplaced = source / "friends" / "s2" / "friends_s01e01b.h5"
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(b"")
    with pytest.raises(ValueError, match="friends/s1/friends_s01e01b.h5"):
        precomputed.find_files(source)
    with pytest.raises(FileNotFoundError, match="friends_s01e01a.h5"):
        precomputed.find_files(tmp_path / "empty")
