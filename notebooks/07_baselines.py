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
# # 07 · Baselines: the numbers to beat
#
# **Overview** 1) ridge, the classical voxelwise encoding model 2) the subject-linear baseline on AFIRE
# tokens (TRIBE-style head) 3) both on every backbone 4) which penalty the ridge chose for each parcel
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/07_*.png`, `<results_dir>/07_baselines.json`
#
# Notebooks 03–05 built MIND's pieces and notebook 06 trained it. A new decoder is only interesting if it
# beats what a neuroscientist runs first. **Ridge** fits one linear
# map per subject from FIR-delayed, TR-aligned features (`fir_lags_trs`) to every parcel, with the penalty
# chosen per parcel by R² on the validation runs (one eigendecomposition serves all 17), and is scored
# on exactly the TRs the other decoders are scored on. The **Baseline** of Table 1 is the same AFIRE token
# pipeline as MIND (notebook 03) with a per-subject linear head instead of SADGate and the experts (notebooks
# 04–05), trained with the protocol of notebook 06. Both are tuned as carefully as MIND
# and on the same validation runs: ridge over its penalties, the baseline over the same learning-rate grid
# and epochs.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbones: list = ["tribe", "imagebind", "qwen"]  # feature stores to compare
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # epochs per grid cell
lrs: list = [1e-3, 3e-3]  # learning-rate grid, scored on validation
fir_lags_trs: list = [2, 3, 4]  # ridge FIR delays in TRs
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
progress: bool = True  # a progress bar per training run (learning rate, weight decay, ETA)
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mindlib import data, experiment, plotting, project

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)

# %%
rows, ridges = [], {}
for backbone in backbones:
    study = data.load_study(root, backbone, features_root=features_root)
    for decoder in ("ridge", "baseline"):
        cfg = experiment.ExperimentConfig(decoder=decoder, d_model=d_model, epochs=epochs, lrs=tuple(lrs), seed=seed,
                                          fir_lags_trs=tuple(fir_lags_trs), progress=progress)
        res = experiment.run(study, cfg)
        if decoder == "ridge":
            ridges[backbone] = res.model  # the fitted RidgeEncoder, read in section 4
        s = res.summary()
        rows.append({"backbone": backbone, "decoder": decoder, "val_r": s["val_r"], "test_r": s.get("test_r"),
                     "val_r2": s["val_r2"], "seconds": s["seconds"]})
        print(f"{backbone:>10} {decoder:>8}: val r = {s['val_r']:.3f}  test r = {s.get('test_r', float('nan')):.3f}  "
              f"({s['seconds']:.0f} s)")
table = pd.DataFrame(rows)
table

# %% [markdown]
# Ridge on fixed features vs a learned token pipeline with a linear head: the gap between them is what the
# learned interface buys (or costs) before any mixture of experts.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
pivot = table.pivot(index="backbone", columns="decoder", values="val_r").loc[backbones]
pivot.plot.bar(ax=ax, rot=0)
ax.set_ylabel("validation r")
ax.set_title("the numbers to beat")
plotting.save_figure(fig, "07_baselines", fig_dir)

# %% [markdown]
# ## The ridge's penalties: which alpha each parcel chose
# A penalty grid is only wide enough if the chosen alphas stay inside it: a parcel at the smallest or the
# largest alpha may want one beyond the grid. The fitted `RidgeEncoder` keeps, per subject, the chosen alpha of
# every parcel (`best_alphas_`) and the selection score of every alpha for every parcel (`scores_`, validation
# R² averaged over runs, the criterion the choice maximised). First backbone, every subject.

# %%
enc = ridges[backbones[0]]
alphas = enc.alphas  # (n_alphas,) the grid, baselines.DEFAULT_ALPHAS
chosen = np.concatenate([enc.best_alphas_[s] for s in sorted(enc.best_alphas_)])  # (S·V,)
best_r2 = np.concatenate([np.nanmax(enc.scores_[s], axis=0) for s in sorted(enc.scores_)])  # (S·V,)
counts = np.array([(chosen == a).sum() for a in alphas])
edge = {"smallest": float(counts[0] / counts.sum()), "largest": float(counts[-1] / counts.sum())}
no_signal = float((best_r2[chosen == alphas[-1]] <= 0).mean()) if counts[-1] else 0.0
print(f"alpha grid: {len(alphas)} values, {alphas[0]:g} .. {alphas[-1]:g}; selected on {enc.selected_on_}")
print(f"parcels (all subjects) at the smallest alpha: {edge['smallest']:.1%}, at the largest: {edge['largest']:.1%} "
      f"({no_signal:.0%} of these have validation R² <= 0 at every alpha: nothing to fit, shrinking to 0 is right)")
if edge["smallest"] > 0.05 or edge["largest"] * (1 - no_signal) > 0.05:
    side = "smallest" if edge["smallest"] > 0.05 else "largest"
    print(f"NOTE: many parcels with signal chose the {side} alpha; widen the grid on that side "
          "(RidgeEncoder(alphas=...)) to see whether they want a value beyond it")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), layout="constrained")
colors = ["tab:red" if i in (0, len(alphas) - 1) else "tab:blue" for i in range(len(alphas))]
axes[0].bar(np.arange(len(alphas)), counts, color=colors)
axes[0].set_xticks(np.arange(len(alphas)), [f"{a:.0e}" for a in alphas], rotation=90, fontsize=7)
axes[0].set_xlabel("alpha (red: edge of the grid)")
axes[0].set_ylabel("parcels × subjects")
axes[0].set_title(f"chosen alpha per parcel, ridge on {backbones[0]}")
for s in sorted(enc.scores_):
    axes[1].semilogx(alphas, np.nanmean(enc.scores_[s], axis=1), marker=".", label=study.subjects[s])
peak = max(float(np.nanmax(np.nanmean(enc.scores_[s], axis=1))) for s in enc.scores_)
axes[1].set_ylim(min(-0.05, -peak), 1.3 * max(peak, 0.01))  # near the best; small alphas fall far below
axes[1].set_xlabel("alpha")
axes[1].set_ylabel("validation R² (mean over parcels)")
axes[1].set_title("the selection score against alpha, near its best")
axes[1].legend(fontsize=7)
plotting.save_figure(fig, "07_ridge_alphas", fig_dir)

# %% [markdown]
# ## Summary
# These are the rows "Baseline" and "ridge" of Table 1 (notebook 08 recomputes them over seeds).

# %%
first = backbones[0]
results = {
    "ridge_val_r": float(table.query("backbone == @first and decoder == 'ridge'").val_r.iloc[0]),
    "baseline_val_r": float(table.query("backbone == @first and decoder == 'baseline'").val_r.iloc[0]),
    "table": table.to_dict(orient="records"),
    "ridge_alphas": alphas.tolist(),
    "ridge_alpha_counts": counts.tolist(),  # parcels × subjects that chose each alpha of ridge_alphas
    "ridge_alpha_at_edge": edge,  # share of parcels at the smallest / largest alpha of the grid
    "ridge_no_signal_at_largest": no_signal,
}
project.write_results("07_baselines", results, results_dir)
results

# %% [markdown]
# ## Try it
# One short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Does ridge need its FIR delays? Fit it on the first backbone with the single lag of the neural decoders
# (`fir_lags_trs=[3]`) and compare.

# %% tags=["solution", "hide-cell"]
if solutions:
    study = data.load_study(root, backbones[0])
    for lags in ([3], fir_lags_trs):
        cfg = experiment.ExperimentConfig(decoder="ridge", fir_lags_trs=tuple(lags))
        print(f"ridge on {backbones[0]}, FIR lags {lags}: val r = {experiment.run(study, cfg).summary()['val_r']:.3f}")
