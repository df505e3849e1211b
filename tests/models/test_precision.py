"""fp16 / bf16 for the torch-ported MediaPipe graphs (load_model(..., precision=)): the port in that dtype on any
device (LiteRT is float32 only), the same faces within a stated distance of fp32 on a real face; bad precisions
and models that run in fp32 only are refused by name."""
import numpy as np
import pytest
import torch

from facegraph.core.colour import FrameViews
from facegraph.core.errors import InputError, ModelError
from facegraph.core.io.images import read_image
from facegraph.models.loader import load_model

#: fp16 vs fp32 landmarks on a real 450 px AFLW face, frame pixels: measured 0.10-0.14 px on four faces
FP16_PX = 0.5
#: bf16 keeps 8 bits of mantissa: measured 1.2-1.4 px on the same faces
BF16_PX = 4.0


@pytest.fixture(scope="module")
def face(data, mirror):
    path = sorted((data / "aflw2000_dev").glob("*.jpg"))[0]
    px, _ = read_image(path)
    return FrameViews([torch.from_numpy(np.ascontiguousarray(px[..., :3])).permute(2, 0, 1)])


@pytest.mark.shared
def test_half_precision_mesh_is_close_to_fp32_and_runs_the_torch_port(face):
    ref = load_model("mediapipe_landmarker_v2", device="cpu")
    roi = ref.roi_for((120.0, 120.0, 330.0, 340.0))
    want = ref.predict_frames(face, [0], [roi])[0]
    for precision, tol in (("fp16", FP16_PX), ("bf16", BF16_PX)):
        m = load_model("mediapipe_landmarker_v2", device="cpu", precision=precision)
        assert m is not ref and m.precision == precision
        assert next(b for b in m._mesh.buffers() if b.is_floating_point()).dtype != torch.float32
        got = m.predict_frames(face, [0], [roi])[0]
        d = np.abs(got.points[:, :2] - want.points[:, :2]).max()
        assert 0 < d < tol, (precision, d)  # not the fp32 graph, and close to it
        assert got.points.dtype == want.points.dtype
    iris = load_model("mediapipe_iris", task="refine", device="cpu", precision="fp16")
    assert iris.precision == "fp16"


def test_bad_precision_and_fp32_only_models_are_refused(mirror):
    with pytest.raises(InputError, match="precision must be one of"):
        load_model("mediapipe_landmarker_v2", device="cpu", precision="int8")
    with pytest.raises(ModelError, match="fp32 only"):
        load_model("pfld", device="cpu", precision="fp16")


@pytest.mark.shared
def test_precision_travels_from_the_loader_node_to_the_shot_analysis(mirror):
    from facegraph.models.loader import ModelHandle
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser
    from facegraph.nodes.analysis import LoadLandmarker
    from facegraph.nodes.temporal import analysis_options

    (handle,) = LoadLandmarker().load("mediapipe_landmarker_v2", device="cpu", precision="fp16")["result"]
    assert handle == ModelHandle("mediapipe_landmarker_v2", device="cpu", precision="fp16")
    opts, _ = analysis_options(None, handle, 1, "auto", False)
    assert opts.precision == "fp16"
    an = ShotAnalyser(opts)
    assert an.mesh.precision == "fp16" and an.iris.precision == "fp16"
    assert opts.key_material()["options"]["precision"] == "fp16"
    assert "precision" not in AnalysisOptions().key_material()["options"]  # fp32 caches as before
    with pytest.raises(InputError, match="precision"):
        AnalysisOptions(precision="fp8")
