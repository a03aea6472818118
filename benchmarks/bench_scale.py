"""The scale benchmark: a study with the Algonauts 2025 training release's shape, loaded and trained on.

``python -m benchmarks --only scale --fraction 0.05`` (not part of ``make test``) writes (or reuses) a study with

- the release's run list: Friends seasons 1-6 as half-episodes (``s01e01a`` ... ``s06e25b``; 292 stimuli) and
  Movie10 (bourne01-10, wolf01-17, figures01-12 and life01-05, both watched twice; 44 stimuli, 61 runs): 353 runs;
- 400-600 TRs per stimulus (TR 1.49 s), four subjects with the release's missing runs (sub-02 lacks s05e20a;
  sub-05 lacks s04e01a, s04e01b, s04e13b: ``mindlib.layout.KNOWN_MISSING_RUNS``), 1000 parcels;
- TRIBE's feature dimensions at 2 Hz, float16 on disk: video 1408, text 3072, audio 1024 with three layer groups
  (stored as 5 layers per modality, grouped 3 + 1 + 1 by ``data.LAYER_FRACTIONS``): 16,512 dimensions per TR and
  lag. The real TRIBE store keeps 40 / 28 / 24 layers, which costs more disk and read time, not more memory once
  grouped.

``--fraction f`` keeps every ``1/f``-th stimulus (and those of the missing runs). Features and fMRI hold a planted
low-rank signal (so validation r means something); the timings do not depend on it.

Each stage runs in a fresh process so its peak RSS (``VmHWM``) is its own: ``load`` (``data.load_study``),
``train`` (one epoch of each neural decoder at d = 256, validation included), ``ridge`` (the FIR ridge, lags 2, 3
and 4 TRs, as :mod:`mindlib.reduce` bounds it: the study aligned at lag 2, features reduced per modality by PCA
to ``--ridge-components`` on the training stimuli, the other lags by shifting the reduced tokens, then
``RidgeEncoder``; at full dimension the F × F Gram matrix of 3 × 16,512 columns would be 20 GB per subject).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRIENDS_EPISODES = {1: 24, 2: 24, 3: 25, 4: 24, 5: 24, 6: 25}  # half-episodes a and b of each
MOVIE10 = {"bourne": (10, 1), "wolf": (17, 1), "figures": (12, 2), "life": (5, 2)}  # clips, viewings
TRIBE_DIMS = {"video": 1408, "text": 3072, "audio": 1024}
N_LAYERS = 5  # grouped into 3 by LAYER_FRACTIONS (0.6, 0.8, 1.0): layers 0-2, 3, 4
TR_RANGE = (400, 600)
N_PARCELS = 1000
RANK = 16  # latent dimensions of the planted signal
FORMAT = 1


def release_runs() -> list[str]:
    """The 353 runs of the training release (Friends s1-s6 halves, Movie10 with its repeats)."""
    friends = [
        f"s{s:02d}e{e:02d}{h}" for s, n in FRIENDS_EPISODES.items() for e in range(1, n + 1) for h in "ab"
    ]
    movies = [
        f"{film}{i:02d}" + (f"_run-{k}" if views > 1 else "")
        for film, (n, views) in MOVIE10.items()
        for i in range(1, n + 1)
        for k in range(1, views + 1)
    ]
    return friends + movies


def stimuli_of(runs: list[str]) -> list[str]:
    from mindlib import layout

    return list(dict.fromkeys(layout.stimulus_of(r) for r in runs))


def selected_runs(fraction: float) -> list[str]:
    """Runs of every ``round(1/fraction)``-th stimulus, plus the stimuli of the known missing runs."""
    from mindlib import layout

    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    runs = release_runs()
    stimuli = stimuli_of(runs)
    step = max(1, round(1 / fraction))
    keep = set(stimuli[::step]) | {
        layout.stimulus_of(r) for rs in layout.KNOWN_MISSING_RUNS.values() for r in rs
    }
    return [r for r in runs if layout.stimulus_of(r) in keep]


def build(root: Path, fraction: float, seed: int = 0) -> dict:
    """Write (or reuse, when its ``scale.json`` matches) the study under ``root``; returns that description."""
    import h5py

    from mindlib import layout
    from mindlib.data import FeatureStore

    runs = selected_runs(fraction)
    stamp = {
        "format": FORMAT,
        "fraction": fraction,
        "seed": seed,
        "runs": runs,
        "dims": TRIBE_DIMS,
        "n_layers": N_LAYERS,
        "tr_range": list(TR_RANGE),
    }
    meta = root / "scale.json"
    if meta.exists() and json.loads(meta.read_text()) == stamp:
        return stamp
    rng = np.random.default_rng(seed)
    stimuli = stimuli_of(runs)
    n_trs = {s: int(rng.integers(TR_RANGE[0], TR_RANGE[1] + 1)) for s in stimuli}
    maps = {
        m: (rng.standard_normal((RANK, N_LAYERS * d)) / math.sqrt(RANK)).astype(np.float32)
        for m, d in TRIBE_DIMS.items()
    }
    readout = rng.standard_normal((RANK, N_PARCELS)).astype(np.float32)
    store = FeatureStore.create(
        root,
        "tribe",
        modalities={m: (N_LAYERS, d) for m, d in TRIBE_DIMS.items()},
        fusion="none",
        overwrite=True,
    )
    signal = {}
    from tqdm import tqdm

    for s in tqdm(stimuli, desc="writing features", unit="stimulus"):
        n_frames = int(n_trs[s] * 1.49 * store.feature_hz)
        z = np.cumsum(rng.standard_normal((n_frames, RANK)).astype(np.float32), axis=0) * 0.1  # slow latents
        z -= z.mean(0)
        for m, d in TRIBE_DIMS.items():
            x = z @ maps[m] + 0.5 * rng.standard_normal((n_frames, N_LAYERS * d), dtype=np.float32)
            path = store.path(s, m)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, x.reshape(n_frames, N_LAYERS, d).astype(np.float16))
        # the TR response: latents averaged over each TR, 3 TRs (4.47 s) later, read out to the parcels
        per_tr = np.arange(n_trs[s]) * 1.49 - 3 * 1.49
        idx = np.clip((per_tr * store.feature_hz).astype(int), 0, n_frames - 1)
        signal[s] = z[idx] @ readout
    for si, subject in enumerate(layout.SUBJECTS):
        missing = set(layout.KNOWN_MISSING_RUNS.get(subject, ()))
        for study in layout.STUDIES:
            path = layout.fmri_path(root, subject, study)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                for i, r in enumerate(runs):
                    if layout.study_of(r) == study and r not in missing:
                        y = signal[layout.stimulus_of(r)] + 2.0 * rng.standard_normal(
                            signal[layout.stimulus_of(r)].shape
                        )
                        f.create_dataset(layout.h5_key(r, 1 + si + i // 8), data=y.astype(np.float32))
    meta.write_text(json.dumps(stamp))
    return stamp


CACHE_DIR = "aligned_cache"  # the FeatureCache folder inside a scale study


def disk_bytes(root: Path, cache: bool = False) -> int:
    """Bytes of the study's files (``cache=False``) or of its aligned-feature cache (``cache=True``)."""
    top = root / CACHE_DIR if cache else root
    return sum(
        p.stat().st_size for p in top.rglob("*") if p.is_file() and (cache or CACHE_DIR not in p.parts)
    )


def peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM`` of /proc/self/status; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class AnonPeak:
    """Largest ``RssAnon`` of this process (anonymous memory: what the kernel cannot drop and read back later),
    sampled every ``interval`` seconds in a thread. ``VmHWM`` also counts the memory-mapped cache pages a process
    touched, which the kernel reclaims under pressure; this is the part that must fit."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, self.now())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.now())


# ------------------------------------------------------------------------------------------ stages (child)


def stage(name: str, root: str, device: str, decoders: list[str], ridge_components: int, mmap: bool) -> dict:
    """Run one stage in this process and return its figures (the parent starts one process per stage)."""
    import scipy.linalg  # noqa: F401  (imported before the baseline RSS is read)

    from mindlib import baselines, data, experiment, train  # noqa: F401
    from mindlib.align import DEFAULT_LAG_TRS
    from mindlib.cache import FeatureCache

    base_rss, anon = peak_rss_bytes(), AnonPeak()
    t0 = time.perf_counter()
    cache = FeatureCache(Path(root) / CACHE_DIR, "float16") if mmap else None
    fir_lags = experiment.ExperimentConfig().fir_lags_trs  # the ridge's FIR delays, as Table 1 runs it
    lags = (min(fir_lags),) if name == "ridge" else (DEFAULT_LAG_TRS,)  # the ridge shifts from its first lag
    study = data.load_study(root, "tribe", lags_trs=lags, feature_cache=cache)
    out: dict = {"load_s": time.perf_counter() - t0}
    arrays = {id(x): x for r in study.records for x in r.features.values()}
    out["feature_bytes_in_memory"] = int(
        sum(getattr(x, "nbytes", 0) for x in arrays.values() if not isinstance(x, np.memmap))
    )
    out["n_subject_trs"] = int(sum(r.fmri.shape[0] for r in study.records))
    out["n_stimulus_trs"] = int(sum(x.shape[0] for x in arrays.values()) // len(study.modalities))
    out["feature_dim"] = int(sum(study.feature_dims.values()))
    if name == "train":
        for decoder in decoders:
            config = experiment.ExperimentConfig(
                decoder=decoder, d_model=256, epochs=1, lrs=(3e-3,), device=device
            )
            model = experiment.build(config, study)
            fit = train.fit(model, study.select("train"), study.select("val"), config.train_config())
            out[f"{decoder}_epoch_s"] = fit.history[0]["seconds"]
            out[f"{decoder}_val_r"] = fit.best_val_r
    elif name == "ridge":
        out.update(ridge_stage(study, ridge_components))
    out["peak_rss_bytes"], out["base_rss_bytes"] = peak_rss_bytes(), base_rss
    out["peak_anon_bytes"] = anon.stop()
    return out


def ridge_stage(study, n_components: int) -> dict:
    """The FIR ridge at bounded memory (:mod:`mindlib.reduce`): the study aligned at the first FIR lag, PCA per
    modality fitted on the training stimuli, FIR lags by shifting the reduced tokens, then RidgeEncoder with its
    penalties selected on validation."""
    from mindlib import experiment, reduce, train
    from mindlib.baselines import RidgeEncoder

    t0 = time.perf_counter()
    fir_lags = experiment.ExperimentConfig().fir_lags_trs
    fir, _ = reduce.reduced_fir_study(study, fir_lags, n_components, progress=False)
    pca_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = RidgeEncoder(n_subjects=len(study.subjects), dtype="float32", standardise=False).fit(
        fir.select("train"), fir.select("val")
    )
    fit_s = time.perf_counter() - t1
    val_r = train.evaluate(model, fir.select("val"))["pearson"]["mean"]
    return {
        "ridge_pca_s": pca_s,
        "ridge_fit_s": fit_s,
        "ridge_val_r": val_r,
        "ridge_dim": int(sum(fir.feature_dims.values())),
    }


# ------------------------------------------------------------------------------------------ parent


def run_scale(
    root: Path,
    fraction: float,
    device: str = "cpu",
    decoders=("baseline", "mind"),
    ridge_components: int = 256,
    mmap: bool = False,
    stages=("load", "train", "ridge"),
) -> dict:
    """Build or reuse the study, then each stage in its own process; returns every figure measured."""
    t0 = time.perf_counter()
    stamp = build(root, fraction)
    result: dict = {
        "fraction": fraction,
        "build_s": time.perf_counter() - t0,
        "disk_bytes": disk_bytes(root),
        "n_runs": len(stamp["runs"]),
        "n_stimuli": len(stimuli_of(stamp["runs"])),
    }
    if mmap:  # the first load computes and writes the cache (timed cold), a second one maps it (warm)
        shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
        stages = ("load", "warm_load", *[s for s in stages if s != "load"])
    for name in stages:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_scale",
            name,
            str(root),
            device,
            ",".join(decoders),
            str(ridge_components),
            "1" if mmap else "0",
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"scale stage {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        result[f"{name}_peak_rss_bytes"] = figures.pop("peak_rss_bytes")
        result[f"{name}_base_rss_bytes"] = figures.pop("base_rss_bytes")
        result[f"{name}_peak_anon_bytes"] = figures.pop("peak_anon_bytes")
        if name == "warm_load":
            result["warm_load_s"] = figures["load_s"]
        for k, v in figures.items():
            result.setdefault(k, v)
    if mmap:
        result["cache_bytes"] = disk_bytes(root, cache=True)
    return result


if __name__ == "__main__":
    name, root, device, decoders, comps, mmap = sys.argv[1:7]
    print(json.dumps(stage(name, root, device, decoders.split(","), int(comps), mmap == "1")))


GB = 1e9


def readme_block(table, device: str) -> str:
    """Markdown for the README's scale block: the table, the machine and its load, the command to rerun."""
    from benchmarks.common import markdown_table

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return "\n".join(
        [
            markdown_table(table),
            "",
            f"Device: {device}; load average {load:.2f} at the end of the run. Rerun: `.venv/bin/python -m benchmarks "
            "--only scale --fraction 0.02 0.07 --feature-cache --update-readme`.",
        ]
    )


def extrapolate(ns: list[float], values: list[float], n_full: float, base: float = 0.0) -> float:
    """A figure at ``n_full`` stimuli from its values at ``ns`` stimuli: the least-squares line through the
    points when there are two or more, else the line through ``(0, base)`` and the one point."""
    if len(ns) >= 2:
        slope, intercept = np.polyfit(np.asarray(ns, float), np.asarray(values, float), 1)
        return float(intercept + slope * n_full)
    return float(base + (values[0] - base) * n_full / ns[0])


def scale_table(results: list[dict]):
    """One row per figure, one column per measured fraction, and the full release extrapolated linearly in the
    number of stimuli (:func:`extrapolate`: through the measured points; with one point, from zero, or for peak
    RSS from the stage's RSS with its imports done and no data loaded)."""
    import pandas as pd

    results = sorted(results, key=lambda r: r["n_stimuli"])
    n_full = len(stimuli_of(release_runs()))
    ns = [r["n_stimuli"] for r in results]

    def row(label, key, scale=1.0, fmt="{:.1f}", full=True, base_key=None):
        values = [r[key] / scale for r in results]
        base = min(r[base_key] for r in results) / scale if base_key else 0.0
        out = [fmt.format(v) for v in values]
        at_full = extrapolate(ns, values, n_full, base) if full else math.nan
        # a size that fell between the measured points is noise, not a trend: no extrapolation then
        shrinking = len(values) >= 2 and values[-1] < values[0]
        return [label, *out, "–" if (not full or shrinking or at_full < 0) else fmt.format(at_full)]

    rows = [
        [
            "stimuli / runs",
            *[f"{r['n_stimuli']} / {r['n_runs']}" for r in results],
            f"{n_full} / {len(release_runs())}",
        ],
        row("stimulus TRs (features)", "n_stimulus_trs", fmt="{:.0f}"),
        row("subject TRs (fMRI)", "n_subject_trs", fmt="{:.0f}"),
        row("disk (GB, float16 features)", "disk_bytes", GB, "{:.2f}"),
        row("aligned features in anonymous memory (GB)", "feature_bytes_in_memory", GB, "{:.2f}"),
        row(
            "load_study (s)"
            + (", first: aligns and writes the cache" if "warm_load_s" in results[0] else ""),
            "load_s",
        ),
    ]
    if "warm_load_s" in results[0]:
        rows.append(row("load_study (s), again: maps the cache", "warm_load_s"))
        rows.append(row("aligned-feature cache on disk (GB, float16)", "cache_bytes", GB, "{:.2f}"))
    for stage in ("load", "warm_load", "train", "ridge"):
        if all(f"{stage}_peak_rss_bytes" in r for r in results):
            rows.append(
                row(
                    f"peak RSS, {stage.replace('_', ' ')} stage (GB)",
                    f"{stage}_peak_rss_bytes",
                    GB,
                    "{:.2f}",
                    base_key=f"{stage}_base_rss_bytes",
                )
            )
        if all(f"{stage}_peak_anon_bytes" in r for r in results):
            rows.append(
                row(
                    f"peak anonymous RSS, {stage.replace('_', ' ')} stage (GB)",
                    f"{stage}_peak_anon_bytes",
                    GB,
                    "{:.2f}",
                    base_key=f"{stage}_base_rss_bytes",
                )
            )
    for key in sorted(k for k in results[0] if k.endswith("_epoch_s")):
        decoder = key[: -len("_epoch_s")]
        rows.append(row(f"one epoch, {decoder} d=256, with validation (s)", key))
        rows.append(row(f"validation r, {decoder} (1 epoch)", f"{decoder}_val_r", fmt="{:.3f}", full=False))
    if "ridge_fit_s" in results[0]:
        rows.append(row(f"ridge: PCA and FIR shifts to {results[0]['ridge_dim']} columns (s)", "ridge_pca_s"))
        rows.append(row("ridge: fit, alphas on validation (s)", "ridge_fit_s"))
        rows.append(row("validation r, ridge", "ridge_val_r", fmt="{:.3f}", full=False))
    columns = [
        "measure",
        *[f"{r['n_stimuli']} stimuli (f = {r['n_stimuli'] / n_full:.3f})" for r in results],
        "full release (extrapolated)",
    ]
    return pd.DataFrame(rows, columns=columns)
