"""The accuracy cost of the ridge's PCA (``python -m benchmarks --only ridge_pca``; not part of ``make test``).

On the demo synthetic study, per backbone: the FIR ridge of Table 1 on the full features (``ridge_components=None``,
features aligned at each lag) against the same ridge on features reduced per modality by PCA to ``k`` axes with
the lags built by shifting (:mod:`mindlib.reduce`), which is how it runs at the release's size. Both go through
:func:`mindlib.experiment.run`, select their penalties on validation and are scored on the same test TRs; the
difference in test r is paired over test runs with a 95 % bootstrap interval (:func:`mindlib.stats.compare`).
"""

from __future__ import annotations

import time

import pandas as pd

COMPONENTS = (16, 64, 256)  # k per modality
BACKBONES = ("tribe", "imagebind", "qwen")


def run_ridge_pca(
    size: str = "demo", backbones=BACKBONES, components=COMPONENTS, progress: bool = False
) -> pd.DataFrame:
    """One row per backbone and ``k`` (``"all"``: no PCA): design columns, val/test r, fit time, and
    the paired test-r difference to the full-feature ridge with its interval."""
    from mindlib import data, experiment, project, stats

    root = project.resolve_dataset("synthetic", size=size)
    rows = []
    for backbone in backbones:
        study = data.load_study(root, backbone)
        full = None
        for k in (0, *components):
            config = experiment.ExperimentConfig(decoder="ridge", ridge_components=k, progress=progress)
            t0 = time.perf_counter()
            res = experiment.run(study, config)
            seconds = time.perf_counter() - t0
            row = {
                "backbone": backbone,
                "k": k or "all",
                "columns": int(res.extra["ridge_columns"]),
                "val_r": res.val["pearson"]["mean"],
                "test_r": res.test["pearson"]["mean"],
                "fit_s": seconds,
            }
            if full is None:
                full = res
            else:
                diff = stats.compare({0: res.per_run_r("test")}, {0: full.per_run_r("test")})
                row.update(
                    test_r_minus_all=diff.mean, ci_low=diff.low, ci_high=diff.high, n_runs=diff.n_units
                )
            rows.append(row)
    return pd.DataFrame(rows)


def readme_block(table: pd.DataFrame, size: str = "demo") -> str:
    """Markdown for the README's ridge-pca block: test r per backbone and k, and the paired difference to all
    features with its interval."""
    lines = [
        "| backbone | k per modality | design columns | test r | test r − all features [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        diff = (
            "–"
            if row.k == "all"
            else f"{row.test_r_minus_all:+.4f} [{row.ci_low:+.4f}, {row.ci_high:+.4f}]"
            + (" (includes 0)" if row.ci_low <= 0 <= row.ci_high else "")
        )
        lines.append(f"| {row.backbone} | {row.k} | {row.columns} | {row.test_r:.4f} | {diff} |")
    n_runs = (
        int(table["n_runs"].dropna().iloc[0]) if "n_runs" in table and table["n_runs"].notna().any() else 0
    )
    return "\n".join(
        lines
        + [
            "",
            f"FIR ridge (lags 2, 3, 4 TRs) on the {size} synthetic study, penalties selected on validation, paired "
            f"over its {n_runs} test runs. Rerun: `.venv/bin/python -m benchmarks --only ridge_pca --update-readme`.",
        ]
    )
