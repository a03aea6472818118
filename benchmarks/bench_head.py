"""MIND's expert head: sparse dispatch vs the dense formula (docs/method.md §6; paper §2.4, Eq. 4).

The head maps tokens ``x`` (B, T, d) and SADGate's routing to parcels (B, T, V):
``ŷ_t = Σ_e w_{t,e} f_e(x_t)``. Both rows below call :meth:`mindlib.experts.Experts.mix`, the method
``MIND.forward`` runs, so the benchmark times exactly the model's code:

- ``dense``: ``Experts.mix(x, gate, "dense")`` — every expert on every token, then the weighted sum
  (``dispatch="dense"``);
- ``sparse``: ``Experts.mix(x, gate, "sparse")`` — only the K chosen experts per token, grouped by
  expert (``dispatch="sparse"``, the default).

Two references give the numbers a scale: ``dense-1gemm`` (the dense formula with the experts stored
as one (d, E·V) matrix, i.e. the best a dense path can do with one GEMM) and ``matmul`` (a plain
``(N·K, d) @ (d, V)``, the same useful work as the sparse path in one call, N = B·T).

Useful work of the sparse head: ``2·N·K·d·V`` FLOPs forward, 3x that forward+backward (grads of the
tokens and of the expert weights). Dropout on the expert input is left out (it is the same for both
paths). Forward is timed under ``torch.no_grad`` (inference); forward+backward with
``torch.autograd.grad`` (training, no gradient accumulation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from mindlib.experts import Experts
from mindlib.sadgate import SADGate, SADGateConfig

from .common import MB, cuda_peak_bytes, round_robin_times, saved_bytes

PATHS = ("dense", "dense-1gemm", "sparse", "matmul")  # rows of the head table
PASSES = ("forward", "forward+backward")
SCALING_AXES: dict[str, tuple[int, ...]] = {  # one axis varied at a time around the authors' shape
    "E": (2, 4, 8, 16, 32),
    "K": (1, 2, 3, 4),
    "V": (100, 250, 500, 1000),
    "d": (256, 1024, 3072),
}
RTOL = 1e-5  # float32 agreement with dense: max |Δ| <= RTOL · max |dense| (output and each gradient)


@dataclass(frozen=True)
class HeadShape:
    """Sizes of one head benchmark; the defaults are the authors' shape."""

    B: int = 8  # windows
    T: int = 100  # TRs per window
    d: int = 3072  # token dim
    V: int = 1000  # parcels
    E: int = 8  # experts
    K: int = 2  # experts kept per token

    def __post_init__(self) -> None:
        for name in ("B", "T", "d", "V", "E", "K"):
            if getattr(self, name) < 1:
                raise ValueError(f"HeadShape.{name} must be >= 1, got {getattr(self, name)}")
        if self.K > self.E:
            raise ValueError(f"HeadShape: K={self.K} must be <= E={self.E}")

    @property
    def N(self) -> int:
        """Tokens, B·T."""
        return self.B * self.T

    def useful_flops(self, passes: str) -> float:
        """FLOPs of the K selected linear experts: 2·N·K·d·V forward, x3 with backward."""
        forward = 2.0 * self.N * self.K * self.d * self.V
        return forward if passes == "forward" else 3.0 * forward


class HeadCase:
    """Inputs of one head benchmark: experts, tokens, SADGate's routing, an output gradient.

    The routing comes from a freshly initialised :class:`~mindlib.sadgate.SADGate` (mode "both") on
    the same tokens; its weights are detached and made leaves, so the timings cover the head only.
    """

    def __init__(self, shape: HeadShape, device: torch.device, seed: int = 0) -> None:
        B, T, d, V, E, K = shape.B, shape.T, shape.d, shape.V, shape.E, shape.K
        torch.manual_seed(seed)
        self.shape = shape
        self.experts = Experts(E, d, V, kind="linear").to(device)
        gate = SADGate(SADGateConfig(d_model=d, n_subjects=4, n_experts=E, top_k=K)).to(device)
        x = torch.randn(B, T, d, device=device)
        subject = torch.arange(B, device=device) % 4
        with torch.no_grad():
            routing = gate(x, subject)
        self.x = x.requires_grad_()  # (B, T, d)
        self.weights = routing.weights.clone().requires_grad_()  # (B, T, E), K non-zeros per token
        self.topk_idx = routing.topk_idx.clone()  # (B, T, K)
        self.topk_weights = routing.topk_weights.clone().requires_grad_()  # (B, T, K)
        self.gate = routing._replace(
            weights=self.weights, topk_idx=self.topk_idx, topk_weights=self.topk_weights
        )
        # dense-1gemm reference: the experts as one (d, E·V) matrix, built once (not timed)
        self.w_cat = self.experts.weight.detach().permute(1, 0, 2).reshape(d, E * V).clone().requires_grad_()
        self.grad_out = torch.randn(B, T, V, device=device)
        # matmul reference of the same useful size
        self.a = torch.randn(shape.N * K, d, device=device, requires_grad=True)
        self.b = self.experts.weight[0].detach().clone().requires_grad_()  # (d, V)
        self.grad_ab = torch.randn(shape.N * K, V, device=device)

    # the paths -----------------------------------------------------------------------------
    def dense(self) -> Tensor:
        """MIND's dense formula, ``Experts.mix(x, gate, "dense")`` (B, T, V)."""
        return self.experts.mix(self.x, self.gate, "dense")

    def sparse(self) -> Tensor:
        """MIND's sparse dispatch, ``Experts.mix(x, gate, "sparse")`` as ``MIND.forward`` calls it (B, T, V)."""
        return self.experts.mix(self.x, self.gate, "sparse")

    def dense_1gemm(self) -> Tensor:
        """Dense reference with the experts as one GEMM: (N, d) @ (d, E·V), then the weighted sum."""
        B, T, d = self.x.shape
        E, V = self.shape.E, self.shape.V
        y = (self.x.reshape(B * T, d) @ self.w_cat).reshape(B, T, E, V) + self.experts.bias
        return torch.einsum("bte,btev->btv", self.weights, y)

    def matmul(self) -> Tensor:
        """Plain (N·K, d) @ (d, V): the sparse path's useful work in one call."""
        return self.a @ self.b

    def run(self, path: str) -> Tensor:
        """Output of one path."""
        return {
            "dense": self.dense,
            "sparse": self.sparse,
            "dense-1gemm": self.dense_1gemm,
            "matmul": self.matmul,
        }[path]()

    def grad_inputs(self, path: str) -> tuple[list[Tensor], Tensor]:
        """(tensors the backward differentiates, the output gradient) of a path."""
        ex = self.experts
        if path == "dense":
            return [self.x, ex.weight, ex.bias, self.weights], self.grad_out
        if path == "sparse":
            return [self.x, ex.weight, ex.bias, self.topk_weights], self.grad_out
        if path == "dense-1gemm":
            return [self.x, self.w_cat, ex.bias, self.weights], self.grad_out
        return [self.a, self.b], self.grad_ab

    def not_activations(self) -> list[Tensor]:
        """Parameters and inputs: left out of the saved-activation count."""
        return [
            *self.experts.parameters(),
            self.x,
            self.weights,
            self.topk_weights,
            self.topk_idx,
            self.w_cat,
            self.a,
            self.b,
        ]

    def forward_backward(self, path: str) -> tuple[Tensor, ...]:
        """Forward then ``autograd.grad`` of one path; returns the gradients."""
        inputs, grad = self.grad_inputs(path)
        return torch.autograd.grad(self.run(path), inputs, grad)

    def forward_only(self, path: str) -> Tensor:
        with torch.no_grad():
            return self.run(path)

    def saved_mb(self, path: str) -> float:
        """MB autograd saves for backward in the forward of ``path`` (activations only)."""
        with saved_bytes(self.not_activations()) as seen:
            out = self.run(path)
        del out
        return sum(seen.values()) / MB


def _time_paths(
    case: HeadCase, paths: Sequence[str], passes: str, device: torch.device, repeats: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """(median, min) seconds of each path for one pass, timed round-robin (:func:`round_robin_times`)."""
    run: Callable[[str], object] = case.forward_only if passes == "forward" else case.forward_backward
    fns = {path: partial(run, path) for path in paths}
    times = round_robin_times(fns, device, repeats=repeats, warmup=warmup)
    return {path: (statistics.median(t), min(t)) for path, t in times.items()}


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def _close(ref: Tensor, got: Tensor) -> bool:
    """Float32 agreement: max |Δ| <= RTOL · max |ref| (sums over up to d = 3072 terms)."""
    return _max_diff(ref, got) <= RTOL * float(ref.detach().abs().max()) + 1e-12


def agreement(case: HeadCase, path: str) -> tuple[float, float, bool]:
    """Max |Δ| of the output and of the gradients vs dense, and whether all are within float tolerance.

    Gradients compared: tokens, expert weights, expert biases.
    """
    ref_out = case.forward_only("dense")
    out = case.forward_only(path)
    ref_grads = case.forward_backward("dense")
    grads = list(case.forward_backward(path))
    if path == "dense-1gemm":  # w_cat is (d, E·V): compare in expert layout
        E, V, d = case.shape.E, case.shape.V, case.shape.d
        grads[1] = grads[1].reshape(d, E, V).permute(1, 0, 2)
    pairs = [(ref_out, out)] + [(ref_grads[i], grads[i]) for i in range(3)]
    close = all(_close(a, b) for a, b in pairs)
    return _max_diff(ref_out, out), max(_max_diff(a, b) for a, b in pairs[1:]), close


def run_head(
    device: torch.device,
    shape: HeadShape = HeadShape(),
    experts: Sequence[int] = (6, 8),
    repeats: int = 5,
    warmup: int = 1,
    paths: Sequence[str] = PATHS,
    seed: int = 0,
) -> pd.DataFrame:
    """Time, memory and agreement of the head paths at one shape, for each E in ``experts``.

    Returns
    -------
    DataFrame
        One row per (E, pass, path): ``ms`` (median), ``speedup`` (dense ms / ms), ``GFLOP/s`` (useful
        work 2·N·K·d·V [x3] / time), ``of_matmul`` (that over the matmul row's GFLOP/s in the same
        pass), ``saved_MB`` (activations kept for backward; forward+backward rows), ``peak_MB`` (CUDA),
        ``max_abs_diff`` / ``max_grad_diff`` (vs dense) and ``close`` (output and every gradient within
        ``RTOL`` of dense, relative to the largest dense value; None for matmul).
    """
    rows = []
    for E in experts:
        sh = replace(shape, E=E)
        case = HeadCase(sh, device, seed=seed)
        diffs = {p: agreement(case, p) if p not in ("dense", "matmul") else (0.0, 0.0, True) for p in paths}
        for passes in PASSES:
            flops = sh.useful_flops(passes)
            times = _time_paths(case, paths, passes, device, repeats, warmup)
            for path in paths:
                seconds, best = times[path]
                if passes == "forward":
                    saved = float("nan")
                    peak = cuda_peak_bytes(partial(case.forward_only, path), device) / MB
                else:
                    saved = case.saved_mb(path)
                    peak = cuda_peak_bytes(partial(case.forward_backward, path), device) / MB
                out_diff, grad_diff, close = diffs[path]
                if path == "matmul":
                    out_diff, grad_diff, close = float("nan"), float("nan"), None
                rows.append(
                    {
                        "B": sh.B,
                        "T": sh.T,
                        "d": sh.d,
                        "V": sh.V,
                        "E": E,
                        "K": sh.K,
                        "pass": passes,
                        "path": path,
                        "ms": 1e3 * seconds,
                        "min_ms": 1e3 * best,
                        "GFLOP/s": flops / seconds / 1e9,
                        "saved_MB": saved,
                        "peak_MB": peak,
                        "max_abs_diff": out_diff,
                        "max_grad_diff": grad_diff,
                        "close": close,
                    }
                )
        del case
    df = pd.DataFrame(rows)
    key = ["E", "pass"]
    dense_ms = df[df.path == "dense"].set_index(key)["ms"] if "dense" in paths else None
    mm = df[df.path == "matmul"].set_index(key)["GFLOP/s"] if "matmul" in paths else None
    idx = pd.MultiIndex.from_frame(df[key])
    df["speedup"] = dense_ms.reindex(idx).to_numpy() / df["ms"] if dense_ms is not None else math.nan
    df["of_matmul"] = df["GFLOP/s"] / mm.reindex(idx).to_numpy() if mm is not None else math.nan
    order = [
        "B",
        "T",
        "d",
        "V",
        "E",
        "K",
        "pass",
        "path",
        "ms",
        "min_ms",
        "speedup",
        "GFLOP/s",
        "of_matmul",
        "saved_MB",
        "peak_MB",
        "max_abs_diff",
        "max_grad_diff",
        "close",
    ]
    if device.type != "cuda":
        order.remove("peak_MB")
    return df[order]


def gflops_table(head: pd.DataFrame) -> pd.DataFrame:
    """Achieved useful GFLOP/s of the sparse head vs a plain matmul of the same size, per (E, pass)."""
    sparse = head[head.path == "sparse"].set_index(["E", "K", "pass"])
    mm = head[head.path == "matmul"].set_index(["E", "K", "pass"])
    out = pd.DataFrame(
        {
            "sparse_GFLOP/s": sparse["GFLOP/s"],
            "matmul_GFLOP/s": mm["GFLOP/s"],
        }
    )
    out["fraction"] = out["sparse_GFLOP/s"] / out["matmul_GFLOP/s"]
    return out.reset_index()


def run_scaling(
    device: torch.device,
    base: HeadShape = HeadShape(),
    axes: Mapping[str, Sequence[int]] = SCALING_AXES,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Forward+backward time and saved activations, sparse vs dense, varying one size at a time.

    Each axis (E, K, V, d) is swept with the others at ``base``; a shape met twice is measured once.

    Returns
    -------
    DataFrame
        One row per (axis, value): the shape, ``dense_ms``, ``sparse_ms`` (medians), their minima
        ``*_min_ms``, ``speedup`` (of medians), ``speedup_best`` (of minima: less sensitive to other
        load on the machine), ``dense_saved_MB``, ``sparse_saved_MB``, ``max_abs_diff``.
    """
    cache: dict[HeadShape, dict] = {}
    rows = []
    for axis, values in axes.items():
        for value in values:
            sh = replace(base, **{axis: value})
            if sh.K > sh.E:
                continue
            if sh not in cache:
                case = HeadCase(sh, device, seed=seed)
                times = _time_paths(case, ("dense", "sparse"), "forward+backward", device, repeats, warmup)
                res = {}
                for path in ("dense", "sparse"):
                    res[f"{path}_ms"] = 1e3 * times[path][0]
                    res[f"{path}_min_ms"] = 1e3 * times[path][1]
                    res[f"{path}_saved_MB"] = case.saved_mb(path)
                res["max_abs_diff"] = _max_diff(case.forward_only("dense"), case.forward_only("sparse"))
                cache[sh] = res
                del case
            rows.append(
                {
                    "axis": axis,
                    "value": value,
                    "B": sh.B,
                    "T": sh.T,
                    "d": sh.d,
                    "V": sh.V,
                    "E": sh.E,
                    "K": sh.K,
                    **cache[sh],
                }
            )
    df = pd.DataFrame(rows)
    df["speedup"] = df["dense_ms"] / df["sparse_ms"]
    df["speedup_best"] = df["dense_min_ms"] / df["sparse_min_ms"]
    return df[
        [
            "axis",
            "value",
            "B",
            "T",
            "d",
            "V",
            "E",
            "K",
            "dense_ms",
            "sparse_ms",
            "dense_min_ms",
            "sparse_min_ms",
            "speedup",
            "speedup_best",
            "dense_saved_MB",
            "sparse_saved_MB",
            "max_abs_diff",
        ]
    ]


def plot_scaling(df: pd.DataFrame, path: Path | str, title: str = "") -> Path:
    """Save a 2 x n_axes figure: forward+backward ms (top) and saved activations MB (bottom) per axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    axes_names = list(dict.fromkeys(df["axis"]))
    fig, grid = plt.subplots(2, len(axes_names), figsize=(3.2 * len(axes_names), 5.6), squeeze=False)
    for j, name in enumerate(axes_names):
        sub = df[df.axis == name].sort_values("value")
        fixed = ", ".join(f"{k}={sub.iloc[0][k]}" for k in ("E", "K", "V", "d") if k != name)
        for row, (col, label) in enumerate(
            (("ms", "fwd+bwd time (ms)"), ("saved_MB", "saved activations (MB)"))
        ):
            ax = grid[row, j]
            ax.plot(sub["value"], sub[f"dense_{col}"], "o-", label="dense")
            ax.plot(sub["value"], sub[f"sparse_{col}"], "s-", label="sparse")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
            ax.set_xticks(sub["value"].tolist())
            ax.set_xticklabels([str(v) for v in sub["value"]])
            ax.set_xlabel(name)
            if j == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(fixed, fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
    grid[0, 0].legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def headline_table(head: pd.DataFrame) -> pd.DataFrame:
    """The README's summary of :func:`run_head`: sparse vs dense per (E, pass)."""
    rows = []
    for (E, passes), group in head.groupby(["E", "pass"], sort=False):
        by = group.set_index("path")
        sparse, dense = by.loc["sparse"], by.loc["dense"]
        rows.append(
            {
                "E": int(E),
                "K": int(sparse["K"]),
                "pass": passes,
                "dense ms": dense["ms"],
                "sparse ms": sparse["ms"],
                "speed-up": sparse["speedup"],
                "speed-up (best runs)": dense["min_ms"] / sparse["min_ms"],
                "sparse GFLOP/s": sparse["GFLOP/s"],
                "of matmul": f"{100 * sparse['of_matmul']:.0f} %" if "matmul" in by.index else "–",
                "saved MB dense → sparse": (
                    "–" if passes == "forward" else f"{dense['saved_MB']:.0f} → {sparse['saved_MB']:.0f}"
                ),
                "max abs diff": sparse["max_abs_diff"],
            }
        )
    return pd.DataFrame(rows)
