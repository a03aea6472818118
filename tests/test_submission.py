"""Tests for mindlib.submission: target sample numbers, format checks, files, prediction, local scoring,
and the official-style split of mindlib.data.split_runs."""

import zipfile

import numpy as np
import pytest
from scipy.stats import pearsonr

from mindlib import data, experiment, layout, submission, synthetic

V = layout.N_PARCELS
TARGETS = {s: {"s07e01a": 14, "s07e01b": 13} for s in layout.SUBJECTS}


def _valid(targets=TARGETS, seed=0):
    rng = np.random.default_rng(seed)
    return {
        s: {e: rng.standard_normal((n, V)).astype(np.float32) for e, n in eps.items()}
        for s, eps in targets.items()
    }


# --- format rules -----------------------------------------------------------------------------------------


def test_valid_submission_passes_and_round_trips(tmp_path):
    sub = _valid()
    submission.check_submission(sub, TARGETS)
    paths = submission.save_submission(sub, TARGETS, tmp_path, "friends-s7")
    assert paths["npy"].name == "fmri_predictions_friends_s7.npy"
    with zipfile.ZipFile(paths["zip"]) as z:
        assert z.namelist() == ["fmri_predictions_friends_s7.npy"]
    for path in paths.values():
        back = submission.load_submission(path)
        assert set(back) == set(layout.SUBJECTS)
        for s in sub:
            assert set(back[s]) == set(sub[s])
            for e in sub[s]:
                assert back[s][e].dtype == np.float32
                np.testing.assert_array_equal(back[s][e], sub[s][e])
    # what the scorer does: np.load(..., allow_pickle=True).item()
    raw = np.load(paths["npy"], allow_pickle=True).item()
    assert raw["sub-05"]["s07e01b"].shape == (13, V)


def _drop_subject(sub):
    del sub["sub-03"]


def _drop_episode(sub):
    del sub["sub-02"]["s07e01b"]


def _wrong_rows(sub):
    sub["sub-01"]["s07e01a"] = sub["sub-01"]["s07e01a"][:-1]


def _columns_999(sub):
    sub["sub-05"]["s07e01b"] = sub["sub-05"]["s07e01b"][:, :999]


def _a_nan(sub):
    sub["sub-02"]["s07e01a"][3, 17] = np.nan


def _integers(sub):
    sub["sub-01"]["s07e01b"] = np.zeros((13, V), dtype=np.int64)


def _extra_episode(sub):
    sub["sub-01"]["s07e02a"] = np.zeros((10, V), np.float32)


@pytest.mark.parametrize(
    "spoil, words",
    [
        (_drop_subject, ["sub-03"]),
        (_drop_episode, ["sub-02", "s07e01b"]),
        (_wrong_rows, ["sub-01", "s07e01a", "13 rows", "14 TRs"]),
        (_columns_999, ["sub-05", "s07e01b", "999 columns"]),
        (_a_nan, ["sub-02", "s07e01a", "NaN"]),
        (_integers, ["sub-01", "s07e01b", "int64"]),
        (_extra_episode, ["sub-01", "s07e02a"]),
    ],
    ids=[
        "missing-subject",
        "missing-episode",
        "wrong-rows",
        "999-columns",
        "nan",
        "integers",
        "extra-episode",
    ],
)
def test_bad_submissions_are_rejected_naming_the_fault(spoil, words, tmp_path):
    sub = _valid()
    spoil(sub)
    for call in (
        lambda: submission.check_submission(sub, TARGETS),
        lambda: submission.save_submission(sub, TARGETS, tmp_path, "friends-s7"),
    ):
        with pytest.raises(ValueError) as err:
            call()
        for w in words:
            assert w in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written


# --- target sample numbers ------------------------------------------------------------------------------


def _write_targets(root, targets, target_set="friends-s7"):
    for s, eps in targets.items():
        p = layout.target_samples_path(root, s, target_set)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, eps, allow_pickle=True)


def test_targets_read_and_checked(tmp_path):
    _write_targets(tmp_path, TARGETS)
    assert submission.load_targets(tmp_path, "friends-s7") == TARGETS
    with pytest.raises(FileNotFoundError, match="sub-01_ood_fmri_samples.npy"):
        submission.load_targets(tmp_path, "ood")
    _write_targets(tmp_path, {"sub-03": {"s07e01a": 14, "s07e01b": 12}})
    with pytest.raises(ValueError, match="s07e01b: 13 TRs for sub-01, 12 for sub-03"):
        submission.load_targets(tmp_path, "friends-s7")
    _write_targets(tmp_path, {"sub-03": {"s07e01a": 14}})
    with pytest.raises(ValueError, match="s07e01b"):
        submission.load_targets(tmp_path, "friends-s7")
    _write_targets(tmp_path, {"sub-02": {"s06e01a": 14}})
    with pytest.raises(ValueError, match="'s06e01a' is not an episode of the 'friends-s7'"):
        submission.read_target_samples(tmp_path, "sub-02", "friends-s7")
    np.save(layout.target_samples_path(tmp_path, "sub-02", "friends-s7"), np.arange(3))
    with pytest.raises(ValueError, match="pickled non-empty dict"):
        submission.read_target_samples(tmp_path, "sub-02", "friends-s7")


# --- the official metric on a hand-made case -------------------------------------------------------------


def test_score_is_the_official_metric_with_ood_movies_grouped():
    rng = np.random.default_rng(3)
    n_v = 6
    lengths = {"chaplin1": 20, "chaplin2": 17, "wot1": 15}
    truth, pred = {}, {}
    for s in ("sub-01", "sub-02"):
        truth[s] = {e: rng.standard_normal((n, n_v)) for e, n in lengths.items()}
        pred[s] = {e: 0.5 * y + rng.standard_normal(y.shape) for e, y in truth[s].items()}
    got = submission.score(pred, truth)

    def by_hand(subject):  # drop 5 TRs at each end, concatenate the parts of a film, r per parcel
        movies = {"chaplin": ["chaplin1", "chaplin2"], "wot": ["wot1"]}
        per_movie = []
        for parts in movies.values():
            yt = np.concatenate([truth[subject][e][5:-5] for e in parts])
            yp = np.concatenate([pred[subject][e][5:-5] for e in parts])
            per_movie.append(np.mean([pearsonr(yt[:, v], yp[:, v])[0] for v in range(n_v)]))
        return np.mean(per_movie)

    assert set(got["per_movie"]["sub-01"]) == {"chaplin", "wot"}
    np.testing.assert_allclose(got["mean"], np.mean([by_hand("sub-01"), by_hand("sub-02")]), rtol=1e-10)
    np.testing.assert_allclose(got["per_subject"]["sub-02"], by_hand("sub-02"), rtol=1e-10)


# --- prediction without fMRI, on the synthetic study ------------------------------------------------------


@pytest.fixture(scope="module")
def study(smoke_study):
    return data.load_study(smoke_study, "imagebind")


def test_prediction_has_the_target_length_and_ensembles_average(study, smoke_study):
    targets = submission.load_targets(smoke_study, "ood")
    info = synthetic.read_study_info(smoke_study)
    assert targets["sub-01"] == {r: n for r, n in info.heldout_n_trs.items() if layout.study_of(r) == "ood"}
    config = experiment.ExperimentConfig(decoder="baseline", d_model=16, window=40)
    models = [
        experiment.build(experiment.ExperimentConfig(**{**config.__dict__, "seed": s}), study) for s in (0, 1)
    ]
    one, report = submission.predict(models[0], study, targets, window=40)
    two, _ = submission.predict(models[1], study, targets, window=40)
    both, _ = submission.predict(models, study, targets, window=40)
    submission.check_submission(both, targets)
    lag = int(study.lags_trs[0])
    assert list(report.n_uncovered) == [lag] * len(targets["sub-01"])  # features cover the whole target
    for s in layout.SUBJECTS:
        for e, n in targets[s].items():
            assert both[s][e].shape == (n, V)
            assert not both[s][e][:lag].any() and both[s][e][lag:].any()  # no features at the lag: 0
            np.testing.assert_allclose(both[s][e], (one[s][e] + two[s][e]) / 2, atol=1e-6)


def test_heldout_truth_scores_itself_perfectly(smoke_study):
    targets = submission.load_targets(smoke_study, "ood")
    truth = submission.load_heldout_fmri(synthetic.heldout_fmri_root(smoke_study), targets)
    assert set(truth) == set(layout.SUBJECTS) and set(truth["sub-02"]) == set(targets["sub-02"])
    assert submission.load_heldout_fmri(smoke_study, targets) == {}  # the study itself holds none
    got = submission.score(truth, truth)
    assert set(got["per_movie"]["sub-01"]) == {"chaplin", "wot"}
    np.testing.assert_allclose(got["mean"], 1.0)


# --- official-style split: whole seasons and films held out -----------------------------------------------


def test_split_holds_out_whole_movies(caplog):
    runs = ["s01e01a", "s01e01b", "s05e02a", "s06e01a", "s06e03b", "s07e01a", "bourne01", "life01_run-2"]
    split = data.split_runs(runs, held_out_movies=data.OFFICIAL_HELD_OUT)
    assert split.val == ["s06e01a", "s06e03b"] and split.test == ["s07e01a"]
    assert split.train == ["bourne01", "life01_run-2", "s01e01a", "s01e01b", "s05e02a"]
    split = data.split_runs(runs[:5], held_out_movies=data.OFFICIAL_HELD_OUT)  # no season 7 fMRI
    assert split.test == [] and "friends-s07" in caplog.text
    split = data.split_runs(runs, held_out_movies={"test": ["bourne"]})
    assert split.test == ["bourne01"] and split.val == []
    for bad in (
        {"val": ["friends-s6"]},
        {"train": ["bourne"]},
        {"val": "bourne"},
        {"val": ["bourne"], "test": ["bourne"]},
    ):
        with pytest.raises(ValueError):
            data.split_runs(runs, held_out_movies=bad)


def test_load_study_takes_the_official_split(smoke_study):
    study = data.load_study(smoke_study, "qwen", held_out_movies={"val": ["bourne", "life"]})
    assert set(study.split.val) == {"bourne01", "life01_run-1", "life01_run-2"}
    assert study.split.test == [] and all(layout.movie_of(r) == "friends-s01" for r in study.split.train)


def test_command_line_writes_checked_files_and_scores_them(study, smoke_study, tmp_path, capsys):
    import pandas as pd

    config = experiment.ExperimentConfig(decoder="baseline", d_model=16, window=40)
    model = experiment.build(config, study)
    result = experiment.ExperimentResult(config, "imagebind", model, pd.DataFrame(), [], {}, None, 0.0, 0)
    experiment.save(result, tmp_path / "model.pt")
    argv = ["--size", "smoke", "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "sub")]
    assert submission.main(argv) == 0
    printed = capsys.readouterr().out
    assert "local score (official metric)" in printed and "chaplin" in printed
    for target_set in layout.TARGET_SETS:
        targets = submission.load_targets(smoke_study, target_set)
        path = tmp_path / "sub" / f"{submission.SUBMISSION_STEMS[target_set]}.zip"
        submission.check_submission(submission.load_submission(path), targets)


def test_heldout_fmri_in_the_wrong_file_is_an_error(tmp_path):
    import h5py

    path = layout.fmri_path(tmp_path, "sub-01", "ood")
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("ses-001_task-chaplin1", data=rng.standard_normal((20, V)).astype(np.float32))
        f.create_dataset("ses-002_task-s07e01a", data=rng.standard_normal((14, V)).astype(np.float32))
    with pytest.raises(ValueError, match="task-ood.*'s07e01a', which is not a run of the 'ood' study"):
        submission.load_heldout_fmri(tmp_path, {"sub-01": {"chaplin1": 20}})
