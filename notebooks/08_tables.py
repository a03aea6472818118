# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Tables and ablations: every decoder on every backbone, the router, AFIRE and SADGate ablations
#
# **Overview** 1) fan out notebook 06 over backbones × decoders × seeds (Table 1), over router modes (Table 2)
# and over AFIRE (Table 3) and SADGate (Table 4) variants with `mindlib.grid`: submitit jobs on this machine, or
# on a Slurm cluster (`engine="slurm"`) 2) collect the results files, which also hold the ablations' scores
# (missing modalities, subject recovery) 3) tables with mean ± spread over seeds and paired intervals, as CSV
# and Markdown
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)
# **Writes** `<results_dir>/table{1,2,3,4}.{csv,md}`, `<results_dir>/08_tables.json`, `<fig_dir>/08_table1.png`, `<fig_dir>/08_ablations.png`
#
# Each cell of each table is one execution of notebook 06 with its parameters (tag `backbone-decoder-mode-sN`):
# the same grid, epochs, windows and model selection on validation for every decoder. Nothing in the tables is
# typed by hand. With several seeds, the first seed searches the grid and the later seeds reuse its choice
# (`grid_every_seed=True` searches it on every seed); the ISG column is measured once per decoder, on the first
# seed; ridge, a closed-form fit with no seed, runs once per backbone. A cell's results file is reused only when
# it was made with the same parameters.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
backbones: list = ["tribe", "imagebind", "qwen"]  # rows of Table 1, columns of Table 2
decoders: list = ["baseline", "mlp", "mmoe", "mind", "ridge"]  # Table 1 rows per backbone
modes: list = ["token", "prior", "both"]  # Table 2 rows (SADGate router)
balances: list = ["importance", "switch"]  # Table 2: MIND balance-loss kinds (router "both"); the default is the one without a row of its own
ablation_backbones: list = ["tribe"]  # backbones of Tables 3 and 4 (AFIRE and SADGate ablations); empty list skips them
afire_ablations: list = ["concat", "sum", "gated", "modality_dropout"]  # Table 3 rows (mindlib.grid.AFIRE_ABLATIONS)
parametrisations: list = ["default", "no_router_subject", "unpenalised_bias", "switch_balance"]  # Table 4 rows (mindlib.grid.PARAMETRISATIONS)
seeds: list = [0]  # seeds per cell (mean ± spread when several)
grid_every_seed: bool = False  # False: the first seed searches the grid, later seeds reuse its choice
isg_subjects: list = ["sub-01"]  # held-out subjects for the ISG column (first seed); empty list skips it
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # epochs per grid cell
lrs: list = [3e-3]  # learning-rate grid of every decoder
weight_decays: list = [1e-2]  # weight-decay grid of every decoder
fir_lags_trs: list = [2, 3, 4]  # ridge FIR delays in TRs
device: str = "auto"  # "auto" | "cpu" | "cuda"
workers: int = 2  # notebook 06 executions at a time (local: each on cores/workers torch threads)
rerun: bool = False  # re-execute cells whose results file already exists
engine: str = "local"  # where cells run (submitit): "local" (processes on this machine) | "slurm"
retries: int = 1  # extra attempts of a failing cell before it is reported with its log
partition: str = ""  # Slurm partition; empty: the cluster default
gpus_per_job: int = 0  # GPUs per cell (Slurm --gpus-per-node), with device "cuda"
time_limit_min: int = 120  # wall-clock limit per cell in minutes (Slurm --time)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
from pathlib import Path

import pandas as pd

from mindlib import analysis, grid, plotting, project, report

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)

spec = grid.spec_from_params(**globals())  # dataset, size, seeds, grid, epochs, ... shared by every cell
runner = grid.runner_from_params(Path(results_dir).resolve() / "runs", **globals())  # engine, workers, retries
results_path = runner.runs_dir.parent
print(spec)
print(f"{runner.engine} engine, {runner.workers} cell(s) at a time, results files in {runner.runs_dir}")

# %% [markdown]
# ## The grid: every table's cells in one queue
# `mindlib.grid` runs each cell as a submitit job (a papermill execution of notebook 06). All four tables' cells
# go into one queue, so no worker waits at the end of a table: first-seed cells first, and each later seed as
# soon as its own first seed has finished. A failing cell is retried, then reported with the path of its log
# once every other cell has run; running the notebook again resumes from the finished cells' results files.
# Each table below takes its cells' results from `done`.

# %%
afire_variants = {k: grid.AFIRE_ABLATIONS[k] for k in afire_ablations}
par_variants = {k: grid.PARAMETRISATIONS[k] for k in parametrisations}
cells = {
    "table1": grid.table1_cells(backbones, decoders, seeds),
    "table2": grid.table2_cells(backbones, modes, seeds, balances),  # mode "both" cells: Table 1's
    "table3": grid.ablation_cells(ablation_backbones, seeds, afire_variants),  # "concat": Table 1's MIND cells
    "table4": grid.ablation_cells(ablation_backbones, seeds, par_variants),  # "default": Table 1's MIND cells
}
queued = list(dict.fromkeys(c for table in cells.values() for c in table))  # a cell two tables share runs once
print({name: len(c) for name, c in cells.items()}, "cells;", len(queued), "distinct")
done = dict(zip(queued, runner.run(spec, queued)))  # cell -> its results file's contents

# %% [markdown]
# ## Table 1: decoders × backbones

# %%
rows = [done[c] for c in cells["table1"]]
t1 = pd.DataFrame(rows)
metrics = ["val_r", "val_spearman", "val_r2", "test_r", "isg_r"]
metrics = [m for m in metrics if m in t1]
agg = t1.groupby(["backbone", "decoder"], sort=False)[metrics].agg(["mean", "std", "count"])


def fmt(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """mean ± std over seeds (mean alone for one seed, – where a decoder has no such score)."""
    out = df.index.to_frame(index=False)
    for c in cols:
        mean, std, n = df[(c, "mean")], df[(c, "std")], df[(c, "count")]
        out[c] = ["–" if pd.isna(m) else f"{m:.3f}" if k < 2 else f"{m:.3f} ± {s:.3f}"
                  for m, s, k in zip(mean, std, n)]
    return out


table1 = fmt(agg, metrics)
table1

# %% [markdown]
# ## Table 2: SADGate router ablation (MIND)
# One row per router mode, plus the router `both` with each other balance-loss kind of `balances` (the
# default `importance` is E·Σ Imp², what the authors' code computes; the paper's `switch` is E·Σ Imp·Load):
# validation r, the measurement behind the defaults. `table2_paired` gives each row minus the default (`both`), paired over runs
# and seeds, with its 95 % interval.

# %%
rows2 = [done[c] for c in cells["table2"]]
t2 = pd.DataFrame(rows2)
t2["row"] = [m if k == grid.DEFAULT_BALANCE else f"{m} · {k} balance" for m, k in zip(t2["mode"], t2["balance"])]
agg2 = t2.groupby(["row", "backbone"], sort=False)["val_r"].agg(["mean", "std", "count"])
table2 = agg2.apply(lambda r: f"{r['mean']:.3f}" if r["count"] < 2 else f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1)
table2 = table2.unstack("backbone")[backbones].loc[list(dict.fromkeys(t2["row"]))]
table2.index.name = "router · balance loss"
# each row minus the default router (both, importance balance), paired over runs and seeds, with its 95 % interval
table2_paired, diffs2 = report.ablation_table(t2.assign(variant=t2["row"]), ["val_r"], reference="both")
table2

# %% [markdown]
# ## Table 3: AFIRE ablation — the fusion operator and missing modalities (MIND)
# The same MIND (router `both`) with each fusion operator of AFIRE (notebook 03), and with modality dropout in
# training (each training window loses a modality with probability 0.2). Each trained model was then scored on
# the validation runs with every modality, and with each one removed at inference (`analysis.missing_modality_scores`,
# AFIRE's missing-modality mask), by its own notebook 06 run; the scores are in its results file. The last column
# is the variant minus `concat` (Table 1's MIND cell), paired over runs and seeds, with its 95 % interval.

# %%
stale = [c.tag for c in (*cells["table3"], *cells["table4"]) if "routing" not in done[c]]
if stale:
    raise ValueError(f"{stale}: results files in {runner.runs_dir} made by a notebook 06 without its section 5 "
                     "(ablation scores); run this notebook again with -p rerun True, or delete those <tag>.json files")
rows3 = []
for cell in cells["table3"]:
    res = done[cell]
    rows3.append({"variant": grid.variant_of(cell, afire_variants), "backbone": cell.backbone, "seed": cell.seed,
                  "val_r": res["val_r"], "val_per_run_r": res["val_per_run_r"],
                  **{f"without {m}": r for m, r in res["missing_modality_r"].items()},
                  **({"gated weights": {m: round(w, 3) for m, w in res["fusion_weights"].items()}}
                     if res.get("fusion_weights") else {})})
t3 = pd.DataFrame(rows3)
without = [c for c in t3 if c.startswith("without ")] if len(t3) else []
table3, diffs3 = report.ablation_table(t3, ["val_r", *without], reference="concat") if len(t3) else (pd.DataFrame(), {})
for r in rows3:
    if "gated weights" in r:
        print(f"gated fusion, {r['backbone']} seed {r['seed']}: learned modality weights {r['gated weights']}")
table3

# %% [markdown]
# ## Table 4: SADGate parametrisations — accuracy and subject recovery (MIND)
# In mode `both` the subject bias $B_s$ and the router's subject term $W_r e_s$ route only through their sum
# (notebook 04, section 5). Four ways to train the same MIND: the default (`default`: the paper's $e_s$ on the
# router and penalised $B_s$, with the authors' code's balance loss), without $e_s$ on the router path
# (`no_router_subject`: the subject acts through $B_s$ alone, no redundancy), with $B_s$ unpenalised
# (`unpenalised_bias`, λ2 = 0) and with the paper's balance loss (`switch_balance`, Table 2's cell).
# On the synthetic study each trained gate was scored against the truth by its notebook 06 run
# (`analysis.routing_scores`: experts matched to the true modes, then per subject r between learned and true
# deviation from the population, averaged over subjects; and the spread of the effective prior over subjects with
# its $B_s$ and $W_r e_s$ parts), beside both balance losses over the validation runs (a real dataset: the
# balance losses alone).

# %%
rows4 = []
for cell in cells["table4"]:
    res = done[cell]
    rows4.append({"variant": grid.variant_of(cell, par_variants), "backbone": cell.backbone, "seed": cell.seed,
                  "val_r": res["val_r"], "test_r": res.get("test_r"), "val_per_run_r": res["val_per_run_r"],
                  **res["routing"]})
t4 = pd.DataFrame(rows4)
score_cols = [c for c in (*analysis.ROUTING_SCORES, "balance_switch", "balance_importance") if c in t4]
table4, diffs4 = report.ablation_table(t4, ["val_r", "test_r", *score_cols], reference="default") if len(t4) else (pd.DataFrame(), {})
table4

# %% [markdown]
# Both ablations in one figure: validation r with each modality removed (Table 3), and accuracy against subject
# recovery per parametrisation (Table 4), mean ± std over seeds.

# %%
if len(t3) and len(t4):
    fig = plotting.plot_ablations(t3, t4, recovery="prior_r_mean" if "prior_r_mean" in t4 else None)
    plotting.save_figure(fig, "08_ablations", fig_dir)

# %%
tables = {"table1": table1, "table2": table2, "table2_paired": table2_paired, "table3": table3, "table4": table4}
for name, table in tables.items():
    table.to_csv(results_path / f"{name}.csv", index=name == "table2")
    (results_path / f"{name}.md").write_text(table.to_markdown(index=name == "table2") + "\n")
per_run = ["history", "val_per_run_r", "test_per_run_r"]  # kept in the cells' results files (report intervals)
t1.drop(columns=per_run, errors="ignore").to_csv(results_path / "table1_cells.csv", index=False)
t2.to_csv(results_path / "table2_cells.csv", index=False)

ax = plotting.plot_table1(t1, backbones, decoders, metric="val_r")  # mean ± std over seeds
plotting.save_figure(ax.figure, "08_table1", fig_dir)

# %% [markdown]
# ## Summary
# Gains of MIND over the subject-linear baseline per backbone (validation r):

# %%
gain = report.mind_gain(t1, "baseline", "val_r")  # the same numbers papers/reproduction.md quotes
print({b: round(g, 3) for b, g in gain.items()})
results = {
    "table1": t1.drop(columns=[*per_run, "isg_per_subject"], errors="ignore").to_dict(orient="records"),
    "table2": t2[["backbone", "mode", "balance", "seed", "val_r", "test_r"]].to_dict(orient="records"),
    "mind_gain_over_baseline": gain,
    "seeds": seeds,
    "table3": t3.drop(columns=["val_per_run_r"], errors="ignore").to_dict(orient="records"),
    "table4": t4.drop(columns=["val_per_run_r"], errors="ignore").to_dict(orient="records"),
    "ablation_differences": {k: {"reference": ref, "mean": d.mean, "low": d.low, "high": d.high,
                                 "claim": d.claim(k.split(" | ")[0], ref)}
                             for ref, ds in (("both", diffs2), ("concat", diffs3), ("default", diffs4)) for k, d in ds.items()},
}
project.write_results("08_tables", results, results_dir)
gain

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Rank the decoders on each backbone by **test** r instead of validation r. Does the order change?

# %% tags=["solution", "hide-cell"]
if solutions and "test_r" in t1:
    print(t1.groupby(["backbone", "decoder"]).test_r.mean().unstack("decoder").round(3))

# %% [markdown]
# **2.** Is MIND's gain over the baseline larger than its spread over seeds? (With one seed there is no spread:
# run with `seeds=[0, 1, 2]`.)

# %% tags=["solution", "hide-cell"]
if solutions:
    spread = t1.groupby(["backbone", "decoder"]).val_r.std()
    for b, g in gain.items():
        print(f"{b}: MIND − baseline {g:+.3f};  std of MIND over seeds {spread.get((b, 'mind'), float('nan')):.3f}")
