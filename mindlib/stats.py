"""Uncertainty of a comparison between two decoders: paired differences with a confidence interval (docs/method.md §9).

Two decoders scored on the same held-out runs give one paired difference per scored unit (a subject's
run): ``d[u] = r_A[u] - r_B[u]``. With several seeds per decoder the differences form a matrix
``d[seed, u]`` (seed i of A against seed i of B; a decoder with one seed, such as closed-form ridge, is
reused for every seed of the other). What is uncertain about the mean difference is which runs happened
to be scored and which seeds happened to be drawn, so:

- :func:`paired_bootstrap`: percentile interval of the mean of ``d`` resampling units and seeds
  independently with replacement (a two-level bootstrap; with one seed, the ordinary paired bootstrap
  over units).
- :func:`paired_t`: the paired t-test over units (``d`` averaged over seeds), ``scipy.stats.ttest_rel``'s
  statistic written out.
- :func:`seed_interval`: the t interval of the per-seed mean differences (across seeds only).
- :func:`compare` puts these together into a :class:`PairedDifference`, whose :meth:`~PairedDifference.claim`
  words the result by whether the interval excludes zero.

Units inside a subject are not independent (one brain, one set of parcels), and runs of one episode share a
stimulus; resampling runs treats them as exchangeable, which is what "across runs" means here. Read a narrow
interval on few runs with that in mind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "PairedDifference",
    "difference_matrix",
    "paired_bootstrap",
    "paired_t",
    "seed_interval",
    "compare",
]

N_BOOT = 10_000  # bootstrap resamples
CONFIDENCE = 0.95  # two-sided confidence level of every interval
MIN_UNITS = 5  # fewer paired runs than this: no claim is made (a bootstrap of 2-4 values is no interval)


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference A - B and its uncertainty.

    Attributes
    ----------
    mean : float
        Mean of ``d[seed, unit]``.
    low, high : float
        Bootstrap percentile interval (:func:`paired_bootstrap`) at ``confidence``.
    confidence : float
    n_units, n_seeds : int
    p_value : float
        Two-sided paired t-test over units (:func:`paired_t`); NaN with fewer than 2 units.
    seed_low, seed_high : float
        t interval across seeds (:func:`seed_interval`); NaN with fewer than 2 seeds.
    """

    mean: float
    low: float
    high: float
    confidence: float
    n_units: int
    n_seeds: int
    p_value: float
    seed_low: float = math.nan
    seed_high: float = math.nan

    @property
    def excludes_zero(self) -> bool:
        """True when the bootstrap interval lies entirely above or entirely below 0 (and rests on at least
        ``MIN_UNITS`` paired runs)."""
        return self.n_units >= MIN_UNITS and (self.low > 0 or self.high < 0)

    def interval(self) -> str:
        """``"+0.012 [95 % CI +0.004, +0.020]"``."""
        return f"{self.mean:+.3f} [{self.confidence:.0%} CI {self.low:+.3f}, {self.high:+.3f}]".replace(
            "%", " %"
        )

    def claim(self, a: str = "MIND", b: str = "the other decoder") -> str:
        """The comparison in words, decided by whether the interval excludes zero."""
        spread = f"{self.n_units} runs × {self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
        if self.n_units < MIN_UNITS:
            verdict = f"too few paired runs for a claim ({spread}; at least {MIN_UNITS} needed)"
        elif not self.excludes_zero:
            verdict = f"no difference resolved (the interval includes 0; {spread})"
        else:
            verdict = (
                f"{a} {'higher' if self.mean > 0 else 'lower'} than {b} (the interval excludes 0; {spread})"
            )
        seeds = (
            f"; across the {self.n_seeds} seeds alone {self.seed_low:+.3f} to {self.seed_high:+.3f}"
            if self.n_seeds >= 2
            else ""
        )
        return f"{self.interval()}: {verdict}{seeds}"


def difference_matrix(
    a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]]
) -> tuple[np.ndarray, list[str], list[int]]:
    """Paired differences ``d[seed, unit] = a[seed][unit] - b[seed][unit]``.

    Parameters
    ----------
    a, b : dict seed -> {unit: score}
        Per-unit scores of two decoders (units such as ``"sub-01/s01e03a"``). Seeds are paired by value; a
        decoder with a single seed (a deterministic fit) is paired with every seed of the other.

    Returns
    -------
    d : ndarray of shape (n_seeds, n_units)
    units : list of str
        Sorted.
    seeds : list of int
        The seeds of the rows (those of the decoder with more seeds).

    Raises
    ------
    ValueError
        No common seed, or unit sets that differ (naming the units one side lacks): the two decoders must
        have been scored on exactly the same runs.
    """
    if not a or not b:
        raise ValueError("difference_matrix: each decoder needs scores for at least one seed")
    if len(b) == 1 and len(a) > 1:
        (only,) = b.values()
        b = {s: only for s in a}
    elif len(a) == 1 and len(b) > 1:
        (only,) = a.values()
        a = {s: only for s in b}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(
            f"difference_matrix: no common seed (A has {sorted(a)}, B has {sorted(b)}); pair runs of the same seeds"
        )
    units = sorted(a[seeds[0]])
    for side, scores in (("A", a), ("B", b)):
        for s in seeds:
            if set(scores[s]) != set(units):
                missing = sorted(set(units) ^ set(scores[s]))
                raise ValueError(
                    f"difference_matrix: decoder {side}, seed {s} was scored on other runs (differing: {missing[:5]}"
                    f"{' …' if len(missing) > 5 else ''}); score both decoders on the same runs"
                )
    d = np.array([[float(a[s][u]) - float(b[s][u]) for u in units] for s in seeds])
    if not np.isfinite(d).all():
        raise ValueError(
            "difference_matrix: a score is NaN or infinite; every paired run needs a finite score"
        )
    return d, units, seeds


def paired_bootstrap(
    d: np.ndarray, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference, resampling units and seeds.

    Parameters
    ----------
    d : ndarray of shape (n_units,) or (n_seeds, n_units)
        Paired differences (:func:`difference_matrix`).
    n_boot : int
        Resamples.
    confidence : float
        Two-sided level, e.g. 0.95.
    seed : int
        Seed of the resampling.

    Returns
    -------
    low, high : float
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the resampled means.
    """
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n_s, n_u = d.shape
    if n_u < 1 or not 0 < confidence < 1 or n_boot < 1:
        raise ValueError(
            f"paired_bootstrap: need >= 1 unit, 0 < confidence < 1, n_boot >= 1; got {d.shape}, {confidence}, {n_boot}"
        )
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (n_s * n_u))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        rows = rng.integers(0, n_s, size=(m, n_s))  # resampled seeds
        cols = rng.integers(0, n_u, size=(m, n_u))  # resampled units
        means[start : start + m] = d[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test of ``a - b`` (the statistic of ``scipy.stats.ttest_rel``).

    Returns
    -------
    t, p : float
        NaN with fewer than 2 pairs; ``t = ±inf, p = 0`` when every difference is the same non-zero value.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = d.size
    if n < 2:
        return math.nan, math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return (math.copysign(math.inf, d.mean()), 0.0) if d.mean() != 0 else (math.nan, math.nan)
    t = d.mean() / (sd / math.sqrt(n))
    return float(t), float(2 * _scipy_stats.t.sf(abs(t), df=n - 1))


def seed_interval(per_seed: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """t interval of the mean over seeds of per-seed mean differences; NaN with fewer than 2 seeds."""
    x = np.asarray(per_seed, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    half = _scipy_stats.t.ppf((1 + confidence) / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def compare(
    a: Mapping[int, Mapping[str, float]],
    b: Mapping[int, Mapping[str, float]],
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> PairedDifference:
    """Decoder A minus decoder B on the same scored runs, with its intervals (see the module docstring).

    Parameters
    ----------
    a, b : dict seed -> {unit: score}
        E.g. ``{0: {"sub-01/s01e03a": 0.31, ...}}`` from the ``test_per_run_r`` of notebook 06's results.
    n_boot, confidence, seed
        Passed to :func:`paired_bootstrap`.

    Returns
    -------
    PairedDifference
    """
    d, units, seeds = difference_matrix(a, b)
    low, high = paired_bootstrap(d, n_boot=n_boot, confidence=confidence, seed=seed)
    _, p = paired_t(d.mean(0), np.zeros(d.shape[1]))
    seed_low, seed_high = seed_interval(d.mean(1), confidence)
    return PairedDifference(
        float(d.mean()), low, high, confidence, len(units), len(seeds), p, seed_low, seed_high
    )
