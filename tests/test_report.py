"""The reproduction report is built from results files, and README blocks are replaced in place."""

import json

import pandas as pd

from mindlib import report


def test_report_reads_tables_and_claims_from_results(tmp_path):
    pd.DataFrame([
        {"backbone": "tribe", "decoder": "mind", "seed": 0, "val_r": 0.30, "test_r": 0.28, "isg_r": 0.2},
        {"backbone": "tribe", "decoder": "mind", "seed": 1, "val_r": 0.32, "test_r": 0.30, "isg_r": 0.22},
        {"backbone": "tribe", "decoder": "baseline", "seed": 0, "val_r": 0.25, "test_r": 0.24, "isg_r": 0.1},
    ]).to_csv(tmp_path / "table1_cells.csv", index=False)
    (tmp_path / "01_temporal_alignment.json").write_text(json.dumps(
        {"drift_s_at_tr500": 5.005, "impulse_tr_naive": 497, "impulse_tr_exact": 500}))
    text = report.build_report(tmp_path)
    assert "| tribe | mind | 0.273 | 0.241 | 0.310 | – | – | 0.290 | 0.210 | 2 |" in text
    assert "| tribe | baseline | 0.256 | 0.187 | 0.250 |" in text
    assert "5.00 s at TR 500" in text and "TR 497 instead of 500" in text
    assert "Where the paper and the authors' code disagree" in text


def test_update_readme_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n")
    assert report.update_readme_block(readme, "x", "new table")
    assert readme.read_text() == "a\n<!-- x:start -->\nnew table\n<!-- x:end -->\nb\n"
    assert not report.update_readme_block(readme, "y", "z")
