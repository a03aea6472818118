"""mindlib — AFIRE tokens, SADGate routing and the MIND decoder for multimodal fMRI encoding.

One module per concept: ``align`` (time), ``data`` (Algonauts 2025 reader, splits, windows),
``synthetic`` (the embedded study), ``afire``, ``sadgate``, ``mind``, ``baselines`` (the model),
``train`` and ``metrics`` (fitting and scoring), ``features`` (bring your own backbone) and
``plotting`` (figures).
"""

__version__ = "0.1.0"
