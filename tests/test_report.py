"""The reproduction report is built from results files, and README blocks are replaced in place."""

import json

import pandas as pd

from mindlib import report


def test_report_reads_tables_and_claims_from_results(tmp_path):
    pd.DataFrame(
        [
            {
                "backbone": "tribe",
                "decoder": "mind",
                "seed": 0,
                "val_r": 0.30,
                "test_r": 0.28,
                "isg_r": 0.2,
                "size": "full",
            },
            {
                "backbone": "tribe",
                "decoder": "mind",
                "seed": 1,
                "val_r": 0.32,
                "test_r": 0.30,
                "isg_r": 0.22,
                "size": "full",
            },
            {
                "backbone": "tribe",
                "decoder": "baseline",
                "seed": 0,
                "val_r": 0.25,
                "test_r": 0.24,
                "isg_r": 0.1,
                "size": "full",
            },
        ]
    ).to_csv(tmp_path / "table1_cells.csv", index=False)
    (tmp_path / "01_temporal_alignment.json").write_text(
        json.dumps({"drift_s_at_tr500": 5.005, "impulse_tr_naive": 497, "impulse_tr_exact": 500})
    )
    (tmp_path / "12_submission.json").write_text(
        json.dumps({"single_score": 0.3784, "ensemble_score": 0.3861, "n_models": 3})
    )
    text = report.build_report(tmp_path)
    assert "held-out stimuli" in text and "single model 0.378, 3-model ensemble 0.386 |" in text
    assert (
        "| tribe | mind | 0.273 | 0.241 | 0.310 ± 0.014 | – | – | 0.290 ± 0.014 | 0.210 ± 0.014 | 2 |" in text
    )
    assert "MIND minus baseline, test r) | tribe: +0.050 |" in text  # (0.28 + 0.30) / 2 - 0.24
    assert "(paper: +0.017 to +0.095 r) | tribe: +0.060 |" in text  # validation r: (0.30 + 0.32) / 2 - 0.25
    assert "| tribe | baseline | 0.256 | 0.187 | 0.250 |" in text
    assert "5.00 s at TR 500" in text and "TR 497 instead of 500" in text
    assert "Where the paper and the authors' code disagree" in text
    assert "synthetic study size: full)" in text


def test_update_readme_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n")
    assert report.update_readme_block(readme, "x", "new table")
    assert readme.read_text() == "a\n<!-- x:start -->\nnew table\n<!-- x:end -->\nb\n"
    assert not report.update_readme_block(readme, "y", "z")


def test_notebook_map_lists_every_notebook_with_measured_times(tmp_path):
    from mindlib.notebooks import NOTEBOOKS

    (tmp_path / "timings.json").write_text(json.dumps({"demo": {"00_overview": 12.4, "08_tables": 300.0}}))
    text = report.notebook_map_markdown(tmp_path)
    rows = [ln for ln in text.splitlines() if ln.startswith("| 0") or ln.startswith("| 1")]
    assert len(rows) == len(NOTEBOOKS)
    assert "demo time" in text.splitlines()[0]
    assert rows[0].endswith("| 12 s |") and "| 5.0 min |" in text and "| not yet measured |" in text
    assert text.splitlines()[-1] == "| | **all notebooks** | | – |"  # not every notebook has a time
    every = {nb.name: 30.0 for nb in NOTEBOOKS}
    (tmp_path / "timings.json").write_text(json.dumps({"demo": every, "smoke": {"00_overview": 5.0}}))
    text = report.notebook_map_markdown(tmp_path)
    assert text.splitlines()[-1] == f"| | **all notebooks** | | – | **{30 * len(NOTEBOOKS) / 60:.1f} min** |"


def test_mind_minus_rows_carry_a_paired_interval_and_a_worded_claim(tmp_path):
    """Per-run scores of notebook 06's results files -> MIND minus X with its interval, in Table 1 and the claims."""
    units = [f"sub-0{s}/r{i}" for s in (1, 2) for i in range(6)]
    per_run = {
        ("mind", 0): [0.30 + 0.01 * (i % 3) for i in range(12)],
        ("mind", 1): [0.31 + 0.01 * (i % 3) for i in range(12)],
        ("baseline", 0): [0.25 + 0.01 * (i % 2) for i in range(12)],  # MIND ahead on every run
        ("ridge", 0): [
            0.31 + 0.04 * (-1) ** i for i in range(12)
        ],  # ahead on half the runs, behind on the rest
    }
    rows = []
    (tmp_path / "runs").mkdir()
    for (decoder, seed), scores in per_run.items():
        mean = sum(scores) / len(scores)
        rows.append(
            {
                "backbone": "tribe",
                "decoder": decoder,
                "mode": "both",
                "seed": seed,
                "val_r": mean,
                "test_r": mean,
            }
        )
        (tmp_path / "runs" / f"tribe-{decoder}-both-s{seed}.json").write_text(
            json.dumps(
                {"test_per_run_r": dict(zip(units, scores)), "val_per_run_r": dict(zip(units, scores))}
            )
        )
    pd.DataFrame(rows).to_csv(tmp_path / "table1_cells.csv", index=False)
    text = report.build_report(tmp_path)
    # seed 0 and seed 1 of MIND each against the one baseline seed: mean difference by hand
    mind_mean = sum(per_run[("mind", 0)] + per_run[("mind", 1)]) / 24
    gain = mind_mean - sum(per_run[("baseline", 0)]) / 12
    assert f"| tribe | baseline | 0.256 | 0.187 | {sum(per_run[('baseline', 0)]) / 12:.3f} |" in text
    assert f"{gain:+.3f} [95 % CI" in text
    assert "MIND higher than baseline (the interval excludes 0; 12 runs × 2 seeds)" in text
    ridge_line = next(line for line in text.splitlines() if "FIR ridge" in line)
    assert "no difference resolved (the interval includes 0; 12 runs × 2 seeds)" in ridge_line
    assert "* = the interval excludes 0" in text


def test_report_quotes_subject_routing_few_shot_spread_and_unseen_subject_intervals(tmp_path):
    units = [f"sub-01/r{i}" for i in range(8)]
    (tmp_path / "09_isg.json").write_text(
        json.dumps(
            {
                "loso_r": {"mind": 0.31, "baseline": 0.30},
                "swap_isg": {"mind": 0.3, "baseline": 0.3},
                "loso_per_run_r": {
                    "mind": {u: 0.31 + 0.01 * (i % 2) for i, u in enumerate(units)},
                    "baseline": {u: 0.30 - 0.01 * (i % 3) for i, u in enumerate(units)},
                },
                "few_shot": {"mind": {"0.0": 0.30, "2.0": 0.32}},
                "few_shot_std": {"mind": {"0.0": 0.0, "2.0": 0.004}},
                "few_shot_draws": 3,
                "repeat_ceiling": {"sub-01": 0.25},
            }
        )
    )
    (tmp_path / "10_visualisations.json").write_text(
        json.dumps(
            {
                "map_similarity": {},
                "subject_routing_detail": {
                    "prior_r": {"sub-01": 0.8, "sub-02": 0.5},
                    "usage_r": {"sub-01": 0.7, "sub-02": 0.4},
                    "logit_spread": 0.3,
                    "bias_spread": 0.01,
                    "embedding_spread": 0.29,
                },
            }
        )
    )
    (tmp_path / "08_tables.json").write_text(
        json.dumps(
            {
                "ablation_differences": {
                    "sum | tribe": {
                        "reference": "concat",
                        "claim": "-0.004 [95 % CI -0.006, -0.002]: sum lower",
                    },
                    "no_router_subject | tribe": {
                        "reference": "default",
                        "claim": "+0.001 [95 % CI -0.001, +0.003]: none",
                    },
                }
            }
        )
    )
    (tmp_path / "table3.md").write_text("| variant | backbone |\n|---|---|\n| sum | tribe |\n")
    text = report.build_report(tmp_path)
    assert "MIND minus baseline over the unseen subjects' test runs +0.024 [95 % CI" in text
    assert "MIND higher than baseline (the interval excludes 0; 8 runs × 1 seed)" in text
    assert "mind: 0.0 min 0.300, 2.0 min 0.320 ± 0.004" in text and "± std over 3 draws" in text
    assert "sub-01: 0.800, sub-02: 0.500; mean routing: sub-01: 0.700" in text
    assert "(B_s 0.010, W_r e_s 0.290)" in text and "sub-01: 0.250" in text
    assert "## Table 3: AFIRE ablation" in text and "| sum | tribe |" in text
    assert "## Table 4: SADGate parametrisations" in text and "_not run yet_" in text
    assert (
        "against concat fusion" in text and "sum | tribe: -0.004 [95 % CI -0.006, -0.002]: sum lower" in text
    )
    assert "no_router_subject | tribe: +0.001" in text


def test_ablation_table_means_spreads_and_paired_difference_by_hand():
    units = [f"sub-0{i}/run{j}" for i in (1, 2) for j in range(4)]  # 8 paired runs
    ref = {
        0: {u: 0.30 + 0.01 * k for k, u in enumerate(units)},
        1: {u: 0.31 + 0.01 * k for k, u in enumerate(units)},
    }
    var = {
        s: {u: r - 0.02 for u, r in runs.items()} for s, runs in ref.items()
    }  # exactly 0.02 lower everywhere
    rows = pd.DataFrame(
        [
            {
                "variant": v,
                "backbone": "tribe",
                "seed": s,
                "val_r": float(np_mean(runs[s].values())),
                "val_per_run_r": runs[s],
            }
            for v, runs in (("concat", ref), ("sum", var))
            for s in (0, 1)
        ]
    )
    table, diffs = report.ablation_table(rows, ["val_r"], reference="concat")
    # mean over seeds of the run means: (0.335 + 0.345) / 2 = 0.340; std over the two seeds: 0.01 / sqrt(2)
    assert table.loc[0, "val_r"] == "0.340 ± 0.007" and table.loc[1, "val_r"] == "0.320 ± 0.007"
    assert table.loc[0, "− concat, val r"] == "–" and list(table["seeds"]) == [2, 2]
    d = diffs["sum | tribe"]
    assert abs(d.mean + 0.02) < 1e-12 and abs(d.low + 0.02) < 1e-12 and abs(d.high + 0.02) < 1e-12
    assert table.loc[1, "− concat, val r"] == "-0.020 [95 % CI -0.020, -0.020] *"


def np_mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
