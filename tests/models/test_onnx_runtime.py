import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from facegraph.core.errors import InputError
from facegraph.models import onnx_runtime as onr
from facegraph.models.onnx_runtime import ProviderOptions, create_session, providers_for, run_bound

ort = pytest.importorskip("onnxruntime")
ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def all_providers(monkeypatch):
    """Pretend this onnxruntime build has every provider (option construction only: no session)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(ALL))


def test_cpu_always_last_and_missing_gpu_providers_are_logged(caplog):
    with caplog.at_level(logging.WARNING):
        prov = providers_for("tensorrt:0")
    assert prov[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "lacks it" in caplog.text


def test_missing_providers_are_dropped_with_a_reason(monkeypatch, caplog):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="facegraph.models.onnx_runtime"):
        prov = providers_for("tensorrt:1")
    assert prov == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider requested" in caplog.text and "CUDAExecutionProvider requested" in caplog.text


def test_options_for_each_device_string(all_providers, tmp_path):
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("mps") == ["CPUExecutionProvider"]
    for dev, index in (("cuda", "0"), ("cuda:1", "1")):
        (name, opts), last = providers_for(dev)
        assert name == "CUDAExecutionProvider" and last == "CPUExecutionProvider"
        assert opts == {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC",
                        "arena_extend_strategy": "kSameAsRequested", "do_copy_in_default_stream": "1"}
    (trt, t_opts), (cuda, c_opts), last = providers_for("tensorrt:2", cache_dir=tmp_path)
    assert (trt, cuda, last) == tuple(ALL)
    assert t_opts["device_id"] == c_opts["device_id"] == "2"
    assert t_opts["trt_fp16_enable"] == "0"  # fp16 only when asked
    assert t_opts["trt_engine_cache_enable"] == t_opts["trt_timing_cache_enable"] == "1"
    assert Path(t_opts["trt_engine_cache_path"]) == tmp_path / "tensorrt" / "engines"
    assert Path(t_opts["trt_timing_cache_path"]) == tmp_path / "tensorrt" / "timing"
    (_, t_opts), _, _ = providers_for("tensorrt", options=ProviderOptions(fp16=True, gpu_mem_limit=2 << 30,
                                                                           cudnn_conv_algo_search="EXHAUSTIVE"))
    assert t_opts["trt_fp16_enable"] == "1" and "trt_engine_cache_path" not in t_opts
    (_, c_opts), _ = providers_for("cuda", options=ProviderOptions(gpu_mem_limit=2 << 30,
                                                                  cudnn_conv_algo_search="EXHAUSTIVE"))
    assert c_opts["gpu_mem_limit"] == str(2 << 30) and c_opts["cudnn_conv_algo_search"] == "EXHAUSTIVE"


def test_tensorrt_profile_from_the_batch_range():
    opts = onr.tensorrt_options(0, ProviderOptions(trt_batch=(1, 8, 32)),
                                [("input", ["batch", 64, 64, 3]), ("image", [1, 3, "h", "w"])])
    assert opts["trt_profile_min_shapes"] == "input:1x64x64x3"
    assert opts["trt_profile_opt_shapes"] == "input:8x64x64x3"
    assert opts["trt_profile_max_shapes"] == "input:32x64x64x3"  # inputs with other dynamic axes: left out


def test_bad_devices_and_options_are_input_errors():
    for dev in ("gpu", "cuda:x", "cpu:3", "tensorrt:-1"):
        with pytest.raises(InputError, match="device"):
            providers_for(dev)
    with pytest.raises(InputError, match="cudnn_conv_algo_search"):
        ProviderOptions(cudnn_conv_algo_search="FAST")
    with pytest.raises(InputError, match="arena_extend_strategy"):
        ProviderOptions(arena_extend_strategy="grow")
    with pytest.raises(InputError, match="trt_batch"):
        ProviderOptions(trt_batch=(8, 1, 32))


@pytest.mark.shared
def test_session_runs_a_real_model_with_spinning_off(mirror):
    sess = create_session(mirror / "yunet" / "yunet_n_dynamic.onnx", device="cpu", threads=1)
    out = sess.run(None, {"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert len(out) == 12


@pytest.mark.shared
def test_a_gpu_device_without_the_provider_gives_a_cpu_session(mirror, monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="facegraph.models.onnx_runtime"):
        sess = create_session(mirror / "yunet" / "yunet_n_dynamic.onnx", device="tensorrt:0", threads=1,
                              options=ProviderOptions(cache_dir=tmp_path, trt_batch=(1, 2, 4)))
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert "runs on the CPU" in caplog.text
    assert onr.session_device(sess) == ("cpu", 0)


@pytest.mark.shared
def test_run_bound_on_cpu_matches_session_run(mirror):
    sess = create_session(mirror / "yunet" / "yunet_n_dynamic.onnx", device="cpu", threads=1)
    x = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0)).mul(255).permute(0, 3, 1, 2)
    assert not x.is_contiguous()  # a channels-last view: run_bound makes the contiguous copy itself
    before = x.clone()
    ref = sess.run(None, {"input": np.ascontiguousarray(x.numpy())})
    out = run_bound(sess, {"input": x})
    assert list(out) == [o.name for o in sess.get_outputs()]
    for o, r in zip(out.values(), ref):
        assert isinstance(o, torch.Tensor) and o.device.type == "cpu"
        np.testing.assert_array_equal(o.numpy(), r)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    some = run_bound(sess, {"input": x.contiguous()}, output_names=["cls_8", "obj_8"])
    assert list(some) == ["cls_8", "obj_8"]


@pytest.mark.shared
def test_run_bound_refuses_what_it_cannot_bind(mirror):
    sess = create_session(mirror / "yunet" / "yunet_n_dynamic.onnx", device="cpu", threads=1)
    with pytest.raises(InputError, match="empty"):
        run_bound(sess, {})
    with pytest.raises(InputError, match="meta"):
        run_bound(sess, {"input": torch.zeros(1, 3, 64, 64, device="meta")})
    with pytest.raises(InputError, match="dtype"):
        run_bound(sess, {"input": torch.zeros(1, 3, 64, 64, dtype=torch.complex64)})


def test_device_outputs_reach_torch_through_dlpack():
    """The conversion run_bound uses for device outputs (OrtValue -> torch via DLPack), held on a CPU value."""
    value = ort.OrtValue.ortvalue_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    t = torch.from_dlpack(value)
    assert t.shape == (2, 3) and t.dtype == torch.float32 and float(t[1, 2]) == 5.0


# ------------------------------------------------------------------------- GPU (skipped without one)
GPU = "cuda:0"  # the device the GPU tests bind frames on


def _need_cuda(provider: str = "CUDAExecutionProvider"):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    if provider not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime build has no {provider}")


@pytest.mark.gpu
@pytest.mark.shared
def test_run_bound_on_cuda_keeps_frames_on_the_device(mirror):
    _need_cuda()
    path = mirror / "yunet" / "yunet_n_dynamic.onnx"
    gpu = create_session(path, device="cuda:0", threads=1)
    assert gpu.get_providers()[0] == "CUDAExecutionProvider" and onr.session_device(gpu) == ("cuda", 0)
    cpu = create_session(path, device="cpu", threads=1)
    x = torch.rand(4, 3, 128, 160, generator=torch.Generator().manual_seed(0)).mul(255)
    xg = x.to(device=GPU)
    before = xg.clone()
    out = run_bound(gpu, {"input": xg})
    ref = cpu.run(None, {"input": x.numpy()})
    for o, r in zip(out.values(), ref):
        assert o.device == xg.device
        np.testing.assert_allclose(o.cpu().numpy(), r, atol=1e-3 * max(1.0, float(np.abs(r).max())))
    torch.testing.assert_close(xg, before, rtol=0, atol=0)
    with pytest.raises(InputError, match="session runs on"):
        run_bound(cpu, {"input": xg})


@pytest.mark.gpu
@pytest.mark.shared
def test_tensorrt_session_writes_its_engine_and_timing_caches(mirror, tmp_path):
    _need_cuda("TensorrtExecutionProvider")
    path = mirror / "yunet" / "yunet_n_640_640.onnx"
    sess = create_session(path, device="tensorrt:0", options=ProviderOptions(cache_dir=tmp_path))
    assert sess.get_providers()[0] == "TensorrtExecutionProvider"
    name = sess.get_inputs()[0].name
    out = run_bound(sess, {name: torch.zeros(1, 3, 640, 640, device="cuda")})
    assert all(o.is_cuda for o in out.values())
    assert any((tmp_path / "tensorrt" / "engines").iterdir())
    assert any((tmp_path / "tensorrt" / "timing").iterdir())
