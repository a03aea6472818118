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
# # 01 · Temporal alignment: 2 Hz frames to fMRI TRs
#
# **Overview** 1) the overlap matrix 2) the drift that "3 frames per TR" causes 3) the haemodynamic lag
# 4) FIR delays
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/01_*.png`, `<results_dir>/01_temporal_alignment.json`
#
# Backbone features arrive at 2 Hz (frame *k* covers `[k/2, (k+1)/2)` s); fMRI arrives every TR = 1.49 s
# (TR *t* covers `[1.49 t, 1.49 (t+1))` s). Everything downstream depends on pairing the right frames with
# the right TR. We build TR tokens with an **overlap-weight matrix** `W (T, T_f)`: row *t* weights frame *k*
# by the seconds it overlaps the stimulus window of TR *t*, divided by the covered length, so covered rows
# sum to 1. No integer number of frames fits in a TR: that is the point.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
backbone: str = "tribe"  # feature store to read: "tribe" | "imagebind" | "qwen" | your own
tr_s: float = 1.49  # repetition time (s)
feature_hz: float = 2.0  # rate of feature frames (Hz)
lag_trs: int = 3  # haemodynamic lag in TRs (3 TRs is 4.47 s)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import matplotlib.pyplot as plt
import numpy as np

from mindlib import align, data, layout, plotting, project

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)
print("study root:", root)

# %% [markdown]
# ## 1. The overlap matrix
# Here are the first 8 TRs and 26 frames with no lag. Each TR window spans 2.98 frames, so a TR mixes
# three or four frames with fractional weights, and the pattern slides slowly as the grids drift apart.

# %%
W = align.overlap_matrix(8, 26, tr_s=tr_s, feature_hz=feature_hz, lag_s=0.0)
print("(T, T_f) W =", W.shape, "  row sums:", np.round(W.sum(1), 6))
print("row 0 weights:", np.round(W[0, :4], 4), " row 1:", np.round(W[1, 2:7], 4))
fig, ax = plt.subplots(figsize=(9, 3))
plotting.plot_matrix(W, ax=ax, xlabel="2 Hz frame k", ylabel="TR t", title="overlap weights W[t, k] (lag 0)")
plotting.save_figure(fig, "01_overlap_matrix", fig_dir)

# %% [markdown]
# ## 2. The drift pitfall
# Averaging "3 frames per TR" treats a TR as 1.5 s. The error grows by 0.01 s per TR: by TR 500 the
# features are 5 s (more than 3 TRs) out of step with the brain. An impulse at 745.5 s shows it:

# %%
n_trs, n_frames = 600, int(np.ceil(600 * tr_s * feature_hz))
frames = np.zeros((n_frames, 1))
impulse_s = 745.5
frames[int(impulse_s * feature_hz), 0] = 1.0
W_exact = align.overlap_matrix(n_trs, n_frames, tr_s, feature_hz)
W_naive = align.naive_frames_per_tr(n_trs, n_frames, frames_per_tr=3)
tr_exact = int(np.argmax(W_exact @ frames[:, 0]))
tr_naive = int(np.argmax(W_naive @ frames[:, 0]))
print(f"impulse at {impulse_s} s lands in TR {tr_exact} (exact: {impulse_s} / {tr_s} = {impulse_s / tr_s:.2f}) "
      f"but in TR {tr_naive} with 3 frames per TR")

t = np.arange(n_trs)
centre_exact = (W_exact @ ((np.arange(n_frames) + 0.5) / feature_hz)[:, None])[:, 0]
centre_naive = (W_naive @ ((np.arange(n_frames) + 0.5) / feature_hz)[:, None])[:, 0]
drift = centre_naive - (t + 0.5) * tr_s
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(t, centre_exact - (t + 0.5) * tr_s, label="overlap matrix")
ax.plot(t, drift, label="3 frames per TR")
ax.set_xlabel("TR")
ax.set_ylabel("feature time − TR time (s)")
ax.legend()
plotting.save_figure(fig, "01_drift", fig_dir)
drift_at_500 = float(drift[500])
print(f"drift at TR 500: {drift_at_500:.2f} s")

# %% [markdown]
# ## 3. The haemodynamic lag, seen in the data
# The BOLD response peaks 4–6 s after the stimulus. The token for TR *t* is therefore built from the
# stimulus window `[t·TR − lag, (t+1)·TR − lag)`. We let the data pick the lag: for one subject, we correlate
# the visual network's mean response with the video features aligned at lags of 0–8 TRs.

# %%
store = data.FeatureStore(root, backbone, features_root=features_root)
subject = sorted(p.name for p in (root / "fmri").iterdir())[0]
fmri = data.load_fmri(root, subject)
modality = store.modalities[0]
networks = plotting.schaefer_fsaverage5()["networks"]
lags = np.arange(0, 9)
curves = []
for run, Y in list(fmri.items())[:6]:
    X = data.aggregate_layers(store.load(layout.stimulus_of(run), modality))  # (T_f, G*D)
    y = data.zscore(Y)[:, networks == "Vis"].mean(1)
    r_lag = []
    for lag in lags:
        tokens, covered = align.align_features(X, len(Y), tr_s, store.feature_hz, lags_trs=(lag,))
        # best single feature correlation: how much stimulus information each lag carries
        z = tokens[covered] - tokens[covered].mean(0)
        yy = y[covered] - y[covered].mean()
        r = (z * yy[:, None]).sum(0) / (np.linalg.norm(z, axis=0) * np.linalg.norm(yy) + 1e-12)
        r_lag.append(np.abs(r).max())
    curves.append(r_lag)
curve = np.mean(curves, 0)
best_lag = int(lags[np.argmax(curve)])
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(lags * tr_s, curve, "o-")
ax.axvline(lag_trs * tr_s, color="k", ls="--", label=f"default lag {lag_trs} TRs")
ax.set_xlabel("lag (s)")
ax.set_ylabel(f"max |r|, {modality} features vs Vis")
ax.legend()
plotting.save_figure(fig, "01_lag", fig_dir)
print(f"{subject}: the {modality} features best match the visual network at a lag of {best_lag} TRs "
      f"({best_lag * tr_s:.2f} s)")

# %% [markdown]
# ## 4. FIR delays
# Instead of one lag, voxelwise encoding models concatenate the tokens at several lags and let the model
# learn the response shape. `align_features` does both; TRs whose windows are not fully covered by frames
# (the first `lag` TRs) are masked out of every loss and score.

# %%
run0, Y0 = next(iter(fmri.items()))
X0 = data.aggregate_layers(store.load(layout.stimulus_of(run0), modality))
one, cov1 = align.align_features(X0, len(Y0), tr_s, store.feature_hz, lags_trs=(lag_trs,))
fir, cov4 = align.align_features(X0, len(Y0), tr_s, store.feature_hz, lags_trs=(2, 3, 4, 5))
print(f"(T_f, F) frames = {X0.shape}   (T, F) one lag = {one.shape}   (T, 4F) FIR lags 2-5 = {fir.shape}")
print(f"masked TRs: one lag {int((~cov1).sum())}, FIR {int((~cov4).sum())} of {len(Y0)}")

# %% [markdown]
# ## Summary
# The overlap matrix pairs frames and TRs exactly for any TR and frame rate; "3 frames per TR" drifts by
# seconds within one episode. Compare the lag that best links stimulus and response in the data (printed
# above, and saved as `best_lag_trs`) with the default of 3 TRs.

# %%
results = {
    "drift_s_at_tr500": drift_at_500,
    "impulse_tr_exact": tr_exact,
    "impulse_tr_naive": tr_naive,
    "best_lag_trs": best_lag,
    "lag_curve": curve.tolist(),
}
project.write_results("01_temporal_alignment", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** An impulse at 745.5 s lands 3 TRs early with "3 frames per TR". Where do impulses at 100 s and 400 s land,
# with the overlap matrix and with the naive pooling?

# %% tags=["solution", "hide-cell"]
if solutions:
    for onset in (100.0, 400.0, impulse_s):
        f = np.zeros(n_frames)
        f[int(onset * feature_hz)] = 1.0
        print(f"impulse at {onset:6.1f} s: overlap matrix TR {int(np.argmax(W_exact @ f))}, "
              f"3 frames per TR: TR {int(np.argmax(W_naive @ f))}  (true TR {int(onset // tr_s)})")

# %% [markdown]
# **2.** Another dataset has TR = 2.0 s. How many 2 Hz frames does each TR span, and does pooling a fixed number of
# frames per TR drift there?

# %% tags=["solution", "hide-cell"]
if solutions:
    tr2, n_frames2 = 2.0, int(np.ceil(600 * 2.0 * feature_hz))
    per_tr = tr2 * feature_hz
    naive2 = align.naive_frames_per_tr(600, n_frames2, frames_per_tr=int(per_tr))
    centres2 = naive2 @ ((np.arange(n_frames2) + 0.5) / feature_hz)
    print(f"{per_tr:g} frames per TR; drift of {int(per_tr)} frames per TR at TR 500: "
          f"{centres2[500] - 500.5 * tr2:.3f} s (an integer number of frames per TR does not drift)")
