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
# # 09 · Inter-subject generalisation: a new brain, zero to ten minutes of data
#
# **Overview** 1) leave-one-subject-out (the paper's ISG) for MIND and the subject-linear baseline
# 2) the authors'-code variant, "swap ISG", under its own name 3) few-shot calibration of a new subject
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/09_*.png`, `<results_dir>/09_isg.json`
#
# **ISG as the paper defines it**: train on S−1 subjects, score the held-out one. The unseen subject has no
# embedding or bias of its own, so it routes with the **population prior** — `B_s = 0` and `e_s` = the mean of
# the trained embeddings; decoders with subject heads use their mean head. It is scored on its **test**
# runs, so neither the subject nor the stimulus was seen in training.
#
# **Swap ISG** (what the authors' code computes instead): a *trained* subject's runs predicted under another
# trained subject's id. It measures something else — how interchangeable the learned subject slots are.
#
# **Few-shot calibration** (beyond the paper): keep everything frozen and fit only the new subject's own
# parameters (MIND: `e_s`, `B_s`; baseline: its head; MLP: its embedding; MMoE: its gate and readout) on N minutes
# of its training runs, under one protocol for every decoder (`isg.few_shot_protocol`): the same N minutes, a
# quarter of them held out to choose the calibration strength (epochs, 0 = stay at the population), several
# random draws of the minutes.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
held_out: list = ["sub-01"]  # subjects left out in turn (all four for the full run)
decoders: list = ["mind", "baseline", "mlp", "mmoe"]  # decoders compared (every decoder with subject slots)
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # training epochs
lr: float = 3e-3  # learning rate (notebook 06's grid picks it for the tables)
minutes: list = [0, 2, 5, 10]  # few-shot calibration budgets (minutes of the new subject's data)
n_draws: int = 3  # random draws of the minutes per budget (the curve's spread)
calibration_epochs: list = [0, 1, 2, 5, 10, 20, 30]  # calibration strengths tried, chosen on held-out minutes
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
progress: bool = True  # a progress bar per training run (learning rate, weight decay, ETA)
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mindlib import analysis, data, experiment, isg, plotting, project, synthetic

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)
study = data.load_study(root, backbone, features_root=features_root)
print(study)

# %% [markdown]
# ## 1. Leave one subject out

# %%
loso_rows, curves, swaps, loso_per_run = [], [], [], {}
for decoder in decoders:
    cfg = experiment.ExperimentConfig(decoder=decoder, d_model=d_model, epochs=epochs, lrs=(lr,), seed=seed,
                                      progress=progress)
    for subject in held_out:
        res = isg.loso_study(study, lambda n, cfg=cfg: experiment.build(cfg, study, n), subject,
                             cfg.train_config())
        r = res.scores["pearson"]["mean"]
        loso_rows.append({"decoder": decoder, "held_out": subject, "isg_r": r})
        loso_per_run.setdefault(decoder, {}).update(
            {f"{subj}/{run}": float(v) for (subj, run), v in res.scores["pearson"]["per_run"].items()})
        print(f"{decoder:>8}, {subject} unseen: r = {r:.3f}")
        # 3. few-shot calibration of the unseen subject, on its own training runs, scored on its test runs
        calib = [replace(rec, subject_index=res.subject_index) for rec in study.select("train") if rec.subject == subject]
        scored = [replace(rec, subject_index=res.subject_index)
                  for rec in study.select("test" if study.select("test") else "val") if rec.subject == subject]
        curve = isg.few_shot_protocol(res.model, res.subject_index, calib, scored, minutes, n_draws=n_draws,
                                      epochs_grid=calibration_epochs, seed=seed, progress=progress)
        curves.append(curve.assign(decoder=decoder, held_out=subject))
        # 2. swap ISG on the trained subjects of this model
        trained = [s for s in study.subjects if s != subject]
        recs = isg.remap_subjects(study.select("val"), trained)
        swaps.append({"decoder": decoder, "held_out": subject, "swap_isg": isg.cross_subject_swap(res.model, recs).swap_isg})
loso = pd.DataFrame(loso_rows)
curves = pd.concat(curves, ignore_index=True)
print(loso.groupby("decoder").isg_r.mean().round(3))

# %% [markdown]
# ## 2. Swap ISG, for comparison with the authors' numbers
# High swap ISG only says the subject slots are similar; it is not a test on an unseen subject.

# %%
swaps = pd.DataFrame(swaps)
print(swaps.round(3))

# %% [markdown]
# ## 3. Few-shot calibration curves
# Every decoder gets the same N minutes of the new subject (the same random draws), calibrates its own subject
# parameters (constant learning rate, `mindlib.isg.CALIBRATION_CONFIG`) on three quarters of them and keeps
# the epoch count (`calibration_epochs`, 0 = the population) that scores best on the held-out quarter. A decoder whose
# calibration overfits a few minutes (the baseline refits a whole `d × V` head, MIND only `d + E` numbers) is
# then held back by its own held-out minutes instead of falling below its zero-shot score. The band is ± one
# standard deviation over draws (and held-out subjects).

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for decoder, df in curves.groupby("decoder", sort=False):
    g = df.groupby("minutes").r
    m, sd = g.mean(), g.std().fillna(0.0)
    ax.plot(m.index, m.values, "o-", label=decoder)
    ax.fill_between(m.index, m - sd, m + sd, alpha=0.2)
ax.set_xlabel("minutes of the new subject's data")
ax.set_ylabel("test r (unseen subject)")
ax.legend()
plotting.save_figure(fig, "09_few_shot", fig_dir)
print(curves.groupby(["decoder", "minutes"]).r.agg(["mean", "std"]).unstack().round(3))
print("chosen epochs:\n", curves.groupby(["decoder", "minutes"]).epochs.agg(list).unstack())

# %% [markdown]
# ## 4. The noise ceiling from repeats
# Runs shown twice (`life01_run-1` / `run-2`, the same clip) give a ceiling from the data alone: the Pearson r
# between the two repeats per parcel (`metrics.repeat_ceiling`, no Spearman-Brown correction). On the synthetic
# study we can check it against the true ceiling (r between the clean and the measured signal); on real data it
# is the only one there is.

# %%
repeat_ceiling = analysis.repeat_ceilings(study.records)  # {subject: (V,)} raw repeat r
if repeat_ceiling:
    print({s: round(float(np.nanmean(c)), 3) for s, c in repeat_ceiling.items()}, "mean repeat r per subject")
    if synthetic.study_json_path(root).exists():
        truth = synthetic.load_ground_truth(root, subjects=list(repeat_ceiling))
        for s, c in repeat_ceiling.items():
            true_c = truth["subjects"][s]["noise_ceiling"]
            print(f"{s}: repeat r {np.nanmean(c):.3f} vs true ceiling squared {np.nanmean(true_c ** 2):.3f} (what two noisy "
                  f"repeats should correlate); sqrt(repeat r) {np.nanmean(np.sqrt(np.clip(c, 0, None))):.3f} vs true "
                  f"ceiling {np.nanmean(true_c):.3f}")
    fig, ax = plt.subplots(figsize=(5, 3))
    plotting.plot_network_bars(np.nanmean(list(repeat_ceiling.values()), axis=0), ax=ax, label="repeat r",
                               title="noise ceiling from repeats, per network")
    plotting.save_figure(fig, "09_repeat_ceiling", fig_dir)
else:
    print("no stimulus was shown twice in this study: no repeat ceiling")

# %% [markdown]
# ## Summary
# ISG is measured on a subject and stimuli never seen in training, through the population prior. Compare the
# unseen-subject r with the within-subject r of notebook 06, and read off the curve how much a few minutes of
# the new subject's data add under one protocol for every decoder (its own subject parameters, strength chosen
# on held-out minutes of the same budget). On the synthetic study subjects share most of their response, so the population prior already
# sits close to a trained subject.

# %%
results = {
    "loso_r": {d: float(v) for d, v in loso.groupby("decoder").isg_r.mean().items()},
    "loso_per_run_r": loso_per_run,  # {decoder: {"subject/run": r}}: paired units for mindlib.stats
    "swap_isg": {d: float(v) for d, v in swaps.groupby("decoder").swap_isg.mean().items()},
    "few_shot": {d: {str(k): float(v) for k, v in df.groupby("minutes").r.mean().items()} for d, df in curves.groupby("decoder")},
    "few_shot_std": {d: {str(k): float(v) for k, v in df.groupby("minutes").r.std().fillna(0.0).items()} for d, df in curves.groupby("decoder")},
    "few_shot_epochs": {d: {str(k): [int(e) for e in v] for k, v in df.groupby("minutes").epochs} for d, df in curves.groupby("decoder")},
    "few_shot_draws": n_draws,
    "repeat_ceiling": {s: float(np.nanmean(c)) for s, c in repeat_ceiling.items()},
}
project.write_results("09_isg", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Which held-out subject is hardest for each decoder?

# %% tags=["solution", "hide-cell"]
if solutions:
    print(loso.pivot(index="held_out", columns="decoder", values="isg_r").round(3))

# %% [markdown]
# **2.** How many minutes of a new subject's data does it take to gain 0.01 r over the population prior?

# %% tags=["solution", "hide-cell"]
if solutions:
    for (decoder, subject), df in curves.groupby(["decoder", "held_out"]):
        r = df.groupby("minutes").r.mean()  # mean over the draws of each budget
        enough = r.index[(r - r.loc[0.0]) >= 0.01] if 0.0 in r.index else []
        print(f"{decoder:>8} {subject}: " + (f"+0.01 r after {min(enough):g} min" if len(enough) else
                                             "no budget here gains 0.01 r"))
