import logging

import numpy as np
import pytest

from facegraph.models.onnx_runtime import create_session, providers_for


def test_cpu_always_last_and_missing_gpu_providers_are_logged(caplog):
    with caplog.at_level(logging.WARNING):
        prov = providers_for("tensorrt:0")
    assert prov[-1] == "CPUExecutionProvider"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "lacks it" in caplog.text


@pytest.mark.shared
def test_session_runs_a_real_model_with_spinning_off(mirror):
    sess = create_session(mirror / "yunet" / "yunet_n_dynamic.onnx", device="cpu", threads=1)
    out = sess.run(None, {"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert len(out) == 12
