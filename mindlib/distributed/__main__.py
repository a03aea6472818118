"""``torchrun ... -m mindlib.distributed``: one experiment (notebook 06's ``experiment.run``) over all ranks.

The command line of :mod:`mindlib.distributed`; kept apart from the process-group helpers that
:func:`mindlib.train.fit` imports, because it builds on :mod:`mindlib.experiment`, which builds on ``train``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mindlib import data, distributed, experiment, project
from mindlib.distributed import init, shutdown


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m mindlib.distributed``: one experiment (notebook 06's ``experiment.run``) over all ranks;
    rank 0 writes ``<results_dir>/ddp-<decoder>.json`` and the model."""
    defaults = experiment.ExperimentConfig()  # notebook 06's defaults, where this check does not set its own
    ap = argparse.ArgumentParser(
        prog="python -m mindlib.distributed",
        description=distributed.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--dataset", default="synthetic", help='"synthetic" or the path of an Algonauts 2025 folder'
    )
    ap.add_argument("--size", default="smoke", help="synthetic study size: smoke | demo | full")
    ap.add_argument("--backbone", default="tribe")
    ap.add_argument("--decoder", default="mind", choices=[d for d in experiment.DECODERS if d != "ridge"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=defaults.d_model)
    ap.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="the global batch, split over the ranks"
    )
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument(
        "--device", default=defaults.device, help="auto | cpu | cuda (each rank takes GPU LOCAL_RANK)"
    )
    ap.add_argument("--checkpoint-dir", default="", help="resume from here after an interruption")
    ap.add_argument("--results-dir", default="results/ddp")
    args = ap.parse_args(argv)
    g = init("gloo" if args.device == "cpu" else None)
    try:
        root = project.resolve_dataset(args.dataset, size=args.size, seed=0)
        study = data.load_study(root, args.backbone)
        config = experiment.ExperimentConfig(
            decoder=args.decoder,
            epochs=args.epochs,
            d_model=args.d_model,
            batch_size=args.batch_size,
            lrs=(args.lr,),
            device=args.device,
            progress=g.is_main,
        )
        result = experiment.run(study, config, checkpoint_dir=args.checkpoint_dir or None)
        if g.is_main:
            name = f"ddp-{args.decoder}"
            experiment.save(result, Path(args.results_dir) / f"{name}.pt")
            path = project.write_results(name, {**result.summary(), "world_size": g.world}, args.results_dir)
            print(f"{g.world} process(es): val r {result.val['pearson']['mean']:.4f}; wrote {path}")
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
