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
# ---

# %% [markdown]
# # 05 · SADGate: subject-aware dynamic gating
#
# **Overview** 1) token router 2) subject prior 3) Top-K and renormalisation, by hand 4) the balance loss
# 5) what a trained gate does per subject and content type
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `figures/05_*.png`, `results/05_sadgate.json`
#
# For subject *s* and token $x_t$ (paper Eq. 1–3):
#
# $$p_t = \mathrm{softmax}(W_r (x_t + e_s) + b_r), \qquad \pi_s = \mathrm{softmax}(g + B_s), \qquad
# m_t = p_t \odot \pi_s,$$
#
# keep the K largest entries of $m_t$, renormalise them to sum to one, zeros elsewhere. $p_t$ follows the
# stimulus moment by moment; $\pi_s$ is a persistent preference of the subject; $B$ starts at zero, so every
# subject starts at the population prior $\mathrm{softmax}(g)$ and the $\lambda_2\|B\|^2$ penalty keeps it near.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
seed: int = 0  # seed of model initialisation, shuffling and dropout
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
n_experts: int = 8  # E
top_k: int = 2  # K experts kept per token
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # training epochs
results_dir: str = "../results"  # where the results file goes
fig_dir: str = "../figures"  # empty string: show figures, save none

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from mindlib import analysis, data, experiment, plotting, project, sadgate

root = project.resolve_dataset(dataset, size=size, seed=0)
torch.manual_seed(seed)

# %% [markdown]
# ## 1–3. One token, by hand
# A gate for 2 subjects and 4 experts; we give the population a mild preference (global logits $g$, which
# start at 0 in a fresh gate, so we set them here for the check to cover them), subject 1 a strong
# preference for expert 3, and compare the gate's decision with the formula computed in numpy.

# %%
cfg = sadgate.SADGateConfig(d_model=6, n_subjects=2, n_experts=4, top_k=2)
gate = sadgate.SADGate(cfg)
with torch.no_grad():
    gate.global_logits.copy_(torch.tensor([0.5, -0.3, 0.0, 0.2]))
    gate.subject_bias[1, 3] = 2.0
x = torch.randn(1, 1, 6)  # (B, T, d): one token
for s in (0, 1):
    out = gate(x, torch.tensor([s]))
    W_r, b_r = gate.router.weight.detach().numpy(), gate.router.bias.detach().numpy()
    e_s = gate.subject_embedding.weight[s].detach().numpy()
    logits = W_r @ (x[0, 0].numpy() + e_s) + b_r
    p = np.exp(logits - logits.max())
    p /= p.sum()
    prior = np.exp(gate.global_logits.detach().numpy() + gate.subject_bias[s].detach().numpy())  # softmax(g + B_s)
    prior /= prior.sum()
    m = p * prior
    keep = np.argsort(m)[-cfg.top_k:]
    w = np.zeros_like(m)
    w[keep] = m[keep] / m[keep].sum()
    print(f"subject {s}: p = {np.round(p, 3)}  π_s = {np.round(prior, 3)}")
    print(f"           w (numpy) = {np.round(w, 3)}   w (SADGate) = {np.round(out.weights[0, 0].detach().numpy(), 3)}")
    np.testing.assert_allclose(out.weights[0, 0].detach().numpy(), w, rtol=1e-5, atol=1e-6)

# %% [markdown]
# The same token goes to different experts for the two subjects: the prior tilts the choice.
#
# ## 4. The balance loss
# Without a push towards balance, sparse routers collapse onto a few experts. With importance
# $\mathrm{Imp}_e$ = mean router probability and load $\mathrm{Load}_e$ = share of tokens whose Top-K includes
# $e$ (divided by K), $L_\mathrm{bal} = E \sum_e \mathrm{Imp}_e \mathrm{Load}_e$ equals 1 when routing is uniform
# and grows towards E as it collapses.

# %%
B, T, E, K = 4, 50, 8, 2
uniform = sadgate.SADGate(sadgate.SADGateConfig(d_model=6, n_subjects=1, n_experts=E, top_k=K))
with torch.no_grad():
    uniform.router.weight.zero_()
    uniform.router.bias.zero_()
    balanced = uniform(torch.randn(B, T, 6), torch.zeros(B, dtype=torch.long))
    uniform.router.bias[0] = 8.0  # collapse onto experts 0 and 1
    uniform.router.bias[1] = 7.0
    collapsed = uniform(torch.randn(B, T, 6), torch.zeros(B, dtype=torch.long))
print(f"L_bal, uniform router: {sadgate.balance_loss(balanced).item():.3f}   "
      f"collapsed router: {sadgate.balance_loss(collapsed).item():.3f}")

# %% [markdown]
# ## 5. A trained gate
# We train MIND on the study (the protocol of notebook 06 with one learning rate) and read its gates over
# whole validation runs.

# %%
study = data.load_study(root, backbone)
config = experiment.ExperimentConfig(decoder="mind", n_experts=n_experts, top_k=top_k, d_model=d_model,
                                     epochs=epochs, lrs=(3e-3,), seed=seed)
result = experiment.run(study, config)
model = result.model
print(f"validation r = {result.summary()['val_r']:.3f}")
val = study.select("val")
gates = analysis.gate_runs(model, val)
active = float(np.mean([(g > 1e-6).sum(1).mean() for g in gates]))
print(f"(T, E) gates of {val[0].subject} {val[0].run}: {gates[0].shape};  active experts per TR ≈ {active:.2f}")

# %% [markdown]
# Gate weights over one run: a few experts take turns as the content changes.

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
plotting.plot_matrix(gates[0].T, ax=ax, xlabel="TR", ylabel="expert", title=f"gate weights, {val[0].subject} {val[0].run}")
plotting.save_figure(fig, "05_gate_run", fig_dir)

# %% [markdown]
# Subject priors $\pi_s$ (rows) and, on the synthetic study, mean gate weight per content type.

# %%
priors = analysis.subject_priors(model)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
plotting.plot_matrix(priors, ax=axes[0], xlabel="expert", ylabel="subject", yticklabels=list(study.subjects),
                     title="subject prior softmax(g + B_s)")
labels, names = analysis.content_labels(root, val)  # true content types, or speech vs none on real data
usage = analysis.usage_by_label(gates, labels, len(names), valid=[r.valid for r in val])
plotting.plot_matrix(usage, ax=axes[1], xlabel="expert", yticklabels=names, title="mean gate weight per content")
plotting.save_figure(fig, "05_priors_usage", fig_dir)

# %% [markdown]
# ## Summary
# SADGate multiplies a moment-to-moment token router with a persistent subject prior and keeps K experts;
# the balance loss keeps experts in use. Notebook 09 compares learned experts with the true response modes.

# %%
model.eval()  # train.fit hands the model back in eval mode; said here too: the balance of the gate as used, no dropout
with torch.no_grad():
    sample = next(iter(torch.utils.data.DataLoader(data.WindowDataset(val), batch_size=4, collate_fn=data.collate_windows)))
    sample_gate = model(sample["features"], sample["subject"]).gate
    bal = {kind: float(sadgate.balance_loss(sample_gate, kind=kind).item()) for kind in sadgate.BALANCES}
results = {"active_experts_per_token": active, "balance_loss": bal[model.config.balance], "balance_loss_by_kind": bal,
           "val_r": result.summary()["val_r"], "prior_spread": float(priors.std(0).mean())}
project.write_results("05_sadgate", results, results_dir)
results
