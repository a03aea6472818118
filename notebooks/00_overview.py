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
# # 00 · Overview: subject-aware mixture-of-experts brain encoding
#
# **Overview** 1) the problem 2) the architecture and the dimension legend 3) a tour of the study
# 4) pointing everything at real Algonauts 2025 data
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores; the first run also builds the synthetic study)
# **Writes** `<fig_dir>/00_*.png`, `<results_dir>/00_overview.json`
#
# ## The problem
# People watch the same movie; their brains respond similarly but not identically. An *encoding model*
# predicts each subject's fMRI response, parcel by parcel, from features of the stimulus computed by a
# pretrained backbone (video, audio and language models). Two things make this hard:
#
# - **backbones disagree on the shape of their features**: per-modality, per-layer features (TRIBE),
#   one joint embedding space per modality (ImageBind), or one fused stream from a multimodal LLM (Qwen2.5-Omni);
# - **subjects differ**: the same content drives somewhat different parcels, with different gains.
#
# The method implemented here answers both:
#
# | stage | what it does | module |
# |---|---|---|
# | temporal alignment | 2 Hz frames → TR tokens with exact overlap weights and an HRF lag | `mindlib.align` |
# | **AFIRE** | per-modality projectors over layer groups, fusion (concat / sum / gated), temporal MLP | `mindlib.afire` |
# | **SADGate** | token router `softmax(W_r(x_t + e_s) + b_r)` × subject prior `softmax(g + B_s)`, Top-K, renormalise | `mindlib.sadgate` |
# | **MIND** | E expert heads `d → V`; each token runs only its K experts | `mindlib.mind`, `mindlib.experts` |
#
# ## Dimension legend (used in every notebook)
#
# | B windows in a batch | S subjects | M modalities | L layers | D feature dim | T_f 2 Hz frames |
# |---|---|---|---|---|---|
# | **T** TRs (tokens) in a window | **d** token dim | **E** experts, **K** kept | **V** parcels | | |
#
# Features `(B, T_f, L, D)`, tokens `(B, T, d)`, predictions `(B, T, V)`, one run's fMRI `(T, V)`.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
backbone: str = "tribe"  # feature store to show: "tribe" | "imagebind" | "qwen" | your own
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mindlib import data, layout, plotting, project, synthetic

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)
print("study root:", root)

# %% [markdown]
# ## A tour of the study
# The embedded default is a **synthetic study written in exactly the Algonauts 2025 file layout**
# (`fmri/sub-0X/func/*.h5`, `stimuli/transcripts/…`), so the reader that serves it also serves the real
# data. It has the four released subjects, Friends-like half-episodes (`s01e02a`), a film in parts
# (`bourne01`) and a clip seen twice (`life01_run-1`, `life01_run-2`), and the known missing runs.

# %%
subjects = sorted(p.name for p in (root / "fmri").iterdir() if p.is_dir())
runs = {s: data.load_fmri(root, s) for s in subjects}
table = pd.DataFrame(
    [{"subject": s, "run": r, "movie": layout.movie_of(r), "n_trs": Y.shape[0], "n_parcels": Y.shape[1]}
     for s in subjects for r, Y in runs[s].items()]
)
print(table.groupby("subject").agg(n_runs=("run", "size"), n_trs=("n_trs", "sum")))
n_parcels = int(table["n_parcels"].iloc[0])
first = subjects[0]
run0 = sorted(runs[first])[0]
print(f"(T, V) fMRI of {first} {run0} =", runs[first][run0].shape)
print("backbones in the feature store:", data.list_backbones(root, features_root))
store = data.FeatureStore(root, backbone, features_root=features_root)
for m in store.modalities:
    print(f"  {backbone}/{m}: (T_f, L, D) =", store.load(layout.stimulus_of(run0), m).shape)

# %% [markdown]
# One run of one subject: 1000 parcels over time, sorted by network.

# %%
networks = plotting.schaefer_fsaverage5()["networks"]
order = np.argsort([plotting.NETWORKS.index(n) for n in networks], kind="stable")
fig, ax = plt.subplots(figsize=(9, 3.5))
plotting.plot_matrix(data.zscore(runs[first][run0])[:, order].T, ax=ax, xlabel="TR", ylabel="parcel (by network)",
                     title=f"{first} {run0}, z-scored", cmap="RdBu_r", vmin=-3, vmax=3)
plotting.save_figure(fig, "00_fmri_run", fig_dir)

# %% [markdown]
# ## What the synthetic study knows that real data never tells
# The generator saves its ground truth: a latent stimulus whose content type (dialogue, music, action,
# faces, scenery) switches over time; **content-dependent response modes** (a true mixture of experts)
# with **subject-specific mode preferences and gains**; HRF convolution and autocorrelated noise. The
# *noise ceiling* of a parcel is the correlation of its clean signal with the measured one: no model can
# beat it on average. It varies by network, as in real data.

# %%
is_synthetic = synthetic.study_json_path(root).exists()
mean_ceiling = None
if is_synthetic:
    truth = synthetic.load_ground_truth(root, subjects=[first])
    ceiling = truth["subjects"][first]["noise_ceiling"]
    mean_ceiling = float(np.nanmean(ceiling))
    print(f"{first}: mean noise ceiling r = {mean_ceiling:.3f}")
    fig = plotting.plot_brain_map(ceiling, title=f"noise ceiling of {first}, all runs (synthetic truth)",
                                  label="noise ceiling r")
    plotting.save_figure(fig, "00_noise_ceiling", fig_dir)
    stim = layout.stimulus_of(run0)
    content = truth["subjects"][first]["content_tr"][run0]
    fig, ax = plt.subplots(figsize=(9, 1.8))
    ax.plot(content, drawstyle="steps-mid")
    ax.set_yticks(range(len(truth["content_types"])), labels=truth["content_types"])
    ax.set_xlabel("TR")
    ax.set_title(f"content type driving each TR of {run0}")
    plotting.save_figure(fig, "00_content", fig_dir)
else:
    print("real data: no ground truth; see notebook 09 for repeat-based noise ceilings")

# %% [markdown]
# ## Real Algonauts 2025 data
# Every notebook takes `dataset` as its first parameter. Point it at the folder that holds `fmri/` and
# `stimuli/`, and write your backbone's features into `features/<backbone>/` (see notebook 11 and
# `mindlib.features`), e.g. from the repository root (results and figures land in `runs/<size>/` of the
# repository whichever folder papermill starts in; `--help-notebook` lists every parameter):
#
# ```bash
# papermill notebooks/06_train_mind.ipynb runs/06_train_mind.ipynb -p dataset /data/algonauts2025 -p backbone tribe
# ```
#
# ## Summary
# Next: notebook 01 aligns 2 Hz frames to TRs; 02 builds the leakage-free split; 03–05 build AFIRE, SADGate and
# the experts by hand; 06 trains MIND; 07 sets the baselines it must beat.

# %%
results = {
    "n_subjects": len(subjects),
    "n_runs": int(len(table)),
    "n_parcels": n_parcels,
    "n_trs_total": int(table["n_trs"].sum()),
    "mean_noise_ceiling": mean_ceiling,
}
project.write_results("00_overview", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Which subjects miss runs that the others have? (The real dataset has a few missing runs too, and the
# synthetic study copies them.)

# %% tags=["solution", "hide-cell"]
if solutions:
    have = table.groupby("subject").run.apply(set)
    every = set.union(*have)
    for subject, its_runs in have.items():
        print(f"{subject}: {len(its_runs)} runs; missing {sorted(every - its_runs) or 'none'}")

# %% [markdown]
# **2.** On the synthetic study: which Yeo-7 network has the highest mean noise ceiling, and which the lowest?

# %% tags=["solution", "hide-cell"]
if solutions and is_synthetic:
    by_network = pd.Series(ceiling).groupby(networks).mean().sort_values(ascending=False)
    print(by_network.round(3).to_string())
