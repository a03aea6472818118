"""mindlib.files: JSON without NaN, and writes that never leave half a file."""

import json
from pathlib import Path

import numpy as np
import pytest

from mindlib import files


def test_json_writes_nan_and_infinity_as_null_and_numpy_as_python(tmp_path):
    obj = {
        "r": np.float32(0.5),
        "nan": float("nan"),
        "inf": -np.inf,
        "n": np.int64(3),
        4: np.array([1.0, np.nan]),
    }
    path = files.write_json(tmp_path / "a.json", {**obj, "p": Path("x/y")}, sort_keys=True, newline=True)
    text = path.read_text()
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"4": [1.0, None], "inf": None, "n": 3, "nan": None, "p": "x/y", "r": 0.5}


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "b.npy"
    files.atomic_write(path, lambda f: np.save(f, np.arange(3)), suffix=".npy")
    assert np.load(path).tolist() == [0, 1, 2]

    def fail(f):
        Path(f).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, fail, suffix=".npy")
    assert np.load(path).tolist() == [0, 1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.npy"]
