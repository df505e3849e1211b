import os
import pickle

import numpy as np
import pytest

from facegraph.core.errors import ModelError
from facegraph.models.safe_pickle import load_arrays


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_numpy_arrays_load(tmp_path):
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps({"mean": np.arange(3, dtype=np.float32), "n": [np.int64(2)]}))
    d = load_arrays(p)
    assert np.array_equal(d["mean"], [0, 1, 2])


def test_code_is_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelError, match="refusing to unpickle posix.system|refusing to unpickle os.system"):
        load_arrays(p)


def test_garbage_is_a_model_error(tmp_path):
    p = tmp_path / "g.pkl"
    p.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ModelError, match="cannot read"):
        load_arrays(p)


@pytest.mark.shared
def test_real_3ddfa_pickles(mirror):
    d = load_arrays(mirror / "3ddfa_v2" / "param_mean_std_62d_120x120.pkl")
    assert d["mean"].shape == (62,) and d["std"].dtype == np.float32
    tri = load_arrays(mirror / "3ddfa_v2" / "tri.pkl")
    assert tri.shape == (3, 76073)
