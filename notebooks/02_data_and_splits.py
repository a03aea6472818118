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
# # 02 · Data and splits: runs, subjects, windows, and a split that cannot leak
#
# **Overview** 1) load a study into run records 2) split by episode, the same way for every subject
# 3) windows of 100 TRs 4) what a batch holds
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `figures/02_split.png`, `results/02_data_and_splits.json`

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
seed: int = 0  # seed of the synthetic study and of the split
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
window: int = 100  # TRs per training window
stride: int = 50  # TRs between window starts
batch_size: int = 8  # B windows per batch
results_dir: str = "../results"  # where the results file goes
fig_dir: str = "../figures"  # empty string: show figures, save none

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from mindlib import data, layout, plotting, project

root = project.resolve_dataset(dataset, size=size, seed=seed)

# %% [markdown]
# ## 1. A study is a list of run records
# `load_study` reads every subject's fMRI, z-scores each run per parcel, reads the backbone's features,
# averages layer groups (60 / 80 / 100 % depth), aligns them to TRs at a 3-TR lag with the overlap matrix
# of notebook 01, and checks that features and fMRI last equally long (within a stated tolerance).
# Repeats of a clip and all subjects share one feature array per stimulus: no copies.

# %%
study = data.load_study(root, backbone, split_seed=seed)
print(study)
rec = study.records[0]
print(f"one record: {rec.subject} {rec.run}  (T, V) fmri = {rec.fmri.shape}")
for m, x in rec.features.items():
    print(f"  (T, F) {m} features = {x.shape}")
print(f"  valid TRs: {int(rec.valid.sum())} of {rec.n_trs} (the first TRs precede the lagged stimulus)")

# %% [markdown]
# ## 2. The split: by episode, stratified by movie, identical across subjects
# Runs that share a stimulus — the `a/b` halves of one episode, the `run-1`/`run-2` repeats of a clip —
# always land on the same side, and the split is computed once on the union of all subjects' runs, so a
# stimulus seen in training by one subject is never scored in validation for another. The test set is
# held out and touched once, for final numbers; model selection uses validation only.

# %%
desc = study.describe()
print(desc.groupby(["movie", "split"]).size().unstack(fill_value=0))
split_of_stimulus = desc.assign(episode=desc.run.map(layout.episode_of)).groupby("episode")["split"].nunique()
assert (split_of_stimulus == 1).all(), "an episode is split across sides"
print("every episode sits on exactly one side for every subject: no stimulus leakage")

subjects = list(study.subjects)
runs = sorted(desc.run.unique())
side = {"train": 0, "val": 1, "test": 2}
grid = np.full((len(subjects), len(runs)), np.nan)
for row in desc.itertuples():
    grid[subjects.index(row.subject), runs.index(row.run)] = side[row.split]
fig, ax = plt.subplots(figsize=(10, 2.2))
plotting.plot_matrix(grid, ax=ax, xticklabels=runs, yticklabels=subjects, cmap=plt.get_cmap("Set2", 3),
                     title="split per subject and run (0 train, 1 val, 2 test; blank = missing run)",
                     vmin=-0.5, vmax=2.5)
plotting.save_figure(fig, "02_split", fig_dir)

# %% [markdown]
# ## 3. Windows
# Training samples are windows of `window` TRs every `stride` TRs; the last window of a run is aligned to
# its end so every TR is seen. Evaluation predicts whole runs from the same covering, averaging overlaps.

# %%
print("window starts for T = 250:", data.window_starts(250, window, stride))
train = study.select("train")
ds = data.WindowDataset(train, window=window, stride=stride)
print(f"{len(train)} training runs -> {len(ds)} windows of {window} TRs")

# %% [markdown]
# ## 4. A batch mixes subjects

# %%
loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                     generator=torch.Generator().manual_seed(seed), collate_fn=data.collate_windows)
batch = next(iter(loader))
for m, x in batch["features"].items():
    print(f"(B, T, F) features[{m!r}] =", tuple(x.shape))
print("(B, T, V) fmri =", tuple(batch["fmri"].shape), "  (B, T) mask =", tuple(batch["mask"].shape))
print("(B,) subject =", batch["subject"].tolist())

# %% [markdown]
# ## Summary
# A study is a list of records; the split groups what shares a stimulus and is the same for every subject;
# training sees 100-TR windows from all subjects at once.

# %%
split = study.split
results = {
    "n_train_runs": len(split.train),
    "n_val_runs": len(split.val),
    "n_test_runs": len(split.test),
    "n_records": len(study.records),
    "n_windows": len(ds),
    "feature_dims": dict(study.feature_dims),
}
project.write_results("02_data_and_splits", results, results_dir)
results
