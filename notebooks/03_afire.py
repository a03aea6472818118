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
# # 03 · AFIRE: any backbone to tokens
#
# **Overview** 1) three backbones, three feature shapes, one interface 2) the fusion operators
# (concat, sum, gated) 3) missing modalities at inference, and modality dropout in training
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/03_*.png`, `<results_dir>/03_afire.json`
#
# AFIRE turns TR-aligned features into tokens `(B, T, d)`: per modality a projector `G·D_m → d` over the
# averaged layer groups, a fusion operator over modalities, then a light temporal module (learned positional
# encoding + temporal MLP over ±2 TRs + LayerNorm). A backbone is attached by its feature shapes alone.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbone: str = "tribe"  # a multi-modality feature store for the fusion comparison
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # training epochs
modality_dropout: float = 0.2  # P(drop a modality of a training window) for the robust variant
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
progress: bool = True  # a progress bar per training run (learning rate, weight decay, ETA)
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import matplotlib.pyplot as plt
import pandas as pd
import torch

from mindlib import afire, analysis, data, decoder, experiment, plotting, project, train

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)

# %% [markdown]
# ## 1. One interface for three fusion styles
# Per-modality multi-layer features (TRIBE-like), one joint space per modality (ImageBind-like) and one
# fused LLM stream (Qwen-like) all become `(B, T, d)` tokens; only the projector input sizes differ.

# %%
for name in data.list_backbones(root, features_root):
    study_b = data.load_study(root, name, features_root=features_root)
    cfg = afire.AFIREConfig(modalities=dict(study_b.feature_dims), d_model=d_model)
    module = afire.AFIRE(cfg)
    batch = data.collate_windows([data.WindowDataset(study_b.records[:1])[0]])
    tokens = module(batch["features"])
    shapes = {m: tuple(x.shape) for m, x in batch["features"].items()}
    print(f"{name:>10}: features {shapes} -> (B, T, d) tokens {tuple(tokens.shape)};  "
          f"{decoder.n_parameters(module, trainable_only=True):,} parameters")

# %% [markdown]
# ## 2. Fusion operators
# `concat` projects each modality, concatenates and maps back to d; `sum` adds the projections; `gated` learns
# a softmax weight per modality. We train MIND with each on the same split.

# %%
study = data.load_study(root, backbone, features_root=features_root)
rows, models = [], {}
for fusion in ("concat", "sum", "gated"):
    cfg = experiment.ExperimentConfig(decoder="mind", fusion=fusion, d_model=d_model, epochs=epochs, lrs=(3e-3,), seed=seed,
                                      progress=progress)
    res = experiment.run(study, cfg)
    models[fusion] = res.model
    rows.append({"fusion": fusion, "val_r": res.summary()["val_r"]})
    print(f"{fusion:>7}: validation r = {rows[-1]['val_r']:.3f}")
w = torch.softmax(models["gated"].afire.fusion_logits.detach(), 0).numpy()
print("learned modality weights (gated):", dict(zip(study.modalities, w.round(3))))

# %% [markdown]
# ## 3. Missing modalities
# The paper lists robustness to missing modalities as future work; AFIRE ships a mask. We score the
# concat model with each modality removed at inference, then a model trained with **modality dropout**
# (each training window loses a modality with probability `modality_dropout`).

# %%
val = study.select("val")
robust_cfg = experiment.ExperimentConfig(decoder="mind", d_model=d_model, epochs=epochs, lrs=(3e-3,), seed=seed,
                                         modality_dropout=modality_dropout, progress=progress)
robust = experiment.run(study, robust_cfg).model
missing_rows = []
for label, model in (("trained with all", models["concat"]), (f"modality dropout {modality_dropout}", robust)):
    full = train.evaluate(model, val)["pearson"]["mean"]
    missing_rows.append({"model": label, "removed": "none", "val_r": full})
    for m in study.modalities if len(study.modalities) > 1 else []:
        r = train.evaluate(analysis.WithoutModalities(model, [m]), val)["pearson"]["mean"]
        missing_rows.append({"model": label, "removed": m, "val_r": r})
missing = pd.DataFrame(missing_rows)
print(missing.pivot(index="removed", columns="model", values="val_r").round(3))
fig, ax = plt.subplots(figsize=(6, 3))
missing.pivot(index="removed", columns="model", values="val_r").plot.bar(ax=ax, rot=0)
ax.set_ylabel("validation r")
ax.set_title("removing one modality at inference")
plotting.save_figure(fig, "03_missing_modality", fig_dir)

# %% [markdown]
# ## Summary
# Any backbone attaches through its feature shapes alone. The two tables above say how much the fusion
# operator matters on this study, and how much a model loses when a modality goes missing, with and without
# modality dropout in training (the numbers are in `results/03_afire.json`).

# %%
results = {
    "fusion_val_r": {r["fusion"]: r["val_r"] for r in rows},
    "missing_modality_r": {f"{r['model']} | -{r['removed']}": r["val_r"] for r in missing_rows},
}
project.write_results("03_afire", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** How many parameters does AFIRE have with each fusion operator on this backbone? Where does the difference
# come from?

# %% tags=["solution", "hide-cell"]
if solutions:
    for fusion in ("concat", "sum", "gated"):
        cfg = afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, fusion=fusion)
        print(f"{fusion:>7}: {decoder.n_parameters(afire.AFIRE(cfg), trainable_only=True):,} parameters")
    print("concat maps the M·d concatenation back to d; sum and gated add the M projections (gated: M more weights)")

# %% [markdown]
# **2.** Which modality costs the most validation r when it goes missing, with and without modality dropout?

# %% tags=["solution", "hide-cell"]
if solutions:
    full = missing.query("removed == 'none'").set_index("model").val_r
    lost = missing.query("removed != 'none'").assign(r_lost=lambda d: d.model.map(full) - d.val_r)
    print(lost.sort_values("r_lost", ascending=False).round(3).to_string(index=False))
