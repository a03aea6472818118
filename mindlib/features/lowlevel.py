"""Weight-free audio and video backbones: loudness and spectral shape; luminance, contrast, motion, colour.

:class:`AudioEnvelopeExtractor` (``"audio-envelope"``) and :class:`VideoLowLevelExtractor`
(``"video-lowlevel"``) turn a movie's sound and frames into a real, if simple, backbone on any machine:
no weights, no download. Every sample is assigned to the 2 Hz frame containing its timestamp
(docs/method.md §2); frames without samples repeat the nearest earlier frame
(:func:`~mindlib.features.timing.fill_empty_bins`).
"""

from __future__ import annotations

import math

import numpy as np

from mindlib.align import FEATURE_HZ
from mindlib.features.extractor import Extractor, register_extractor
from mindlib.features.stimulus import Stimulus, as_float, mono
from mindlib.features.timing import EPS_TIME, bin_of_samples, fill_empty_bins

__all__ = ["mel_band_edges", "AudioEnvelopeExtractor", "VideoLowLevelExtractor"]


def mel_band_edges(n_bands: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """``n_bands + 1`` band edges in Hz, equally spaced on the mel scale ``2595 log10(1 + f / 700)``."""
    lo, hi = (2595.0 * np.log10(1.0 + f / 700.0) for f in (fmin_hz, fmax_hz))
    mels = np.linspace(lo, hi, n_bands + 1)
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


@register_extractor
class AudioEnvelopeExtractor(Extractor):
    """Loudness and spectral shape per 2 Hz bin, without weights: ``(T_f, 1, 1 + n_bands)``.

    Feature ``0`` is the RMS envelope of the samples whose timestamps ``i / sample_rate`` fall in the
    bin (channels averaged to mono). Features ``1..n_bands`` are ``log(mean power + 1e-10)`` in
    mel-spaced bands between ``fmin_hz`` and ``min(fmax_hz, sample_rate / 2)``, from
    :func:`scipy.signal.stft` (Hann window ``window_s``, hop ``hop_s``): an STFT frame belongs to
    the bin containing its centre, the band power of a frame is the mean ``|Z|^2`` over the band's
    frequencies (the nearest frequency if the band falls between two), and a bin averages its
    frames. Bins with no samples or no STFT frame (after the sound ends) take the nearest earlier
    bin's value; bins before the first sample take the first value.
    """

    name = "audio-envelope"
    modality = "audio"
    input = "audio"

    def __init__(
        self,
        n_bands: int = 16,
        fmin_hz: float = 50.0,
        fmax_hz: float = 8000.0,
        window_s: float = 0.064,
        hop_s: float = 0.016,
        block_s: float = 60.0,
    ) -> None:
        if n_bands < 1 or not (0 < fmin_hz < fmax_hz) or not (0 < hop_s <= window_s) or block_s <= 0:
            raise ValueError(
                f"need n_bands >= 1, 0 < fmin_hz < fmax_hz, 0 < hop_s <= window_s and block_s > 0; got "
                f"n_bands={n_bands}, fmin_hz={fmin_hz}, fmax_hz={fmax_hz}, hop_s={hop_s}, window_s={window_s}"
            )
        self.n_bands, self.fmin_hz, self.fmax_hz = int(n_bands), float(fmin_hz), float(fmax_hz)
        self.window_s, self.hop_s, self.block_s = float(window_s), float(hop_s), float(block_s)

    def band_edges_hz(self, sample_rate: float) -> np.ndarray:
        """Band edges (Hz) used at ``sample_rate``, shape (n_bands + 1,)."""
        fmax = min(self.fmax_hz, sample_rate / 2.0)
        fmin = min(self.fmin_hz, fmax / 10.0)
        return mel_band_edges(self.n_bands, fmin, fmax)

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        from scipy.signal import stft

        x = mono(self.require(stimulus, "audio"))  # (n_samples,) float32
        sr = float(stimulus.sample_rate)
        T_f = stimulus.n_frames(feature_hz)

        # RMS envelope: exact sample-to-bin assignment (sample i at i / sr), block by block.
        counts, energy = np.zeros(T_f), np.zeros(T_f)
        step = max(1, int(self.block_s * sr))
        for s0 in range(0, len(x), step):
            b = bin_of_samples(min(step, len(x) - s0), sr, feature_hz, start=s0)
            ok = b < T_f
            counts += np.bincount(b[ok], minlength=T_f)
            energy += np.bincount(
                b[ok], weights=np.square(x[s0 : s0 + len(b)][ok], dtype=np.float64), minlength=T_f
            )
        rms = np.sqrt(np.divide(energy, counts, out=np.zeros(T_f), where=counts > 0))
        rms = fill_empty_bins(rms[:, None], counts > 0)  # (T_f, 1)

        # Band powers: STFT frames centred at j * hop samples, computed block by block.
        nperseg = max(8, 2 * int(round(self.window_s * sr / 2)))
        hop = min(nperseg, max(1, int(round(self.hop_s * sr))))
        half = nperseg // 2
        freqs = np.fft.rfftfreq(nperseg, 1.0 / sr)
        edges = self.band_edges_hz(sr)
        onehot = np.zeros((len(freqs), self.n_bands))  # (n_freq, n_bands) averaging matrix
        for i in range(self.n_bands):
            sel = np.flatnonzero((freqs >= edges[i]) & (freqs < edges[i + 1]))
            if sel.size == 0:
                sel = [int(np.argmin(np.abs(freqs - 0.5 * (edges[i] + edges[i + 1]))))]
            onehot[sel, i] = 1.0 / len(sel)
        band_sum = np.zeros((T_f, self.n_bands))
        band_count = np.zeros(T_f)
        n_centres = math.ceil(len(x) / hop) if len(x) else 0
        xp = np.pad(x, (half, half + nperseg))  # frame j covers x[j*hop - half, j*hop + half)
        per_block = max(1, int(self.block_s * sr / hop))
        for j0 in range(0, n_centres, per_block):
            j1 = min(n_centres, j0 + per_block)
            seg = xp[j0 * hop : (j1 - 1) * hop + nperseg]
            _, _, Z = stft(
                seg,
                fs=sr,
                window="hann",
                nperseg=nperseg,
                noverlap=nperseg - hop,
                boundary=None,
                padded=False,
            )  # (n_freq, j1 - j0)
            power = (np.abs(Z[:, : j1 - j0]) ** 2).T @ onehot  # (frames, n_bands)
            k = np.floor(np.arange(j0, j1) * hop * feature_hz / sr + EPS_TIME).astype(np.int64)
            ok = k < T_f
            np.add.at(band_sum, k[ok], power[ok])
            band_count += np.bincount(k[ok], minlength=T_f)
        bands = np.log(
            np.divide(
                band_sum, band_count[:, None], out=np.zeros_like(band_sum), where=band_count[:, None] > 0
            )
            + 1e-10
        )
        bands = fill_empty_bins(bands, band_count > 0)
        return np.concatenate([rms, bands], axis=1)[:, None, :].astype(np.float32)  # (T_f, 1, D)


@register_extractor
class VideoLowLevelExtractor(Extractor):
    """Luminance, contrast, motion and colour per 2 Hz bin, without weights: ``(T_f, 1, 6 * gh * gw)``.

    Each frame (RGB in [0, 1]; uint8 is divided by 255) is cut into a ``grid = (gh, gw)`` grid of
    cells (edges ``linspace(0, H, gh + 1)`` rounded down, same for W). Per cell, with luminance
    ``Y = 0.299 R + 0.587 G + 0.114 B``: mean luminance, RMS contrast (standard deviation of Y),
    motion energy (mean ``|Y_i - Y_{i-1}|``; 0 for the first frame) and the mean of each of R, G, B.
    Features are ordered ``[luminance, contrast, motion, R, G, B]``, each ``gh * gw`` cells row-major.
    Frame ``i`` (timestamp ``i / fps``) belongs to bin ``floor(i * feature_hz / fps)``; a bin averages
    its frames. Bins without frames take the nearest earlier bin's value; bins before the first frame
    take the first value.
    """

    name = "video-lowlevel"
    modality = "video"
    input = "video"

    def __init__(self, grid: tuple[int, int] = (4, 4), chunk_frames: int = 256) -> None:
        if len(grid) != 2 or min(grid) < 1 or chunk_frames < 1:
            raise ValueError(
                f"grid must be two positive ints and chunk_frames >= 1, got {grid}, {chunk_frames}"
            )
        self.grid = (int(grid[0]), int(grid[1]))
        self.chunk_frames = int(chunk_frames)

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        video = self.require(stimulus, "video")
        N, H, W, _ = video.shape
        gh, gw = self.grid
        if H < gh or W < gw:
            raise ValueError(f"stimulus {stimulus.name}: frames {H}x{W} are smaller than the grid {gh}x{gw}")
        rows = np.linspace(0, H, gh + 1).astype(int)
        cols = np.linspace(0, W, gw + 1).astype(int)
        area = np.diff(rows)[:, None] * np.diff(cols)[None, :]  # (gh, gw) pixels per cell

        def cell_mean(a: np.ndarray) -> np.ndarray:  # (n, H, W) -> (n, gh * gw)
            s = np.add.reduceat(np.add.reduceat(a, rows[:-1], axis=1), cols[:-1], axis=2)
            return (s / area).reshape(len(a), gh * gw)

        T_f = stimulus.n_frames(feature_hz)
        D = 6 * gh * gw
        sums = np.zeros((T_f, D))
        counts = np.zeros(T_f)
        bins = bin_of_samples(N, float(stimulus.fps), feature_hz)
        rgb_to_y = np.array([0.299, 0.587, 0.114])
        prev = None
        for s in range(0, N, self.chunk_frames):
            frames = as_float(video[s : s + self.chunk_frames]).astype(np.float64)  # (n, H, W, 3)
            lum = frames @ rgb_to_y  # (n, H, W)
            before = lum[:1] if prev is None else prev[None]
            motion = np.abs(np.diff(np.concatenate([before, lum]), axis=0))  # (n, H, W); 0 for frame 0
            prev = lum[-1]
            mean_y = cell_mean(lum)
            contrast = np.sqrt(np.clip(cell_mean(lum**2) - mean_y**2, 0.0, None))
            colour = [cell_mean(frames[..., c]) for c in range(3)]
            feats = np.concatenate([mean_y, contrast, cell_mean(motion), *colour], axis=1)  # (n, D)
            k = bins[s : s + len(frames)]
            ok = k < T_f
            np.add.at(sums, k[ok], feats[ok])
            counts += np.bincount(k[ok], minlength=T_f)
        values = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
        return fill_empty_bins(values, counts > 0)[:, None, :].astype(np.float32)  # (T_f, 1, D)
