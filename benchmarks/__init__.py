"""Performance benchmarks of mindlib (``make bench`` = ``python -m benchmarks``); not part of the tests.

- :mod:`benchmarks.bench_head`: MIND's expert head, sparse dispatch vs the dense formula (docs/method.md §6):
  time, saved-activation memory, agreement, scaling over E, K, V, d, and achieved GFLOP/s against
  a plain matmul of the same size.
- :mod:`benchmarks.bench_train`: one full training step (AFIRE + decoder + AdamW) per decoder at
  demo and full sizes, and :func:`mindlib.train.fit` on the demo synthetic study.
- :mod:`benchmarks.common`: timing, memory, device description, tables and CSV files.

Every table is printed with the device that produced it and written to ``benchmarks/results/*.csv``
(git-ignored). Nothing here asserts a time: the numbers are for reading.
"""
