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
# **Overview** 1) three backbones, three feature shapes, one interface 2) the fusion operators (concat, sum,
# gated), recomputed by hand 3) missing modalities: the modality mask, modality dropout and
# `analysis.WithoutModalities`, by hand. Nothing is trained here: the trained comparison is notebook 08, Table 3.
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/03_modality_dropout.png`, `<results_dir>/03_afire.json`
#
# AFIRE turns TR-aligned features into tokens `(B, T, d)`: per modality a projector `G·D_m → d` over the
# averaged layer groups, a fusion operator over modalities, then a light temporal module (learned positional
# encoding + temporal MLP over ±2 TRs + LayerNorm). A backbone is attached by its feature shapes alone.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation and of the modality-dropout draws
backbone: str = "tribe"  # a multi-modality feature store for the fusion and missing-modality checks
d_model: int = 128  # d, AFIRE token dim
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from mindlib import afire, analysis, data, decoder, models, plotting, project

torch.manual_seed(seed)
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
# ## 2. Fusion operators, by hand
# With $z_{t,m} = P_m(x_{t,m}) \in \mathbb{R}^d$ the projection of modality $m$ (M modalities):
#
# - `concat`: $W_f [z_{t,1}; \dots; z_{t,M}] + b_f$, the $M\cdot d$ concatenation mapped back to d;
# - `sum`: $\sum_m z_{t,m}$;
# - `gated`: $\sum_m a_m z_{t,m}$ with $a = \mathrm{softmax}(\ell)$, one learned logit $\ell_m$
#   (`fusion_logits`) per modality.
#
# The fused tokens then get the positional encoding and go through the temporal module. We build an untrained
# AFIRE with each operator on one batch of two windows, recompute the fusion in numpy from the module's own
# projectors and fusion weights, and compare it with what the module hands its temporal module (read with a
# forward pre-hook). A fresh `gated` AFIRE starts at $\ell = 0$ (equal weights), so we set unequal logits for the
# check to cover the softmax. The helper takes a presence mask too; section 3 uses it.

# %%
study = data.load_study(root, backbone, features_root=features_root)
names = list(study.modalities)
windows = data.WindowDataset(study.records[:2])
batch = data.collate_windows([windows[0], windows[len(windows) - 1]])
features = batch["features"]  # {m: (B, T, F_m)}
B, T = batch["fmri"].shape[:2]


def fuse_by_hand(module, features, present=None):
    """AFIRE's fusion recomputed in numpy from the module's projectors and weights, (B, T, d).

    ``present`` (B, M) bool: concat zeroes an absent modality's projection; sum rescales the present ones by
    M / n_present; gated takes the softmax of ``fusion_logits`` over the present modalities only.
    """
    cfg = module.config
    with torch.no_grad():
        z = np.stack([module.projectors[m](features[n]).numpy() for m, n in enumerate(cfg.names)], axis=2)
    B, T, M, d = z.shape  # (B, T, M, d) projections
    present = np.ones((B, M), bool) if present is None else np.asarray(present, bool)
    if cfg.fusion == "concat":
        W_f, b_f = module.fuse.weight.detach().numpy(), module.fuse.bias.detach().numpy()  # (d, M·d), (d,)
        return (z * present[:, None, :, None]).reshape(B, T, M * d) @ W_f.T + b_f
    if cfg.fusion == "sum":
        w = present * (M / present.sum(axis=1, keepdims=True))  # (B, M): 1 per modality when all are present
    else:
        a = np.where(present, np.exp(module.fusion_logits.detach().numpy()), 0.0)
        w = a / a.sum(axis=1, keepdims=True)  # softmax over the present modalities
    return np.einsum("btmd,bm->btd", z, w)


def fused_in_module(module, features, modality_mask=None):
    """What the module's fusion produced (its temporal module's input minus the positional encoding), and
    the module's output tokens."""
    seen = {}
    handle = module.temporal.register_forward_pre_hook(lambda _, args: seen.update(x=args[0]))
    with torch.no_grad():
        tokens = module(features, modality_mask)
        pos = module.pos_embedding[: tokens.shape[1]] if module.config.temporal != "none" else 0.0
        fused = (seen["x"] - pos).numpy()
    handle.remove()
    return fused, tokens


n_parameters, gaps = {}, {}
for fusion in afire.FUSIONS:
    module = afire.AFIRE(afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, fusion=fusion)).eval()
    if fusion == "gated":
        with torch.no_grad():
            module.fusion_logits.copy_(torch.linspace(-1.0, 1.0, len(names)))
    by_hand = fuse_by_hand(module, features)
    fused, tokens = fused_in_module(module, features)
    np.testing.assert_allclose(fused, by_hand, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the rest of AFIRE: positional encoding, then the temporal module
        rest = module.temporal(torch.from_numpy(by_hand).float() + module.pos_embedding[:T]).numpy()
    np.testing.assert_allclose(tokens.numpy(), rest, rtol=1e-4, atol=1e-4)
    gaps[fusion] = float(np.abs(fused - by_hand).max())
    n_parameters[fusion] = decoder.n_parameters(module, trainable_only=True)
    extra = ""
    if fusion == "gated":
        extra = f";  modality weights softmax(ℓ) = { {m: round(w, 3) for m, w in zip(names, torch.softmax(module.fusion_logits, 0).tolist())} }"
    print(f"{fusion:>7}: max |module - by hand| = {gaps[fusion]:.1e};  {n_parameters[fusion]:,} parameters{extra}")
M, d = len(names), d_model
assert n_parameters["concat"] - n_parameters["sum"] == M * d * d + d  # W_f (d, M·d) and b_f (d,)
assert n_parameters["gated"] - n_parameters["sum"] == M  # one logit per modality
print(f"concat - sum = M·d·d + d = {M * d * d + d:,} (W_f, b_f);  gated - sum = M = {M} (fusion_logits)")

# %% [markdown]
# ## 3. Missing modalities, by hand
# The paper lists robustness to missing modalities as future work; AFIRE ships a mask. A `modality_mask`
# `(B, M)` (True = present, in `AFIREConfig.modalities` order) marks absent inputs per window, and a modality left
# out of the `features` dict is absent for every window. What the fusion does with an absent modality is in
# `fuse_by_hand` above: `concat` zeroes its projection (the fuse layer keeps its input size), `sum` adds the
# present projections rescaled by M / n_present, `gated` takes the softmax of `fusion_logits` over the present
# modalities only. A window needs at least one modality. We check all three on a batch whose first window has
# every modality and whose second lacks the first one, and that leaving a modality out of the dict is the same
# as masking it.

# %%
mask = torch.ones(B, len(names), dtype=torch.bool)
mask[1, 0] = False  # window 1 lacks names[0]
missing_gaps = {}
for fusion in afire.FUSIONS:
    module = afire.AFIRE(afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, fusion=fusion)).eval()
    if fusion == "gated":
        with torch.no_grad():
            module.fusion_logits.copy_(torch.linspace(-1.0, 1.0, len(names)))
    fused, tokens = fused_in_module(module, features, mask)
    by_hand = fuse_by_hand(module, features, mask.numpy())
    np.testing.assert_allclose(fused, by_hand, rtol=1e-4, atol=1e-5)
    missing_gaps[fusion] = float(np.abs(fused - by_hand).max())
    if len(names) > 1:  # leaving names[0] out of the dict = masking it in every window
        _, left_out = fused_in_module(module, {m: x for m, x in features.items() if m != names[0]})
        _, masked = fused_in_module(module, features, torch.tensor([[m != names[0] for m in names]] * B))
        np.testing.assert_allclose(left_out.numpy(), masked.numpy(), rtol=1e-5, atol=1e-6)
    print(f"{fusion:>7}: window 1 without {names[0]!r}: max |module - by hand| = {missing_gaps[fusion]:.1e};  "
          f"window 0 unchanged: {bool(np.allclose(fused[0], fuse_by_hand(module, features)[0], atol=1e-5))}")

# %% [markdown]
# **Modality dropout** (training only): with `AFIREConfig(modality_dropout=p)` a module in training mode drops each
# present modality of each window with probability p, one draw per window (the whole window loses it, every
# TR), and gives one random modality back to a window that lost them all. The fusion then reads that mask exactly
# as above. So modality $m$ is dropped with probability $p - p^M/M$; in evaluation mode nothing is dropped. We
# draw the masks of 20,000 windows (`AFIRE._drop_modalities`, the step `forward` runs first).

# %%
p_drop, n_windows = 0.2, 20_000  # the dropout rate of the demonstration, and how many windows we draw
module = afire.AFIRE(afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, modality_dropout=p_drop))
all_present = torch.ones(n_windows, len(names), dtype=torch.bool)
kept = module.train()._drop_modalities(all_present)
print(f"P(modality dropped) measured { {m: round(q, 4) for m, q in zip(names, (1 - kept.float().mean(0)).tolist())} };  "
      f"p - p^M/M = {p_drop - p_drop ** len(names) / len(names):.4f};  windows left empty: {int((~kept.any(1)).sum())}")
assert bool(module.eval()._drop_modalities(all_present).all())  # evaluation: every modality kept
print("evaluation mode: every modality kept")

# %% [markdown]
# How many modalities a training window keeps: each one survives with probability 1 − p independently, and a
# window that lost all of them gets one back, so P(k kept) = C(M, k)(1 − p)^k p^(M − k) for k ≥ 1, plus p^M at
# k = 1. Measured (bars) against that formula (dots).

# %%
M = len(names)
n_kept = kept.sum(1).numpy()
measured = np.array([(n_kept == k).mean() for k in range(1, M + 1)])
expected = np.array([math.comb(M, k) * (1 - p_drop) ** k * p_drop ** (M - k) for k in range(1, M + 1)])
expected[0] += p_drop**M
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(range(1, M + 1), measured, 0.6, label=f"measured over {n_windows:,} windows")
ax.plot(range(1, M + 1), expected, "ko", label="formula")
ax.set_xticks(range(1, M + 1))
ax.set_xlabel("modalities kept in a training window")
ax.set_ylabel("share of windows")
ax.set_title(f"modality dropout p = {p_drop}, M = {M}")
ax.legend(fontsize=8, frameon=False)
plotting.save_figure(fig, "03_modality_dropout", fig_dir)
print("share of windows keeping k modalities:", dict(zip(range(1, M + 1), measured.round(4))),
      "formula:", dict(zip(range(1, M + 1), expected.round(4))))
np.testing.assert_allclose(measured, expected, atol=0.01)  # 20,000 draws: within about 3 standard errors

# %% [markdown]
# At inference a trained model is scored without a modality through `analysis.WithoutModalities(model, [m])`: a
# wrapper that passes the model a mask with `m` absent in every window. We wrap an untrained MIND (AFIRE with
# `concat`, then SADGate and the experts) and check that the prediction keeps its shape `(B, T, V)` and that the
# tokens AFIRE hands the gate are the masked fusion by hand, followed by the positional encoding and the temporal
# module.

# %%
mind = models.build_model("mind", afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model),
                          n_subjects=len(study.subjects), n_parcels=study.n_parcels).eval()
seen = {}
handle = mind.afire.register_forward_hook(lambda _, args, out: seen.update(tokens=out))
with torch.no_grad():
    full = mind(features, batch["subject"]).pred
    without = {}
    for m in names if len(names) > 1 else []:
        without[m] = analysis.WithoutModalities(mind, [m])(features, batch["subject"]).pred
        present = np.array([[n != m for n in names]] * B)
        by_hand = mind.afire.temporal(torch.from_numpy(fuse_by_hand(mind.afire, features, present)).float()
                                      + mind.afire.pos_embedding[:T])
        missing_gaps[f"MIND without {m}"] = float((seen["tokens"] - by_hand).abs().max())
        np.testing.assert_allclose(seen["tokens"].numpy(), by_hand.numpy(), rtol=1e-4, atol=1e-4)
        assert without[m].shape == full.shape
handle.remove()
print(f"all modalities: prediction {tuple(full.shape)}")
for m, pred in without.items():
    print(f"without {m!r}: prediction {tuple(pred.shape)};  max |tokens - by hand| = {missing_gaps[f'MIND without {m}']:.1e};  "
          f"max |prediction change| = {float((pred - full).abs().max()):.3f}")

# %% [markdown]
# How much a *trained* model loses when a modality goes missing, with and without modality dropout in training,
# and which fusion operator scores best, are measured in notebook 08, Table 3 ("AFIRE fusion and missing
# modalities"): the same protocol as the other tables, over seeds.
#
# ## Summary
# Any backbone attaches through its feature shapes alone. The three fusion operators are a few lines each
# (recomputed above from the module's own weights); they differ in size only by the concat layer's $M d^2 + d$
# weights and the gate's M logits. An absent modality is zeroed (concat) or left out of a renormalised sum (sum,
# gated), per window; modality dropout draws such masks in training, and `analysis.WithoutModalities` sets one at
# inference. The checks are in `results/03_afire.json`; the trained comparison is notebook 08, Table 3.

# %%
results = {
    "n_parameters_by_fusion": n_parameters,
    "max_abs_fusion_by_hand": max(gaps.values()),
    "max_abs_missing_by_hand": max(missing_gaps.values()),
    "modalities": names,
}
project.write_results("03_afire", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** With `gated` fusion, give modality 0 a logit 5 above the others. How much weight does it get with every
# modality present, and how much do the others get when it is missing? Check against `fuse_by_hand`.

# %% tags=["solution", "hide-cell"]
if solutions:
    module = afire.AFIRE(afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, fusion="gated")).eval()
    with torch.no_grad():
        module.fusion_logits.zero_()
        module.fusion_logits[0] = 5.0
    w_all = [round(w, 3) for w in torch.softmax(module.fusion_logits, 0).tolist()]
    w_rest = [round(w, 3) for w in torch.softmax(module.fusion_logits[1:], 0).tolist()]
    print(f"all present: {dict(zip(names, w_all))};  without {names[0]!r}: {dict(zip(names[1:], w_rest))}")
    fused, _ = fused_in_module(module, features, mask)
    print(f"max |module - by hand| with window 1 missing {names[0]!r}: {np.abs(fused - fuse_by_hand(module, features, mask.numpy())).max():.1e}")

# %% [markdown]
# **2.** With modality dropout p = 0.5, what share of training windows keeps 1, 2, ..., M modalities? Work it out by
# hand (each modality kept with probability 1 - p, a window that lost them all gets one back), then draw the
# masks with `_drop_modalities` as in section 3.

# %% tags=["solution", "hide-cell"]
if solutions:
    from math import comb

    p_half, M = 0.5, len(names)
    expected = {n: comb(M, n) * (1 - p_half) ** n * p_half ** (M - n) for n in range(1, M + 1)}
    expected[1] += p_half**M  # the windows that lost everything keep one modality
    drawn = afire.AFIRE(afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model, modality_dropout=p_half))
    counts = drawn.train()._drop_modalities(all_present).sum(1)
    measured = {n: round(float((counts == n).float().mean()), 4) for n in range(1, M + 1)}
    print(f"by hand {({n: round(q, 4) for n, q in expected.items()})};  measured over {n_windows:,} windows {measured}")
