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
# # 04 · SADGate: subject-aware dynamic gating
#
# **Overview** 1) token router 2) subject prior 3) Top-K and renormalisation, by hand 4) the balance loss
# 5) one subject offset, two parametrisations, by hand. Nothing is trained here: notebook 08 (Table 4) measures
# which parametrisation recovers subjects, notebook 10 shows what a trained gate does.
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/04_one_token.png`, `<results_dir>/04_sadgate.json`
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
size: str = "demo"  # study size of the story run; here it only names the output folders
seed: int = 0  # seed of the random tokens and gate parameters
n_experts: int = 8  # E of the section 5 gate
top_k: int = 2  # K experts kept per token in the section 5 gate
d_model: int = 128  # d of the section 5 gate (token dim, as in AFIRE)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import copy
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch

from mindlib import plotting, project, sadgate

torch.manual_seed(seed)
results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)

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
gaps_token, parts = [], []
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
    gaps_token.append(float(np.abs(out.weights[0, 0].detach().numpy() - w).max()))
    parts.append({"token router p_t": p, "subject prior π_s": prior, "gate weight w (Top-K, renormalised)": w})

# %% [markdown]
# The same numbers as pictures: per subject, the router's distribution, the prior, and the weights the gate keeps.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True, layout="constrained")
for s, (ax, bars) in enumerate(zip(axes, parts)):
    for i, (label, values) in enumerate(bars.items()):
        ax.bar(np.arange(cfg.n_experts) + (i - 1) * 0.27, values, 0.27, label=label)
    ax.set_xticks(range(cfg.n_experts), labels=[f"expert {e}" for e in range(cfg.n_experts)])
    ax.set_title(f"subject {s}: one token")
axes[0].set_ylabel("probability / weight")
plotting.legend_beside(axes[1], fontsize=7, frameon=False)
plotting.save_figure(fig, "04_one_token", fig_dir)

# %% [markdown]
# The same token goes to different experts for the two subjects: the prior tilts the choice.
#
# ## 4. The balance loss
# Without a push towards balance, sparse routers collapse onto a few experts. With importance
# $\mathrm{Imp}_e$ = mean router probability and load $\mathrm{Load}_e$ = share of tokens whose Top-K includes
# $e$ (divided by K), the default $L_\mathrm{bal} = E \sum_e \mathrm{Imp}_e^2$ (what the authors' code computes)
# and the paper's $E \sum_e \mathrm{Imp}_e \mathrm{Load}_e$ (Eq. 6, `kind="switch"`) both equal 1 when routing is
# uniform and grow towards E as it collapses. Notebook 08 trains MIND with each (Tables 2 and 4): validation r is
# the same, and the default recovers the subjects' routing better (docs/method.md §7).

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
for kind in sadgate.BALANCES:
    print(f"L_bal ({kind}), uniform router: {sadgate.balance_loss(balanced, kind=kind).item():.3f}   "
          f"collapsed router: {sadgate.balance_loss(collapsed, kind=kind).item():.3f}")

# %% [markdown]
# ## 5. One subject offset, two parametrisations
# In mode `both` the subject enters the routing twice: through $e_s$ on the token router's input and through
# $B_s$ in the prior. Since $\mathrm{softmax}(a) \odot \mathrm{softmax}(b) \propto \exp(a + b)$ and the Top-K
# and the renormalisation do not see a positive factor common to a token's entries,
#
# $$\mathrm{Renorm}(\mathrm{TopK}(\mathrm{softmax}(W_r(x_t + e_s) + b_r) \odot \mathrm{softmax}(g + B_s)))
# = \mathrm{Renorm}(\mathrm{TopK}(\mathrm{softmax}(W_r x_t + o_s))), \qquad o_s = g + B_s + W_r e_s + b_r,$$
#
# so $B_s$ and $W_r e_s$ are two parametrisations of one per-subject logit offset $o_s$ (the **effective prior**,
# `SADGate.subject_logits`; `analysis.subject_logits` reads it from a MIND), and only their sum routes; a
# constant added to every expert does not route either. The loss penalises only the $B_s$ route
# ($\lambda_2\|B\|^2$, paper Eq. 5; AdamW's weight decay shrinks $e_s$, $W_r$ and $B$ alike), which makes it the
# costlier one: a trained model can carry the subject effect in $W_r e_s$ instead, and then
# $\mathrm{softmax}(g + B_s)$ alone says little about what a subject's routing prefers.
#
# We check it on an untrained gate of the size MIND uses (`d_model`, `n_experts`, `top_k`), with every part of
# $o_s$ set to nonzero values: the gate's weights against the right-hand side in numpy, for 20 tokens of each of
# two subjects.

# %%
cfg5 = sadgate.SADGateConfig(d_model=d_model, n_subjects=2, n_experts=n_experts, top_k=top_k)
gate5 = sadgate.SADGate(cfg5).eval()
with torch.no_grad():
    gate5.global_logits.copy_(0.5 * torch.randn(n_experts))  # g
    gate5.subject_bias.copy_(torch.randn(2, n_experts))  # B_s, one row per subject
    gate5.subject_embedding.weight.copy_(0.3 * torch.randn(2, d_model))  # e_s
    gate5.router.bias.copy_(0.3 * torch.randn(n_experts))  # b_r (W_r keeps its initialisation)
tokens5 = torch.randn(2, 20, d_model)  # (B, T, d): window b belongs to subject b
subjects5 = torch.tensor([0, 1])


def route_by_offset(x, W_r, o, k):
    """Renorm(TopK(softmax(W_r x_t + o_s))) in numpy: x (B, T, d), o (B, E) the offset of each window's subject."""
    logits = x @ W_r.T + o[:, None, :]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    keep = np.argsort(p, axis=-1)[..., -k:]
    w = np.zeros_like(p)
    np.put_along_axis(w, keep, np.take_along_axis(p, keep, -1), -1)
    return w / w.sum(-1, keepdims=True)


def offset_by_hand(gate):
    """o_s = g + B_s + W_r e_s + b_r of every subject, (S, E), from the gate's parameters."""
    g, bias = gate.global_logits.detach().numpy(), gate.subject_bias.detach().numpy()
    emb, b_r = gate.subject_embedding.weight.detach().numpy(), gate.router.bias.detach().numpy()
    return g + bias + emb @ gate.router.weight.detach().numpy().T + b_r


W_r = gate5.router.weight.detach().numpy()  # (E, d)
o = offset_by_hand(gate5)
np.testing.assert_allclose(gate5.subject_logits().numpy(), o, rtol=1e-5, atol=1e-5)
with torch.no_grad():
    w_gate = gate5(tokens5, subjects5).weights.numpy()
w_hand = route_by_offset(tokens5.numpy(), W_r, o[subjects5.numpy()], top_k)
np.testing.assert_allclose(w_gate, w_hand, rtol=1e-5, atol=1e-6)
gaps_offset = {"gate vs Renorm(TopK(softmax(W_r x + o_s)))": float(np.abs(w_gate - w_hand).max())}
print(f"o_s (centred over experts):\n{np.round(o - o.mean(1, keepdims=True), 2)}")
print(f"max |gate weights - by hand| over {tokens5.shape[0] * tokens5.shape[1]} tokens of both subjects: "
      f"{gaps_offset['gate vs Renorm(TopK(softmax(W_r x + o_s)))']:.1e}")

# %% [markdown]
# Now we move the subject offset between the two parametrisations and route the same tokens again:
#
# - **all in $B_s$**: $e_s' = 0$, $B_s' = B_s + W_r e_s$ (the offset is unchanged);
# - **all in $e_s$**: $e_s' = e_s + \delta_s$ with $W_r \delta_s + c_s \mathbf{1} \approx B_s$ (least squares over
#   $\delta_s$ and a constant $c_s$, exact when $d + 1 \ge E$), and $B_s' = B_s - W_r \delta_s - c_s \mathbf{1}$, the
#   part $W_r$ cannot carry. The offset moves by the constant $c_s$ only, which softmax ignores.
#
# The routing is the same each time; the penalty $\lambda_2 \|B\|^2$ is not: it vanishes when $W_r e_s$ carries
# the whole offset (here $W_r$ is a fresh initialisation with small weights, so $e_s'$ has to grow to do it).

# %%
def reparametrised(gate, B_new, e_new):
    """A copy of ``gate`` with B and e replaced (g, W_r, b_r unchanged)."""
    new = copy.deepcopy(gate)
    with torch.no_grad():
        new.subject_bias.copy_(torch.as_tensor(B_new))
        new.subject_embedding.weight.copy_(torch.as_tensor(e_new))
    return new


B_s = gate5.subject_bias.detach().numpy()  # (S, E)
e_s = gate5.subject_embedding.weight.detach().numpy()  # (S, d)
A = np.hstack([W_r, np.ones((n_experts, 1))])  # (E, d + 1): [W_r, 1]
solution = np.linalg.lstsq(A, B_s.T, rcond=None)[0]  # (d + 1, S): δ_s and c_s per subject
delta, c = solution[:-1].T, solution[-1]
variants = {
    "as set": gate5,
    "all in B_s": reparametrised(gate5, B_s + e_s @ W_r.T, np.zeros_like(e_s)),
    "all in e_s": reparametrised(gate5, B_s - delta @ W_r.T - c[:, None], e_s + delta),
}
penalty = {}
for name, g_v in variants.items():
    o_v = offset_by_hand(g_v)
    shift = (o_v - o).std(1).max()  # o_s' - o_s is a constant over experts
    with torch.no_grad():
        w_v = g_v(tokens5, subjects5).weights.numpy()
    gaps_offset[name] = float(np.abs(w_v - w_gate).max())
    np.testing.assert_allclose(w_v, w_gate, rtol=1e-4, atol=1e-5)
    penalty[name] = float(sadgate.bias_penalty(g_v).detach())
    print(f"{name:>11}: ‖B‖² = {penalty[name]:7.3f}   ‖e‖² = {float((g_v.subject_embedding.weight ** 2).sum()):7.3f}   "
          f"o_s' - o_s non-constant by {shift:.1e}   max |Δ weights| = {gaps_offset[name]:.1e}")

# %% [markdown]
# What a trained MIND does with this freedom is measured elsewhere, from the models the tables train:
#
# - **notebook 08, Table 4 ("SADGate parametrisations")**: which parametrisation recovers the synthetic subjects,
#   measured over seeds: the paper's ($e_s$ on the router path, $\|B\|^2$ penalised), without $e_s$ on the router
#   path (`router_subject=False`: the subject acts only through $B_s$, no redundancy), with $B_s$ unpenalised
#   ($\lambda_2 = 0$), and with the authors' code's balance loss $E\sum_e \mathrm{Imp}_e^2$;
# - **notebook 10**: each trained MIND's gate over a whole run, and its effective prior $o_s$ against the synthetic
#   truth (experts matched one-to-one to the true response modes, then per subject the r over modes between the
#   learned and the true deviation from the population), with the spread of $o_s$ over subjects split into its
#   $B_s$ and $W_r e_s$ parts.
#
# ## Summary
# SADGate multiplies a moment-to-moment token router with a persistent subject prior and keeps K experts;
# the balance loss keeps experts in use. In mode `both` a subject routes through one offset
# $o_s = g + B_s + W_r e_s + b_r$; $B_s$ and $W_r e_s$ can trade it freely, and the penalty on $\|B\|^2$ decides
# which one a trained model uses. Notebook 05 builds the experts these weights mix, by hand; notebooks 08 and 10
# measure what a trained gate learned.

# %%
results = {
    "max_abs_gate_minus_numpy": max(gaps_token),
    "balance_loss_uniform": float(sadgate.balance_loss(balanced).item()),
    "balance_loss_collapsed": float(sadgate.balance_loss(collapsed).item()),
    "max_abs_offset_identity": max(gaps_offset.values()),
    "bias_penalty_by_parametrisation": penalty,
}
project.write_results("04_sadgate", results, results_dir)
results

# %% [markdown]
# ## Try it
# Three short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** With K = 1, how many experts does each token use, and does subject 1's prior still change the choice?

# %% tags=["solution", "hide-cell"]
if solutions:
    gate1 = sadgate.SADGate(sadgate.SADGateConfig(d_model=6, n_subjects=2, n_experts=4, top_k=1))
    with torch.no_grad():
        gate1.subject_bias[1, 3] = 2.0
        tokens = torch.randn(1, 12, 6)
        for s in (0, 1):
            w1 = gate1(tokens, torch.tensor([s])).weights[0]  # (T, E)
            print(f"subject {s}: experts per token {sorted(set((w1 > 0).sum(-1).tolist()))}, "
                  f"chosen {w1.argmax(-1).tolist()}")

# %% [markdown]
# **2.** By hand: a router that always sends every token to the same two experts, with equal probability. What is
# $L_\mathrm{bal}$ for E = 8, K = 2? Check with `sadgate.balance_loss`.

# %% tags=["solution", "hide-cell"]
if solutions:
    with torch.no_grad():
        uniform.router.bias.zero_()
        uniform.router.bias[:2] = 8.0  # experts 0 and 1, equally likely
        pair = uniform(torch.randn(B, T, 6), torch.zeros(B, dtype=torch.long))
    print(f"by hand: E · (Imp_0² + Imp_1²) = {E} · (1/4 + 1/4) = {E / 2:g};  "
          f"balance_loss = {sadgate.balance_loss(pair).item():.3f}")
    print(f"the paper's E · (Imp_0 · Load_0 + Imp_1 · Load_1) = {E} · (1/2 · 1/2 + 1/2 · 1/2) = {E / 2:g};  "
          f"balance_loss(kind='switch') = {sadgate.balance_loss(pair, kind='switch').item():.3f}")

# %% [markdown]
# **3.** Set mode `token` (the prior ignored) on the section 5 gate. Which part of $o_s$ still routes? Check that
# moving the offset into $B_s$ now changes the routing.

# %% tags=["solution", "hide-cell"]
if solutions:
    token_only = {name: copy.deepcopy(g_v) for name, g_v in variants.items()}
    for g_v in token_only.values():
        g_v.config = dataclasses.replace(g_v.config, mode="token")  # the same parameters, routed without the prior
    with torch.no_grad():
        w_tok = {name: g_v(tokens5, subjects5).weights.numpy() for name, g_v in token_only.items()}
    print("mode 'token' routes through W_r e_s + b_r only (SADGate.subject_logits drops g + B_s):")
    for name, w_v in w_tok.items():
        print(f"{name:>11}: max |Δ weights| against 'as set' = {np.abs(w_v - w_tok['as set']).max():.3f}")
