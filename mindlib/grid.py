"""Grids of independent runs (Tables 1 to 4, seeds, ISG): cells, their results files, and an engine that runs them.

Each cell of Tables 1 to 4 is one execution of notebook 06 with its parameters (docs/method.md §9). This module
owns what notebook 08 used to do inline:

- **cells and tags**: :class:`Cell` ``(backbone, decoder, mode, seed)`` with the tag ``backbone-decoder-mode-sN``
  (an ablation cell also carries notebook-06 options, e.g. ``fusion``); :func:`table1_cells`, :func:`table2_cells`
  and :func:`ablation_cells` list them in table order;
- **result paths**: ``<runs_dir>/<tag>.json`` (notebook 06's results file), ``<tag>.params.json`` (the
  parameters it was made with), ``<tag>.ipynb`` (the executed notebook) and ``logs/`` (submitit's stdout and
  stderr per job);
- **the parameter-matched cache**: a results file is reused only when its ``.params.json`` equals the
  parameters the cell would run with now (a demo-size file is never reused for a full-size table);
- **the reuse rules**: with several seeds the first seed searches the learning-rate × weight-decay grid and later
  seeds reuse its choice (unless ``grid_every_seed``); the ISG column is measured on the first seed of mode
  ``both``; ridge (closed form, no seed) runs once per backbone;
- **the engine**: cells run as jobs through `submitit <https://github.com/facebookincubator/submitit>`_ —
  ``engine="local"`` (the default) runs each job in its own process on this machine, ``workers`` at a time;
  ``engine="slurm"`` submits them to a Slurm cluster (partition, GPUs per job, time limit);
- **failures, retries, resume**: a failing cell is retried ``retries`` times; the other cells still run; at the
  end :class:`GridError` names every failed cell with the path of its log and of its executed notebook. A
  grid interrupted or failed half-way resumes by running it again: finished cells come from the cache.

Usage::

    spec = grid.GridSpec(dataset="synthetic", size="demo", seeds=(0,), epochs=10)
    runner = grid.GridRunner("results/runs", engine="local", workers=2)
    rows = runner.run(spec, grid.table1_cells(["tribe"], ["baseline", "mind"], spec.seeds))
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from tqdm import tqdm

from mindlib import notebooks
from mindlib.experiment import ExperimentConfig
from mindlib.params import check_literal_fields, default_of
from mindlib.progress import progress_bar
from mindlib.project import portable_path

__all__ = [
    "Cell",
    "GridSpec",
    "GridRunner",
    "GridError",
    "CellFailure",
    "ENGINES",
    "table1_cells",
    "table2_cells",
    "ablation_cells",
    "variant_of",
    "OPTIONS",
    "AFIRE_ABLATIONS",
    "PARAMETRISATIONS",
    "cell_params",
    "run_notebook_cell",
    "cell_model",
    "spec_from_params",
    "runner_from_params",
]

Engine = Literal["local", "slurm"]  # submitit.LocalExecutor | submitit.AutoExecutor on Slurm
ENGINES: tuple[str, ...] = get_args(Engine)
POLL_S = 0.2  # seconds between looks at running jobs


DEFAULT_BALANCE = default_of(
    ExperimentConfig, "balance"
)  # MIND's balance loss unless a Table 2 row says otherwise


@dataclass(frozen=True, order=True)
class Cell:
    """One execution of notebook 06: a decoder on a backbone with a router mode, a seed and (MIND) the kind
    of load-balance loss (:class:`mindlib.sadgate.SADGateConfig` ``balance``)."""

    backbone: str
    decoder: str
    mode: str
    seed: int
    balance: str = DEFAULT_BALANCE
    # further notebook-06 parameters of an ablation (OPTIONS), as sorted (name, value) pairs
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in dict(self.options).items())))
        unknown = [k for k, _ in self.options if k not in OPTIONS]
        if unknown:
            raise ValueError(
                f"Cell options {unknown} are not ablation parameters; choose among {list(OPTIONS)} (balance, mode "
                "and seed are fields of the cell itself)"
            )

    @property
    def tag(self) -> str:
        """``backbone-decoder-mode-sN`` (``backbone-decoder-mode-balance-sN`` for another balance loss, and one
        ``-name_value`` per option, e.g. ``tribe-mind-both-fusion_sum-s0``): the stem of the cell's files in
        ``runs_dir``."""
        kind = "" if self.balance == DEFAULT_BALANCE else f"-{self.balance}"
        opts = "".join(f"-{k}_{v}" for k, v in self.options)
        return f"{self.backbone}-{self.decoder}-{self.mode}{kind}{opts}-s{self.seed}"


# the notebook 06 parameters an ablation cell may set besides the cell's own fields (Tables 3 and 4 of notebook 08)
OPTIONS: tuple[str, ...] = ("fusion", "modality_dropout", "router_subject", "lambda_bias")

AFIRE_ABLATIONS: dict[str, dict[str, Any]] = {  # Table 3 rows: name -> Cell options (docs/method.md §4)
    "concat": {},  # the default fusion: Table 1's MIND cell
    "sum": {"fusion": "sum"},
    "gated": {"fusion": "gated"},
    "modality_dropout": {"modality_dropout": 0.2},  # concat, each training window loses a modality with P 0.2
}
PARAMETRISATIONS: dict[str, dict[str, Any]] = {  # Table 4 rows: name -> overrides (docs/method.md §5)
    "default": {},  # e_s on the router path, ‖B‖² penalised, E·ΣImp² balance: Table 1's MIND cell
    "no_router_subject": {"router_subject": False},  # the subject acts through B_s alone (no redundancy)
    "unpenalised_bias": {"lambda_bias": 0.0},  # λ2 = 0
    "switch_balance": {"balance": "switch"},  # the paper's balance loss (Eq. 6): Table 2's cell
}


def table1_cells(backbones: Sequence[str], decoders: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """Table 1 cells in table order: every decoder on every backbone (router ``both``); ridge, a closed-form fit
    with no seed, gets one cell per backbone (the first seed)."""
    return [
        Cell(b, d, "both", s)
        for b in backbones
        for d in decoders
        for s in (seeds if d != "ridge" else seeds[:1])
    ]


def table2_cells(
    backbones: Sequence[str],
    modes: Sequence[str],
    seeds: Sequence[int],
    balances: Sequence[str] = (DEFAULT_BALANCE,),
) -> list[Cell]:
    """Table 2 cells in table order: MIND with each router mode on every backbone, then (router ``both``)
    each balance-loss kind of ``balances`` other than the default, the ablation that chose the default."""
    cells = [Cell(b, "mind", m, s) for b in backbones for m in modes for s in seeds]
    return cells + [
        Cell(b, "mind", "both", s, k)
        for b in backbones
        for k in balances
        if k != DEFAULT_BALANCE
        for s in seeds
    ]


def ablation_cells(
    backbones: Sequence[str], seeds: Sequence[int], variants: dict[str, dict[str, Any]]
) -> list[Cell]:
    """Ablation cells in table order: MIND (router ``both``) with each variant's overrides on every backbone.

    ``variants`` maps a row name to notebook-06 overrides (:data:`AFIRE_ABLATIONS`, :data:`PARAMETRISATIONS`):
    ``balance`` sets the cell's balance loss, the rest become its :data:`OPTIONS`. A variant without overrides
    is Table 1's MIND cell itself (the same tag: its results file is reused).
    """
    cells = []
    for b in backbones:
        for overrides in variants.values():
            rest = {k: v for k, v in overrides.items() if k != "balance"}
            balance = overrides.get("balance", DEFAULT_BALANCE)
            cells += [Cell(b, "mind", "both", s, balance, tuple(rest.items())) for s in seeds]
    return cells


def variant_of(cell: Cell, variants: dict[str, dict[str, Any]]) -> str:
    """The name in ``variants`` whose overrides ``cell`` carries (the inverse of :func:`ablation_cells`)."""
    have = {**dict(cell.options), **({"balance": cell.balance} if cell.balance != DEFAULT_BALANCE else {})}
    for name, overrides in variants.items():
        if dict(overrides) == have:
            return name
    raise KeyError(f"cell {cell.tag} matches none of the variants {list(variants)}")


@dataclass(frozen=True)
class GridSpec:
    """The parameters shared by every cell of a grid (notebook 08's parameters cell passes them on)."""

    dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
    features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
    size: str = "demo"  # synthetic study size
    seeds: tuple[int, ...] = (0,)  # seeds per cell; the first one searches the grid
    grid_every_seed: bool = False  # True: every seed searches the lr × weight-decay grid
    isg_subjects: tuple[str, ...] = ("sub-01",)  # ISG column (first seed, mode "both"); () skips it
    d_model: int = default_of(ExperimentConfig, "d_model")  # d, AFIRE token dim
    epochs: int = default_of(ExperimentConfig, "epochs")  # epochs per grid cell
    lrs: tuple[float, ...] = (
        3e-3,
    )  # learning-rate grid of every decoder (ExperimentConfig's two would double each fit)
    weight_decays: tuple[float, ...] = default_of(ExperimentConfig, "weight_decays")  # weight-decay grid
    fir_lags_trs: tuple[float, ...] = default_of(ExperimentConfig, "fir_lags_trs")  # ridge FIR delays in TRs
    device: str = default_of(ExperimentConfig, "device")  # "auto" | "cpu" | "cuda"

    def __post_init__(self) -> None:
        for name in ("seeds", "isg_subjects", "lrs", "weight_decays", "fir_lags_trs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.seeds:
            raise ValueError("GridSpec.seeds must hold at least one seed, e.g. seeds=(0,)")


def cell_params(cell: Cell, spec: GridSpec, runs_dir: str | Path) -> dict[str, Any]:
    """Notebook 06's parameters for ``cell`` (what its ``.params.json`` holds).

    A later seed reads the first seed's results file for its learning rate and weight decay, so the first
    seed's cell must have run before (:class:`GridRunner` orders them so).
    """
    runs_dir = Path(runs_dir)
    grid = dict(lrs=list(spec.lrs), weight_decays=list(spec.weight_decays))
    if (
        cell.seed != spec.seeds[0] and not spec.grid_every_seed
    ):  # reuse the first seed's choice (on validation)
        first = replace(cell, seed=spec.seeds[0])
        path = runs_dir / f"{first.tag}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: cell {cell.tag} reuses the grid choice of {first.tag}, which has not run "
                "(run the first seed's cells first, or set grid_every_seed=True)"
            )
        chosen = json.loads(path.read_text())
        grid = dict(lrs=[chosen["best_lr"]], weight_decays=[chosen["best_weight_decay"]])
    first_seed_isg = (
        cell.decoder != "ridge" and cell.mode == "both" and cell.seed == spec.seeds[0] and not cell.options
    )
    return dict(
        dataset=spec.dataset,
        size=spec.size,
        seed=cell.seed,
        backbone=cell.backbone,
        decoder=cell.decoder,
        mode=cell.mode,
        balance=cell.balance,
        d_model=spec.d_model,
        epochs=spec.epochs,
        fir_lags_trs=list(spec.fir_lags_trs),
        device=spec.device,
        tag=cell.tag,
        results_dir=portable_path(runs_dir.parent),  # the same on every clone
        fig_dir="",
        isg_subjects=list(spec.isg_subjects) if first_seed_isg else [],
        features_root=spec.features_root,
        **grid,
        **dict(cell.options),
    )


def run_notebook_cell(params: dict[str, Any], runs_dir: str, num_threads: int = 0) -> str:
    """Execute notebook 06 with ``params`` (one cell of a grid) and return the path of its results file.

    The job function :class:`GridRunner` submits by default. The executed notebook is written to
    ``<runs_dir>/<tag>.ipynb``; on failure it holds the traceback in the failing cell's output.
    """
    notebooks.execute(
        notebooks.find("06"),
        params["size"],
        out_dir=runs_dir,
        parameters={**params, "num_threads": num_threads},
        out_name=params["tag"],
    )
    return str(Path(runs_dir) / f"{params['tag']}.json")


@dataclass
class CellFailure:
    """A cell that failed on every attempt: its tag, the last error, and where to read why."""

    tag: str
    error: str
    log: str | None  # submitit's stderr of the last attempt (None when it never started)
    notebook: str | None  # the executed notebook, when the job function writes one
    attempts: int

    def __str__(self) -> str:
        where = "; ".join(f"{k}: {v}" for k, v in (("log", self.log), ("notebook", self.notebook)) if v)
        return f"{self.tag} failed after {self.attempts} attempt(s): {self.error.strip().splitlines()[-1]} ({where})"


class GridError(RuntimeError):
    """Raised by :meth:`GridRunner.run` when cells failed; ``failures`` lists them, ``results`` holds the rest."""

    def __init__(self, failures: list[CellFailure], results: dict[str, dict]):
        self.failures, self.results = failures, results
        lines = "\n  ".join(str(f) for f in failures)
        super().__init__(
            f"{len(failures)} grid cell(s) failed:\n  {lines}\nRead the logs above, fix the cause, and run the grid "
            "again: finished cells are reused from their results files"
        )


REBUILD_TOLERANCE = 1e-4  # |val r| difference above which a rebuilt model is reported as not the scored one


def cell_model(
    runs_dir: str | Path,
    tag: str,
    job_fn: Callable[[dict, str, int], str] = run_notebook_cell,
    num_threads: int = 0,
) -> Path:
    """Path of grid cell ``tag``'s trained model, rebuilding the model when this clone does not hold it.

    Models are kept out of git (megabytes each), so a grid resumed from committed results files has every
    cell's scores but only the models trained on this machine. A missing ``<results_dir>/models/<tag>.pt`` is
    rebuilt by running the cell's job again as a local submitit job, with its recorded parameters at the
    learning rate and weight decay the cell chose (no grid search, no leave-one-subject-out fits), in a
    temporary folder, so the committed results files stay as they are. The rebuilt model's validation r is
    printed beside the recorded one, and a warning says so when they differ by more than ``REBUILD_TOLERANCE``
    (e.g. the cell was made on another device): what is then drawn from the model is not exactly the scored cell.

    Parameters
    ----------
    runs_dir : path
        The grid's runs folder (``<results_dir>/runs``); models live in ``<results_dir>/models``.
    tag : str
        The cell's tag, e.g. ``"tribe-mind-both-s0"``.
    job_fn : callable (params, runs_dir, num_threads) -> results path
        What reruns the cell: :func:`run_notebook_cell` unless replaced (as in :class:`GridRunner`).
    num_threads : int
        Torch threads of the rebuild (0: torch's default).

    Returns
    -------
    Path
        ``<results_dir>/models/<tag>.pt``.

    Raises
    ------
    FileNotFoundError
        When the model is missing and so is the cell's ``.params.json`` or results file (the cell never ran).
    """
    runs_dir = Path(runs_dir)
    model = runs_dir.parent / "models" / f"{tag}.pt"
    if model.exists():
        return model
    params_path, results_path = runs_dir / f"{tag}.params.json", runs_dir / f"{tag}.json"
    if not (params_path.exists() and results_path.exists()):
        raise FileNotFoundError(
            f"{model} does not exist and cell {tag} has no {params_path.name} and {results_path.name} in {runs_dir} "
            "to rebuild it from: run the grid (notebook 08) first"
        )
    recorded = json.loads(results_path.read_text())
    params = {
        **json.loads(params_path.read_text()),
        "lrs": [recorded["best_lr"]],
        "weight_decays": [recorded["best_weight_decay"]],
        "isg_subjects": [],
    }
    print(
        f"{model} is not on this machine (models are not committed): rebuilding it by rerunning cell {tag} ..."
    )
    with tempfile.TemporaryDirectory(prefix=f"rebuild-{tag}-") as tmp:
        params["results_dir"], tmp_runs = tmp, Path(tmp) / "runs"
        tmp_runs.mkdir()
        # in its own process, as GridRunner runs a cell
        job = (
            GridRunner(tmp_runs, progress=False).executor().submit(job_fn, params, str(tmp_runs), num_threads)
        )
        rebuilt = json.loads(Path(job.result()).read_text())
        model.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "models" / f"{tag}.pt"), model)
    diff = abs(rebuilt["val_r"] - recorded["val_r"])
    print(
        f"rebuilt {model}: val r {rebuilt['val_r']:.6f} (recorded {recorded['val_r']:.6f}, difference {diff:.1e})"
    )
    if diff > REBUILD_TOLERANCE:
        warnings.warn(
            f"the rebuilt model of cell {tag} has val r {rebuilt['val_r']:.6f}, the recorded cell "
            f"{recorded['val_r']:.6f} ({results_path}): what is computed from {model} is not the scored cell's "
            "model (a different device or library version?); rerun the grid here to make them one",
            stacklevel=2,
        )
    return model


@dataclass
class GridRunner:
    """Run grid cells as submitit jobs, reusing results files made with the same parameters.

    Parameters
    ----------
    runs_dir : path
        Where each cell's ``<tag>.json``, ``<tag>.params.json``, ``<tag>.ipynb`` and ``logs/`` go.
    engine : {"local", "slurm"}
        ``"local"``: ``submitit.LocalExecutor``, one process per cell on this machine. ``"slurm"``:
        ``submitit.AutoExecutor`` on the Slurm cluster this machine submits to (``sbatch`` must be on PATH).
    workers : int
        Cells in flight at a time (local: each gets ``cores // workers`` torch threads).
    retries : int
        Extra attempts of a failing cell before it is reported.
    rerun : bool
        Run every cell even when a matching results file exists.
    partition : str
        Slurm partition ("" = the cluster's default).
    gpus_per_job : int
        GPUs per cell (Slurm ``--gpus-per-node``; local: devices made visible to the job).
    time_limit_min : int
        Wall-clock limit per cell, in minutes (Slurm ``--time``; local: the job is killed after it).
    cpus_per_job : int
        Slurm ``--cpus-per-task`` (0: the cluster's default); local jobs use ``cores // workers``.
    job_fn : callable (params, runs_dir, num_threads) -> results path
        What a job runs: :func:`run_notebook_cell` (notebook 06 through papermill) unless replaced.
    progress : bool
        A tqdm bar over cells.
    """

    runs_dir: str | Path
    engine: Engine = "local"
    workers: int = 2
    retries: int = 1
    rerun: bool = False
    partition: str = ""
    gpus_per_job: int = 0
    time_limit_min: int = 120
    cpus_per_job: int = 0
    job_fn: Callable[[dict, str, int], str] = run_notebook_cell
    progress: bool = True
    ran: list[str] = field(default_factory=list, init=False)  # tags executed (not reused) by this runner

    def __post_init__(self) -> None:
        check_literal_fields(self)  # engine
        if self.workers < 1 or self.retries < 0 or self.time_limit_min < 1:
            raise ValueError(
                f"GridRunner needs workers >= 1, retries >= 0 and time_limit_min >= 1; got workers={self.workers}, "
                f"retries={self.retries}, time_limit_min={self.time_limit_min}"
            )
        self.runs_dir = Path(self.runs_dir).resolve()

    # ---------------------------------------------------------------------------- paths and the cache
    def paths(self, cell: Cell) -> dict[str, Path]:
        """``results``, ``params`` and ``notebook`` paths of a cell."""
        return {
            "results": self.runs_dir / f"{cell.tag}.json",
            "params": self.runs_dir / f"{cell.tag}.params.json",
            "notebook": self.runs_dir / f"{cell.tag}.ipynb",
        }

    def cached(self, cell: Cell, params: dict) -> bool:
        """True when the cell's results file exists and was made with exactly ``params``."""
        p = self.paths(cell)
        return (
            p["results"].exists() and p["params"].exists() and json.loads(p["params"].read_text()) == params
        )

    # ---------------------------------------------------------------------------- the engine
    def executor(self):
        """The submitit executor of ``engine`` with the cluster options set."""
        import submitit

        folder = self.runs_dir / "logs" / "%j"
        if self.engine == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=self.time_limit_min, gpus_per_node=self.gpus_per_job)
            return ex
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        options: dict[str, Any] = dict(
            timeout_min=self.time_limit_min,
            gpus_per_node=self.gpus_per_job,
            nodes=1,
            tasks_per_node=1,
            name="mind-cell",
        )
        if self.partition:
            options["slurm_partition"] = self.partition
        if self.cpus_per_job:
            options["cpus_per_task"] = self.cpus_per_job
        ex.update_parameters(**options)
        return ex

    def _threads(self) -> int:
        if self.engine == "slurm":
            return self.cpus_per_job  # 0: torch's default for the CPUs Slurm gave the job
        return max(1, (os.cpu_count() or 1) // self.workers)

    def run(self, spec: GridSpec, cells: Sequence[Cell]) -> list[dict]:
        """Run (or reuse) every cell and return their results files' contents, in the order given.

        One queue, no barrier between phases: first-seed cells are submitted first (they search the grid and
        are the longest), and a later seed's cell is submitted as soon as its own first seed's cell has finished
        (it reuses that cell's grid choice), while other first-seed cells may still be running. ``workers``
        cells are in flight whenever that many are ready.

        Raises
        ------
        GridError
            After every cell has had its attempts, naming each failed cell with its log.
        """
        cells = list(dict.fromkeys(cells))  # a cell listed twice runs once
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        failures: dict[str, CellFailure] = {}
        results: dict[str, dict] = {}
        first = [c for c in cells if c.seed == spec.seeds[0] or spec.grid_every_seed]
        waiting = first + [c for c in cells if c not in first]
        listed = set(cells)

        def blocked(c: Cell) -> bool:  # a later seed waits for its first seed's cell of this call to finish
            parent = replace(c, seed=spec.seeds[0])
            return (
                c not in first
                and parent in listed
                and parent.tag not in results
                and parent.tag not in failures
            )

        # one output in a saved notebook however many cells
        bar = progress_bar(len(cells), "grid cells", disable=not self.progress, unit="cell")
        try:
            self._schedule(spec, waiting, blocked, results, failures, bar)
        finally:
            bar.close()
        if failures:
            raise GridError(list(failures.values()), results)
        return [results[c.tag] for c in cells]

    def _schedule(
        self,
        spec: GridSpec,
        waiting: list[Cell],
        blocked: Callable[[Cell], bool],
        results: dict,
        failures: dict,
        bar,
    ) -> None:
        """Reuse cached cells, submit ready ones at most ``workers`` at a time, retry failures, record outcomes."""
        executor = None
        ready: list[tuple[Cell, dict, int]] = []  # (cell, parameters, attempt), resolved once
        running: list[tuple[Cell, dict, int, Any]] = []
        while waiting or ready or running:
            for c in [c for c in waiting if not blocked(c)]:  # newly unblocked: parameters and cache, once
                waiting.remove(c)
                try:
                    params = cell_params(c, spec, self.runs_dir)
                except FileNotFoundError as err:  # the first seed's cell failed
                    failures[c.tag] = CellFailure(c.tag, str(err), None, None, 0)
                    bar.update(1)
                    continue
                if not self.rerun and self.cached(c, params):
                    results[c.tag] = json.loads(self.paths(c)["results"].read_text())
                    bar.update(1)
                else:
                    ready.append((c, params, 1))
            while ready and len(running) < self.workers:
                c, params, attempt = ready.pop(0)
                executor = executor or self.executor()
                self.paths(c)["params"].unlink(missing_ok=True)  # a half-finished cell is never "cached"
                job = executor.submit(self.job_fn, params, str(self.runs_dir), self._threads())
                running.append((c, params, attempt, job))
            if not running:
                continue
            time.sleep(POLL_S)
            for item in [r for r in running if r[3].done()]:
                running.remove(item)
                c, params, attempt, job = item
                error = job.exception()
                if error is None:
                    self.paths(c)["params"].write_text(json.dumps(params, indent=1))
                    results[c.tag] = json.loads(self.paths(c)["results"].read_text())
                    self.ran.append(c.tag)
                    tqdm.write(f"ran {c.tag}")
                    bar.update(1)
                elif attempt <= self.retries:
                    tqdm.write(
                        f"{c.tag} failed (attempt {attempt}), retrying: {str(error).strip().splitlines()[-1]}"
                    )
                    ready.append((c, params, attempt + 1))
                else:
                    notebook = self.paths(c)["notebook"]
                    failures[c.tag] = CellFailure(
                        c.tag,
                        str(error),
                        str(job.paths.stderr),
                        str(notebook) if notebook.exists() else None,
                        attempt,
                    )
                    bar.update(1)


def spec_from_params(**params: Any) -> GridSpec:
    """A :class:`GridSpec` from notebook parameters, ignoring names it does not have (lists become tuples)."""
    names = set(GridSpec.__dataclass_fields__)
    return GridSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in names})


def runner_from_params(runs_dir: str | Path, **params: Any) -> GridRunner:
    """A :class:`GridRunner` from notebook parameters, ignoring names it does not have."""
    names = {k for k, f in GridRunner.__dataclass_fields__.items() if f.init and k != "runs_dir"}
    return GridRunner(runs_dir, **{k: v for k, v in params.items() if k in names})
