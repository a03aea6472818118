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
# # 12 · Submission: predict the held-out stimuli, write the official file, score it locally
#
# **Overview** 1) the target sample numbers of the release 2) the trained model of notebook 06, and a seed
# ensemble 3) predictions of stimuli that have features but no fMRI 4) the checked submission files 5) the
# official metric against the held-out fMRI, single model vs ensemble
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)
# **Writes** `runs/<size>/results/submission/fmri_predictions_{friends_s7,ood}.{npy,zip}`,
# `runs/<size>/results/12_submission.json`, `runs/<size>/figures/12_local_score.png`
#
# The challenge withholds the fMRI of Friends season 7 and of six out-of-distribution films (`chaplin1`,
# `wot2`, ...): a team predicts them from features alone. The synthetic study holds those stimuli too
# (features, transcripts, target sample numbers) with their fMRI kept as hidden truth under
# `ground_truth/fmri/`, so here the whole path runs offline and is scored. On the real release the same
# cells write the files to upload; the score cell scores whatever held-out fMRI the folder holds.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
model_path: str = ""  # decoder saved by notebook 06 (experiment.save); empty: <results_dir>/models/06_train_mind.pt
ensemble_seeds: list = [1, 2]  # extra seeds trained here with the model's config and learning rate; [] skips
target_sets: list = ["friends-s7", "ood"]  # "friends-s7" (phase 1) and/or "ood" (phase 2)
out_dir: str = ""  # where the .npy and .zip files go; empty: <results_dir>/submission
results_dir: str = "runs/{size}/results"  # results file (relative paths are taken from the repository root)
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mindlib import experiment, layout, plotting, project, submission, synthetic

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
out_dir = project.output_dir(out_dir, size) or Path(results_dir) / "submission"
model_path = project.output_dir(model_path, size) or Path(results_dir) / "models" / "06_train_mind.pt"
root = project.resolve_dataset(dataset, size=size, seed=study_seed)

# %% [markdown]
# ## 1. What must be predicted
# Each subject has a target sample number file per phase: a pickled dict `{episode: number of TRs}`. Its keys
# are the episode names of the submission and its values the exact number of rows each prediction must have.

# %%
targets = {t: submission.load_targets(root, t) for t in target_sets}
for t, per_subject in targets.items():
    first = per_subject[layout.SUBJECTS[0]]
    print(f"{t}: {len(first)} episodes per subject, {sum(first.values())} TRs; "
          f"file {layout.target_samples_path(root, layout.SUBJECTS[0], t).relative_to(root)}")
pd.Series(targets[target_sets[0]][layout.SUBJECTS[0]], name="target TRs").to_frame().T

# %% [markdown]
# ## 2. The models
# The decoder notebook 06 trained, rebuilt for the same study (same backbone, lag and layer groups). An
# ensemble adds seeds trained here with the same configuration and the learning rate notebook 06 chose on
# validation; their predictions are averaged TR by TR.

# %%
study, models, configs = submission.load_models([model_path], root, features_root=features_root)
config = configs[0]
print(study)
# notebook 06's results file beside the model (results/<stem>.json, or results/runs/<tag>.json in fan-outs)
candidates = [Path(results_dir) / f"{model_path.stem}.json", Path(results_dir) / "runs" / f"{model_path.stem}.json"]
chosen = next((json.loads(p.read_text()) for p in candidates if p.exists()), None)
if ensemble_seeds and chosen is None:
    raise FileNotFoundError(f"the ensemble reuses notebook 06's choice of learning rate: none of {candidates} exists; "
                            "run notebook 06 first or set ensemble_seeds = []")
t0 = time.perf_counter()
seed_val_r = {config.seed: chosen["val_r"] if chosen else None}
for seed in ensemble_seeds:
    cfg = replace(config, seed=int(seed), lrs=(chosen["best_lr"],), weight_decays=(chosen["best_weight_decay"],),
                  isg_subjects=())
    result = experiment.run(study, cfg)
    models.append(result.model)
    seed_val_r[int(seed)] = result.summary()["val_r"]
seconds_train = time.perf_counter() - t0
print(f"{len(models)} model(s) of {config.decoder} on {study.backbone}; validation r per seed:",
      {s: round(r, 4) for s, r in seed_val_r.items()}, f"(extra seeds trained in {seconds_train:.0f} s)")

# %% [markdown]
# ## 3. Predictions without fMRI
# Features of each held-out stimulus are aligned to its target TRs exactly as for training (layer groups, 3-TR
# lag, overlap weights); the number of TRs is the target's. TRs whose lagged window has no features (the first
# three, and any past the features' end) are predicted as 0, the mean of the z-scored fMRI; the report counts
# them. A feature/target gap above 15 s stops here with the file named.

# %%
single, ensemble, reports = {}, {}, {}
for t in target_sets:
    single[t], reports[t] = submission.predict(models[0], study, targets[t], window=config.window)
    ensemble[t], _ = submission.predict(models, study, targets[t], window=config.window)
    print(f"{t}:")
    print(reports[t].to_string(index=False))

# %% [markdown]
# ## 4. The submission files
# Every format rule of the scorer is checked before anything is written: all four subjects, every episode,
# exactly the target rows, 1000 float columns, no NaN. The `.zip` is what the challenge site takes; reading it
# back and checking it again proves the file itself is valid.

# %%
files = {}
for t in target_sets:
    paths = submission.save_submission(ensemble[t], targets[t], out_dir, t)
    submission.check_submission(submission.load_submission(paths["zip"]), targets[t])
    files[t] = {k: project.portable_path(p) for k, p in paths.items()}  # relative to the repository root
    print(f"{t}: {paths['zip']} ({paths['zip'].stat().st_size / 1e6:.1f} MB), checked after reading back")

# %% [markdown]
# ## 5. Local score with the official metric
# Wherever held-out fMRI exists (the synthetic study's hidden truth; on real data, e.g. the OOD fMRI once
# released) the submission is scored as the challenge scores it: per subject and movie, 5 TRs dropped at each
# end of every episode, episodes of a movie concatenated (`chaplin1` + `chaplin2` = `chaplin`), Pearson r per
# parcel, means over parcels, movies and subjects.

# %%
fmri_root = synthetic.heldout_fmri_root(root) if synthetic.study_json_path(root).exists() else root
scores, rows = {}, []
for t in target_sets:
    truth = submission.load_heldout_fmri(fmri_root, targets[t])
    if not truth:
        print(f"{t}: no held-out fMRI under {fmri_root}; nothing to score")
        continue
    for name, preds in (("single", single[t]), ("ensemble", ensemble[t])):
        s = submission.score(preds, truth)
        scores[(t, name)] = s
        rows += [{"target_set": t, "model": name, "movie": m, "r": r}
                 for m, r in pd.DataFrame(s["per_movie"]).mean(axis=1).items()]
per_movie = pd.DataFrame(rows)
if len(per_movie):
    table = per_movie.pivot_table(index=["target_set", "movie"], columns="model", values="r")
    print(table.round(4).to_string())
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    table[["single", "ensemble"]].droplevel("target_set").plot.bar(ax=ax, rot=30)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    plotting.legend_beside(ax, ["single model", f"{len(models)}-seed ensemble"])
    ax.set_xlabel("movie (episodes concatenated as the scorer does)")
    ax.set_ylabel("official metric (r)")
    ax.set_title(f"held-out stimuli: 1 model vs {len(models)}-seed ensemble")
    plotting.save_figure(fig, "12_local_score", fig_dir)


def overall(name: str) -> float | None:
    """Mean of the target sets' official scores for one model choice (None when nothing was scored)."""
    values = [s["mean"] for (t, n), s in scores.items() if n == name]
    return float(np.mean(values)) if values else None


print(f"local score: single model {overall('single')}, ensemble of {len(models)} {overall('ensemble')}")

# %% [markdown]
# ## Summary
# The files under `runs/<size>/results/submission/` are what the challenge site takes. On the synthetic study the local
# score says how well the decoder generalises to stimuli it never saw, on the metric the challenge uses; compare
# the single model with the ensemble per movie above before deciding whether extra seeds are worth their time.

# %%
results = {
    "single_score": overall("single"),
    "ensemble_score": overall("ensemble"),
    "scores": {f"{t}/{n}": s["mean"] for (t, n), s in scores.items()},
    "per_movie": {f"{r.target_set}/{r.model}/{r.movie}": r.r for r in per_movie.itertuples()} if len(per_movie) else {},
    "n_models": len(models),
    "seeds": list(seed_val_r),
    "seed_val_r": {str(s): r for s, r in seed_val_r.items()},
    "n_episodes": int(sum(len(targets[t][layout.SUBJECTS[0]]) for t in target_sets)),
    "n_uncovered_trs": {t: int(reports[t].n_uncovered.sum()) for t in target_sets},
    "files": files,
    "backbone": study.backbone,
    "decoder": config.decoder,
    "seconds_train": seconds_train,
    "size": size,
    "dataset": dataset,
}
project.write_results("12_submission", results, results_dir)
{k: v for k, v in results.items() if k not in ("per_movie", "files")}

# %% [markdown]
# ## Try it
# Each solution is the cell below its question; it runs when the parameter `solutions` is `True` (set it in
# the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** The scorer rejects a submission with one episode missing. Drop an episode of one subject from the
# ensemble's predictions and see what `submission.check_submission` says.

# %% tags=["solution", "hide-cell"]
if solutions:
    t = target_sets[0]
    broken = {s: dict(eps) for s, eps in ensemble[t].items()}
    subject = layout.SUBJECTS[0]
    dropped = sorted(broken[subject])[0]
    del broken[subject][dropped]
    try:
        submission.check_submission(broken, targets[t])
    except ValueError as err:
        print(f"rejected: {err}")

# %% [markdown]
# **2.** How much do the first and last 5 TRs matter? Score the ensemble's predictions of one movie with
# `scipy.stats.pearsonr` per parcel on all TRs, and compare with the official score (which drops them).

# %% tags=["solution", "hide-cell"]
if solutions and scores:
    from mindlib import metrics

    t = next(t for (t, n) in scores)
    truth = submission.load_heldout_fmri(fmri_root, targets[t])
    subject = next(iter(truth))
    episode = sorted(truth[subject])[0]
    y, yhat = truth[subject][episode], ensemble[t][subject][episode]
    print(f"{subject} {episode}: r on every TR = {np.nanmean(metrics.pearson_r(yhat, y)):.3f}, "
          f"without 5 TRs at each end = {np.nanmean(metrics.pearson_r(yhat[5:-5], y[5:-5])):.3f}")
