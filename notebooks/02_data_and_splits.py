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
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/02_split.png`, `<results_dir>/02_data_and_splits.json`

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
split_seed: int = 0  # seed of the train / validation / test split of the runs (data.split_runs)
seed: int = 0  # seed of the batch shuffling in section 4 (in training notebooks: model seed)
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
window: int = 100  # TRs per training window
stride: int = 50  # TRs between window starts
batch_size: int = 8  # B windows per batch
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import torch

from mindlib import data, layout, plotting, project

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)

# %% [markdown]
# ## 1. A study is a list of run records
# `load_study` reads every subject's fMRI, z-scores each run per parcel, reads the backbone's features,
# averages layer groups (60 / 80 / 100 % depth), aligns them to TRs at a 3-TR lag with the overlap matrix
# of notebook 01, and checks that features and fMRI last equally long (within a stated tolerance).
# Repeats of a clip and all subjects share one feature array per stimulus: no copies.

# %%
study = data.load_study(root, backbone, split_seed=split_seed, features_root=features_root)
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

ax = plotting.plot_split(desc, title="split per subject and run")
plotting.save_figure(ax.figure, "02_split", fig_dir)

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

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** How many training windows are there without overlap (`stride = window`)? Is every TR still seen?

# %% tags=["solution", "hide-cell"]
if solutions:
    for st in (stride, window):
        starts = [data.window_starts(r.n_trs, window, st) for r in train]
        seen = sum(len(set().union(*(range(s, min(s + window, r.n_trs)) for s in ss))) for ss, r in zip(starts, train))
        print(f"stride {st}: {sum(map(len, starts))} windows; TRs seen {seen} of {sum(r.n_trs for r in train)}")

# %% [markdown]
# **2.** Split with another seed (`split_seed + 1`): how many run records change side, and does every episode
# still sit on one side?

# %% tags=["solution", "hide-cell"]
if solutions:
    other = data.load_study(root, backbone, split_seed=split_seed + 1).describe()
    a, b = desc.set_index(["subject", "run"]).split, other.set_index(["subject", "run"]).split
    one_side = other.assign(episode=other.run.map(layout.episode_of)).groupby("episode").split.nunique().eq(1).all()
    print(f"split_seed {split_seed + 1}: {int((a != b.loc[a.index]).sum())} of {len(a)} records change side; "
          f"every episode on one side: {bool(one_side)}")
