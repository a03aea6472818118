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
# # 06 · Train MIND: the main, parameterised run
#
# **Overview** 1) data and decoder from the parameters 2) grid search on validation 3) the selected model
# on validation and, once, on test 4) where in the brain it works 5) the gate and AFIRE for the ablation
# tables 6) results for the tables
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)
# **Writes** `<fig_dir>/06_*.png`, `<results_dir>/06_train_mind[-tag].json`, `<results_dir>/models/<tag>.pt`
#
# Every other decoder of Table 1 runs through this same notebook (`decoder=baseline|mlp|mmoe|ridge`), and
# every router of Table 2 (`mode=token|prior|both`): notebook 08 executes it once per cell with papermill.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
decoder: str = "mind"  # "mind" | "baseline" | "mlp" | "mmoe" | "ridge"
mode: str = "both"  # SADGate router: "both" | "token" | "prior"
balance: str = "importance"  # MIND balance loss: "importance" (E·Σ Imp², the authors' code) | "switch" (E·Σ Imp·Load, paper Eq. 6)
router_subject: bool = True  # MIND: the subject embedding e_s on the token router path
lambda_bias: float = 1e-3  # MIND: λ2, the weight of the ‖B‖² penalty on the subject-expert bias
n_experts: int = 8  # E
top_k: int = 2  # K experts kept per token
d_model: int = 128  # d, AFIRE token dim
fusion: str = "concat"  # AFIRE fusion: "concat" | "sum" | "gated"
temporal: str = "mlp"  # AFIRE temporal module: "mlp" | "transformer" | "none"
modality_dropout: float = 0.0  # AFIRE training: P(drop a whole modality of a window); 0: never
epochs: int = 15  # epochs per grid cell
lrs: list = [1e-3, 3e-3]  # learning-rate grid, scored on validation
weight_decays: list = [1e-2]  # weight-decay grid, scored on validation
batch_size: int = 8  # B windows per step
fir_lags_trs: list = [2, 3, 4]  # ridge only: FIR delays in TRs
ridge_components: int = 0  # ridge only: PCA axes per modality, for real-size data (mindlib.reduce); 0: all
isg_subjects: list = []  # leave-one-subject-out ISG for each of these subjects; empty list skips it
device: str = "auto"  # "auto" | "cpu" | "cuda"
num_threads: int = 0  # torch CPU threads; 0 leaves the default
tag: str = ""  # empty: <results_dir>/06_train_mind.json, else <results_dir>/runs/<tag>.json (notebook 08)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
progress: bool = True  # a progress bar per training run (learning rate, weight decay, ETA)
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
declared = __import__("mindlib.params").params.check_parameters(globals())  # types as declared above
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from mindlib import analysis, data, experiment, metrics, plotting, project, synthetic

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
if num_threads > 0:
    torch.set_num_threads(num_threads)

root = project.resolve_dataset(dataset, size=size, seed=study_seed)
notebook_only = ("dataset", "size", "study_seed", "backbone", "num_threads", "tag", "results_dir", "fig_dir",
                 "features_root", "solutions")
config = experiment.config_from_params(**declared, ignore=notebook_only)
print(config)
save_figs = fig_dir if not tag else ""  # fan-out runs of notebook 08 do not overwrite the figures

# %% [markdown]
# ## 1. Data
# The same study object feeds every decoder: TR-aligned features at a 3-TR lag, z-scored fMRI, and the
# episode-level split of notebook 02.

# %%
study = data.load_study(root, backbone, features_root=features_root)
print(study)
print({s: len(study.select(s)) for s in ("train", "val", "test")}, "runs per split")

# %% [markdown]
# ## 2. Fit: a grid over learning rate and weight decay, scored on validation only
# Each cell trains with AdamW (β = 0.9, 0.95) and a OneCycle schedule (10 % warm-up) on windows of
# 100 TRs mixing subjects; the loss is MSE + λ1·balance + λ2·‖B‖² (MIND); the best epoch of the best cell
# is kept. The test runs are not touched here.

# %%
result = experiment.run(study, config)
print(result.grid.to_string(index=False))
print(f"{config.decoder}: {result.n_params:,} parameters, fitted in {result.seconds:.0f} s")
if result.history:
    fig, ax = plt.subplots(figsize=(5, 3))
    plotting.plot_history(result.history, ax=ax, title=f"{backbone} · {config.decoder}")
    plotting.save_figure(fig, "06_history", save_figs)

# %% [markdown]
# ## 3. Scores
# Pearson r, Spearman ρ and R² per parcel over time, averaged over parcels → runs → subjects, plus the
# official Algonauts metric (first and last 5 TRs of each run dropped, runs of a movie concatenated).
# Validation chose the model; test is reported once.

# %%
summary = result.summary()
for split in ("val", "test"):
    if f"{split}_r" in summary:
        print(f"{split:>5}: r = {summary[f'{split}_r']:.3f}   ρ = {summary[f'{split}_spearman']:.3f}   "
              f"R² = {summary[f'{split}_r2']:.3f}   official = {summary[f'{split}_algonauts']:.3f}")
ceiling_fraction = None
if synthetic.study_json_path(root).exists():
    truth = synthetic.load_ground_truth(root)
    ceilings = {s: v["noise_ceiling"] for s, v in truth["subjects"].items()}
    scored = result.test if result.test else result.val
    ceiling_fraction = metrics.noise_ceiling_fraction(scored["pearson"]["per_subject"], ceilings)
    print(f"share of the noise ceiling reached: {ceiling_fraction:.2f}")

# %% [markdown]
# ## 4. Where it works
# Test r per parcel (mean over subjects and runs), per network and on the cortex.

# %%
split = "test" if result.test else "val"
parcel_r = result.parcel_r(split)
fig, ax = plt.subplots(figsize=(5, 3))
plotting.plot_network_bars(parcel_r, ax=ax, title=f"{split} r per network")
plotting.save_figure(fig, "06_networks", save_figs)
if not tag:
    fig = plotting.plot_brain_map(parcel_r, title=f"{backbone} · {config.decoder}: {split} r per parcel")
    plotting.save_figure(fig, "06_brain_r", save_figs)

# %% [markdown]
# ## 5. The trained gate and AFIRE, for the ablation tables (MIND)
# Notebook 08's Tables 3 and 4 read these from this run's results file, so they need no trained model:
# validation r with each modality removed at inference (`analysis.missing_modality_scores`), the learned
# modality weights of a `gated` fusion, and, on the synthetic study, how well the gate recovers the true
# subject routing beside both balance losses over the validation runs (`analysis.routing_scores`; a real
# dataset has no truth, so only the balance losses).

# %%
diagnostics = {}
if config.decoder == "mind":
    model, val = result.model.eval(), study.select("val")
    diagnostics["missing_modality_r"] = analysis.missing_modality_scores(model, val)
    if model.config.afire.fusion == "gated":
        w = torch.softmax(model.afire.fusion_logits.detach(), 0)
        diagnostics["fusion_weights"] = {m: float(x) for (m, _), x in zip(model.config.afire.modalities, w)}
    diagnostics["routing"] = (analysis.routing_scores(model, root, val) if synthetic.study_json_path(root).exists()
                              else {f"balance_{k}": v for k, v in analysis.balance_over_runs(model, val).items()})
diagnostics

# %% [markdown]
# ## Summary
# The numbers below are what notebook 08 collects into Tables 1 to 4.

# %%
name = f"runs/{tag}" if tag else "06_train_mind"
if config.decoder != "ridge":
    experiment.save(result, Path(results_dir) / "models" / f"{tag or '06_train_mind'}.pt")
np.save(Path(results_dir) / f"{name}_parcel_r.npy", parcel_r) if tag else None
results = {**summary, "noise_ceiling_fraction": ceiling_fraction, "split_scored": split,
           "size": size if dataset == "synthetic" else "real", "dataset": dataset, "history": result.history,
           "val_per_run_r": result.per_run_r("val"), "test_per_run_r": result.per_run_r("test"), **diagnostics}
project.write_results(name, results, results_dir)
{k: v for k, v in results.items() if k != "history"}

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Which networks does the model predict best, and how close does it get to their noise ceiling (synthetic
# study)?

# %% tags=["solution", "hide-cell"]
if solutions:
    nets = plotting.schaefer_fsaverage5()["networks"]
    for net in plotting.NETWORKS:
        sel = nets == net
        line = f"{net:>12}: {split} r = {np.nanmean(parcel_r[sel]):.3f}"
        if ceiling_fraction is not None:
            line += f"   noise ceiling = {np.nanmean([c[sel] for c in ceilings.values()]):.3f}"
        print(line)

# %% [markdown]
# **2.** Train the subject-linear baseline with the same settings (`decoder="baseline"`, or
# `-p decoder baseline` with papermill) and compare validation r.

# %% tags=["solution", "hide-cell"]
if solutions:
    other = experiment.run(study, experiment.ExperimentConfig(**{**vars(config), "decoder": "baseline"}))
    print(f"baseline: val r = {other.summary()['val_r']:.3f}   {config.decoder}: val r = {summary['val_r']:.3f}")
