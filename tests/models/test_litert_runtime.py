"""LiteRT as the CPU runtime of the TFLite face graphs: the choice (option, variable, fallback), parity with the
torch port on real faces, and each face's outputs independent of the other faces in its call."""
import numpy as np
import pytest

from facegraph.core.errors import InputError, ModelError
from facegraph.models import litert_runtime as lr

RUNTIME_ENV = "FACEGRAPH_TFLITE_RUNTIME"


# ------------------------------------------------------------------------------------------ the choice
def test_runtime_choice_reads_the_option_then_the_variable(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert lr.tflite_runtime() == "auto"
    monkeypatch.setenv(RUNTIME_ENV, " Torch ")
    assert lr.tflite_runtime() == "torch"
    assert lr.tflite_runtime("litert") == "litert"  # a wrapper's option wins over the variable
    monkeypatch.setenv(RUNTIME_ENV, "")
    assert lr.tflite_runtime() == "auto"
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(InputError, match=RUNTIME_ENV):
        lr.tflite_runtime()
    with pytest.raises(InputError, match="tflite_runtime"):
        lr.tflite_runtime("onnx")


def test_litert_only_on_the_cpu_and_only_where_it_imports(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    available = lr.litert_available()
    assert lr.use_litert("cpu") is available
    assert not lr.use_litert("cuda:0") and not lr.use_litert("cuda:0", "litert")
    assert not lr.use_litert("cpu", "torch")
    monkeypatch.setattr(lr, "_interpreter_class", lambda: None)  # as on a platform without the package
    assert not lr.litert_available()
    assert not lr.use_litert("cpu") and not lr.use_litert("cpu", "auto")
    with pytest.raises(ModelError, match="ai-edge-litert"):
        lr.use_litert("cpu", "litert")
    with pytest.raises(ModelError, match="does not import"):
        lr.LiteRTGraph(b"TFL3")


def test_a_bad_option_is_refused_when_the_model_is_made(tmp_path):
    with pytest.raises(InputError, match="tflite_runtime"):
        lr.CpuFastPath(tmp_path / "x.tflite", option="fast")


# ----------------------------------------------------------------------------------------- real models
litert = pytest.mark.skipif(not lr.litert_available(), reason="ai_edge_litert is not installed")


@pytest.fixture
def eager(monkeypatch):
    """The torch port run eagerly (its forward, as ``TFLiteModule.run`` falls back to): tracing the mesh once
    costs seconds on this machine; the traced port's own parity with LiteRT is tests/models/test_tflite.py's."""
    import torch

    from facegraph.models.tflite_torch import TFLiteModule

    def run(self, *inputs):
        with torch.inference_mode():
            return list(self(*inputs))

    monkeypatch.setattr(TFLiteModule, "run", run)


@pytest.fixture(scope="module")
def faces(data):
    """Three AFLW2000-3D faces (two frontal, one profile): (display-referred view, face box)."""
    from facegraph.plugin.evaluate import aflw_samples, face_box_from_roi_box, view_of

    s = {x.name: x for x in aflw_samples(data / "aflw2000_dev")}
    return [(view_of(s[n].image), face_box_from_roi_box(s[n].box))
            for n in ("image00042.jpg", "image00052.jpg", "image00022.jpg")]


@pytest.fixture(scope="module")
def mesh():
    from facegraph.models.loader import load_model

    return load_model("mediapipe_landmarker_v2")


@pytest.fixture(scope="module")
def iris():
    from facegraph.models.loader import load_model

    return load_model("mediapipe_iris")


def _mesh_all(model, faces):
    out = []
    for view, box in faces:
        r = model.predict(view, [model.roi_for(box)])[0]
        out.append(r)
    return out


@litert
@pytest.mark.shared
def test_graph_outputs_match_the_torch_port_in_order_and_shape(mirror, eager):
    from facegraph.models.tflite_torch import TFLiteModule

    path = mirror / "mediapipe" / "iris_landmark.tflite"
    port = TFLiteModule.from_file(path)
    graph = lr.LiteRTGraph.from_file(path, threads=1, outputs=port.graph.outputs)
    x = np.random.default_rng(0).random((3, 64, 64, 3), dtype=np.float32)
    ours, ref = graph.run(x), port.run_numpy(x)
    assert [o.shape for o in ours] == [o.shape for o in ref] == [(3, 213), (3, 15)]
    for a, b in zip(ours, ref):
        assert np.abs(a - b).max() < 1e-3  # 64 px crop units
    with pytest.raises(InputError, match=r"\(N, 64, 64, 3\)"):
        graph.run(x[:, :32])
    assert [o.shape for o in graph.run(x[:0])] == [(0, 213), (0, 15)]


@litert
@pytest.mark.shared
def test_mesh_blendshapes_and_iris_match_the_torch_port_on_real_faces(monkeypatch, eager, mesh, iris, faces):
    """A frontal and a profile face. Tolerances from the measured gaps (6 AFLW faces: points 4e-4 px,
    blendshapes 2.3e-5, iris 3.4e-4 px), about 5x: float32 kernels summing in another order, nothing more."""
    faces = faces[1:]
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    ref = _mesh_all(mesh, faces)
    ref_eyes = [iris.predict(v, iris.eye_rois(r.points)) for (v, _), r in zip(faces, ref)]
    monkeypatch.setenv(RUNTIME_ENV, "litert")
    ours = _mesh_all(mesh, faces)
    our_eyes = [iris.predict(v, iris.eye_rois(r.points)) for (v, _), r in zip(faces, ref)]  # the same eye crops
    for a, b in zip(ours, ref):
        assert np.abs(a.points - b.points).max() < 2e-3  # frame px (x, y and z)
        assert abs(a.presence - b.presence) < 1e-4
        assert np.abs(a.blendshapes[1] - b.blendshapes[1]).max() < 1e-4
        assert np.abs(a.rotation - b.rotation).max() < 1e-4
    for ea, eb in zip(our_eyes, ref_eyes):
        for a, b in zip(ea, eb):
            assert np.abs(a.contour - b.contour).max() < 2e-3 and np.abs(a.iris - b.iris).max() < 2e-3


@litert
@pytest.mark.shared
def test_a_face_does_not_depend_on_the_faces_beside_it(monkeypatch, mesh, iris, faces):
    """Chunked renders must merge bit-identically with a single run: one face alone and the same face among
    others give the same bits (mesh, iris and BlazeFace)."""
    from facegraph.models.loader import load_model

    monkeypatch.setenv(RUNTIME_ENV, "litert")
    view, box = faces[0]
    x0, y0, x1, y1 = box
    roi = mesh.roi_for(box)
    shifted, smaller = mesh.roi_for((x0 + 40, y0 + 30, x1 + 40, y1 + 30)), mesh.roi_for((x0, y0, x1 - 30, y1 - 30))
    alone = mesh.predict(view, [roi])[0]
    among = mesh.predict(view, [shifted, roi, smaller])[1]
    assert np.array_equal(alone.points, among.points) and alone.presence == among.presence
    assert np.array_equal(alone.blendshapes[1], among.blendshapes[1])
    eyes = iris.eye_rois(alone.points)
    one = iris.predict(view, eyes[1:])[0]
    many = iris.predict(view, eyes + eyes[::-1])
    assert np.array_equal(one.iris, many[1].iris) and np.array_equal(one.contour, many[2].contour)
    det = load_model("blazeface_short")
    views = [faces[0][0], faces[1][0], faces[2][0]]
    single = det.detect(views[:1])[0]
    batch = det.detect(views)[0]
    assert len(single) and np.array_equal(single.boxes, batch.boxes) and np.array_equal(single.scores, batch.scores)


@litert
@pytest.mark.shared
def test_forced_torch_and_a_missing_package_run_the_torch_port(monkeypatch, eager, mesh, faces):
    view, box = faces[0]
    roi = mesh.roi_for(box)
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    ref = mesh.predict(view, [roi])[0]

    def refuse(self, x):
        raise AssertionError("LiteRT ran although the torch port was asked for")

    monkeypatch.setattr(lr.LiteRTGraph, "run", refuse)
    assert np.array_equal(mesh.predict(view, [roi])[0].points, ref.points)
    monkeypatch.setenv(RUNTIME_ENV, "auto")
    monkeypatch.setattr(lr, "_interpreter_class", lambda: None)  # auto without the package: the torch port
    res = mesh.predict(view, [roi])[0]
    assert np.array_equal(res.points, ref.points) and np.array_equal(res.blendshapes[1], ref.blendshapes[1])
    monkeypatch.setenv(RUNTIME_ENV, "litert")
    with pytest.raises(ModelError, match="ai_edge_litert"):
        mesh.predict(view, [roi])


@litert
@pytest.mark.shared
def test_the_wrapper_option_wins_over_the_variable(monkeypatch, mirror, faces):
    from facegraph.models.landmarkers import IrisModel
    from facegraph.models.loader import spec_for
    from facegraph.models.store import default_store

    spec = spec_for("mediapipe_iris")
    resolved = default_store().resolve(spec)
    calls = []
    real = lr.LiteRTGraph.run
    monkeypatch.setattr(lr.LiteRTGraph, "run", lambda self, x: calls.append(len(x)) or real(self, x))
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    model = IrisModel(spec, resolved, tflite_runtime="litert", threads=1)
    view, box = faces[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    from facegraph.core.landmarks import Roi

    model.predict(view, [(Roi(cx, cy, 40.0), False)])
    assert calls == [1] and model._fast.graph().threads == 1


@litert
@pytest.mark.shared
def test_threads_share_a_graph_safely_and_a_forked_child_builds_its_own(mirror, monkeypatch):
    import os
    import threading

    fast = lr.CpuFastPath(mirror / "mediapipe" / "iris_landmark.tflite", threads=1)
    x = np.random.default_rng(1).random((4, 64, 64, 3), dtype=np.float32)
    ref = fast.run(x)
    got: list = [None] * 4

    def work(i):
        got[i] = fast.run(x[i:i + 1])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(4):
        assert all(np.array_equal(g[0], r[i]) for g, r in zip(got[i], ref))
    first = fast.graph()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child after fork
    assert fast.graph() is not first and fast.graph() is fast.graph()
