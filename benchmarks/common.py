"""Shared benchmark plumbing: device, threads, timing, memory, tables, CSV files, the README block.

Memory is measured two ways, one per device:

- everywhere: the bytes of the tensors autograd saves for the backward pass, collected with
  :func:`torch.autograd.graph.saved_tensors_hooks` (:func:`saved_bytes`). Each storage counts once;
  parameters and the inputs the caller names are left out (they exist whether or not autograd
  runs), so the number is the activation memory a path adds for training. It is exact and
  deterministic, and works on CPU, where ``tracemalloc`` does not see torch's allocator.
- CUDA only: ``torch.cuda.max_memory_allocated`` above the memory held before the call
  (:func:`cuda_peak_bytes`), which also counts transient buffers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # git-ignored
README_START = "<!-- perf:start -->"
README_END = "<!-- perf:end -->"
MB = 1024.0**2
MIN_SHARE = 0.85  # CPU share below which a table is flagged as measured on a busy machine


# ------------------------------------------------------------------------------------------ device


def resolve_device(device: str | None = None) -> torch.device:
    """``"cuda"`` when asked for (error if absent), ``"cpu"`` likewise; None = cuda if available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; run with --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: choose 'cpu' or 'cuda'")
    return dev


def machine_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_all_threads() -> int:
    """``torch.set_num_threads`` to the cores the machine gives this process; returns the count."""
    n = machine_threads()
    torch.set_num_threads(n)
    return n


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` or ``lscpu``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, flags=re.M)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_description(device: torch.device) -> str:
    """One line naming the hardware and torch set-up the numbers come from."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return f"cuda:{index} {name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return (
        f"cpu {cpu_model()}, {machine_threads()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ timing


def median_time(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls.

    Parameters
    ----------
    fn : callable
        The work to time (its result is dropped).
    device : torch.device
        Synchronised before and after each call on CUDA.
    repeats, warmup : int
        Timed calls and untimed warm-up calls.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"median_time: repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def round_robin_times(
    fns: Mapping[str, Callable[[], object]], device: torch.device, repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall times (s) of each function, ``repeats`` each, timed round-robin after ``warmup`` rounds.

    Interleaving (a, b, c, a, b, c, ...) rather than timing each function in a block keeps a burst
    of load from another process from landing on one function only: the comparison stays side by side.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"round_robin_times: repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median_times(
    fns: Mapping[str, Callable[[], object]], device: torch.device, repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median of :func:`round_robin_times` per function (s)."""
    return {name: statistics.median(t) for name, t in round_robin_times(fns, device, repeats, warmup).items()}


def load_average() -> float:
    """1-minute load average (NaN where unknown): above the core count, other work shares the CPU."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


# ------------------------------------------------------------------------------------------ memory


@contextlib.contextmanager
def saved_bytes(exclude: Iterable[Tensor] = ()) -> Iterator[dict[int, int]]:
    """Count the bytes autograd saves for backward inside the block.

    Yields a dict ``{storage address: bytes}`` filled while the block runs; ``sum(d.values())`` is the
    total. Storages of the ``exclude`` tensors (parameters, inputs) are not counted; views of one
    storage count once.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield seen


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> float:
    """Peak CUDA memory allocated by ``fn()`` above what was held before; NaN on CPU."""
    if device.type != "cuda":
        return float("nan")
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - before)


# ------------------------------------------------------------------------------------------ tables


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@contextlib.contextmanager
def cpu_share() -> Iterator[dict[str, float]]:
    """Measure the share of its threads' CPU time this process got in the block.

    Yields a dict that gets ``share`` = process CPU time / (wall time x torch threads) on exit:
    about 1 when the cores were ours (multi-threaded GEMMs), well below when other processes
    competed for them (then the times are inflated, and the paths with more small ops suffer most).
    """
    out: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        wall = time.perf_counter() - wall0
        out["share"] = (time.process_time() - cpu0) / max(wall * torch.get_num_threads(), 1e-9)
        out["seconds"] = wall


def print_table(
    title: str, df: pd.DataFrame, device: str, notes: Iterable[str] = (), share: float | None = None
) -> None:
    """Print a titled table with the device line (``DataFrame.to_string``: tabulate is optional)."""
    print(f"\n## {title}")
    print(f"device: {device}; load average {load_average():.2f} over {machine_threads()} cores")
    if share is not None:
        warn = "" if share >= MIN_SHARE else "  <- other processes shared the cores: rerun on an idle machine"
        print(f"CPU share while measuring: {share:.2f} (CPU time / (wall x threads)){warn}")
    for note in notes:
        print(note)
    print(df.to_string(index=False, float_format=_fmt, na_rep="-"))


def write_csv(
    df: pd.DataFrame,
    name: str,
    device: str,
    results_dir: Path | str = RESULTS_DIR,
    share: float | None = None,
) -> Path:
    """Write ``<results_dir>/<name>.csv`` with ``device`` (and ``cpu_share``) columns; returns the path."""
    path = Path(results_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"device": device} if share is None else {"device": device, "cpu_share": round(share, 3)}
    df.assign(**extra).to_csv(path, index=False)
    return path


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of ``df`` (no dependency on ``tabulate``)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "–" if v != v else _fmt(v)
        return str(v)

    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def replace_block(text: str, body: str, start: str = README_START, end: str = README_END) -> str | None:
    """``text`` with the lines between the ``start`` and ``end`` markers replaced by ``body``.

    Returns None when the markers are missing or out of order (the caller decides what to say).
    """
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        return None
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def update_readme(readme: Path | str, body: str, block: str = "perf") -> bool:
    """Rewrite only the ``<!-- {block}:start -->`` ... ``<!-- {block}:end -->`` block of ``readme``; returns False
    (and edits nothing) without those markers."""
    readme = Path(readme)
    text = readme.read_text()
    new = replace_block(text, body, f"<!-- {block}:start -->", f"<!-- {block}:end -->")
    if new is None:
        return False
    if new != text:
        readme.write_text(new)
    return True
