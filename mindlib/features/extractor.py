"""The extractor interface and its registry: a new backbone is one class and one decorator line.

An :class:`Extractor` is a backbone (docs/method.md §3): it turns a
:class:`~mindlib.features.stimulus.Stimulus` into features ``(T_f, L, D)`` on the 2 Hz grid of
docs/method.md §2. ``@register_extractor`` adds a subclass to :data:`REGISTRY` under its ``name``, so
:func:`get_extractor` and :func:`~mindlib.features.store.extract_to_store` build it by name. The
shipped extractors register themselves when :mod:`mindlib.features` is imported.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from mindlib.align import FEATURE_HZ
from mindlib.features.stimulus import Stimulus

__all__ = ["Extractor", "REGISTRY", "register_extractor", "available_extractors", "get_extractor"]


class Extractor(abc.ABC):
    """A backbone: turns a :class:`~mindlib.features.stimulus.Stimulus` into features ``(T_f, L, D)``.

    Subclasses set the class attributes ``name`` (registry key), ``modality`` (store folder, e.g.
    ``"text"``) and ``input`` (the :class:`~mindlib.features.stimulus.Stimulus` field they read:
    ``"video"``, ``"audio"`` or ``"words"``), and implement :meth:`extract`, which reads that field with
    :meth:`require`. Register with ``@register_extractor``.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    input: ClassVar[str] = ""

    @abc.abstractmethod
    def extract(self, stimulus: Stimulus, feature_hz: float = FEATURE_HZ) -> np.ndarray:
        """Features of one stimulus.

        Returns
        -------
        features : ndarray of shape (T_f, L, D), float32
            ``T_f = stimulus.n_frames(feature_hz)``; frame ``k`` describes
            ``[k / feature_hz, (k + 1) / feature_hz)``.
        """

    def require(self, stimulus: Stimulus, field: str) -> Any:
        """The stimulus's ``field`` (``"video"``, ``"audio"``, ``"words"``); a ValueError if it has none."""
        value = getattr(stimulus, field)
        if value is None:
            raise ValueError(
                f"extractor {self.name!r} reads the {field} of a stimulus, but stimulus {stimulus.name!r} has none"
            )
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r})"


REGISTRY: dict[str, type[Extractor]] = {}  # name -> Extractor subclass, filled by register_extractor


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator adding an :class:`Extractor` subclass to the registry under ``cls.name``.

    The registry is :data:`mindlib.features.extractor.REGISTRY`. Re-registering the same name is
    allowed only for a class of the same module and qualified name (a notebook cell run twice);
    another class under a taken name is a ValueError.
    """
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise TypeError(f"register_extractor decorates Extractor subclasses, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty class attribute `name` to be registered")
    old = REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"extractor name {name!r} is taken by {old.__module__}.{old.__qualname__}")
    REGISTRY[name] = cls
    return cls


def available_extractors() -> tuple[str, ...]:
    """Names of the registered extractors, sorted."""
    return tuple(sorted(REGISTRY))


def get_extractor(name: str, **kwargs: Any) -> Extractor:
    """An instance of the extractor registered as ``name``, built with ``kwargs``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown extractor {name!r}; available: {', '.join(available_extractors())}")
    return REGISTRY[name](**kwargs)
