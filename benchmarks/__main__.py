"""``python -m benchmarks [--quick] [--only head|scaling|train|scale] [--device cpu|cuda] [--update-readme]``.

Runs the benchmark suite (``make bench``), prints each table with the device it ran on and writes
``benchmarks/results/{head,gflops,scaling,train_step,train_fit}.csv`` and ``scaling.png``. About
3 minutes on an idle 2-core CPU in full (budget: under 10); ``--quick`` takes under a minute.

``--only ridge_pca`` (never part of the default suite) measures the accuracy cost of the ridge's PCA on the demo
study (:mod:`benchmarks.bench_ridge_pca`, ``benchmarks/results/ridge_pca.csv``).

``--only scale [--fraction f]`` (never part of the default suite) builds or reuses a study with the shape of the
Algonauts 2025 training release and prints load time, peak RSS, disk size, one epoch per decoder and the ridge
(:mod:`benchmarks.bench_scale`); it writes ``benchmarks/results/scale.csv``.
"""

from __future__ import annotations

import argparse
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import bench_head, bench_ridge_pca, bench_scale, bench_train
from .common import (
    MIN_SHARE,
    RESULTS_DIR,
    cpu_share,
    device_description,
    markdown_table,
    print_table,
    resolve_device,
    update_readme,
    use_all_threads,
    write_csv,
)

BENCHMARKS = ("head", "scaling", "train")  # the default suite (make bench)
EXTRA = ("scale", "ridge_pca")  # only when asked for by --only
README = Path(__file__).resolve().parent.parent / "README.md"
RERUN = ".venv/bin/python -m benchmarks --only head --update-readme"


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run of the suite."""

    head_shape: bench_head.HeadShape
    head_experts: tuple[int, ...]
    head_repeats: int
    scaling_base: bench_head.HeadShape
    scaling_axes: dict
    scaling_repeats: int
    step_sizes: list
    step_repeats: int
    fit_epochs: int


def plan(quick: bool) -> Plan:
    """Full suite (authors' shape, every sweep value) or ``--quick`` (smaller B, fewer values and repeats)."""
    if quick:
        return Plan(
            head_shape=bench_head.HeadShape(B=2),
            head_experts=(8,),
            head_repeats=3,
            scaling_base=bench_head.HeadShape(B=1),
            scaling_axes={"E": (2, 8, 32), "K": (1, 2, 4), "V": (100, 1000), "d": (256, 3072)},
            scaling_repeats=2,
            step_sizes=bench_train.step_sizes(quick=True),
            step_repeats=2,
            fit_epochs=1,
        )
    return Plan(
        head_shape=bench_head.HeadShape(),
        head_experts=(6, 8),
        head_repeats=7,
        scaling_base=bench_head.HeadShape(B=8),
        scaling_axes=dict(bench_head.SCALING_AXES),
        scaling_repeats=3,
        step_sizes=bench_train.step_sizes(quick=False),
        step_repeats=3,
        fit_epochs=5,
    )


def readme_block(head: pd.DataFrame, device: str, share: float | None = None) -> str:
    """Markdown for the README's perf block: the headline table, the device, the command to rerun."""
    first = head.iloc[0]
    return "\n".join(
        [
            f"MIND's expert head at the authors' shape (B = {first['B']} windows × T = {first['T']} TRs, "
            f"d = {first['d']}, V = {first['V']}): sparse dispatch (`Experts.sparse`, only the K chosen experts) "
            "vs the dense formula (every expert, then the weighted sum). Median times; GFLOP/s counts the "
            "useful work 2·N·K·d·V (×3 with backward) and is compared with a plain `(N·K, d) @ (d, V)` "
            "matmul in the same run; saved MB = activations kept for backward.",
            "",
            markdown_table(bench_head.headline_table(head)),
            "",
            f"Device: {device}"
            + ("" if share is None else f" (CPU share while measuring {share:.2f})")
            + f". Rerun: `{RERUN}` (all tables: `make bench`, CSVs in `benchmarks/results/`).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="mindlib performance benchmarks: MIND's expert head (sparse vs dense dispatch), its "
        "scaling over E, K, V, d, and the cost of training. Tables are printed and written to "
        "benchmarks/results/*.csv.",
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes and repeats (a quick check)")
    parser.add_argument(
        "--only", choices=BENCHMARKS + EXTRA, action="append", help="run only this one (repeatable)"
    )
    parser.add_argument(
        "--fraction",
        type=float,
        nargs="+",
        default=[0.05],
        help="scale: shares of the release's stimuli (1 = the full release); with two or more, the "
        "full release is extrapolated through them",
    )
    parser.add_argument(
        "--ridge-components", type=int, default=256, help="scale: PCA components per modality"
    )
    parser.add_argument(
        "--decoders", default="baseline,mind", help="scale: neural decoders timed for one epoch"
    )
    parser.add_argument(
        "--ridge-pca-size", default="demo", help="ridge_pca: synthetic study size (smoke, demo, full)"
    )
    parser.add_argument(
        "--feature-cache",
        action="store_true",
        help="scale: load features through the float16 memory-mapped cache (mindlib.cache)",
    )
    parser.add_argument(
        "--study-dir",
        type=Path,
        default=None,
        help="scale: folder of the studies, one scale-<fraction> each (default: the studies folder)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument(
        "--update-readme", action="store_true", help="rewrite README's perf block (needs head)"
    )
    parser.add_argument("--force-readme", action="store_true", help="update the README even from a busy CPU")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=f"default {RESULTS_DIR}")
    args = parser.parse_args(argv)

    selected = tuple(args.only) if args.only else BENCHMARKS
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    use_all_threads()
    desc = device_description(device)
    p = plan(args.quick)
    out = args.results_dir
    print(f"mindlib benchmarks ({'quick' if args.quick else 'full'}): {', '.join(selected)}")
    print(f"device: {desc}")
    print(f"results: {out}")
    start = time.perf_counter()
    failed: list[str] = []
    head = None
    head_share = None

    def section(name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # report, keep running the other benchmarks, exit 1 at the end
            traceback.print_exc()
            failed.append(name)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]")

    if "head" in selected:

        def do_head() -> None:
            nonlocal head, head_share
            sh = p.head_shape
            with cpu_share() as usage:
                head = bench_head.run_head(device, sh, experts=p.head_experts, repeats=p.head_repeats)
            notes = [
                f"tokens x (B={sh.B}, T={sh.T}, d={sh.d}), V={sh.V}, K={sh.K}; median of {p.head_repeats} after "
                "1 warm-up, paths timed round-robin; forward = no_grad, forward+backward = autograd.grad of "
                "tokens, expert weights and biases, gate weights",
                "speedup = dense ms / ms; GFLOP/s = useful 2·N·K·d·V (x3 fwd+bwd) / time; of_matmul = / matmul "
                "row; saved_MB = activations autograd keeps for backward (saved_tensors_hooks, parameters and "
                "inputs excluded); diffs vs dense",
            ]
            head_share = usage["share"]
            print_table("1. expert head: sparse vs dense", head, desc, notes, head_share)
            write_csv(head, "head", desc, out, usage["share"])
            flops = bench_head.gflops_table(head)
            print_table(
                "3. achieved GFLOP/s: sparse head vs plain matmul (N·K, d) @ (d, V)",
                flops,
                desc,
                (),
                usage["share"],
            )
            write_csv(flops, "gflops", desc, out, usage["share"])

        section("head", do_head)

    if "scaling" in selected:

        def do_scaling() -> None:
            base = p.scaling_base
            with cpu_share() as usage:
                scaling = bench_head.run_scaling(device, base, p.scaling_axes, repeats=p.scaling_repeats)
            notes = [
                f"forward+backward, one axis varied at a time around B={base.B}, T={base.T}, d={base.d}, "
                f"V={base.V}, E={base.E}, K={base.K}; median of {p.scaling_repeats} after 1 warm-up",
                "axes: " + "; ".join(f"{k} in {list(v)}" for k, v in p.scaling_axes.items()),
            ]
            print_table("2. scaling: sparse vs dense", scaling, desc, notes, usage["share"])
            write_csv(scaling, "scaling", desc, out, usage["share"])
            fig = bench_head.plot_scaling(scaling, Path(out) / "scaling.png", title=desc)
            print(f"figure: {fig}")

        section("scaling", do_scaling)

    if "train" in selected:

        def do_steps() -> None:
            with cpu_share() as usage:
                steps = bench_train.run_train_steps(device, p.step_sizes, repeats=p.step_repeats)
            notes = [
                f"one AdamW step (forward, masked MSE + aux, backward, clip, step) on B x T windows; median of "
                f"{p.step_repeats} after 1 warm-up",
                "features: " + "; ".join(f"{s.label}: {dict(s.feature_dims)}" for s in p.step_sizes),
            ]
            print_table("4a. one training step per decoder", steps, desc, notes, usage["share"])
            write_csv(steps, "train_step", desc, out, usage["share"])

        def do_fit() -> None:
            with cpu_share() as usage:
                fit = bench_train.run_fit(device, "demo", epochs=p.fit_epochs)
            notes = [
                "mindlib.train.fit, default TrainConfig but epochs; epoch seconds include validation; "
                "build_s is ~0 when the study already existed (make_study is idempotent)"
            ]
            print_table("4b. fit on the demo synthetic study", fit, desc, notes, usage["share"])
            write_csv(fit, "train_fit", desc, out, usage["share"])

        section("train-step", do_steps)
        section("train-fit", do_fit)

    if "scale" in selected:

        def do_scale() -> None:
            from mindlib import project

            results = []
            for fraction in args.fraction:
                root = (args.study_dir or project.studies_dir()) / f"scale-{fraction:g}"
                # the stages run in child processes, which cpu_share (this process's CPU time) would not see
                res = bench_scale.run_scale(
                    root,
                    fraction,
                    device.type,
                    tuple(args.decoders.split(",")),
                    args.ridge_components,
                    args.feature_cache,
                )
                results.append(res)
                print(
                    f"fraction {fraction:g}: {root}, {res['n_runs']} runs, build {res['build_s']:.0f} s "
                    "(0 when reused)",
                    flush=True,
                )
            table = bench_scale.scale_table(results)
            notes = [
                "each stage in a fresh process: peak RSS is its own (VmHWM, mapped pages included)",
                "load_study: "
                + (
                    "aligned features memory-mapped from the float16 cache (mindlib.cache); the "
                    "first load of a study also writes the cache"
                    if args.feature_cache
                    else "aligned features in memory (float32)"
                ),
                "full release: linear in the number of stimuli through the measured points (README memory model)",
            ]
            print_table("5. scale: the release's shape", table, desc, notes)
            write_csv(table, "scale", desc, out)
            if args.update_readme:
                body = bench_scale.readme_block(table, desc)
                if update_readme(README, body, block="scale"):
                    print(f"updated the scale block of {README}")
                else:
                    print(f"--update-readme: {README} has no scale block; nothing edited")

        section("scale", do_scale)

    if "ridge_pca" in selected:

        def do_ridge_pca() -> None:
            with cpu_share() as usage:
                table = bench_ridge_pca.run_ridge_pca(args.ridge_pca_size)
            notes = [
                f"FIR ridge (lags 2-4 TRs) on the {args.ridge_pca_size} synthetic study through experiment.run: all "
                "features (k = all) vs PCA to k axes per modality with the lags built by shifting (mindlib.reduce)",
                "test_r_minus_all: paired over test runs, 95 % bootstrap interval [ci_low, ci_high]",
            ]
            print_table("6. ridge: the accuracy cost of PCA", table, desc, notes, usage["share"])
            write_csv(table, "ridge_pca", desc, out, usage["share"])
            if args.update_readme:  # accuracies do not depend on the CPU share
                body = bench_ridge_pca.readme_block(table, args.ridge_pca_size)
                if update_readme(README, body, block="ridge-pca"):
                    print(f"updated the ridge-pca block of {README}")
                else:
                    print(f"--update-readme: {README} has no ridge-pca block; nothing edited")

        section("ridge_pca", do_ridge_pca)

    if args.update_readme and "head" in selected:
        if head is None:
            print("--update-readme: the README block needs the head benchmark; run with --only head (or all)")
        elif (
            device.type == "cpu"
            and head_share is not None
            and head_share < MIN_SHARE
            and not args.force_readme
        ):
            print(
                f"--update-readme: README not edited: the head benchmark got {head_share:.2f} of its CPU threads "
                f"(other processes were running); rerun on an idle machine, or add --force-readme"
            )
        elif update_readme(README, readme_block(head, desc, head_share)):
            print(f"updated the perf block of {README}")
        else:
            print(
                f"--update-readme: {README} has no '<!-- perf:start -->' ... '<!-- perf:end -->' block; "
                "nothing edited. Add both markers where the table should go and rerun."
            )
    print(f"\ntotal {time.perf_counter() - start:.0f} s; torch threads {torch.get_num_threads()}")
    if failed:
        print(f"FAILED: {', '.join(failed)} (tracebacks above)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
