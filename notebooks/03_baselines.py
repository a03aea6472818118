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
# # 03 · Baselines: the numbers to beat
#
# **Overview** 1) ridge, the classical voxelwise encoding model 2) the subject-linear baseline on AFIRE
# tokens (TRIBE-style head) 3) both on every backbone
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `figures/03_baselines.png`, `results/03_baselines.json`
#
# A new decoder is only interesting if it beats what a neuroscientist runs first. **Ridge** fits one linear
# map per subject from FIR-delayed, TR-aligned features (`fir_lags_trs`) to every parcel, with the penalty
# chosen per parcel by R² on the validation runs (one eigendecomposition serves all 17), and is scored
# on exactly the TRs the other decoders are scored on. The **Baseline** of Table 1 is the same AFIRE token
# pipeline as MIND with a per-subject linear head instead of experts. Both are tuned as carefully as MIND
# and on the same validation runs: ridge over its penalties, the baseline over the same learning-rate grid
# and epochs.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbones: list = ["tribe", "imagebind", "qwen"]  # feature stores to compare
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # epochs per grid cell
lrs: list = [1e-3, 3e-3]  # learning-rate grid, scored on validation
fir_lags_trs: list = [2, 3, 4]  # ridge FIR delays in TRs
results_dir: str = "../results"  # where the results file goes
fig_dir: str = "../figures"  # empty string: show figures, save none

# %%
import matplotlib.pyplot as plt
import pandas as pd

from mindlib import data, experiment, plotting, project

root = project.resolve_dataset(dataset, size=size, seed=0)

# %%
rows = []
for backbone in backbones:
    study = data.load_study(root, backbone)
    for decoder in ("ridge", "baseline"):
        cfg = experiment.ExperimentConfig(decoder=decoder, d_model=d_model, epochs=epochs, lrs=tuple(lrs), seed=seed,
                                          fir_lags_trs=tuple(fir_lags_trs))
        res = experiment.run(study, cfg)
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
plotting.save_figure(fig, "03_baselines", fig_dir)

# %% [markdown]
# ## Summary
# These are the rows "Baseline" and "ridge" of Table 1 (notebook 08 recomputes them over seeds).

# %%
first = backbones[0]
results = {
    "ridge_val_r": float(table.query("backbone == @first and decoder == 'ridge'").val_r.iloc[0]),
    "baseline_val_r": float(table.query("backbone == @first and decoder == 'baseline'").val_r.iloc[0]),
    "table": table.to_dict(orient="records"),
}
project.write_results("03_baselines", results, results_dir)
results
