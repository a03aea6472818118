"""Fault injection: every bad input a real data folder can hold stops with a message naming the culprit.

Each case builds the bad input on a copy of the smoke study laid out as a real Algonauts 2025 folder
(fMRI of two subjects, transcripts, the ``tribe`` feature store; no ground truth), or on hand-made
arrays, and asserts that the error (or, where continuing is right, the warning) names the file, run or
parameter. The interruption cases kill or break a write half-way and check that the previous file is
intact and that a rerun completes.

:data:`FAULTS` and :data:`INTERRUPTIONS` list the cases, one test each (``test_fault_<id>`` and
``test_interrupted_<id>``; :func:`test_every_case_has_its_test` checks the pairing), and the README
sentence that reports the counts is checked against their lengths (:func:`test_readme_reports_the_counts`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from mindlib import data, experiment, features, layout, metrics, params, project, train
from mindlib.align import FEATURE_HZ, TR_S

REPO = Path(__file__).resolve().parent.parent
SUBJECTS = ("sub-01", "sub-02")

# One row per bad input: id -> what is wrong. Each has a test named test_fault_<id>.
FAULTS = {
    "dangling_symlink": "an fMRI file is a dangling symlink (a datalad file not fetched)",
    "missing_study_file": "one subject's Movie10 file is missing while the other subject has one",
    "stale_store_after_transcript_removed": "a transcript went missing; the old text store is still there",
    "source_changed": "a transcript was edited after its features were extracted",
    "other_settings": "the store was made with other extractor settings than asked for",
    "h5_random_bytes": "4 KiB of random bytes written into an HDF5 file",
    "h5_truncated": "an HDF5 file cut to half its size",
    "h5_zero_bytes": "an HDF5 file of zero bytes",
    "fmri_implausible": "a run scaled by 1e7 and one holding an infinity",
    "feature_nan_frames": "NaN frames in a feature file",
    "feature_truncated": "a truncated .npy feature file",
    "algonauts_nan_parcel": "a prediction with an all-NaN parcel given to algonauts_score",
    "repeat_unequal_length": "repeats of 306 and 307 TRs given to repeat_ceiling",
    "import_movie_file_names": "feature files named like the movie files (friends_s01e01a, movie10_bourne01)",
    "import_per_repeat_names": "feature files named per repeat (life01_run-1)",
    "features_shorter": "features 10 s (and 20 s) shorter than the fMRI",
    "param_number_for_list": "-p lrs 0.003: a number where a list is declared",
    "param_string_for_list": "-p backbones tribe: a string where a list is declared",
    "param_unknown_name": "a mistyped parameter name injected by papermill",
    "config_unknown_name": "a mistyped name given to experiment.config_from_params",
    "notebook10_before_08": "notebook 10 on a real folder before notebook 08",
    "results_real_size": "results of a real-data run recorded as a synthetic size",
    "read_only_dataset": "features that cannot live inside a read-only dataset",
}
# One row per interruption: id -> what is interrupted. Each has a test named test_interrupted_<id>.
INTERRUPTIONS = {
    "feature_write": "SIGKILL of a process half-way through writing a feature file",
    "store_replacement": "an error half-way through replacing a whole feature store",
    "results_write": "an error half-way through writing a notebook's results file",
    "checkpoint_write": "an error half-way through writing a training checkpoint",
}


def test_every_case_has_its_test():
    names = set(globals())
    assert {f"test_fault_{k}" for k in FAULTS} <= names
    assert {f"test_interrupted_{k}" for k in INTERRUPTIONS} <= names
    listed = {f"test_fault_{k}" for k in FAULTS} | {f"test_interrupted_{k}" for k in INTERRUPTIONS}
    assert {n for n in names if n.startswith(("test_fault_", "test_interrupted_"))} == listed


def test_readme_reports_the_counts():
    text = (REPO / "README.md").read_text()
    m = re.search(r"tries (\d+) bad inputs and (\d+) interruptions", text)
    assert m, "README.md lacks the sentence 'tries N bad inputs and M interruptions'"
    assert (int(m.group(1)), int(m.group(2))) == (len(FAULTS), len(INTERRUPTIONS))


# ----------------------------------------------------------------------------------------------
# a small study in the real layout
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def real(smoke_study, tmp_path):
    """A copy of the smoke study as a real dataset would be: fMRI, transcripts, one feature store."""
    root = tmp_path / "algonauts2025"
    for s in SUBJECTS:
        shutil.copytree(smoke_study / "fmri" / s, root / "fmri" / s)
    shutil.copytree(smoke_study / "stimuli", root / "stimuli")
    shutil.copytree(layout.features_dir(smoke_study, "tribe"), layout.features_dir(root, "tribe"))
    return root


def load(root, **kw):
    return data.load_study(root, kw.pop("backbone", "tribe"), **kw)


class WordCount(features.Extractor):
    """A cheap words-only backbone: words per 2 Hz frame, times ``scale``."""

    name, modality, input = "word-count", "text", "words"

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def extract(self, stimulus, feature_hz=FEATURE_HZ):
        words = self.require(stimulus, "words")
        counts = np.zeros(stimulus.n_frames(feature_hz), np.float32)
        np.add.at(counts, np.minimum((words.onset_s.to_numpy() * feature_hz).astype(int), len(counts) - 1), 1)
        return (self.scale * counts)[:, None, None]


def transcripts(root):
    return sorted((root / "stimuli" / "transcripts").rglob("*.tsv"))


def word_store(root, paths, **kw):
    stimuli = [features.Stimulus.from_transcript(p) for p in paths]
    return features.extract_to_store(
        root, "wc", stimuli, [WordCount(kw.pop("scale", 1.0))], progress=False, **kw
    )


# ----------------------------------------------------------------------------------------------
# missing, unfetched and stale files
# ----------------------------------------------------------------------------------------------


def test_fault_dangling_symlink(real):
    p = layout.fmri_path(real, "sub-01", "movie10")
    p.unlink()
    p.symlink_to("../../../.git/annex/objects/Xk/8Q/MD5E-s1234--abcd.h5/MD5E-s1234--abcd.h5")
    with pytest.raises(FileNotFoundError) as err:
        load(real)
    assert str(p) in str(err.value) and f"datalad get {p}" in str(err.value)


def test_fault_missing_study_file(real):
    p = layout.fmri_path(real, "sub-02", "movie10")
    p.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load(real)
    assert str(p) in str(err.value) and "studies=('friends',)" in str(err.value)
    study = load(real, studies=("friends",))  # one study, asked for explicitly
    assert {layout.study_of(r.run) for r in study.records} == {"friends"}
    layout.fmri_path(real, "sub-01", "movie10").unlink()  # no subject has Movie10: read on, visibly
    with pytest.warns(
        UserWarning, match=r"no subject under .* has a movie10 fMRI file; reading friends only"
    ):
        assert {layout.study_of(r.run) for r in load(real).records} == {"friends"}


def test_fault_stale_store_after_transcript_removed(real):
    paths = transcripts(real)
    word_store(real, paths)
    gone = layout.transcript_path(real, "s01e03b")
    gone.unlink()
    with pytest.raises(data.StaleFeaturesError) as err:  # the old store is not used silently
        load(real, backbone="wc")
    msg = str(err.value)
    assert "wc/text/s01e03b.npy" in msg and str(gone) in msg and "no longer exists" in msg
    assert "text_features_from_transcripts" not in msg and "extract_to_store(..., overwrite=True)" in msg
    # the rewrite replaces the store completely: no stale s01e03b.npy survives it
    store = word_store(real, [p for p in paths if p != gone], overwrite=True)
    assert "s01e03b" not in store.stimuli("text") and len(store.stimuli("text")) == len(paths) - 1
    with pytest.raises(FileNotFoundError, match=r"run/stimulus 's01e03b'.*wc/text/s01e03b\.npy is missing"):
        load(real, backbone="wc")
    assert len(load(real, backbone="wc", runs=[r for r in _runs(real) if r != "s01e03b"]).records) > 0


def _runs(root):
    return sorted({r for s in SUBJECTS for r in data.load_fmri(root, s)})


def test_fault_source_changed(real, tmp_path):
    word_store(real, transcripts(real))
    moved = shutil.copytree(real, tmp_path / "copied_elsewhere")  # sources inside the study move with it
    assert len(load(moved, backbone="wc").records) > 0
    tsv = layout.transcript_path(real, "s01e01a")
    tsv.write_text(tsv.read_text() + "extra\t[]\t[]\t[]\n")
    with pytest.raises(data.StaleFeaturesError) as err:
        load(real, backbone="wc")
    msg = str(err.value)
    assert (
        "wc/text/s01e01a.npy" in msg and str(tsv) in msg and "changed since" in msg and "allow_stale" in msg
    )
    assert len(load(real, backbone="wc", allow_stale=True).records) > 0  # told otherwise, explicitly


def test_fault_other_settings(real):
    word_store(real, transcripts(real), scale=2.0)
    assert len(load(real, backbone="wc", feature_settings={"scale": 2.0}).records) > 0
    with pytest.raises(data.StaleFeaturesError, match=r"'wc'.*scale: store has 2\.0, asked for 1\.0"):
        load(real, backbone="wc", feature_settings={"scale": 1.0})
    with pytest.raises(ValueError, match="describes another store.*overwrite=True"):
        word_store(real, transcripts(real), scale=1.0)  # a store is never silently mixed from two settings


# ----------------------------------------------------------------------------------------------
# damaged files and values
# ----------------------------------------------------------------------------------------------


def test_fault_h5_random_bytes(real):
    p = layout.fmri_path(real, "sub-01", "friends")
    with open(p, "r+b") as f:
        f.seek(p.stat().st_size // 2)
        f.write(np.random.default_rng(0).bytes(4096))
    with pytest.raises((ValueError, OSError)) as err:
        load(real)
    assert str(p) in str(err.value)


def test_fault_h5_truncated(real):
    p = layout.fmri_path(real, "sub-02", "movie10")
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)
    with pytest.raises(OSError, match="truncated") as err:
        load(real)
    assert str(p) in str(err.value) and "datalad get" in str(err.value)


def test_fault_h5_zero_bytes(real):
    p = layout.fmri_path(real, "sub-01", "movie10")
    p.write_bytes(b"")
    with pytest.raises(OSError, match=r"empty \(0 bytes\)") as err:
        load(real)
    assert str(p) in str(err.value)


def _rewrite_run(root, subject, run, change):
    p = layout.fmri_path(root, subject, layout.study_of(run))
    with h5py.File(p, "r+") as f:
        key = next(k for k in f if layout.run_name(k) == run)
        x = f[key][()]
        del f[key]
        f.create_dataset(key, data=change(x))
    return p


def test_fault_fmri_implausible(real):
    p = _rewrite_run(real, "sub-01", "s01e02a", lambda x: x * 1e7)
    with pytest.raises(ValueError, match=r"run s01e02a of sub-01\).*beyond \|x\| > 1e\+06") as err:
        load(real)
    assert str(p) in str(err.value)
    _rewrite_run(real, "sub-01", "s01e02a", lambda x: x / 1e7)
    _rewrite_run(real, "sub-02", "bourne01", lambda x: np.where(np.arange(len(x))[:, None] == 4, np.inf, x))
    with pytest.raises(ValueError, match=r"run bourne01 of sub-02\): \d+ infinite values .* in TRs \[4\]"):
        load(real)


def test_fault_feature_nan_frames(real):
    store = data.FeatureStore(real, "tribe")
    p = store.path("s01e01b", "video")
    x = np.load(p)
    x[[5, 6]] = np.nan
    np.save(p, x)
    with pytest.raises(ValueError) as err:
        load(real)
    msg = str(err.value)
    assert str(p) in msg and "frames [5, 6]" in msg and "lower TrainConfig.lr" not in msg


def test_fault_feature_truncated(real):
    p = data.FeatureStore(real, "tribe").path("bourne01", "audio")
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 3)
    with pytest.raises(OSError, match="truncated") as err:
        load(real)
    assert str(p) in str(err.value)


def test_fault_algonauts_nan_parcel():
    rng = np.random.default_rng(0)
    y = {"sub-01": {"s01e01a": rng.standard_normal((40, 6)), "s01e01b": rng.standard_normal((40, 6))}}
    pred = {s: {r: v + rng.standard_normal(v.shape) for r, v in runs.items()} for s, runs in y.items()}
    assert np.isfinite(metrics.algonauts_score(pred, y)["mean"])
    pred["sub-01"]["s01e01b"][:, 3] = np.nan
    with pytest.raises(
        ValueError, match=r"sub-01 run s01e01b: .*NaN or infinite values in 1 of 6 parcels \(first: \[3\]\)"
    ):
        metrics.algonauts_score(pred, y)


def test_fault_repeat_unequal_length():
    rng = np.random.default_rng(1)
    signal_ = rng.standard_normal((307, 5))
    run1 = signal_[:306] + rng.standard_normal((306, 5))  # life01_run-1: 306 TRs
    run2 = signal_ + rng.standard_normal((307, 5))  # life01_run-2: 307 TRs
    with pytest.warns(
        UserWarning, match=r"306 and 307 TRs: scoring their first 306 common TRs \(1 TR\(s\) trimmed"
    ):
        ceiling = metrics.repeat_ceiling(run1, run2)
    expected = [stats.pearsonr(run1[:, v], run2[:306, v])[0] for v in range(5)]
    np.testing.assert_allclose(ceiling, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="parcels"):
        metrics.repeat_ceiling(run1, run2[:, :4])


def _write_src(src, names, shape):
    src.mkdir(parents=True, exist_ok=True)
    for name in names:
        np.save(src / f"{name}.npy", np.ones(shape, np.float32))


def test_fault_import_movie_file_names(real, tmp_path):
    src = tmp_path / "tribe_out"
    _write_src(src, ["friends_s01e01a_video", "movie10_bourne01_video", "s01e01b_video"], (30, 2, 4))
    with pytest.raises(ValueError) as err:
        features.import_tribe(
            src, real, backbone="t2", modalities=("video",), expected_dims=None, progress=False
        )
    msg = str(err.value)
    assert (
        str(src) in msg
        and "'friends_s01e01a' -> 's01e01a'" in msg
        and "'movie10_bourne01' -> 'bourne01'" in msg
    )
    assert "s01e01b'" not in msg.split("Expected")[0]  # a good name is not blamed
    assert "t2" not in data.list_backbones(real)  # nothing written
    src2 = tmp_path / "imagebind_out"
    _write_src(src2, ["friends_s01e02a_audio"], (30, 8))
    with pytest.raises(ValueError, match=r"'friends_s01e02a' -> 's01e02a'"):
        features.import_imagebind(src2, real, modalities=("audio",), expected_dim=None, progress=False)


def test_fault_import_per_repeat_names(real, tmp_path):
    src = tmp_path / "qwen_out"
    _write_src(src, ["life01_run-1", "life01_run-2", "bourne01"], (30, 8))
    with pytest.raises(ValueError) as err:
        features.import_qwen(src, real, expected_dim=None, progress=False)
    msg = str(err.value)
    assert "'life01_run-1' -> 'life01'" in msg and "'life01_run-2' -> 'life01'" in msg and "share" in msg
    assert "qwen" not in data.list_backbones(real)


def test_fault_features_shorter(real):
    store = data.FeatureStore(real, "tribe")
    n_trs = data.load_fmri(real, "sub-01")["s01e01a"].shape[0]

    def end_before_fmri(seconds):
        """Features of s01e01a ending ``seconds`` before its fMRI; returns their end in seconds."""
        n_frames = int(round((n_trs * TR_S - seconds) * FEATURE_HZ))
        for m in store.modalities:
            x = np.load(layout.feature_path(real, "tribe", m, "s01e01a"))
            assert x.shape[0] >= n_frames
            np.save(store.path("s01e01a", m), x[:n_frames])
        return n_frames / FEATURE_HZ

    originals = {m: np.load(store.path("s01e01a", m)) for m in store.modalities}
    end = end_before_fmri(10)
    with pytest.warns(UserWarning, match=r"s01e01a \((\d+) TRs\)") as rec:
        study = load(real)
    (n,) = {int(m.group(1)) for w in rec if (m := re.search(r"s01e01a \((\d+) TRs\)", str(w.message)))}
    # by hand: at a 3-TR lag TR t reads [1.49 (t - 3), 1.49 (t - 2)); it is uncovered when that window
    # starts at or after the features' end
    expected = sum(1 for t in range(n_trs) if TR_S * (t - 3) >= end - 1e-9)
    assert n == expected and 3 <= n <= 5
    r = next(r for r in study.records if r.run == "s01e01a")
    assert not r.valid[-n:].any() and r.valid[-n - 1]
    for m, x in originals.items():
        np.save(store.path("s01e01a", m), x)
    end_before_fmri(20)  # beyond length_tolerance_s (15 s): an error
    with pytest.raises(ValueError, match=r"run s01e01a: features .*s01e01a\.npy.*length_tolerance_s=15"):
        load(real)


# ----------------------------------------------------------------------------------------------
# notebook parameters
# ----------------------------------------------------------------------------------------------


def _namespace(declared: dict, annotations: dict, injected: dict) -> dict:
    return {**declared, **injected, "__annotations__": annotations, "__name__": "__main__", "np": np}


def test_fault_param_number_for_list():
    ns = _namespace({"lrs": [1e-3, 3e-3], "epochs": 15}, {"lrs": list, "epochs": int}, {"lrs": 0.003})
    with pytest.raises(TypeError) as err:
        params.check_parameters(ns)
    msg = str(err.value)
    assert "'lrs' must be list" in msg and "got float 0.003" in msg and "-y 'lrs: [0.003]'" in msg
    with pytest.raises(
        TypeError, match="'epochs' must be int as the parameters cell declares, got bool True"
    ):
        params.check_parameters(_namespace({"epochs": 15}, {"epochs": int}, {"epochs": True}))
    assert params.check_parameters(_namespace({"lr": 0.1}, {"lr": float}, {"lr": 1})) == {"lr": 1}


def test_fault_param_string_for_list():
    ns = _namespace({"backbones": ["tribe"]}, {"backbones": list}, {"backbones": "tribe"})
    with pytest.raises(TypeError) as err:
        params.check_parameters(ns)
    msg = str(err.value)
    assert (
        "'backbones' must be list" in msg
        and "got str 'tribe'" in msg
        and """-y 'backbones: ["tribe"]'""" in msg
    )
    ns = _namespace({"backbones": ["tribe"]}, {"backbones": list}, {"backbones": "[tribe, qwen]"})
    with pytest.raises(TypeError, match="papermill -p always gives one number or string"):
        params.check_parameters(ns)


def test_fault_param_unknown_name(tmp_path):
    pm = pytest.importorskip("papermill")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'lrs: list = [1e-3]  # learning rates\ntag: str = ""  # name', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell('__import__("mindlib.params").params.check_parameters(globals())'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "nb.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(src),
            str(tmp_path / "bad.ipynb"),
            parameters={"lrss": [0.1]},
            progress_bar=False,
            kernel_name="python3",
        )
    assert "unknown notebook parameter(s) 'lrss' (did you mean 'lrs'?)" in str(err.value)
    # in a kernel, injected names are those of papermill's cell: re-running a cell never flags the
    # notebook's own variables (x, fig, ...)
    history = ["", 'tag: str = ""', "# Parameters\ntag = 'a'\n", "x = 1", "check_parameters(globals())"]
    kernel = {
        "tag": "a",
        "x": 1,
        "In": history,
        "Out": {},
        "get_ipython": lambda: None,
        "__annotations__": {"tag": str},
    }
    assert params.check_parameters(kernel) == {"tag": "a"}
    with pytest.raises(ValueError, match="'tga'"):
        params.check_parameters({**kernel, "In": [*history[:2], "# Parameters\ntga = 'a'\n"], "tga": "a"})
    # outside a kernel (a notebook run as a script), every undeclared, non-module, non-_ name counts
    with pytest.raises(ValueError, match="'tga' \\(did you mean 'tag'\\?\\)"):
        params.check_parameters(_namespace({"tag": ""}, {"tag": str}, {"tga": "x"}))


def test_fault_config_unknown_name():
    with pytest.raises(ValueError, match=r"'weight_decay' \(did you mean 'weight_decays'\?\)"):
        experiment.config_from_params(decoder="mind", weight_decay=[0.1])


def _cells(name: str) -> tuple[str, str]:
    """The parameters cell and the first code cell of a notebook's .py source."""
    text = (REPO / "notebooks" / f"{name}.py").read_text()
    after = text.split('# %% tags=["parameters"]\n', 1)[1]
    parameters, rest = after.split("\n# %%\n", 1)
    return parameters, rest.split("\n# %%", 1)[0]


def test_notebook_drivers_pass_only_declared_parameters():
    """Every parameter mindlib.notebooks and notebook 08's grid pass is declared, with its type."""
    from mindlib import notebooks

    for spec in notebooks.NOTEBOOKS:
        ns: dict = {}
        exec(_cells(spec.name)[0], ns)
        declared = {k: v for k, v in ns.items() if k != "__builtins__"}
        for size, overrides in spec.sizes.items():
            (
                params.check_parameters({**declared, **overrides, "results_dir": "r", "fig_dir": "f"}),
                (spec.name, size),
            )
    from mindlib import grid  # notebook 08's cells: what grid.cell_params hands to notebook 06

    cell_params = grid.cell_params(grid.Cell("tribe", "mind", "both", 0), grid.GridSpec(), REPO / "runs")
    passed = set(cell_params) | {"num_threads"}  # grid.run_notebook_cell adds num_threads
    ns = {}
    exec(_cells("06_train_mind")[0], ns)
    assert passed <= set(ns["__annotations__"]), passed - set(ns["__annotations__"])


def test_fault_notebook10_before_08(real, tmp_path):
    parameters, first = _cells("10_visualisations")
    ns: dict = {}
    exec(parameters, ns)
    ns.update(dataset=str(real), results_dir=str(tmp_path / "results"), backbones=["tribe"])
    with pytest.raises(FileNotFoundError) as err:
        exec(first, ns)
    msg = str(err.value)
    assert "make demo" not in msg and f"-p dataset {real}" in msg and "08_tables.ipynb" in msg
    assert "backbones: [tribe]" in msg


def test_fault_results_real_size(real, tmp_path, monkeypatch):
    """Notebook 06 end to end on the real-layout folder (one tiny grid cell): its results say "real"."""
    monkeypatch.chdir(REPO / "notebooks")
    text = (REPO / "notebooks" / "06_train_mind.py").read_text()
    body = text.split('# %% tags=["parameters"]\n', 1)[1]
    injected = dict(
        dataset=str(real),
        epochs=1,
        d_model=16,
        lrs=[3e-3],
        decoder="baseline",
        device="cpu",
        results_dir=str(tmp_path / "results"),
        fig_dir="",
        tag="real-check",
    )
    parameters, rest = body.split("\n# %%\n", 1)
    ns: dict = {"__name__": "__main__"}
    exec(parameters, ns)
    ns.update(injected)
    (tmp_path / "results" / "runs").mkdir(parents=True)  # notebook 08 makes it for its tagged runs
    exec(compile(rest, "06_train_mind.py", "exec"), ns)
    results = project.read_results("runs/real-check", tmp_path / "results")
    assert results["size"] == "real" and results["dataset"] == str(real)


def test_fault_read_only_dataset(real, tmp_path, smoke_study):
    """Features written to and read from a folder outside the dataset, which is left untouched."""
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    outside = tmp_path / "my_features"
    src = tmp_path / "qwen_out"
    for s in ("s01e01a", "bourne01"):
        src.mkdir(exist_ok=True)
        np.save(src / f"{s}.npy", np.load(layout.feature_path(smoke_study, "qwen", "fused", s))[:, 0])
    store = features.import_qwen(src, real, expected_dim=None, progress=False, features_root=outside)
    assert store.dir == outside / "qwen" and sorted(p.relative_to(real) for p in real.rglob("*")) == before
    assert data.list_backbones(real, outside) == ["qwen"] and "qwen" not in data.list_backbones(real)
    study = data.load_study(real, "qwen", features_root=outside, runs=["s01e01a", "bourne01"])
    assert study.features_root == outside and {r.run for r in study.records} == {"s01e01a", "bourne01"}
    with pytest.raises(ValueError, match=r"unknown backbone 'qwen'.*\['tribe'\]"):
        data.load_study(real, "qwen")


# ----------------------------------------------------------------------------------------------
# interruptions
# ----------------------------------------------------------------------------------------------


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mindlib import data

    store = data.FeatureStore(sys.argv[1], "tribe")
    new = np.full((50, *store.shape("video")), 7.0, np.float32)

    def slow_save(file, arr, **kw):  # half a file on disk, then wait to be killed
        with open(file, "wb") as f:
            f.write(b"\\x93NUMPY" + bytes(1000))
            f.flush()
            print("half written", flush=True)
            time.sleep(60)

    np.save = slow_save
    store.write("s01e01a", "video", new)
    """
)


def test_interrupted_feature_write(real):
    store = data.FeatureStore(real, "tribe")
    p = store.path("s01e01a", "video")
    old, listed = p.read_bytes(), store.stimuli("video")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(real)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == "half written"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    assert p.read_bytes() == old  # the previous file is intact
    assert data.FeatureStore(real, "tribe").stimuli("video") == listed  # the leftover is not a stimulus
    assert any(q.name.startswith(".s01e01a.") for q in p.parent.iterdir())
    new = np.full((50, *store.shape("video")), 7.0, np.float32)
    store.write("s01e01a", "video", new)  # the rerun completes
    np.testing.assert_array_equal(store.load("s01e01a", "video"), new)


def test_interrupted_store_replacement(real, monkeypatch):
    paths = transcripts(real)
    word_store(real, paths)
    store_dir = layout.features_dir(real, "wc")
    old = {p.relative_to(store_dir): p.read_bytes() for p in store_dir.rglob("*") if p.is_file()}
    real_write = data.FeatureStore.write
    calls = []

    def failing_write(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_write(self, *a, **kw)

    monkeypatch.setattr(data.FeatureStore, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        word_store(real, paths[:-1], scale=3.0, overwrite=True)
    monkeypatch.undo()
    assert {p.relative_to(store_dir): p.read_bytes() for p in store_dir.rglob("*") if p.is_file()} == old
    assert data.list_backbones(real) == ["tribe", "wc"]  # the half-written replacement is not a store
    store = word_store(real, paths[:-1], scale=3.0, overwrite=True)  # the rerun completes, completely
    assert len(store.stimuli("text")) == len(paths) - 1 and store.settings["extractors"][0]["scale"] == 3.0
    assert not any(p.name.startswith(".wc") for p in store_dir.parent.iterdir())


def test_interrupted_results_write(tmp_path, monkeypatch):
    project.write_results("06_train_mind", {"val_r": 0.25}, tmp_path)
    real_write_text = Path.write_text

    def failing_write_text(self, text, *a, **kw):
        real_write_text(self, text[: len(text) // 2], *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(KeyboardInterrupt):
        project.write_results("06_train_mind", {"val_r": 0.5, "test_r": 0.4}, tmp_path)
    monkeypatch.undo()
    assert project.read_results("06_train_mind", tmp_path) == {"val_r": 0.25}  # the previous file is intact
    project.write_results("06_train_mind", {"val_r": 0.5, "test_r": 0.4}, tmp_path)
    assert project.read_results("06_train_mind", tmp_path) == {"val_r": 0.5, "test_r": 0.4}


def test_interrupted_checkpoint_write(tmp_path, monkeypatch):
    from tests.stand_ins import TinyDecoder, planted_records, planted_weights

    rng = np.random.default_rng(0)
    weights = planted_weights(rng)
    train_recs = planted_records(("sub-01",), ("s01e01a", "bourne01"), weights, rng, n_trs=40, noise=0.5)
    val_recs = planted_records(("sub-01",), ("s01e02a",), weights, rng, n_trs=40, noise=0.5)
    cfg = train.TrainConfig(
        epochs=3,
        batch_size=4,
        window=16,
        stride=8,
        lr=5e-2,
        device="cpu",
        progress=False,
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    real_save = torch.save
    saves = []

    def failing_save(obj, f, *a, **kw):
        saves.append(1)
        if len(saves) == 2:  # the second epoch's checkpoint: half a file, then the process dies
            Path(f).write_bytes(b"PK\x03\x04" + bytes(100))
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train.fit(TinyDecoder(), train_recs, val_recs, cfg)
    monkeypatch.undo()
    ckpt = tmp_path / "ckpt" / train.CHECKPOINT_NAME
    state = torch.load(ckpt, weights_only=True)  # the previous checkpoint is intact
    assert len(state["history"]) == 1
    assert [p.name for p in ckpt.parent.iterdir()] == [train.CHECKPOINT_NAME]
    result = train.fit(TinyDecoder(), train_recs, val_recs, cfg)  # the rerun resumes and completes
    assert len(result.history) == 3 and not result.stopped_early
    torch.manual_seed(0)
    straight = train.fit(
        TinyDecoder(), train_recs, val_recs, replace(cfg, checkpoint_dir=str(tmp_path / "b"))
    )
    assert [h["val_r"] for h in result.history] == pytest.approx([h["val_r"] for h in straight.history])


def test_check_parameters_reads_generic_union_and_postponed_annotations():
    ns = {
        "lrs": [1e-3, "x"],
        "tag": None,
        "n": 3,
        "__annotations__": {"lrs": list[float], "tag": str | None, "n": "int"},
    }
    with pytest.raises(TypeError, match=r"'lrs' must be list\[float\]"):
        params.check_parameters(ns)
    ns["lrs"] = [1e-3, 2]
    assert params.check_parameters(ns) == {"lrs": [1e-3, 2], "tag": None, "n": 3}
    with pytest.raises(TypeError, match="'n' must be int"):
        params.check_parameters({**ns, "n": 3.0})
    with pytest.raises(ValueError, match="run the parameters cell first"):
        params.check_parameters({"x": 1})
