"""mindlib.grid: cells run as submitit jobs, are cached by their parameters, fail with their log, and resume.

The jobs here run a stand-in for notebook 06 (a few lines writing a results file) so that the engine itself is
what is tested: real processes started by ``submitit.LocalExecutor`` (and by Slurm when a cluster answers).
"""

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

from mindlib import grid, project

# the job functions below travel to the job processes by value (the tests folder is no importable package)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def stand_in_cell(params: dict, runs_dir: str, num_threads: int) -> str:
    """Writes ``<tag>.json`` as notebook 06 would; ``best_lr`` is the grid's last value (so reuse is visible).

    decoder "broken" always fails; decoder "flaky" fails on its first attempt only; decoder "slow" takes 10 s.
    Each results file records when its job started and finished.
    """
    runs = Path(runs_dir)
    started = time.time()
    if params["decoder"] == "slow":
        time.sleep(10)
    if params["decoder"] == "broken":
        raise ValueError(f"cell {params['tag']} cannot fit: no such decoder")
    marker = runs / f"{params['tag']}.attempted"
    if params["decoder"] == "flaky" and not marker.exists():
        marker.write_text("1")
        raise RuntimeError("transient failure")
    (runs / f"{params['tag']}.json").write_text(
        json.dumps(
            {
                "tag": params["tag"],
                "seed": params["seed"],
                "best_lr": params["lrs"][-1],
                "best_weight_decay": params["weight_decays"][-1],
                "num_threads": num_threads,
                "started": started,
                "finished": time.time(),
            }
        )
    )
    return str(runs / f"{params['tag']}.json")


def fixed_broken_cell(params: dict, runs_dir: str, num_threads: int) -> str:
    """The same stand-in once the cause of the failure is fixed."""
    return stand_in_cell({**params, "decoder": "fixed"}, runs_dir, num_threads)


SPEC = grid.GridSpec(
    dataset="synthetic",
    size="smoke",
    seeds=(0, 1),
    isg_subjects=("sub-01",),
    d_model=32,
    epochs=1,
    lrs=(1e-3, 3e-3),
    weight_decays=(1e-2,),
)


def test_tags_and_table_cells_follow_notebook_08():
    cells = grid.table1_cells(["tribe"], ["mind", "ridge"], [0, 1])
    assert [c.tag for c in cells] == ["tribe-mind-both-s0", "tribe-mind-both-s1", "tribe-ridge-both-s0"]
    assert [c.tag for c in grid.table2_cells(["qwen"], ["token", "both"], [3])] == [
        "qwen-mind-token-s3",
        "qwen-mind-both-s3",
    ]
    assert [c.tag for c in grid.table2_cells(["qwen"], ["both"], [3], ["importance", "switch"])] == [
        "qwen-mind-both-s3",
        "qwen-mind-both-switch-s3",
    ]


def test_ablation_cells_reuse_table_cells_and_carry_notebook_06_options(tmp_path):
    afire = grid.ablation_cells(["tribe"], [0], grid.AFIRE_ABLATIONS)
    assert [c.tag for c in afire] == [
        "tribe-mind-both-s0",  # concat: Table 1's MIND cell itself
        "tribe-mind-both-fusion_sum-s0",
        "tribe-mind-both-fusion_gated-s0",
        "tribe-mind-both-modality_dropout_0.2-s0",
    ]
    assert afire[0] == grid.table1_cells(["tribe"], ["mind"], [0])[0]
    par = grid.ablation_cells(["qwen"], [0, 1], grid.PARAMETRISATIONS)
    assert [c.tag for c in par if c.seed == 1] == [
        "qwen-mind-both-s1",
        "qwen-mind-both-router_subject_False-s1",
        "qwen-mind-both-lambda_bias_0.0-s1",
        "qwen-mind-both-switch-s1",  # Table 2's balance cell
    ]
    assert par[-1] == grid.table2_cells(["qwen"], ["both"], [1], ["importance", "switch"])[-1]
    assert [grid.variant_of(c, grid.PARAMETRISATIONS) for c in par[::2]] == list(grid.PARAMETRISATIONS)
    # options become notebook 06 parameters; an ablation cell has no ISG column
    runs = tmp_path / "runs"
    runs.mkdir()
    params = grid.cell_params(afire[1], SPEC, runs)
    assert (params["fusion"], params["isg_subjects"], params["tag"]) == (
        "sum",
        [],
        "tribe-mind-both-fusion_sum-s0",
    )
    assert "fusion" not in grid.cell_params(afire[0], SPEC, runs)  # Table 1's cell: its parameters unchanged
    nb06 = (Path(__file__).parents[1] / "notebooks" / "06_train_mind.py").read_text()
    for name in grid.OPTIONS:  # every option is a parameter of notebook 06
        assert f"\n{name}: " in nb06, name
    with pytest.raises(ValueError, match=r"\['mode'\] are not ablation parameters"):
        grid.Cell("tribe", "mind", "both", 0, options=(("mode", "token"),))


def test_cell_params_written_out(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = grid.cell_params(grid.Cell("tribe", "mind", "both", 0), SPEC, runs)
    assert first == {
        "dataset": "synthetic",
        "size": "smoke",
        "seed": 0,
        "backbone": "tribe",
        "decoder": "mind",
        "mode": "both",
        "balance": "importance",
        "d_model": 32,
        "epochs": 1,
        "fir_lags_trs": [2, 3, 4],
        "device": "auto",
        "tag": "tribe-mind-both-s0",
        "results_dir": str(tmp_path),
        "fig_dir": "",
        "isg_subjects": ["sub-01"],
        "lrs": [1e-3, 3e-3],
        "weight_decays": [1e-2],
        "features_root": "",
    }
    # later seeds need the first seed's choice; no ISG on them, nor on ridge or other router modes
    with pytest.raises(FileNotFoundError, match="tribe-mind-both-s0"):
        grid.cell_params(grid.Cell("tribe", "mind", "both", 1), SPEC, runs)
    (runs / "tribe-mind-both-s0.json").write_text(json.dumps({"best_lr": 3e-3, "best_weight_decay": 1e-2}))
    later = grid.cell_params(grid.Cell("tribe", "mind", "both", 1), SPEC, runs)
    assert (later["lrs"], later["weight_decays"], later["isg_subjects"]) == ([3e-3], [1e-2], [])
    assert grid.cell_params(grid.Cell("tribe", "ridge", "both", 0), SPEC, runs)["isg_subjects"] == []
    assert grid.cell_params(grid.Cell("tribe", "mind", "token", 0), SPEC, runs)["isg_subjects"] == []
    switch = grid.Cell("tribe", "mind", "both", 1, "switch")  # reuses its own first seed's choice
    with pytest.raises(FileNotFoundError, match="tribe-mind-both-switch-s0"):
        grid.cell_params(switch, SPEC, runs)
    every = replace(SPEC, grid_every_seed=True)
    assert grid.cell_params(grid.Cell("tribe", "mind", "both", 1), every, runs)["lrs"] == [1e-3, 3e-3]


def test_cell_params_name_a_results_folder_inside_the_repository_relative_to_it(tmp_path, monkeypatch):
    """A grid's .params.json must match on another clone (a resumed publishing run reads papers/results/)."""
    monkeypatch.setattr(project, "repo_root", lambda: tmp_path / "clone")
    inside = tmp_path / "clone" / "papers" / "results" / "runs"
    outside = tmp_path / "elsewhere" / "runs"
    for runs in (inside, outside):
        runs.mkdir(parents=True)
    assert (
        grid.cell_params(grid.Cell("tribe", "mind", "both", 0), SPEC, inside)["results_dir"]
        == "papers/results"
    )
    assert grid.cell_params(grid.Cell("tribe", "mind", "both", 0), SPEC, outside)["results_dir"] == str(
        outside.parent.resolve()
    )


def test_published_results_folder_keeps_small_files_and_ignores_models_and_logs():
    """papers/results/ is committed (report inputs, grid resume) but not its models, notebooks or job logs."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    paths = {
        "papers/results/08_tables.json": False,
        "papers/results/runs/tribe-mind-both-s0.json": False,
        "papers/results/runs/tribe-mind-both-s0.params.json": False,
        "papers/results/runs/tribe-mind-both-s0_parcel_r.npy": False,
        "papers/results/table1.csv": False,
        "papers/results/models/tribe-mind-both-s0.pt": True,
        "papers/results/runs/tribe-mind-both-s0.ipynb": True,
        "papers/results/runs/logs/123/123_0_log.err": True,
        "papers/results/submission/x.npy": True,
        "runs/full/results/08_tables.json": True,
    }
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=root, capture_output=True, text=True
    ).stdout.split()
    assert {p: p in out for p in paths} == paths


def model_cell(params: dict, runs_dir: str, num_threads: int) -> str:
    """Writes a model file (the parameters it was trained with) and a results file, where notebook 06 would."""
    model = Path(params["results_dir"]) / "models" / f"{params['tag']}.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text(json.dumps(params))
    (Path(runs_dir) / f"{params['tag']}.json").write_text(
        json.dumps({"val_r": 0.5, "best_lr": params["lrs"][0]})
    )
    return str(Path(runs_dir) / f"{params['tag']}.json")


def _recorded_cell(results: Path, tag: str, val_r: float) -> None:
    runs = results / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    params = {
        "tag": tag,
        "lrs": [1e-3, 3e-3],
        "weight_decays": [1e-2],
        "isg_subjects": ["sub-01"],
        "results_dir": "papers/results",
    }
    (runs / f"{tag}.params.json").write_text(json.dumps(params))
    (runs / f"{tag}.json").write_text(
        json.dumps({"val_r": val_r, "best_lr": 3e-3, "best_weight_decay": 1e-2})
    )


def test_a_missing_cell_model_is_rebuilt_at_the_chosen_grid_point_without_touching_results(tmp_path, capsys):
    results = tmp_path / "results"
    _recorded_cell(results, "tribe-mind-both-s0", val_r=0.5)
    recorded = {p.name: p.read_bytes() for p in (results / "runs").iterdir()}
    path = grid.cell_model(results / "runs", "tribe-mind-both-s0", job_fn=model_cell)
    assert path == results / "models" / "tribe-mind-both-s0.pt"
    trained_with = json.loads(path.read_text())
    assert (trained_with["lrs"], trained_with["weight_decays"], trained_with["isg_subjects"]) == (
        [3e-3],
        [1e-2],
        [],
    )
    assert Path(trained_with["results_dir"]) != results  # rebuilt in a temporary folder
    assert {
        p.name: p.read_bytes() for p in (results / "runs").iterdir()
    } == recorded  # committed files as they were
    assert "val r 0.500000 (recorded 0.500000" in capsys.readouterr().out
    before = path.stat().st_mtime_ns
    assert (
        grid.cell_model(results / "runs", "tribe-mind-both-s0", job_fn=model_cell) == path
    )  # present: reused
    assert path.stat().st_mtime_ns == before


def test_a_rebuilt_model_that_does_not_match_its_scored_cell_is_reported(tmp_path):
    results = tmp_path / "results"
    _recorded_cell(results, "tribe-mind-both-s0", val_r=0.6)  # scored elsewhere, e.g. on a GPU
    with pytest.warns(
        UserWarning, match=r"val r 0\.500000, the recorded cell 0\.600000.*not the scored cell"
    ):
        grid.cell_model(results / "runs", "tribe-mind-both-s0", job_fn=model_cell)
    with pytest.raises(FileNotFoundError, match=r"tribe-mind-both-s1\.params\.json.*run the grid"):
        grid.cell_model(results / "runs", "tribe-mind-both-s1", job_fn=model_cell)


def test_local_engine_runs_caches_and_reruns_on_changed_parameters(tmp_path):
    runner = grid.GridRunner(tmp_path / "runs", workers=2, job_fn=stand_in_cell, progress=False)
    cells = grid.table1_cells(["tribe"], ["mind", "ridge"], SPEC.seeds)
    rows = runner.run(SPEC, cells)
    assert [r["tag"] for r in rows] == [c.tag for c in cells]
    assert sorted(runner.ran) == sorted(c.tag for c in cells)
    # seed 1 reused seed 0's choice (the stand-in picks the grid's last lr); each job had cores // 2 threads
    params = json.loads((tmp_path / "runs" / "tribe-mind-both-s1.params.json").read_text())
    assert params["lrs"] == [3e-3]
    assert {r["num_threads"] for r in rows} == {runner._threads()}
    assert list((tmp_path / "runs" / "logs").iterdir()), "submitit wrote no job folders"

    again = grid.GridRunner(tmp_path / "runs", workers=2, job_fn=stand_in_cell, progress=False)
    assert again.run(SPEC, cells) == rows and again.ran == []  # every cell from its results file

    longer = replace(SPEC, epochs=2)  # other parameters: nothing is reused
    again.run(longer, cells[:1])
    assert again.ran == [cells[0].tag]


def test_a_later_seed_starts_when_its_own_first_seed_is_done_not_when_every_first_seed_is(tmp_path):
    """One queue without phase barriers: while a slow first-seed cell runs, a fast cell's later seed (which
    reuses the fast cell's grid choice) already runs in the other worker, and reuses that choice."""
    slow, fast, fast_later = (
        grid.Cell("tribe", "slow", "both", 0),
        grid.Cell("tribe", "mind", "both", 0),
        grid.Cell("tribe", "mind", "both", 1),
    )
    runner = grid.GridRunner(tmp_path / "runs", workers=2, job_fn=stand_in_cell, progress=False)
    rows = {r["tag"]: r for r in runner.run(SPEC, [slow, fast, fast_later])}
    assert rows[fast_later.tag]["finished"] < rows[slow.tag]["finished"], (
        "the later seed waited for the slow cell"
    )
    assert rows[fast_later.tag]["started"] >= rows[fast.tag]["finished"], (
        "the later seed ran before its first seed"
    )
    params = json.loads((tmp_path / "runs" / f"{fast_later.tag}.params.json").read_text())
    assert params["lrs"] == [rows[fast.tag]["best_lr"]]


def test_failing_cell_reported_with_its_log_then_resumed(tmp_path):
    runs = tmp_path / "runs"
    cells = [
        grid.Cell("tribe", "mind", "both", 0),
        grid.Cell("tribe", "flaky", "both", 0),
        grid.Cell("tribe", "broken", "both", 0),
        grid.Cell("tribe", "broken", "both", 1),
    ]
    runner = grid.GridRunner(runs, workers=2, retries=1, job_fn=stand_in_cell, progress=False)
    with pytest.raises(grid.GridError) as info:
        runner.run(SPEC, cells)
    failures = {f.tag: f for f in info.value.failures}
    assert set(failures) == {"tribe-broken-both-s0", "tribe-broken-both-s1"}
    broken = failures["tribe-broken-both-s0"]
    assert broken.attempts == 2 and "no such decoder" in broken.error
    assert "no such decoder" in Path(broken.log).read_text()  # the job's own stderr, as submitit wrote it
    assert str(broken) in str(info.value) and broken.log in str(info.value)
    assert "has not run" in failures["tribe-broken-both-s1"].error  # its first seed failed: never submitted
    assert failures["tribe-broken-both-s1"].attempts == 0
    # the good cell and the flaky one (second attempt) finished and have results files
    assert set(info.value.results) == {"tribe-mind-both-s0", "tribe-flaky-both-s0"}
    assert not (runs / "tribe-broken-both-s0.params.json").exists()

    fixed = grid.GridRunner(runs, workers=2, retries=0, job_fn=fixed_broken_cell, progress=False)
    rows = fixed.run(SPEC, cells)  # resume: only the failed cells run
    assert sorted(fixed.ran) == ["tribe-broken-both-s0", "tribe-broken-both-s1"]
    assert [r["tag"] for r in rows] == [c.tag for c in cells]


def test_runner_options_checked():
    with pytest.raises(ValueError, match="engine"):
        grid.GridRunner("runs", engine="pbs")
    with pytest.raises(ValueError, match="workers"):
        grid.GridRunner("runs", workers=0)
    runner = grid.runner_from_params(
        "runs", engine="slurm", partition="gpu", gpus_per_job=2, time_limit_min=30, workers=4, lrs=[1e-3]
    )  # names the runner lacks are ignored
    assert (runner.engine, runner.partition, runner.gpus_per_job, runner.time_limit_min) == (
        "slurm",
        "gpu",
        2,
        30,
    )
    assert grid.spec_from_params(seeds=[0, 1], engine="slurm").seeds == (0, 1)


def _slurm_answers() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(
        s.strip() in ("idle", "mixed") for s in out.stdout.split()
    )  # a node to run on


@pytest.mark.skipif(
    not _slurm_answers(),
    reason="no Slurm cluster with an idle node answers here (sbatch/sinfo); on Debian as root: "
    "apt-get install -y slurm-wlm munge && bash tests/slurm_one_node.sh",
)
@pytest.mark.timeout(600)  # a cluster that accepts jobs but never runs them fails here instead of hanging CI
def test_slurm_engine_runs_real_jobs(tmp_path):
    runner = grid.GridRunner(
        tmp_path / "runs",
        engine="slurm",
        workers=2,
        retries=0,
        time_limit_min=5,
        job_fn=stand_in_cell,
        progress=False,
    )
    cells = [grid.Cell("tribe", "mind", "both", 0), grid.Cell("tribe", "broken", "both", 0)]
    with pytest.raises(grid.GridError) as info:
        runner.run(SPEC, cells)
    assert set(info.value.results) == {"tribe-mind-both-s0"}
    (failure,) = info.value.failures
    # the job's own traceback, as submitit returns it; the log file named beside it may still be being
    # flushed by the node when the failure is seen, so only its existence is checked
    assert "no such decoder" in failure.error and Path(failure.log).exists()
    assert runner.ran == ["tribe-mind-both-s0"]
