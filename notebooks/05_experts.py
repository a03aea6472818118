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
# # 05 · MIND by hand: experts, the Top-K mix, and the auxiliary loss
#
# **Overview** 1) AFIRE tokens and SADGate weights for one batch of the study 2) the E experts and their dense
# outputs `(B, T, E, V)` 3) the mix $\hat y = \sum_e w_e f_e(x)$ (Eq. 4) in one einsum, against the model's own
# forward 4) the sparse dispatch equals the dense one 5) what `aux_loss` is made of
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)   **Writes** `<fig_dir>/05_*.png`, `<results_dir>/05_experts.json`
#
# Notebooks 03 and 04 built the two halves of the router's input: AFIRE tokens $x_t \in \mathbb{R}^d$ and
# SADGate's weights $w_t \in \mathbb{R}^E$ with K non-zeros. MIND's decoder is E expert heads
# $f_e: \mathbb{R}^d \to \mathbb{R}^V$, each mapping a token to all V parcels, mixed by those weights
# (docs/method.md §6, Eq. 4):
#
# $$\hat y_t = \sum_{e=1}^{E} w_{t,e}\, f_e(x_t), \qquad f_e(x) = x W_e + b_e \quad (W_e \in \mathbb{R}^{d \times V}),$$
#
# and the training loss adds $\lambda_1 L_\mathrm{bal} + \lambda_2 \|B\|_F^2$ (Eq. 5) to the MSE. Nothing is
# trained here: a freshly initialised MIND on real windows of the study is enough to check every formula
# against the module that notebook 06 trains.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation (the untrained MIND built here)
backbone: str = "tribe"  # feature store: "tribe" | "imagebind" | "qwen" | your own
n_experts: int = 8  # E
top_k: int = 2  # K experts kept per token
d_model: int = 128  # d, AFIRE token dim
n_windows: int = 4  # B, validation windows in the batch
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
from dataclasses import replace

import matplotlib.pyplot as plt
import torch

from mindlib import afire, data, mind, plotting, project, sadgate

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
torch.manual_seed(seed)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)

# %% [markdown]
# ## 1. One batch, one untrained MIND
# B validation windows of the study drawn at random, and a MIND with the paper's gate. A fresh MIND starts with $B = 0$ (every
# subject at the population prior); we build it with the authors' code's initialisation $B \sim N(0, 1)$
# (`bias_init="normal"`) so the subject prior visibly tilts the routing and the bias penalty below is not zero.
# `eval()` switches dropout off, so every path computes the same numbers.

# %%
study = data.load_study(root, backbone, features_root=features_root)
val = study.select("val")
loader = torch.utils.data.DataLoader(data.WindowDataset(val), batch_size=n_windows, shuffle=True,
                                     generator=torch.Generator().manual_seed(seed), collate_fn=data.collate_windows)
batch = next(iter(loader))  # windows of several subjects
config = mind.MINDConfig(afire=afire.AFIREConfig(modalities=dict(study.feature_dims), d_model=d_model),
                         n_subjects=len(study.subjects), n_parcels=study.n_parcels, n_experts=n_experts,
                         top_k=top_k, bias_init="normal")
model = mind.MIND(config).eval()
features, subject = batch["features"], batch["subject"]
with torch.no_grad():
    out = model(features, subject)  # what training calls: ModelOutput(pred, gate, aux_loss)
    x = model.afire(features)  # (B, T, d) tokens
    gate = model.gate(x, subject)  # GateOutput: weights (B, T, E), topk_idx / topk_weights (B, T, K)
B, T, d = x.shape
E, K, V = config.n_experts, config.top_k, config.n_parcels
print(f"features {({m: tuple(f.shape) for m, f in features.items()})} -> tokens (B, T, d) = {tuple(x.shape)}")
print(f"gate weights (B, T, E) = {tuple(gate.weights.shape)}, non-zero per token: "
      f"{sorted(set((gate.weights > 0).sum(-1).flatten().tolist()))} (K = {K})")
print(f"subjects of the windows: {[study.subjects[s] for s in subject.tolist()]}")

# %% [markdown]
# ## 2. The experts
# `model.experts` stores the E heads stacked: one weight tensor `(E, d, V)` and one bias `(E, V)`. The dense
# outputs, every expert on every token, are one einsum: $F_{b,t,e,:} = x_{b,t} W_e + b_e$, shape `(B, T, E, V)`.

# %%
experts = model.experts
W, b = experts.weight.detach(), experts.bias.detach()  # (E, d, V), (E, V)
print(f"{type(experts).__name__} ({experts.kind}): weight (E, d, V) = {tuple(W.shape)}, bias (E, V) = {tuple(b.shape)}")
f_hand = torch.einsum("btd,edv->btev", x, W) + b  # (B, T, E, V)
with torch.no_grad():
    f_model = experts.dense(x)  # the module's dense path
print(f"dense expert outputs (B, T, E, V) = {tuple(f_hand.shape)};  "
      f"max |by hand - Experts.dense| = {(f_hand - f_model).abs().max().item():.2e}")
torch.testing.assert_close(f_hand, f_model)

# %% [markdown]
# ## 3. The mix of Eq. 4, by hand
# Weight each expert's output by the gate and sum over experts: `einsum("bte,btev->btv")`. Because
# $w_{t,e} = 0$ outside the Top-K, the same sum over the K kept experts only (`topk_idx`, `topk_weights`) gives
# the same prediction. Both are compared with `model(features, subject).pred`, which ran the default sparse
# dispatch.

# %%
y_hand = torch.einsum("bte,btev->btv", gate.weights, f_hand)  # (B, T, V): Σ_e w_e f_e(x)
kept = torch.gather(f_hand, 2, gate.topk_idx[..., None].expand(B, T, K, V))  # (B, T, K, V)
y_topk = torch.einsum("btk,btkv->btv", gate.topk_weights, kept)  # Σ over the K kept experts
mix_err = (y_hand - out.pred).abs().max().item()
print(f"max |Σ_e w_e f_e(x) - MIND.forward| = {mix_err:.2e};  "
      f"max |Σ_k (K kept only) - Σ_e| = {(y_topk - y_hand).abs().max().item():.2e}")
torch.testing.assert_close(y_hand, out.pred)
torch.testing.assert_close(y_topk, y_hand)

# %% [markdown]
# One window: which experts each TR used (left), and for one parcel every expert's output with the mix (right).
# The mix follows the K experts the gate kept at each TR and ignores the other E − K.

# %%
v = int(f_hand[0].var(dim=(0, 1)).argmax())  # the parcel whose expert outputs differ the most in window 0
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), layout="constrained")
plotting.plot_matrix(gate.weights[0].T.numpy(), ax=axes[0], xlabel="TR", ylabel="expert",
                     title=f"gate weights w (E × T), window 0, {study.subjects[int(subject[0])]}")
in_window = set(gate.topk_idx[0].flatten().tolist())  # experts kept at some TR of window 0
for e in range(E):
    kept_here = e in in_window
    axes[1].plot(f_hand[0, :, e, v].numpy(), lw=1.0 if kept_here else 0.6, alpha=0.8 if kept_here else 0.3,
                 color=None if kept_here else "0.6", label=f"f_{e}" + (" (kept)" if kept_here else ""))
axes[1].plot(y_hand[0, :, v].numpy(), color="k", lw=2, label="ŷ = Σ w f")
axes[1].set_xlabel("TR")
axes[1].set_ylabel(f"parcel {v}")
axes[1].set_title("expert outputs and their gate-weighted mix")
plotting.legend_beside(axes[1], fontsize=6, ncol=2)
plotting.save_figure(fig, "05_mix", fig_dir)

# %% [markdown]
# ## 4. Sparse dispatch equals dense
# Training does not compute `(B, T, E, V)`: the sparse path (`Experts.sparse`) sorts the `B·T·K`
# (token, slot) pairs by expert and runs each expert only on its own rows, about E/K fewer expert FLOPs. It
# must give the dense formula up to float rounding, forward and backward.

# %%
dense_pred = experts.mix(x, gate, "dense")
sparse_pred = experts.mix(x, gate, "sparse")
sparse_err = (sparse_pred - dense_pred).abs().max().item()
print(f"max |sparse - dense| = {sparse_err:.2e}   (predictions of size {dense_pred.abs().max().item():.2f})")
torch.testing.assert_close(sparse_pred, dense_pred)
grads = {}
for dispatch in ("dense", "sparse"):
    experts.zero_grad()
    experts.mix(x, gate, dispatch).square().sum().backward()
    grads[dispatch] = experts.weight.grad.clone()
experts.zero_grad()
grad_err = (grads["sparse"] - grads["dense"]).abs().max().item()
scale = grads["dense"].abs().max().item()
print(f"max |∂/∂W sparse - dense| = {grad_err:.2e}   (gradients of size {scale:.1f}: sums over B·T tokens, so "
      "float32 rounding grows with them)")
print(f"expert evaluations: dense {B * T * E:,}, sparse {B * T * K:,}")
torch.testing.assert_close(grads["sparse"], grads["dense"], rtol=1e-4, atol=1e-6 * scale)
used = torch.bincount(gate.topk_idx.flatten(), minlength=E)
print("tokens routed to each expert (of B·T·K pairs):", used.tolist())

# %% [markdown]
# ## 5. What `aux_loss` is made of
# $\mathrm{aux} = \lambda_1 L_\mathrm{bal} + \lambda_2 \|B\|_F^2$ (Eq. 5). The balance loss (Eq. 6, notebook 04)
# reads the token router: importance $\mathrm{Imp}_e$ = mean router probability of expert e over the B·T tokens,
# load $\mathrm{Load}_e$ = share of tokens whose Top-K holds e, divided by K. The default $L_\mathrm{bal} = E \sum_e
# \mathrm{Imp}_e^2$ (what the authors' code computes, chosen by notebook 08's Tables 2 and 4); the paper's Eq. 6,
# $E \sum_e \mathrm{Imp}_e \mathrm{Load}_e$, is `balance="switch"`. The bias penalty is the squared Frobenius
# norm of the subject–expert bias.

# %%
imp = gate.router_probs.mean(dim=(0, 1))  # (E,)
load = torch.zeros(B, T, E).scatter(-1, gate.topk_idx, 1.0).mean(dim=(0, 1)) / K  # (E,), sums to 1
l_bal = E * (imp**2).sum()  # the default, balance="importance"
l_switch = E * (imp * load).sum()  # the paper's Eq. 6, balance="switch"
bias_pen = (model.gate.subject_bias.detach() ** 2).sum()
aux_hand = config.lambda_balance * l_bal + config.lambda_bias * bias_pen
print(f"L_bal = {E} · Σ Imp² = {l_bal.item():.4f}   (sadgate.balance_loss: {sadgate.balance_loss(gate).item():.4f}); "
      f"the paper's {E} · Σ Imp·Load = {l_switch.item():.4f}   (kind=\"switch\": "
      f"{sadgate.balance_loss(gate, kind='switch').item():.4f})")
print(f"‖B‖²  = {bias_pen.item():.4f}   (S × E = {tuple(model.gate.subject_bias.shape)} entries drawn from N(0, 1))")
print(f"aux = λ1 · L_bal + λ2 · ‖B‖² = {config.lambda_balance} · {l_bal.item():.4f} + {config.lambda_bias} · "
      f"{bias_pen.item():.4f} = {aux_hand.item():.5f};  MIND.forward's aux_loss = {out.aux_loss.item():.5f}")
torch.testing.assert_close(l_bal, sadgate.balance_loss(gate))
torch.testing.assert_close(l_switch, sadgate.balance_loss(gate, kind="switch"))
torch.testing.assert_close(aux_hand, out.aux_loss)

# %% [markdown]
# ## Summary
# MIND's decoder is a stack of E linear heads and one weighted sum: the dense outputs `(B, T, E, V)` mixed by
# the gate reproduce the model's forward, the sparse dispatch computes the same numbers from K of the E heads,
# and `aux_loss` is the balance loss and the bias penalty with their weights. Notebook 06 trains all of it.

# %%
results = {
    "max_abs_dense_by_hand": float((f_hand - f_model).abs().max()),
    "max_abs_mix_minus_forward": mix_err,
    "max_abs_sparse_minus_dense": sparse_err,
    "max_abs_grad_sparse_minus_dense": grad_err,
    "aux_loss": float(out.aux_loss),
    "aux_loss_by_hand": float(aux_hand),
    "balance_loss": float(l_bal),
    "bias_penalty": float(bias_pen),
    "lambda_balance": config.lambda_balance,
    "lambda_bias": config.lambda_bias,
    "tokens_per_expert": used.tolist(),
    "shape_dense_BTEV": [B, T, E, V],
}
project.write_results("05_experts", results, results_dir)
results

# %% [markdown]
# ## Try it
# Two short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** MLP experts (`expert="mlp"`: d → h → V with a GELU) store `w1 (E, d, h)`, `b1`, `w2 (E, h, V)`, `b2`.
# Write their dense outputs by hand in two einsums and check Eq. 4 and sparse = dense again.

# %% tags=["solution", "hide-cell"]
if solutions:
    mlp = mind.MIND(replace(config, expert="mlp", expert_hidden=32)).eval()
    with torch.no_grad():
        o = mlp(features, subject)
        xm = mlp.afire(features)
        ex = mlp.experts
        h = torch.nn.functional.gelu(torch.einsum("btd,edh->bteh", xm, ex.w1) + ex.b1)  # (B, T, E, h)
        f_mlp = torch.einsum("bteh,ehv->btev", h, ex.w2) + ex.b2  # (B, T, E, V)
        y_mlp = torch.einsum("bte,btev->btv", o.gate.weights, f_mlp)
        print(f"MLP experts: max |Σ w f - forward| = {(y_mlp - o.pred).abs().max().item():.2e}, "
              f"max |sparse - dense| = {(ex.mix(xm, o.gate, 'sparse') - ex.mix(xm, o.gate, 'dense')).abs().max().item():.2e}")

# %% [markdown]
# **2.** Router mode `"prior"` without Top-K gives every token all E experts with the weights $\pi_s$. How many
# experts does a token use then, which dispatch does `MIND.forward` take, and what is the balance loss?

# %% tags=["solution", "hide-cell"]
if solutions:
    prior = mind.MIND(replace(config, mode="prior")).eval()
    with torch.no_grad():
        o = prior(features, subject)
        xp = prior.afire(features)
        y_p = torch.einsum("bte,btev->btv", o.gate.weights, prior.experts.dense(xp))
    print(f"experts per token: {sorted(set((o.gate.weights > 0).sum(-1).flatten().tolist()))};  "
          f"sparse gate: {prior.gate.config.sparse} (so forward takes the dense path);  "
          f"max |Σ w f - forward| = {(y_p - o.pred).abs().max().item():.2e};  "
          f"balance loss {prior.gate.balance_loss(o.gate).item():.1f}, aux_loss = λ2·‖B‖² = {o.aux_loss.item():.4f}")
