"""Tests for mindlib.data: reader, transcripts, feature store, splits, study and windows.

Every file is written by hand here (no mindlib.synthetic), with small sizes.
"""

import functools
import json
import logging

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from mindlib import data, layout
from mindlib.align import overlap_matrix

V = 6  # parcels in the toy files


def write_h5(path, datasets):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, x in datasets.items():
            f.create_dataset(key, data=x)


def write_subject(root, subject, runs, first_session=1, n_trs=20, seed=0):
    """Write ``runs`` (names) of one subject, with session prefixes starting at ``first_session``."""
    rng = np.random.default_rng(seed)
    arrays = {run: rng.standard_normal((n_trs, V)).astype(np.float32) * 3 + 1 for run in runs}
    for study in layout.STUDIES:
        mine = {
            layout.h5_key(run, first_session + i): arrays[run]
            for i, run in enumerate(runs)
            if layout.study_of(run) == study
        }
        if mine:
            write_h5(layout.fmri_path(root, subject, study), mine)
    return arrays


# ----------------------------------------------------------------------------------------------
# fMRI
# ----------------------------------------------------------------------------------------------


def test_load_fmri_matches_runs_across_session_prefixes(tmp_path):
    runs = ["s01e01a", "s01e01b", "bourne01", "life01_run-1", "life01_run-2"]
    a1 = write_subject(tmp_path, "sub-01", runs, first_session=1, seed=1)
    a2 = write_subject(tmp_path, "sub-02", runs[::-1], first_session=7, seed=2)
    with h5py.File(layout.fmri_path(tmp_path, "sub-02", "friends"), "r") as f:
        assert "ses-010_task-s01e01b" in f  # prefixes differ from sub-01's
    y1 = data.load_fmri(tmp_path, "sub-01", n_parcels=V)
    y2 = data.load_fmri(tmp_path, "sub-02", n_parcels=V)
    assert list(y1) == list(y2) == sorted(runs)
    for run in runs:
        assert y1[run].dtype == np.float32 and y1[run].shape == (20, V)
        np.testing.assert_array_equal(y1[run], a1[run])
        np.testing.assert_array_equal(y2[run], a2[run])


FRIENDS_ONLY = (
    r"has a movie10 fMRI file; reading friends only"  # load_fmri's warning when no movie10 file exists
)


def test_load_fmri_one_study_file_is_enough(tmp_path, caplog):
    write_subject(tmp_path, "sub-01", ["s01e01a", "s01e02a"])
    with (
        caplog.at_level(logging.WARNING, logger="mindlib.data"),
        pytest.warns(UserWarning, match=FRIENDS_ONLY),
    ):
        y = data.load_fmri(tmp_path, "sub-01", n_parcels=V)
    assert list(y) == ["s01e01a", "s01e02a"]
    assert "movie10" in caplog.text


def test_load_fmri_without_files_names_paths_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.load_fmri(tmp_path, "sub-03")
    msg = str(err.value)
    assert str(layout.fmri_path(tmp_path, "sub-03", "friends")) in msg
    assert str(layout.fmri_path(tmp_path, "sub-03", "movie10")) in msg
    assert "make_study" in msg and "Algonauts 2025" in msg


def test_load_fmri_wrong_parcel_count(tmp_path):
    path = layout.fmri_path(tmp_path, "sub-01", "friends")
    write_h5(path, {"ses-001_task-s01e01a": np.zeros((10, 999), np.float32)})
    with pytest.raises(ValueError, match=r"s01e01a.*999 parcels, expected 1000") as err:
        data.load_fmri(tmp_path, "sub-01")
    assert path.name in str(err.value)


def test_load_fmri_duplicate_run_raises(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, V)).astype(np.float32)
    write_h5(
        layout.fmri_path(tmp_path, "sub-01", "friends"),
        {"ses-001_task-s01e01a": x, "ses-002_task-s01e01a": x},
    )
    with pytest.raises(ValueError, match="duplicate run 's01e01a'"):
        data.load_fmri(tmp_path, "sub-01", n_parcels=V)


def test_load_fmri_warns_on_nan_and_constant_parcels(tmp_path):
    x = np.random.default_rng(0).standard_normal((12, V)).astype(np.float32)
    x[3, 1] = np.nan  # parcel 1: one NaN
    x[:, 4] = np.nan  # parcel 4: all NaN (also counted as constant)
    x[:, 5] = 2.0  # parcel 5: constant
    path = layout.fmri_path(tmp_path, "sub-01", "friends")
    write_h5(path, {"ses-001_task-s01e01a": x})
    with (
        pytest.warns(UserWarning, match=FRIENDS_ONLY),
        pytest.warns(UserWarning, match=r"run s01e01a: 2 of 6 parcels contain NaN and 2 are constant") as rec,
    ):
        y = data.load_fmri(tmp_path, "sub-01", n_parcels=V)
    assert any(path.name in str(w.message) for w in rec if "NaN" in str(w.message))
    assert np.isnan(y["s01e01a"][3, 1])  # raw values are returned as they are


def test_known_missing_runs_are_logged(tmp_path, caplog):
    write_subject(tmp_path, "sub-02", ["s05e19a", "s05e20b"])
    with (
        caplog.at_level(logging.INFO, logger="mindlib.data"),
        pytest.warns(UserWarning, match=FRIENDS_ONLY),
    ):
        y = data.load_fmri(tmp_path, "sub-02", n_parcels=V)
    assert "s05e20a" not in y
    assert "s05e20a" in caplog.text and "known gap" in caplog.text


def test_zscore_matches_scipy_and_zeroes_bad_parcels():
    x = np.random.default_rng(0).standard_normal((30, 5)) * [1, 2, 3, 4, 5] + [0, 1, 2, 3, 4]
    np.testing.assert_allclose(data.zscore(x), scipy.stats.zscore(x, axis=0), rtol=1e-5, atol=1e-6)
    x[:, 2] = 7.0
    x[4, 0] = np.nan
    x[:, 3] = np.nan
    z = data.zscore(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 2], 0)  # constant parcel
    np.testing.assert_array_equal(z[:, 3], 0)  # all-NaN parcel
    assert z[4, 0] == 0  # NaN entry -> 0 after z-scoring ...
    ref = scipy.stats.zscore(x[:, 0], nan_policy="omit")  # ... the others use the non-NaN statistics
    np.testing.assert_allclose(np.delete(z[:, 0], 4), np.delete(ref, 4), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Transcripts
# ----------------------------------------------------------------------------------------------

TSV_LINES = [
    "text_per_tr\twords_per_tr\tonsets_per_tr\tdurations_per_tr",
    "Hi there\t['Hi', 'there']\t[0.5, 0.9]\t[0.3, 0.4]",
    "\t\t\t",  # no speech
    "\t[]\t[]\t[]",  # no speech, written as empty lists
    "Don't\t[\"Don't\"]\t[4.6]\t[0.25]",
]


def write_tsv(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_transcript_parses_lists_and_empty_rows(tmp_path):
    path = write_tsv(layout.transcript_path(tmp_path, "s01e01a"), TSV_LINES)
    df = data.read_transcript(path)
    assert list(df.columns) == list(data.TRANSCRIPT_COLUMNS) and len(df) == 4
    assert df.loc[0, "words_per_tr"] == ["Hi", "there"]
    assert df.loc[0, "onsets_per_tr"] == [0.5, 0.9] and df.loc[0, "durations_per_tr"] == [0.3, 0.4]
    assert df.loc[0, "text_per_tr"] == "Hi there"
    for row in (1, 2):
        assert df.loc[row, "words_per_tr"] == [] and df.loc[row, "onsets_per_tr"] == []
        assert df.loc[row, "text_per_tr"] == ""
    assert df.loc[3, "words_per_tr"] == ["Don't"]


def test_transcript_words_one_row_per_word(tmp_path):
    path = write_tsv(tmp_path / "t.tsv", TSV_LINES)
    words = data.transcript_words(path)
    expected = pd.DataFrame(
        {
            "word": ["Hi", "there", "Don't"],
            "onset_s": [0.5, 0.9, 4.6],
            "duration_s": [0.3, 0.4, 0.25],
            "tr_index": [0, 0, 3],
        }
    )
    pd.testing.assert_frame_equal(words, expected, check_dtype=False)
    assert words["tr_index"].dtype == np.int64 and words["onset_s"].dtype == np.float64


def test_transcript_words_of_silent_file_is_empty(tmp_path):
    words = data.transcript_words(write_tsv(tmp_path / "t.tsv", TSV_LINES[:1] + TSV_LINES[2:4]))
    assert len(words) == 0 and list(words.columns) == ["word", "onset_s", "duration_s", "tr_index"]


def test_malformed_transcript_cell_names_file_and_row(tmp_path):
    path = write_tsv(tmp_path / "bad.tsv", TSV_LINES[:3] + ["Oops\t['Oops'\t[1.0]\t[0.2]"])
    with pytest.raises(ValueError, match=r"bad\.tsv: row 2 \(line 4\), column words_per_tr"):
        data.read_transcript(path)
    path = write_tsv(tmp_path / "uneven.tsv", TSV_LINES[:1] + ["a b\t['a', 'b']\t[1.0]\t[0.2, 0.3]"])
    with pytest.raises(ValueError, match=r"uneven\.tsv: row 0.*2 words but 1 onsets"):
        data.read_transcript(path)
    path = write_tsv(tmp_path / "cols.tsv", ["text_per_tr\twords_per_tr", "a\t['a']"])
    with pytest.raises(ValueError, match="onsets_per_tr"):
        data.read_transcript(path)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        data.read_transcript(tmp_path / "missing.tsv")


# ----------------------------------------------------------------------------------------------
# Feature store and layer groups
# ----------------------------------------------------------------------------------------------


def test_feature_store_round_trip(tmp_path):
    store = data.FeatureStore.create(
        tmp_path, "toy", 2.0, "none", {"video": (4, 3), "text": {"n_layers": 1, "dim": 2}}
    )
    meta = json.loads((tmp_path / "features/toy/backbone.json").read_text())
    assert meta == {
        "name": "toy",
        "feature_hz": 2.0,
        "fusion": "none",
        "modalities": {"video": {"n_layers": 4, "dim": 3}, "text": {"n_layers": 1, "dim": 2}},
    }
    assert (
        store.modalities == ("video", "text") and store.feature_hz == 2.0 and store.shape("video") == (4, 3)
    )
    x = np.random.default_rng(0).standard_normal((7, 4, 3)).astype(np.float16)
    p = store.write("s01e01a", "video", x)
    assert p == layout.feature_path(tmp_path, "toy", "video", "s01e01a")
    y = data.FeatureStore(tmp_path, "toy").load("s01e01a", "video")
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, x)
    store.write("s01e01a", "text", np.ones((7, 2)))  # (T_f, D) -> (T_f, 1, D), float64 -> float32
    t = store.load("s01e01a", "text")
    assert t.shape == (7, 1, 2) and t.dtype == np.float32
    assert store.stimuli("video") == ["s01e01a"]
    assert data.list_backbones(tmp_path) == ["toy"]


def test_feature_store_errors(tmp_path):
    store = data.FeatureStore.create(tmp_path, "toy", 2.0, "none", {"video": (4, 3)})
    data.FeatureStore.create(tmp_path, "other", 2.0, "fused", {"fused": (1, 5)})
    with pytest.raises(ValueError, match=r"unknown backbone 'nope'.*\['other', 'toy'\]"):
        data.FeatureStore(tmp_path, "nope")
    with pytest.raises(FileNotFoundError) as err:
        store.load("bourne01", "video")
    msg = str(err.value)
    assert (
        "bourne01" in msg
        and "'toy'" in msg
        and str(layout.feature_path(tmp_path, "toy", "video", "bourne01")) in msg
    )
    with pytest.raises(ValueError, match="expected"):
        store.write("bourne01", "video", np.zeros((5, 3, 3)))
    with pytest.raises(ValueError, match="no modality 'audio'"):
        store.load("bourne01", "audio")
    # same description again is fine; a different one needs overwrite=True
    data.FeatureStore.create(tmp_path, "toy", 2.0, "none", {"video": (4, 3)})
    with pytest.raises(ValueError, match="overwrite"):
        data.FeatureStore.create(tmp_path, "toy", 1.0, "none", {"video": (4, 3)})
    assert (
        data.FeatureStore.create(tmp_path, "toy", 1.0, "none", {"video": (4, 3)}, overwrite=True).feature_hz
        == 1.0
    )


def test_unknown_backbone_without_any_store(tmp_path):
    with pytest.raises(ValueError, match="make_study"):
        data.FeatureStore(tmp_path, "tribe")
    assert data.list_backbones(tmp_path) == []


def test_layer_groups_hand_cases():
    assert data.layer_groups(1) == [slice(0, 1)]
    assert data.layer_groups(10) == [slice(0, 6), slice(6, 8), slice(8, 10)]
    assert data.layer_groups(40) == [slice(0, 24), slice(24, 32), slice(32, 40)]
    assert data.layer_groups(2) == [slice(0, 1), slice(1, 2)]  # 1.2 -> 1, 1.6 -> 2, 2
    assert data.layer_groups(5, (0.5, 1.0)) == [slice(0, 3), slice(3, 5)]  # 2.5 rounds half up
    assert data.layer_groups(24, (1.0,)) == [slice(0, 24)]
    for bad in [(), (0.0, 1.0), (0.8, 0.6, 1.0), (1.2,)]:
        with pytest.raises(ValueError):
            data.layer_groups(10, bad)
    with pytest.raises(ValueError):
        data.layer_groups(0)


def test_aggregate_layers_is_group_means():
    x = np.random.default_rng(0).standard_normal((5, 10, 3)).astype(np.float16)
    out = data.aggregate_layers(x)
    xf = x.astype(np.float64)
    ref = np.concatenate([xf[:, 0:6].mean(1), xf[:, 6:8].mean(1), xf[:, 8:10].mean(1)], axis=1)
    assert out.shape == (5, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    single = data.aggregate_layers(x[:, :1])
    np.testing.assert_allclose(single, xf[:, 0], rtol=1e-6)  # L = 1: one group, the layer itself


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

FRIENDS_S1 = [f"s01e{e:02d}{h}" for e in range(1, 21) for h in "ab"]  # 20 episodes
FRIENDS_S2 = [f"s02e{e:02d}{h}" for e in range(1, 11) for h in "abcd"]  # 10 episodes, 4 parts each
FILMS = ["bourne01", "bourne02", "bourne03", "life01_run-1", "life01_run-2", "life02_run-1", "life02_run-2"]
ALL_RUNS = FRIENDS_S1 + FRIENDS_S2 + FILMS


def side_of(split):
    return {run: name for name in data.SPLIT_NAMES for run in getattr(split, name)}


def test_split_every_run_once_and_groups_on_one_side():
    split = data.split_runs(ALL_RUNS + FRIENDS_S1[:4])  # duplicates (a union over subjects) are fine
    listed = split.train + split.val + split.test
    assert sorted(listed) == sorted(ALL_RUNS) and len(listed) == len(set(listed))
    assert all(getattr(split, n) == sorted(getattr(split, n)) for n in data.SPLIT_NAMES)
    side = side_of(split)
    sides_of_group = {}
    for run in ALL_RUNS:
        sides_of_group.setdefault(layout.episode_of(run), set()).add(side[run])
    assert len(sides_of_group) == 20 + 10 + 3 + 2
    assert all(len(s) == 1 for s in sides_of_group.values())
    assert side["s01e01a"] == side["s01e01b"] and side["life01_run-1"] == side["life01_run-2"]


def test_split_is_stratified_per_movie():
    side = side_of(data.split_runs(ALL_RUNS))
    for season, n_eps, n_parts in (("s01", 20, 2), ("s02", 10, 4)):
        runs = [r for r in ALL_RUNS if r.startswith(season)]
        counts = {n: sum(side[r] == n for r in runs) // n_parts for n in data.SPLIT_NAMES}
        expected_each = round(0.1 * n_eps)  # 2 of 20 episodes, 1 of 10
        assert counts == {"train": n_eps - 2 * expected_each, "val": expected_each, "test": expected_each}


def test_split_is_deterministic_by_seed():
    a, b = data.split_runs(ALL_RUNS, seed=3), data.split_runs(list(reversed(ALL_RUNS)), seed=3)
    assert a == b
    assert any(data.split_runs(ALL_RUNS, seed=s) != a for s in range(4, 10))


def test_split_gives_val_and_test_when_movies_are_small():
    split = data.split_runs(["bourne01", "life01_run-1", "life01_run-2", "wolf01"])  # 3 groups, 1 per movie
    assert len(split.train) >= 1 and len(split.val) >= 1 and len(split.test) >= 1
    assert len({side_of(split)["life01_run-1"], side_of(split)["life01_run-2"]}) == 1
    two = data.split_runs(["bourne01", "wolf01"])  # fewer than 3 groups: all train
    assert two.train == ["bourne01", "wolf01"] and two.val == two.test == []
    assert data.split_runs(FRIENDS_S1, val_fraction=0.0).val == []


def test_split_bad_inputs():
    with pytest.raises(ValueError, match="at least one"):
        data.split_runs([])
    with pytest.raises(ValueError):
        data.split_runs(ALL_RUNS, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError):
        data.split_runs(["not-a-run"])


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_trs, expected",
    [(250, [0, 50, 100, 150]), (230, [0, 50, 100, 130]), (60, [0]), (100, [0]), (101, [0, 1])],
)
def test_window_starts_hand_cases(n_trs, expected):
    assert data.window_starts(n_trs, window=100, stride=50) == expected


def test_window_starts_bad_inputs():
    for args in [(0, 100, 50), (10, 0, 5), (10, 5, 0)]:
        with pytest.raises(ValueError):
            data.window_starts(*args)


def make_record(n_trs, subject_index, seed):
    rng = np.random.default_rng(seed)
    valid = np.ones(n_trs, bool)
    valid[:3] = False
    return data.RunRecord(
        subject=f"sub-0{subject_index + 1}",
        subject_index=subject_index,
        run="s01e01a",
        fmri=rng.standard_normal((n_trs, V)).astype(np.float32),
        features={
            "video": rng.standard_normal((n_trs, 4)).astype(np.float32),
            "text": rng.standard_normal((n_trs, 2)).astype(np.float32),
        },
        valid=valid,
    )


def test_window_dataset_items_and_collate_padding():
    long, short = make_record(230, 0, 0), make_record(60, 1, 1)
    ds = data.WindowDataset([long, short], window=100, stride=50)
    assert len(ds) == 5  # starts [0, 50, 100, 130] + [0]
    item = ds[3]
    assert item["start"] == 130 and item["record"] == 0
    assert item["features"]["video"].shape == (100, 4) and item["fmri"].shape == (100, V)
    np.testing.assert_array_equal(item["fmri"].numpy(), long.fmri[130:230])
    assert item["subject"].dtype == torch.long and item["subject"].item() == 0

    batch = data.collate_windows([ds[0], ds[4]])
    assert batch["features"]["video"].shape == (2, 100, 4) and batch["features"]["text"].shape == (2, 100, 2)
    assert batch["fmri"].shape == (2, 100, V) and batch["mask"].shape == (2, 100)
    assert batch["mask"].dtype == torch.bool
    assert batch["subject"].tolist() == [0, 1] and batch["record"].tolist() == [0, 1]
    assert batch["start"].tolist() == [0, 0] and batch["length"].tolist() == [100, 60]
    expected_mask = np.zeros(100, bool)
    expected_mask[3:60] = True  # record.valid is False on TRs 0-2, padding after TR 60
    np.testing.assert_array_equal(batch["mask"][1].numpy(), expected_mask)
    assert batch["mask"][0].sum() == 97
    np.testing.assert_array_equal(batch["fmri"][1, :60].numpy(), short.fmri)
    assert batch["fmri"][1, 60:].abs().sum() == 0 and batch["features"]["video"][1, 60:].abs().sum() == 0


def test_collate_pads_to_window_and_works_with_dataloader():
    ds = data.WindowDataset([make_record(60, 0, 0), make_record(40, 0, 1)], window=100, stride=50)
    collate = functools.partial(data.collate_windows, length=100)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert batch["fmri"].shape == (2, 100, V)
    assert batch["mask"].sum(1).tolist() == [57, 37]
    assert data.collate_windows([ds[0], ds[1]])["fmri"].shape == (2, 60, V)  # default: longest item
    with pytest.raises(ValueError):
        data.collate_windows([ds[0]], length=50)


# ----------------------------------------------------------------------------------------------
# Study
# ----------------------------------------------------------------------------------------------

STUDY_RUNS = ["s01e01a", "s01e01b", "s01e02a", "bourne01", "life01_run-1", "life01_run-2"]
N_TRS = 20  # 29.8 s of fMRI
N_FRAMES = 60  # 30 s of features at 2 Hz


def make_root(tmp_path, n_frames=N_FRAMES, n_trs=N_TRS):
    """Two subjects (sub-02 lacks s01e02a) and a two-modality feature store 'toy'."""
    fmri = {
        "sub-01": write_subject(tmp_path, "sub-01", STUDY_RUNS, 1, n_trs, seed=1),
        "sub-02": write_subject(
            tmp_path, "sub-02", [r for r in STUDY_RUNS if r != "s01e02a"], 4, n_trs, seed=2
        ),
    }
    store = data.FeatureStore.create(tmp_path, "toy", 2.0, "none", {"video": (4, 3), "text": (1, 2)})
    rng = np.random.default_rng(0)
    feats = {}
    for stim in sorted({layout.stimulus_of(r) for r in STUDY_RUNS}):
        for m in store.modalities:
            feats[stim, m] = rng.standard_normal((n_frames, *store.shape(m))).astype(np.float32)
            store.write(stim, m, feats[stim, m])
    return fmri, feats


def test_load_study_records_features_and_split(tmp_path):
    fmri, feats = make_root(tmp_path)
    study = data.load_study(tmp_path, "toy", n_parcels=V)  # lag 3 TRs, 3 layer groups
    assert study.subjects == ("sub-01", "sub-02") and study.modalities == ("video", "text")
    assert study.feature_dims == {"video": 9, "text": 2}  # L=4 -> groups [0:2] [2:3] [3:4]
    assert study.n_parcels == V and study.backbone == "toy"
    assert [(r.subject, r.run) for r in study.records] == [("sub-01", r) for r in sorted(STUDY_RUNS)] + [
        ("sub-02", r) for r in sorted(set(STUDY_RUNS) - {"s01e02a"})
    ]
    rec = {(r.subject, r.run): r for r in study.records}
    # repeats and subjects share one array object per stimulus
    assert rec["sub-01", "life01_run-1"].features["video"] is rec["sub-01", "life01_run-2"].features["video"]
    assert rec["sub-01", "s01e01a"].features["text"] is rec["sub-02", "s01e01a"].features["text"]
    r = rec["sub-02", "bourne01"]
    assert (
        r.subject_index == 1
        and r.features["video"].shape == (N_TRS, 9)
        and r.features["video"].dtype == np.float32
    )
    np.testing.assert_allclose(
        r.fmri, scipy.stats.zscore(fmri["sub-02"]["bourne01"], axis=0), rtol=1e-4, atol=1e-5
    )
    assert r.valid.tolist() == [False] * 3 + [True] * (N_TRS - 3)  # lag 3: TRs 0-2 have no stimulus yet
    # split: union of runs, same side for every subject
    split = study.split
    assert sorted(split.train + split.val + split.test) == sorted(STUDY_RUNS)
    for name in data.SPLIT_NAMES:
        assert {x.run for x in study.select(name)} == set(getattr(split, name)) & {
            x.run for x in study.records
        }
    with pytest.raises(ValueError):
        study.select("validation")
    table = study.describe()
    assert list(table.columns) == ["subject", "run", "movie", "split", "n_trs", "n_valid"]
    assert len(table) == 11 and (table["n_valid"] == N_TRS - 3).all()
    assert table.set_index(["subject", "run"]).loc[("sub-01", "life01_run-2"), "movie"] == "life"


def test_load_study_tokens_by_hand(tmp_path):
    """TR 1.5 s at 2 Hz without lag: token t is the mean of frames 3t..3t+2 of the layer-group means."""
    _, feats = make_root(tmp_path)
    study = data.load_study(
        tmp_path, "toy", subjects=["sub-01"], lags_trs=(0, 1), tr_s=1.5, n_parcels=V, runs=["bourne01"]
    )
    (r,) = study.records
    assert study.feature_dims == {"video": 18, "text": 4}
    x = feats["bourne01", "video"]
    groups = np.concatenate([x[:, 0:2].mean(1), x[:, 2:3].mean(1), x[:, 3:4].mean(1)], axis=1)  # (60, 9)
    by_tr = groups.reshape(N_TRS, 3, 9).mean(1)  # (20, 9)
    np.testing.assert_allclose(r.features["video"][:, :9], by_tr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.features["video"][1:, 9:], by_tr[:-1], rtol=1e-5, atol=1e-6)  # lag 1 TR
    assert r.valid.tolist() == [False] + [True] * (N_TRS - 1)
    np.testing.assert_allclose(
        r.features["text"][:, :2],
        feats["bourne01", "text"][:, 0].reshape(N_TRS, 3, 2).mean(1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_load_study_masks_tail_within_tolerance(tmp_path, caplog):
    make_root(tmp_path, n_trs=25)  # fMRI 37.25 s, features 30 s: 7.25 s apart, within 15 s
    with (
        caplog.at_level(logging.INFO, logger="mindlib.data"),
        pytest.warns(UserWarning, match=r"features of 1 run\(s\) end before their fMRI.*s01e01a \(1 TRs\)"),
    ):
        study = data.load_study(tmp_path, "toy", subjects=["sub-01"], n_parcels=V, runs=["s01e01a"])
    (r,) = study.records
    # lag 3 TRs: TR t reads [1.49 t - 4.47, 1.49 (t+1) - 4.47); TR 23 starts at 29.8 s (< 30), TR 24 at 31.29 s
    W = overlap_matrix(25, N_FRAMES, 1.49, 2.0, 3 * 1.49)
    assert r.valid.tolist() == (W.sum(1) > 0).tolist() == [False] * 3 + [True] * 21 + [False]
    assert "4 of 25 TRs masked" in caplog.text


def test_load_study_length_mismatch_raises(tmp_path):
    make_root(tmp_path, n_trs=40)  # fMRI 59.6 s, features 30 s
    with pytest.raises(ValueError) as err:
        data.load_study(tmp_path, "toy", n_parcels=V)
    msg = str(err.value)
    assert "59.60 s" in msg and "30.00 s" in msg and "length_tolerance_s" in msg
    assert "features/toy/" in msg and "run " in msg
    with pytest.warns(UserWarning, match=r"features of 6 run\(s\) end before their fMRI.*masked"):
        study = data.load_study(
            tmp_path, "toy", n_parcels=V, length_tolerance_s=40.0
        )  # the documented escape hatch
    assert (
        study.records[0].valid.tolist() == [False] * 3 + [True] * 21 + [False] * 16
    )  # TR 24 starts at 31.29 s


def test_load_study_nan_fmri_row_is_masked(tmp_path):
    make_root(tmp_path)
    path = layout.fmri_path(tmp_path, "sub-01", "movie10")
    with h5py.File(path, "r+") as f:
        key = layout.h5_key("bourne01", 4)
        x = f[key][()]
        x[10] = np.nan
        f[key][...] = x
    with pytest.warns(UserWarning, match="bourne01"):
        study = data.load_study(tmp_path, "toy", subjects=["sub-01"], n_parcels=V, runs=["bourne01"])
    (r,) = study.records
    assert not r.valid[10] and r.valid[11] and np.all(r.fmri[10] == 0)


def test_load_study_errors(tmp_path):
    make_root(tmp_path)
    with pytest.raises(ValueError, match=r"unknown backbone 'tribe'.*\['toy'\]"):
        data.load_study(tmp_path, "tribe", n_parcels=V)
    with pytest.raises(ValueError, match="s09e01a"):
        data.load_study(tmp_path, "toy", n_parcels=V, runs=["s01e01a", "s09e01a"])
    with pytest.raises(FileNotFoundError, match="make_study"):
        data.load_study(tmp_path / "empty", "toy")
    with pytest.raises(ValueError, match="1000"):
        data.load_study(tmp_path, "toy")  # the toy files have 6 parcels
    (tmp_path / "features/toy/text/bourne01.npy").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"text features for run/stimulus 'bourne01' of backbone 'toy'"
    ):
        data.load_study(tmp_path, "toy", n_parcels=V)


def test_feature_store_writes_leave_no_temporary_files(tmp_path):
    store = data.FeatureStore.create(tmp_path, "toy", modalities={"video": (2, 3)})
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    path = store.write("s01e01a", "video", x)
    np.testing.assert_array_equal(np.load(path), x)
    assert sorted(p.name for p in path.parent.iterdir()) == ["s01e01a.npy"]


def test_feature_store_overwrite_replaces_completely(tmp_path):
    store = data.FeatureStore.create(tmp_path, "toy", 2.0, "none", {"video": (1, 2)})
    store.write("s01e01a", "video", np.ones((3, 2)))
    store.write("s01e01b", "video", np.ones((3, 2)))
    new = data.FeatureStore.create(tmp_path, "toy", 2.0, "none", {"video": (1, 2)}, overwrite=True)
    assert new.stimuli("video") == [] and data.FeatureStore(tmp_path, "toy").stimuli("video") == []
    staged = data.FeatureStore.create(
        tmp_path, "toy", 1.0, "none", {"video": (1, 2)}, overwrite=True, staged=True
    )
    staged.write("bourne01", "video", np.ones((3, 2)))
    assert data.FeatureStore(tmp_path, "toy").feature_hz == 2.0 and data.list_backbones(tmp_path) == ["toy"]
    staged.commit()
    assert data.FeatureStore(tmp_path, "toy").feature_hz == 1.0 and staged.stimuli("video") == ["bourne01"]
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["toy"]
