"""ONNX export of every torch-ported network: onnxruntime (CPU) on the exported file against the torch module.

Tolerance: per output, max |onnx - torch| <= 5e-5 x max(1, max |torch output|). Measured: at most 5.2e-6 of
scale (mesh v2's presence logit), so the bound has a 10x margin for fp32 reordering across ~100 convolutions
and stays far below any landmark error that matters (2e-3 px on a 256-pixel crop).

Exports are slow (10-40 s each on a busy 2-core machine: torch.export with a symbolic batch, then
onnxscript), so each network is exported once, into pytest's cache folder under a key made of everything
that decides the file (facegraph's export / port sources, torch / onnxscript / onnx versions, the weights'
sha256, the opset): a rerun with nothing changed reuses them, any change re-exports. ``pytest --cache-clear``
forces a fresh export.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.models import onnx_export as oe
from facegraph.models.registry import registry

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 5e-5
NETWORKS = [(m, p) for m in oe.exportable_ids() for p in oe.parts(m)]
SOURCES = ("onnx_export.py", "tflite_torch.py", "tflite.py", "tddfa_net.py")


def _key(model_id: str, part: str) -> str:
    import onnxscript

    h = hashlib.sha256()
    models_dir = Path(oe.__file__).parent
    for name in SOURCES:
        h.update((models_dir / name).read_bytes())
    spec = registry().get(model_id)
    for item in (torch.__version__, onnxscript.__version__, onnx.__version__, str(oe.DEFAULT_OPSET),
                 *(f.sha256 or f.path for f in spec.files), part):
        h.update(item.encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def exported(request, tmp_path_factory, mirror):
    """(model_id, part) -> (Network, exported path); each network exported at most once per session."""
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("facegraph-onnx-export")) if cache is not None else tmp_path_factory.mktemp("onnx")
    done: dict[tuple[str, str], tuple[oe.Network, Path]] = {}

    def get(model_id: str, part: str):
        if (model_id, part) not in done:
            path = root / _key(model_id, part) / oe.file_name(model_id, part)
            if not path.is_file():
                tmp = tmp_path_factory.mktemp("export") / path.name
                oe.export_onnx(model_id, tmp, part=part)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.replace(path)
            done[(model_id, part)] = (oe.torch_network(model_id, part), path)
        return done[(model_id, part)]
    return get


def test_exportable_networks_come_from_the_registry():
    ids = oe.exportable_ids()
    reg = registry()
    assert all(reg.get(i).runtime in oe.TORCH_RUNTIMES for i in ids)
    # issue 11: BlazeFace, mesh v1 / v2, iris, 3DDFA_V2
    assert {"blazeface_short", "blazeface_full", "mediapipe_landmarker_v2", "mediapipe_facemesh_v1",
            "mediapipe_iris", "tddfa_v2_mb05"} <= set(ids)
    assert "mediapipe_selfie" not in ids  # a tflite model facegraph does not run (no wrapper)
    assert not any(reg.get(i).runtime == "onnx" for i in ids)
    assert oe.parts("mediapipe_landmarker_v2") == ("", "blendshapes")
    assert oe.parts("mediapipe_iris") == ("",)


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="model_id"):
        oe.export_onnx("yunet_n", tmp_path / "x.onnx")
    with pytest.raises(InputError, match="opset"):
        oe.export_onnx("mediapipe_iris", tmp_path / "x.onnx", opset=17)
    with pytest.raises(InputError, match="batch"):
        oe.export_onnx("mediapipe_iris", tmp_path / "x.onnx", batch="many")
    with pytest.raises(InputError, match="batch"):
        oe.export_onnx("mediapipe_iris", tmp_path / "x.onnx", batch=0)
    with pytest.raises(InputError, match="part"):
        oe.torch_network("mediapipe_iris", "blendshapes")


def _check(net, path, batch, seed):
    x = oe.example_input(net, batch, seed=seed)
    with torch.inference_mode():
        ref = [r.numpy() for r in net.module(x)]
    out = oe.onnx_outputs(net, path, x.numpy())
    assert len(out) == len(ref)
    for name, o, r in zip(net.output_names, out, ref):
        assert o.shape == r.shape, name
        assert r.shape[0] == batch, name
        scale = max(1.0, float(np.abs(r).max()))
        err = float(np.abs(o - r).max())
        assert err <= TOLERANCE * scale, f"{name}: max |onnx - torch| {err:.3g} over scale {scale:.3g}"


@pytest.mark.shared
@pytest.mark.parametrize("model_id,part", NETWORKS, ids=[f"{m}{'.' + p if p else ''}" for m, p in NETWORKS])
def test_onnx_matches_torch_with_a_dynamic_batch(exported, model_id, part):
    net, path = exported(model_id, part)
    _check(net, path, batch=2, seed=0)
    _check(net, path, batch=3, seed=1)  # a batch the export never saw
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.input[0].name == net.input_name
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "batch" for o in model.graph.output)
    assert [o.name for o in model.graph.output] == list(net.output_names)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["facegraph.model_id"] == model_id and meta["facegraph.part"] == part
    assert meta["facegraph.source_sha256"] == registry().get(model_id).files[0].sha256
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= oe.DEFAULT_OPSET


@pytest.mark.shared
def test_blendshape_head_batches_like_single_items(mirror):
    """The TFLite head drops axis 0 in its last slice; the exported network keeps it, item for item."""
    net = oe.torch_network("mediapipe_landmarker_v2", "blendshapes")
    x = oe.example_input(net, 3)
    with torch.inference_mode():
        batched = net.module(x)[0]
        singles = torch.stack([net.module.module(x[i:i + 1])[0] for i in range(3)])
    assert batched.shape == (3, 52)
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=0)


@pytest.mark.shared
@pytest.mark.slow
def test_static_batch_and_export_all(tmp_path, mirror):
    path = oe.export_onnx("tddfa_v2_mb05", tmp_path / "static.onnx", batch="4")
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    paths = oe.export_all(tmp_path / "all")
    assert [p.name for p in paths] == [oe.file_name(m, p) for m, p in NETWORKS]
