"""Any loaded torch model that returns hidden states, as a backbone (docs/method.md §2-3).

:class:`TorchModuleExtractor` (``"torch-module"``) feeds the model, for each 2 Hz frame, the video
frames or audio samples that end where the frame ends, and keeps the token-averaged hidden state of each
chosen layer: ``(T_f, L, D)``. torch is imported only when features are extracted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from mindlib.align import FEATURE_HZ
from mindlib.features.extractor import Extractor, register_extractor
from mindlib.features.stimulus import Stimulus, as_float
from mindlib.features.timing import EPS_TIME

__all__ = ["TorchModuleExtractor"]


@register_extractor
class TorchModuleExtractor(Extractor):
    """Wrap a loaded torch model that returns hidden states into a backbone.

    For bin ``k`` the model sees the ``n = round(window_s * rate)`` samples (video frames or audio
    samples, ``rate`` = fps or sample rate) that end where the bin ends: indices
    ``[e_k - n, e_k)`` with ``e_k = ceil((k + 1) * rate / feature_hz)`` the first sample at or after
    the bin's end; indices outside the stimulus repeat its first or last sample. With the default
    ``window_s = 1 / feature_hz`` a bin sees exactly its own samples (plus the rounding of ``n``).

    The model receives ``preprocess(chunk)``, by default a float32 tensor of the chunks of a batch:
    video ``(B, n, H, W, 3)`` in [0, 1] (uint8 / 255), audio ``(B, n)`` or ``(B, n, channels)``.
    It must return hidden states as a list/tuple of tensors (one per layer), an object or dict with
    ``hidden_states`` (Hugging Face outputs with ``output_hidden_states=True``), or one tensor (one
    layer). Each state of shape ``(B, ..., D)`` is averaged over its middle (token) axes to ``(B, D)``.

    Parameters
    ----------
    model : callable
        The loaded model (``torch.nn.Module`` or any callable); put into eval mode while it runs.
    modality : str
        Store folder for its features (e.g. ``"video"``).
    layers : sequence of int, optional
        Indices of the hidden states to keep (negative allowed); default all. ``L = len(layers)``.
    input : {"video", "audio"}
        Which stimulus field to feed.
    window_s : float, optional
        Seconds of input per bin, ending at the bin's end (default ``1 / feature_hz``).
    batch_size : int
        Bins per forward pass.
    device : str
        Device the input is moved to.
    preprocess : callable, optional
        ``ndarray (B, n, ...) float32 -> model input``.
    name : str
        Name shown in messages and progress bars.
    """

    name = "torch-module"
    modality = ""
    input = "video"

    def __init__(
        self,
        model: Callable[..., Any],
        modality: str,
        layers: Sequence[int] | None = None,
        input: Literal["video", "audio"] = "video",
        window_s: float | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        preprocess: Callable[[np.ndarray], Any] | None = None,
        name: str = "torch-module",
    ) -> None:
        if input not in ("video", "audio"):
            raise ValueError(f"input must be 'video' or 'audio', got {input!r}")
        if not isinstance(modality, str) or not modality:
            raise ValueError(f"modality must be a non-empty string, got {modality!r}")
        if window_s is not None and not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.modality = modality
        self.layers = None if layers is None else tuple(int(i) for i in layers)
        self.input = input
        self.window_s = window_s
        self.batch_size = int(batch_size)
        self.device = device
        self.preprocess = preprocess
        self.name = name

    def chunk_indices(
        self, n_samples: int, rate: float, n_frames: int, feature_hz: float = FEATURE_HZ
    ) -> np.ndarray:
        """Sample indices fed for each bin, shape (T_f, n), clipped to ``[0, n_samples - 1]``."""
        window_s = self.window_s if self.window_s is not None else 1.0 / feature_hz
        n = max(1, int(round(window_s * rate)))
        ends = np.ceil(np.arange(1, n_frames + 1) * (rate / feature_hz) - EPS_TIME).astype(np.int64)  # (T_f,)
        idx = ends[:, None] - n + np.arange(n)[None, :]
        return np.clip(idx, 0, n_samples - 1)

    def _states(self, out: Any, batch: int) -> list[Any]:
        import torch

        if isinstance(out, Mapping) and "hidden_states" in out:
            states = out["hidden_states"]
        elif getattr(out, "hidden_states", None) is not None:
            states = out.hidden_states
        elif isinstance(out, torch.Tensor):
            states = [out]
        else:
            states = out
        if not isinstance(states, (list, tuple)) or not states:
            raise TypeError(
                f"{self.name}: the model must return a list/tuple of hidden-state tensors, an output with "
                f".hidden_states, or one tensor; got {type(out).__name__}"
            )
        pooled = []
        for i, s in enumerate(states):
            if not isinstance(s, torch.Tensor) or s.ndim < 2 or s.shape[0] != batch:
                raise ValueError(
                    f"{self.name}: hidden state {i} must be a tensor (B={batch}, ..., D), got "
                    f"{getattr(s, 'shape', type(s).__name__)}"
                )
            pooled.append(s.reshape(batch, -1, s.shape[-1]).float().mean(dim=1))  # (B, D)
        if self.layers is not None:
            try:
                pooled = [pooled[i] for i in self.layers]
            except IndexError:
                raise ValueError(
                    f"{self.name}: layers {self.layers} out of range for {len(pooled)} hidden states"
                ) from None
        return pooled

    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        import torch

        data = self.require(stimulus, self.input)
        rate = float(stimulus.fps if self.input == "video" else stimulus.sample_rate)
        T_f = stimulus.n_frames(feature_hz)
        idx = self.chunk_indices(len(data), rate, T_f, feature_hz)  # (T_f, n)
        prepare = self.preprocess or (lambda a: torch.from_numpy(a))
        was_training = getattr(self.model, "training", None)
        if was_training:
            self.model.eval()
        out = []
        try:
            with torch.inference_mode():
                for s in range(0, T_f, self.batch_size):
                    chunk = as_float(data[idx[s : s + self.batch_size]])  # (B, n, ...)
                    x = prepare(np.ascontiguousarray(chunk))
                    if isinstance(x, torch.Tensor):
                        x = x.to(self.device)
                    states = self._states(self.model(x), len(chunk))
                    out.append(torch.stack(states, dim=1).cpu().numpy())  # (B, L, D)
        finally:
            if was_training:
                self.model.train()
        return np.concatenate(out, axis=0).astype(np.float32)
