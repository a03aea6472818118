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
# # 10 · Visualisations: where the models work and what the experts do
#
# **Overview** 1) parcel-wise Pearson maps per backbone on the cortex (the paper's Fig. 3) 2) gate weights over a
# whole run and expert usage against content type 3) subject × expert priors 4) on the synthetic study, learned
# experts against the true response modes 5) each subject's effective prior against the true subject bias
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores; it reads what notebook 08 wrote)
# **Writes** `<fig_dir>/10_*.png`, `<results_dir>/10_visualisations.json`

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
backbones: list = ["tribe", "imagebind", "qwen"]  # MIND runs of notebook 08 to map
run_seed: int = 0  # model seed of the notebook 08 runs to show (their tags end in -s<run_seed>)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mindlib import analysis, data, experiment, grid, plotting, project, synthetic

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)
runs = Path(results_dir) / "runs"
tags = {b: f"{b}-mind-both-s{run_seed}" for b in backbones}
missing = [t for t in tags.values() if not (runs / f"{t}_parcel_r.npy").exists()]
if missing:
    raise FileNotFoundError(f"no results for {missing} in {runs}: run notebook 08 on this dataset first, " + (
        f"python -m mindlib.notebooks --size {size} --only 08" if dataset == "synthetic" else
        f"papermill 08_tables.ipynb 08_run.ipynb -p dataset {dataset} -p features_root '{features_root}' -y "
        f"'{{backbones: [{', '.join(backbones)}], seeds: [{run_seed}]}}' -p results_dir {results_dir} (in notebooks/)"))

# %% [markdown]
# ## 1. Parcel-wise Pearson r per backbone (MIND)
# Test r per parcel, averaged over subjects and runs. Similar maps across backbones mean the decoder, not
# the fusion style, sets where prediction works.

# %%
maps = {b: np.load(runs / f"{t}_parcel_r.npy") for b, t in tags.items()}
vmax = float(np.nanpercentile(np.concatenate(list(maps.values())), 99))
for b, m in maps.items():
    split = project.read_results(f"runs/{tags[b]}", results_dir)["split_scored"]  # test, or val without test runs
    fig = plotting.plot_brain_map(m, title=f"{b} · MIND: {split} r per parcel", vmin=0.0, vmax=vmax)
    plotting.save_figure(fig, f"10_brain_{b}", fig_dir)
names = list(maps)
similarity = np.array([[np.corrcoef(maps[a], maps[b])[0, 1] for b in names] for a in names])
print("correlation of parcel maps across backbones:\n", np.round(similarity, 3))
fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), sharey=True)
for ax, b in zip(np.atleast_1d(axes), names):
    plotting.plot_network_bars(maps[b], ax=ax, title=b)
plotting.save_figure(fig, "10_networks", fig_dir)

# %% [markdown]
# ## 2–3. Experts against content, and subject priors
# We reload the first backbone's MIND from notebook 08 and read its gates over the test runs (every TR of whole
# runs, `analysis.gate_runs`). Models are not committed: on a clone that resumed the grid from committed results,
# `grid.cell_model` first rebuilds a missing model by rerunning its cell at its chosen learning rate and prints its
# validation r beside the recorded one. First the gate weights of every expert over one run: which experts the
# gate keeps, TR by TR.

# %%
first = names[0]
study = data.load_study(root, first, features_root=features_root)
model, config = experiment.load(grid.cell_model(runs, tags[first]), study)  # rebuilt if this clone lacks it
recs = study.select("test") or study.select("val")
gates = analysis.gate_runs(model, recs)
is_synthetic = synthetic.study_json_path(root).exists()
active = float(np.mean([(g[r.valid] > 1e-6).sum(1).mean() for g, r in zip(gates, recs)]))
print(f"(T, E) gates of {recs[0].subject} {recs[0].run}: {gates[0].shape};  active experts per TR ≈ {active:.2f} "
      f"(K = {model.config.top_k}; overlapping windows are averaged, so a TR can mix more)")
fig, ax = plt.subplots(figsize=(9, 2.8))
plotting.plot_matrix(gates[0].T, ax=ax, xlabel="TR", ylabel="expert", colorbar_label="gate weight w",
                     title=f"{first} · MIND: gate weights, {recs[0].subject} {recs[0].run}")
plotting.save_figure(fig, "10_gate_run", fig_dir)

# %% [markdown]
# Mean gate weight per content type, and per subject. The subject panel shows the effective prior (the logit
# offset that routes, centred over subjects), not $\mathrm{softmax}(g + B_s)$ alone: in mode `both` $B_s$ and
# $W_r e_s$ route only through their sum (notebook 04, section 5), and a trained model can carry the subject
# effect in either.

# %%
labels, label_names = analysis.content_labels(root, recs)  # true content types, or speech vs none on real data
usage = analysis.usage_by_label(gates, labels, len(label_names), valid=[r.valid for r in recs])
offset = analysis.subject_logits(model)  # (S, E) effective prior g + B_s + W_r e_s + b_r (notebook 04, section 5)
offset = offset - offset.mean(0)  # how each subject differs from the population
fig, axes = plt.subplots(1, 2, figsize=(11, 3), layout="constrained")
plotting.plot_matrix(usage, ax=axes[0], xlabel="expert", yticklabels=label_names, title="mean gate weight per content type",
                     colorbar_label="mean w")
plotting.plot_matrix(offset, ax=axes[1], xlabel="expert", yticklabels=list(study.subjects), cmap="RdBu_r",
                     vmin=-np.abs(offset).max(), vmax=np.abs(offset).max(), colorbar_label="logit offset",
                     title="effective subject prior g + B_s + W_r e_s + b_r (centred)")
plotting.save_figure(fig, "10_experts", fig_dir)
with np.errstate(all="ignore"):
    selectivity = float(np.nanmean(np.nanstd(usage, axis=0) / np.nanmean(usage, axis=0)))
print(f"content selectivity of experts (mean coefficient of variation across content types): {selectivity:.3f}")

# %% [markdown]
# ## 4. Learned experts vs the true response modes (synthetic study only)
# The generator mixes a few true response modes with content- and subject-dependent gates. For each true
# mode we find the learned expert whose weight over time follows it best.

# %%
recovery = None
if is_synthetic:
    truth = synthetic.load_ground_truth(root)
    true = np.concatenate([truth["subjects"][r.subject]["gates_tr"][r.run][r.valid] for r in recs])
    learned = np.concatenate([g[r.valid] for g, r in zip(gates, recs)])
    corr, recovery = analysis.match_experts(learned, true)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    plotting.plot_matrix(corr, ax=ax, xlabel="learned expert", yticklabels=list(truth["mode_names"]),
                         title="r(true mode gate, learned expert weight)", cmap="RdBu_r", vmin=-1, vmax=1,
                         colorbar_label="Pearson r")
    plotting.save_figure(fig, "10_gate_recovery", fig_dir)
    print(f"gate recovery (mean best |r| per true mode): {recovery:.3f}")

# %% [markdown]
# ## 5. Each subject's effective routing, for every trained MIND (synthetic study only)
# A subject's routing prefers experts through one logit offset $o_s = g + B_s + W_r e_s + b_r$ (notebook 04,
# section 5). For the MIND of each backbone: experts matched one-to-one to the true modes (Hungarian, on
# within-run correlations over time), then per subject the r over modes between its learned and its true
# deviation from the population, for the effective prior and for the mean routing over its test runs.

# %%
routing, detail = {}, None
if is_synthetic:
    for b, t in tags.items():
        st = study if b == first else data.load_study(root, b)
        m, _ = experiment.load(grid.cell_model(runs, t), st)
        rr = analysis.subject_routing(m, root, st.select("test") or st.select("val"))
        routing[b] = {k: rr[k] for k in ("prior_r", "usage_r", "prior_r_mean", "usage_r_mean", "logit_spread")}
        if b == first:
            detail = rr  # drawn in full below
        print(f"{b}: effective prior r per subject {({k: round(v, 2) for k, v in rr['prior_r'].items()})}, "
              f"mean routing r {({k: round(v, 2) for k, v in rr['usage_r'].items()})}")
    fig, ax = plt.subplots(figsize=(7, 2.8), layout="constrained")
    width = 0.8 / max(len(routing), 1)
    for i, (b, rr) in enumerate(routing.items()):
        ax.bar(np.arange(len(rr["prior_r"])) + i * width, list(rr["prior_r"].values()), width, label=b)
    ax.set_xticks(np.arange(len(study.subjects)) + 0.4 - width / 2, labels=list(routing[first]["prior_r"]))
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("r(learned, true) over modes")
    ax.set_title("effective subject prior against the true subject bias")
    plotting.legend_beside(ax, title="backbone", fontsize=7)
    plotting.save_figure(fig, "10_subject_routing", fig_dir)

# %% [markdown]
# The first backbone's MIND in detail: its effective prior $o_s$ and the true subject bias, both centred over
# subjects and with experts in the order of the modes they were matched to, then one against the other, with the
# per-subject r. The spread of $o_s$ over subjects (std over subjects, mean over experts) is split into its
# $B_s$ and $W_r e_s$ parts: which parametrisation of notebook 04, section 5 the trained model used.

# %%
if detail is not None:
    e = detail["expert_of_mode"]
    o = detail["logits"][:, e] - detail["logits"][:, e].mean(0)
    t = detail["true_bias"] - detail["true_bias"].mean(0)
    print(f"{first}: spread over subjects of the effective prior {detail['logit_spread']:.3f} "
          f"(B_s part {detail['bias_spread']:.3f}, W_r e_s part {detail['embedding_spread']:.3f})")
    print("r(effective prior, true bias) per subject:", {k: round(v, 2) for k, v in detail["prior_r"].items()})
    print("r(log mean routing, log true mean gate) per subject:", {k: round(v, 2) for k, v in detail["usage_r"].items()})
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4), layout="constrained")
    modes = [f"{m} (e{x})" for m, x in zip(detail["mode_names"], e)]
    plotting.plot_matrix(o, ax=axes[0], xticklabels=modes, yticklabels=detail["subjects"], cmap="RdBu_r",
                         vmin=-abs(o).max(), vmax=abs(o).max(), title=f"{first}: learned effective prior o_s (centred)",
                         colorbar_label="logit offset")
    plotting.plot_matrix(t, ax=axes[1], xticklabels=modes, yticklabels=detail["subjects"], cmap="RdBu_r",
                         vmin=-abs(t).max(), vmax=abs(t).max(), title="true subject bias (centred)",
                         colorbar_label="true bias")
    for i, s in enumerate(detail["subjects"]):
        axes[2].scatter(t[i], o[i], label=f"{s}: r = {detail['prior_r'][s]:.2f}")
    axes[2].set_xlabel("true bias")
    axes[2].set_ylabel("learned offset")
    axes[2].legend(fontsize=7)
    plotting.save_figure(fig, "10_effective_prior", fig_dir)

# %% [markdown]
# ## 6. Scores as a fraction of the noise ceiling, per network
# Test r per parcel of every Table 1 decoder on the first backbone, divided network by network by the best r a
# model can reach: on the synthetic study the true ceiling (r of clean vs measured signal), on real data the
# square root of the repeat-to-repeat r (`analysis.repeat_ceilings`; about what a perfect model reaches against
# one noisy repeat). Mean over subjects of both.

# %%
if is_synthetic:
    truth_c = synthetic.load_ground_truth(root, subjects=list(study.subjects))
    ceiling = np.mean([truth_c["subjects"][s]["noise_ceiling"] for s in study.subjects], axis=0)
    ceiling_source = "synthetic truth"
else:
    reps = analysis.repeat_ceilings(study.records)
    ceiling = np.mean([np.sqrt(np.clip(c, 0, None)) for c in reps.values()], axis=0) if reps else None
    ceiling_source = "sqrt(repeat r)"
networks = plotting.schaefer_fsaverage5()["networks"]
fractions = {}
if ceiling is not None:
    for path in sorted(runs.glob(f"{first}-*-both-s{run_seed}_parcel_r.npy")):
        decoder = path.name.split("-")[1]
        fractions[decoder] = analysis.ceiling_fraction_by_network(np.load(path), ceiling, networks)
    frac_table = pd.DataFrame(fractions).T
    print(f"fraction of the noise ceiling ({ceiling_source}), {first}:\n", frac_table.round(2))
    fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    frac_table.T.plot.bar(ax=ax, rot=0)
    plotting.legend_beside(ax, title="decoder", fontsize=7)
    ax.set_ylabel("r / noise ceiling")
    ax.set_title(f"{first}: share of the noise ceiling per network ({ceiling_source})")
    plotting.save_figure(fig, "10_ceiling_fraction", fig_dir)

# %% [markdown]
# ## Summary
# Where prediction works on the cortex, how the gate takes experts over a run, whether experts specialise by
# content, how far subject priors move from the population, and (synthetic) how closely learned experts follow the
# true modes and each subject's effective prior its true bias, carried by $B_s$ or by $W_r e_s$ — the numbers are
# in `results/10_visualisations.json`.

# %%
results = {
    "gate_recovery": recovery,
    "map_similarity": {f"{a}~{b}": float(similarity[i, j]) for i, a in enumerate(names) for j, b in enumerate(names) if i < j},
    "content_selectivity": selectivity,
    "mean_parcel_r": {b: float(np.nanmean(m)) for b, m in maps.items()},
    "subject_routing": routing,
    "active_experts_per_token": active,
    "ceiling_fraction_by_network": fractions,
    "ceiling_source": ceiling_source,
}
if detail is not None:  # the first backbone's MIND in full
    results["subject_routing_detail"] = {
        "backbone": first,
        **{k: detail[k] for k in ("prior_r", "usage_r", "prior_r_mean", "usage_r_mean", "logit_spread", "bias_spread",
                                  "embedding_spread")},
        "expert_of_mode": dict(zip(detail["mode_names"], map(int, detail["expert_of_mode"]))),
    }
project.write_results("10_visualisations", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** What share of parcels reaches r > 0.1 on each backbone, and in which networks do they sit?

# %% tags=["solution", "hide-cell"]
if solutions:
    nets = plotting.schaefer_fsaverage5()["networks"]
    for b, m in maps.items():
        above = m > 0.1
        counts = {n: int(above[nets == n].sum()) for n in plotting.NETWORKS}
        print(f"{b}: {above.mean():.0%} of parcels above r = 0.1; per network {counts}")

# %% [markdown]
# **2.** Which expert carries the most weight for each content type?

# %% tags=["solution", "hide-cell"]
if solutions:
    print({name: int(np.nanargmax(row)) for name, row in zip(label_names, usage)})
