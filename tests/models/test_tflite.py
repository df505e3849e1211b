"""The TFLite reader and the torch port, against the real MediaPipe files and Google's own interpreter."""
import zipfile

import numpy as np
import pytest

from facegraph.core.errors import ModelError
from facegraph.models import tflite

MODELS = [("face_detection_short_range.tflite", None), ("face_detection_full_range_sparse.tflite", None),
          ("face_landmark.tflite", None), ("iris_landmark.tflite", None),
          ("face_landmarker.task", "face_landmarks_detector.tflite"), ("face_landmarker.task", "face_blendshapes.tflite"),
          ("face_landmarker.task", "face_detector.tflite")]


def test_rejects_non_tflite():
    with pytest.raises(ModelError, match="TFL3"):
        tflite.parse(b"not a model at all")


def test_densify_csr_and_blocks():
    dense = np.array([[0, 1, 0, 0], [2, 0, 0, 3]], np.float32)
    sp = {"traversal_order": [0, 1], "block_map": [],
          "dim_metadata": [{"format": "dense", "dense_size": 2},
                           {"format": "csr", "dense_size": 0, "segments": np.array([0, 1, 3]),
                            "indices": np.array([1, 0, 3])}]}
    assert np.array_equal(tflite.densify(np.array([1, 2, 3], np.float32), (2, 4), sp), dense)
    # 2x2 blocks over a 2x4 matrix: block row 0 holds blocks at columns 0 and 1
    blocks = np.array([[1, 2, 5, 6], [3, 4, 7, 8]], np.float32)
    spb = {"traversal_order": [0, 1, 2, 3], "block_map": [0, 1],
           "dim_metadata": [{"format": "dense", "dense_size": 1},
                            {"format": "csr", "dense_size": 0, "segments": np.array([0, 2]),
                             "indices": np.array([0, 1])},
                            {"format": "dense", "dense_size": 2}, {"format": "dense", "dense_size": 2}]}
    vals = np.array([1, 2, 3, 4, 5, 6, 7, 8], np.float32)
    assert np.array_equal(tflite.densify(vals, (2, 4), spb), blocks)


@pytest.mark.shared
@pytest.mark.parametrize("name, member", MODELS)
def test_real_models_parse(mirror, name, member):
    g = tflite.read(mirror / "mediapipe" / name, member)
    assert g.operators and g.inputs and g.outputs
    assert all(t.data is not None for t in g.tensors if t.sparsity is not None)


@pytest.mark.shared
@pytest.mark.parametrize("name, member", MODELS)
def test_torch_port_matches_litert(mirror, data, name, member):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from facegraph.core.io.images import read_image
    from facegraph.models.tflite_torch import TFLiteModule

    path = mirror / "mediapipe" / name
    blob = zipfile.ZipFile(path).read(member) if member else path.read_bytes()
    ref = litert.Interpreter(model_content=blob)
    ref.allocate_tensors()
    inp = ref.get_input_details()[0]
    shape = tuple(inp["shape"])
    if len(shape) == 4:  # a real face, at the model's input size and range
        import cv2

        px, _ = read_image(data / "stills" / "s0.jpg")
        x = cv2.resize(np.clip(px, 0, 1) ** (1 / 2.2), (shape[2], shape[1]))[None].astype(np.float32)
        if "detection" in name or "detector" in (member or ""):
            x = x * 2 - 1
    else:
        x = np.random.default_rng(0).uniform(0, 256, shape).astype(np.float32)
    ref.set_tensor(inp["index"], x)
    ref.invoke()
    expected = [ref.get_tensor(o["index"]) for o in ref.get_output_details()]
    ours = TFLiteModule.from_file(path, member).run_numpy(x)
    for e in expected:
        o = next(q for q in ours if q.shape == e.shape)
        assert np.abs(o - e).max() <= 1e-3 * max(1.0, float(np.abs(e).max())), (name, member, e.shape)
