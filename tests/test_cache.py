"""mindlib.cache: memory-mapped aligned features give the same records and batches as in-memory ones, are reused
only for the same source and alignment, and float16 storage rounds like float16."""

import numpy as np
import pytest
import torch

from mindlib import data
from mindlib.cache import FeatureCache

RUNS = ["s01e01a", "s01e02b", "life01_run-1", "life01_run-2"]  # a repeat shares its stimulus's entry


@pytest.fixture(scope="module")
def plain(smoke_study):
    return data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(2, 3))


def _batches(study):
    ds = data.WindowDataset(study.records, window=32, stride=16)
    return data.collate_windows([ds[i] for i in range(len(ds))])


def test_float32_cache_gives_identical_batches_and_is_reused(smoke_study, plain, tmp_path):
    cache = FeatureCache(tmp_path / "aligned", dtype="float32")
    mapped = data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(2, 3), feature_cache=cache)
    n_entries = len({(r.run.split("_run-")[0], m) for r in plain.records for m in plain.modalities})
    assert (cache.hits, cache.misses) == (0, n_entries)
    for a, b in zip(plain.records, mapped.records):
        assert (a.subject, a.run) == (b.subject, b.run)
        np.testing.assert_array_equal(a.valid, b.valid)
        for m in plain.modalities:
            assert isinstance(b.features[m], np.memmap)
            np.testing.assert_array_equal(np.asarray(b.features[m]), a.features[m])
    x, y = _batches(plain), _batches(mapped)
    for m in plain.modalities:
        torch.testing.assert_close(y["features"][m], x["features"][m], rtol=0, atol=0)
    torch.testing.assert_close(y["fmri"], x["fmri"], rtol=0, atol=0)
    assert torch.equal(y["mask"], x["mask"])

    again = FeatureCache(tmp_path / "aligned", dtype="float32")
    data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(2, 3), feature_cache=again)
    assert (again.hits, again.misses) == (n_entries, 0)
    other_lags = FeatureCache(tmp_path / "aligned", dtype="float32")  # another alignment: new entries
    data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(3,), feature_cache=other_lags)
    assert (other_lags.hits, other_lags.misses) == (0, n_entries)


def test_float16_cache_rounds_and_changed_source_is_recomputed(smoke_study, plain, tmp_path):
    cache = FeatureCache(tmp_path / "aligned")  # float16 by default
    mapped = data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(2, 3), feature_cache=cache)
    for a, b in zip(plain.records, mapped.records):
        for m in plain.modalities:
            assert b.features[m].dtype == np.float16
            np.testing.assert_array_equal(np.asarray(b.features[m]), a.features[m].astype(np.float16))
    x, y = _batches(plain), _batches(mapped)
    for m in plain.modalities:  # float16 keeps 11 significant bits
        torch.testing.assert_close(y["features"][m].float(), x["features"][m], rtol=2**-10, atol=1e-4)

    store = data.FeatureStore(smoke_study, "tribe")
    modality = plain.modalities[0]
    path = store.path("s01e01a", modality)
    original = np.load(path)
    try:
        np.save(path, original * 2)  # the source changed: its entry must not be reused
        fresh = FeatureCache(tmp_path / "aligned")
        changed = data.load_study(smoke_study, "tribe", runs=RUNS, lags_trs=(2, 3), feature_cache=fresh)
        assert fresh.misses == 1
        before = next(r for r in mapped.records if r.run == "s01e01a").features[modality]
        after = next(r for r in changed.records if r.run == "s01e01a").features[modality]
        assert not np.array_equal(np.asarray(before), np.asarray(after))
    finally:
        np.save(path, original)


def test_bad_dtype_named():
    with pytest.raises(ValueError, match="float16"):
        FeatureCache("x", dtype="int8")


def test_read_rows_copies_memory_mapped_rows_exactly_and_views_others(tmp_path):
    from mindlib.cache import read_rows

    x = np.random.default_rng(0).standard_normal((700, 33)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="c")
    for start, stop in ((0, 100), (650, 700), (3, 4), (123, 600)):
        got = read_rows(mapped, start, stop)
        assert not isinstance(got, np.memmap) and np.array_equal(got, x[start:stop])
    assert np.array_equal(read_rows(mapped[100:], 5, 17), x[105:117])  # a view of the map
    assert np.array_equal(read_rows(mapped, 0, 700), x)  # pages handed back are read again
    plain = np.arange(12.0).reshape(6, 2)
    assert np.shares_memory(read_rows(plain, 1, 3), plain)  # in memory: a view, as before
