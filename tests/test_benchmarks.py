"""The benchmark suite runs at toy sizes and returns well-formed tables (no timing is checked)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import bench_head, bench_train, common  # importable via pytest pythonpath = ["."]
from benchmarks.__main__ import main, plan, readme_block
from tests.stand_ins import spy_on_mix

CPU = torch.device("cpu")
TOY = bench_head.HeadShape(B=2, T=5, d=12, V=7, E=4, K=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Toy sizes run fastest on one thread (and do not fight other test processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def head():
    return bench_head.run_head(CPU, TOY, experts=(3, 4), repeats=1, warmup=0)


def test_head_rows_are_complete_and_sparse_equals_dense(head):
    df = head
    assert len(df) == 2 * len(bench_head.PASSES) * len(bench_head.PATHS)
    assert set(df.path) == set(bench_head.PATHS) and set(df["pass"]) == set(bench_head.PASSES)
    assert (df.ms > 0).all() and (df["GFLOP/s"] > 0).all() and (df.speedup > 0).all()
    exact = df[df.path != "matmul"]
    assert (exact.max_abs_diff <= 1e-5).all() and (exact.max_grad_diff <= 1e-5).all()
    assert exact.close.all()
    assert (df[df.path == "matmul"].of_matmul == 1.0).all()
    fb = df[(df["pass"] == "forward+backward") & (df.path != "matmul")]
    assert (fb.saved_MB > 0).all() and df[df["pass"] == "forward"].saved_MB.isna().all()
    flops = bench_head.gflops_table(df)
    assert list(flops.columns) == ["E", "K", "pass", "sparse_GFLOP/s", "matmul_GFLOP/s", "fraction"]
    assert len(flops) == 4 and (flops.fraction > 0).all()
    headline = bench_head.headline_table(df)
    assert len(headline) == 4 and "speed-up" in headline.columns


def test_saved_activations_of_sparse_grow_with_k_not_e():
    def saved(path, **sizes):
        shape = bench_head.HeadShape(B=2, T=6, d=16, V=10, **sizes)
        return bench_head.HeadCase(shape, CPU).saved_mb(path)

    assert saved("sparse", E=2, K=2) == saved("sparse", E=16, K=2)
    assert saved("sparse", E=8, K=4) > saved("sparse", E=8, K=2) > saved("sparse", E=8, K=1)
    assert saved("dense", E=16, K=2) > saved("dense", E=2, K=2)


def test_useful_flops_hand_computed():
    shape = bench_head.HeadShape(B=2, T=3, d=4, V=5, E=6, K=2)
    assert shape.N == 6
    assert shape.useful_flops("forward") == 2 * 6 * 2 * 4 * 5
    assert shape.useful_flops("forward+backward") == 3 * 480
    with pytest.raises(ValueError):
        bench_head.HeadShape(E=2, K=3)


def test_scaling_rows_and_figure(tmp_path):
    axes = {"E": (2, 4), "K": (1, 2), "V": (3, 7), "d": (8, 12)}
    df = bench_head.run_scaling(CPU, TOY, axes, repeats=1, warmup=0)
    assert len(df) == 8 and list(df.axis.unique()) == ["E", "K", "V", "d"]
    assert (df.max_abs_diff <= 1e-5).all() and (df.speedup > 0).all()
    assert (df[df.axis == "E"].value == df[df.axis == "E"].E).all()
    png = bench_head.plot_scaling(df, tmp_path / "scaling.png")
    assert png.stat().st_size > 0


def test_train_steps_every_decoder_at_toy_size():
    size = bench_train.StepSize("toy", 8, (("video", 5), ("text", 3)), n_subjects=2, n_parcels=6, B=2, T=5)
    df = bench_train.run_train_steps(CPU, [size], repeats=1, warmup=0)
    assert list(df.decoder) == [label for label, _, _ in bench_train.DECODERS]
    assert (df.windows_per_s > 0).all() and (df.params_M > 0).all()
    assert (df.F_total == 8).all()


def test_demo_feature_dims_match_the_synthetic_size_table():
    from mindlib import synthetic

    dims = dict(bench_train.demo_feature_dims("demo"))
    assert set(dims) == {m for m, _, _ in synthetic.size_spec("demo").tribe}
    assert all(v > 0 for v in dims.values())
    assert [s.label for s in bench_train.step_sizes(quick=True)] == ["demo", "full-512"]


def test_readme_block_is_the_only_thing_replaced(tmp_path, head):
    text = "intro\n<!-- perf:start -->\nold table\n<!-- perf:end -->\noutro\n"
    assert common.replace_block(text, "new") == "intro\n<!-- perf:start -->\nnew\n<!-- perf:end -->\noutro\n"
    assert common.replace_block("no markers", "new") is None
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert common.update_readme(readme, "new") is False
    assert readme.read_text() == "no markers here\n"
    block = readme_block(head, "cpu test")
    assert "| E |" in block and "python -m benchmarks" in block
    assert "(B = 2 windows × T = 5 TRs, d = 12, V = 7)" in block


def test_markdown_table_and_csv(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, math.nan]})
    assert common.markdown_table(df).splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5 |", "| 2 | – |"]
    path = common.write_csv(df, "x", "cpu test", tmp_path)
    assert list(pd.read_csv(path).columns) == ["a", "b", "device"]
    assert "cpu" in common.device_description(CPU)


def test_cli_plans_and_rejects_unknown_benchmark():
    quick, full = plan(quick=True), plan(quick=False)
    assert full.head_shape == bench_head.HeadShape() and full.head_experts == (6, 8)
    assert quick.scaling_base.B < full.scaling_base.B
    with pytest.raises(SystemExit):
        main(["--only", "nothing"])


def test_cpu_share_and_round_robin_times():
    with common.cpu_share() as usage:
        times = common.round_robin_times({"a": lambda: sum(range(1000)), "b": lambda: None}, CPU, repeats=3)
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) >= 0 for t in times.values())
    assert usage["share"] >= 0 and usage["seconds"] > 0


def test_head_times_the_models_own_mix(monkeypatch):
    """The dense and sparse rows run ``Experts.mix``, the method ``MIND.forward`` calls."""
    calls = spy_on_mix(monkeypatch)
    case = bench_head.HeadCase(TOY, CPU)
    case.forward_only("dense")
    case.forward_backward("sparse")
    assert calls == ["dense", "sparse"]


def test_scale_study_has_the_release_shape(tmp_path, monkeypatch):
    from benchmarks import bench_scale
    from mindlib import data, layout

    runs = bench_scale.release_runs()
    assert len(runs) == 353 and len(set(runs)) == 353
    assert len(bench_scale.stimuli_of(runs)) == 292 + 44  # Friends s1-s6 halves; Movie10 clips
    assert {"s06e25b", "wolf17", "figures12_run-2", "life05_run-1", "bourne10"} <= set(runs)
    assert set(layout.KNOWN_MISSING_RUNS["sub-05"]) <= set(bench_scale.selected_runs(0.01))
    # a tiny stand-in for the real dimensions, built and loaded as the benchmark does
    monkeypatch.setattr(bench_scale, "TRIBE_DIMS", {"video": 6, "text": 4, "audio": 3})
    monkeypatch.setattr(bench_scale, "TR_RANGE", (30, 34))
    monkeypatch.setattr(bench_scale, "N_PARCELS", 1000)
    stamp = bench_scale.build(tmp_path, 0.01)
    assert bench_scale.build(tmp_path, 0.01) == stamp  # reused
    study = data.load_study(tmp_path, "tribe")
    assert study.feature_dims == {"video": 18, "text": 12, "audio": 9}  # three layer groups of each
    have = {(r.subject, r.run) for r in study.records}
    assert ("sub-02", "s05e20a") not in have and ("sub-01", "s05e20a") in have
    assert ("sub-05", "s04e13b") not in have and ("sub-03", "s04e13b") in have
    assert {r.run for r in study.records} == set(stamp["runs"])
    # the ridge stage: PCA per modality, FIR lags 2-4 by shifting, RidgeEncoder on validation
    ridge = bench_scale.ridge_stage(data.load_study(tmp_path, "tribe", lags_trs=(2,)), 2)
    assert ridge["ridge_dim"] == 3 * 3 * 2 and np.isfinite(ridge["ridge_val_r"])
    res = {
        "n_stimuli": 11,
        "n_runs": 11,
        "n_stimulus_trs": 100,
        "n_subject_trs": 400,
        "disk_bytes": 1e9,
        "feature_bytes_in_memory": 5e8,
        "load_s": 2.0,
        "load_peak_rss_bytes": 1.3e9,
        "load_base_rss_bytes": 0.3e9,
    }
    one = bench_scale.scale_table([res])
    row = one[one.measure == "peak RSS, load stage (GB)"].iloc[0]
    assert row.iloc[-1] == f"{(0.3 + 1.0 * 336 / 11):.2f}"  # base + growth / (11 of 336 stimuli)
    two = bench_scale.scale_table(
        [res, {**res, "n_stimuli": 22, "load_s": 3.0, "load_peak_rss_bytes": 2.3e9}]
    )
    assert (
        two[two.measure == "load_study (s)"].iloc[0].iloc[-1] == f"{1.0 + 336 / 11:.1f}"
    )  # the line 1 + n / 11
    assert two[two.measure == "peak RSS, load stage (GB)"].iloc[0].iloc[-1] == f"{0.3 + 336 / 11:.2f}"
