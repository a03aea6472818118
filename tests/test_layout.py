"""Tests for mindlib.layout: Algonauts 2025 paths and run names (docs/method.md §1)."""

from pathlib import Path

import pytest

from mindlib import layout

ROOT = Path("/data/algonauts")


def test_fmri_and_atlas_paths():
    assert layout.fmri_path(ROOT, "sub-01", "friends") == ROOT / (
        "fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net"
        "_desc-s123456_bold.h5"
    )
    assert layout.fmri_path(str(ROOT), "sub-05", "movie10") == ROOT / (
        "fmri/sub-05/func/sub-05_task-movie10_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5"
    )
    assert layout.atlas_path(ROOT, "sub-02") == ROOT / (
        "fmri/sub-02/atlas/sub-02_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net"
        "_desc-dseg_parcellation.nii.gz"
    )


@pytest.mark.parametrize("subject", ["sub-1", "01", "sub_01", "Sub-01", 1, None])
def test_bad_subject_raises(subject):
    with pytest.raises(ValueError, match="sub-01"):
        layout.fmri_path(ROOT, subject, "friends")


def test_bad_study_raises():
    with pytest.raises(ValueError, match="movie10"):
        layout.fmri_path(ROOT, "sub-01", "bourne")


@pytest.mark.parametrize(
    "key, run",
    [
        ("ses-001_task-s01e02a", "s01e02a"),
        ("ses-005_task-bourne01", "bourne01"),
        ("ses-006_task-life01_run-1", "life01_run-1"),
        ("ses-017_task-figures03_run-2", "figures03_run-2"),
    ],
)
def test_run_name_strips_session(key, run):
    assert layout.run_name(key) == run


def test_run_name_without_task_raises():
    with pytest.raises(ValueError, match="task-"):
        layout.run_name("ses-001_s01e02a")


def test_h5_key_round_trip():
    assert layout.h5_key("s01e02a", 1) == "ses-001_task-s01e02a"
    assert layout.h5_key("life01_run-2", 12) == "ses-012_task-life01_run-2"
    assert layout.run_name(layout.h5_key("wolf05", 40)) == "wolf05"


@pytest.mark.parametrize(
    "run, study, stimulus, movie, episode",
    [
        ("s01e02a", "friends", "s01e02a", "friends-s01", "s01e02"),
        ("s01e02b", "friends", "s01e02b", "friends-s01", "s01e02"),
        ("s07e24d", "friends", "s07e24d", "friends-s07", "s07e24"),
        ("bourne01", "movie10", "bourne01", "bourne", "bourne01"),
        ("wolf17", "movie10", "wolf17", "wolf", "wolf17"),
        ("life01_run-1", "movie10", "life01", "life", "life01"),
        ("life01_run-2", "movie10", "life01", "life", "life01"),
        ("figures12_run-2", "movie10", "figures12", "figures", "figures12"),
    ],
)
def test_names(run, study, stimulus, movie, episode):
    assert layout.study_of(run) == study
    assert layout.stimulus_of(run) == stimulus
    assert layout.movie_of(run) == movie
    assert layout.episode_of(run) == episode


@pytest.mark.parametrize(
    "run",
    [
        "",
        "s1e02a",
        "S01E02A",
        "s01e02e",
        "s01e02",
        "bourne",
        "bourne1",
        "Bourne01",
        "life01_run-",
        "ses-001_task-s01e02a",
    ],
)
def test_bad_run_names_raise(run):
    for fn in (layout.study_of, layout.stimulus_of, layout.movie_of, layout.episode_of):
        with pytest.raises(ValueError):
            fn(run)
    with pytest.raises(ValueError):
        layout.transcript_path(ROOT, run)


def test_transcript_paths():
    base = ROOT / "stimuli" / "transcripts"
    assert layout.transcript_path(ROOT, "s01e01a") == base / "friends/s1/friends_s01e01a.tsv"
    assert layout.transcript_path(ROOT, "s06e10b") == base / "friends/s6/friends_s06e10b.tsv"
    assert layout.transcript_path(ROOT, "bourne01") == base / "movie10/bourne/movie10_bourne01.tsv"
    # repeats read their stimulus's transcript
    assert layout.transcript_path(ROOT, "life01_run-2") == base / "movie10/life/movie10_life01.tsv"


def test_feature_paths():
    assert layout.features_dir(ROOT, "tribe") == ROOT / "features" / "tribe"
    assert layout.feature_path(ROOT, "tribe", "video", "s01e01a") == ROOT / "features/tribe/video/s01e01a.npy"


def test_constants():
    assert layout.N_PARCELS == 1000
    assert layout.SUBJECTS == ("sub-01", "sub-02", "sub-03", "sub-05")
    for subject, runs in layout.KNOWN_MISSING_RUNS.items():
        assert subject in layout.SUBJECTS
        assert all(layout.study_of(r) == "friends" for r in runs)


# --- held-out stimuli of the challenge: Friends season 7 and the OOD films --------------------------------


@pytest.mark.parametrize(
    "run, study, movie, episode, target_set",
    [
        ("chaplin1", "ood", "chaplin", "chaplin1", "ood"),
        ("chaplin2", "ood", "chaplin", "chaplin2", "ood"),
        ("pulpfiction2", "ood", "pulpfiction", "pulpfiction2", "ood"),
        ("wot1", "ood", "wot", "wot1", "ood"),
        ("s07e24d", "friends", "friends-s07", "s07e24", "friends-s7"),
        ("s06e01a", "friends", "friends-s06", "s06e01", None),
        ("bourne01", "movie10", "bourne", "bourne01", None),
    ],
)
def test_heldout_names(run, study, movie, episode, target_set):
    assert layout.study_of(run) == study
    assert layout.stimulus_of(run) == run
    assert layout.movie_of(run) == movie
    assert layout.episode_of(run) == episode
    assert layout.target_set_of(run) == target_set


@pytest.mark.parametrize("run", ["chaplin01", "chaplin", "chaplin0", "Chaplin1", "wot12", "bourne1"])
def test_bad_ood_names_raise(run):
    with pytest.raises(ValueError, match="chaplin1"):
        layout.study_of(run)


def test_ood_runs_are_the_twelve_released_parts():
    assert len(layout.OOD_RUNS) == 12
    assert {layout.movie_of(r) for r in layout.OOD_RUNS} == set(layout.OOD_MOVIES)
    assert all(layout.study_of(r) == "ood" for r in layout.OOD_RUNS)


def test_heldout_paths():
    base = ROOT / "stimuli" / "transcripts"
    assert layout.transcript_path(ROOT, "mononoke1") == base / "ood/mononoke/ood_mononoke1.tsv"
    assert layout.transcript_path(ROOT, "s07e01a") == base / "friends/s7/friends_s07e01a.tsv"
    assert layout.stimulus_relpath("chaplin1", ".h5") == Path("ood/chaplin/ood_chaplin1.h5")
    assert layout.stimulus_relpath("life01_run-2", ".h5") == Path("movie10/life/movie10_life01.h5")
    assert layout.fmri_path(ROOT, "sub-03", "ood") == ROOT / (
        "fmri/sub-03/func/sub-03_task-ood_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5"
    )
    assert layout.target_samples_path(ROOT, "sub-01", "friends-s7") == ROOT / (
        "fmri/sub-01/target_sample_number/sub-01_friends-s7_fmri_samples.npy"
    )
    assert layout.target_samples_path(ROOT, "sub-05", "ood") == ROOT / (
        "fmri/sub-05/target_sample_number/sub-05_ood_fmri_samples.npy"
    )
    with pytest.raises(ValueError, match="friends-s7"):
        layout.target_samples_path(ROOT, "sub-01", "s7")
    assert layout.run_name("ses-001_task-chaplin1") == "chaplin1"
