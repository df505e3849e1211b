"""onnxruntime sessions with explicit provider selection, thread settings and IO binding of torch tensors.

Providers by device: ``cpu`` -> CPU; ``cuda`` / ``cuda:N`` -> CUDA then CPU; ``tensorrt`` / ``tensorrt:N`` ->
TensorRT then CUDA then CPU (CUDA runs what TensorRT does not take). A provider that this onnxruntime build
lacks is dropped with a logged reason, never silently. Provider options come from one frozen
:class:`ProviderOptions`; option names and defaults as documented by ONNX Runtime:
CUDA EP https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html (and the C API's
OrtCUDAProviderOptions), TensorRT EP https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html
("Configurations", "TensorRT EP Caches").

Threads: intra-op threads default to ``$FACEGRAPH_THREADS`` or the core count, and intra-op spinning is OFF.
Measured on a 2-core machine: two sessions with default spin-waiting made a detect + landmark chain 2.7x slower
(45.7 ms vs 17.1 ms per image), because each session's idle workers spin on the cores the other needs.

IO binding (:func:`run_bound`): CUDA tensors are bound by device pointer and the outputs stay on the device
(no host round trip); CPU tensors go through ``session.run`` as zero-copy numpy views.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal, Sequence

from .threads import default_threads  # the one reader of FACEGRAPH_THREADS
from ..core.errors import InputError, ModelError

log = logging.getLogger(__name__)

ConvAlgoSearch = Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]
ArenaStrategy = Literal["kNextPowerOfTwo", "kSameAsRequested"]
DeviceKind = Literal["cpu", "cuda", "tensorrt"]
DEVICE_KINDS: tuple[str, ...] = ("cpu", "cuda", "tensorrt")

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)


@dataclasses.dataclass(frozen=True)
class ProviderOptions:
    """GPU provider settings (ignored for ``cpu``).

    fp16: TensorRT builds fp16 engines (``trt_fp16_enable``; default off: opt in where accuracy holds,
        issue 11 asks for it to be measured). The CUDA provider has no precision switch: feed it an fp16 model.
    cache_dir: TensorRT engine cache (``<cache_dir>/tensorrt/engines``) and timing cache
        (``<cache_dir>/tensorrt/timing``); an engine takes seconds to minutes to build, a cached one loads in
        well under a second. None: no cache on disk (ONNX Runtime's default).
    cudnn_conv_algo_search: the CUDA EP's default is EXHAUSTIVE, which benchmarks every cuDNN algorithm for
        each new input shape; face batches change size with the number of faces, so the default here is
        HEURISTIC (cuDNN's heuristics, no per-shape benchmark).
    arena_extend_strategy: the CUDA EP's default kNextPowerOfTwo can reserve up to twice what a run needs;
        kSameAsRequested grows the arena by what is asked, which matters beside other GPU users (ComfyUI).
    gpu_mem_limit: the CUDA arena's limit in bytes (None: no limit, ONNX Runtime's default).
    trt_batch: (min, opt, max) batch of the TensorRT optimisation profile for inputs whose axis 0 is dynamic
        (``trt_profile_min/opt/max_shapes``); None lets TensorRT rebuild its engine when a batch falls
        outside the shapes it has seen.
    trt_max_workspace_size: bytes TensorRT may use while building (None: ONNX Runtime's default).
    """

    fp16: bool = False
    cache_dir: Path | None = None
    cudnn_conv_algo_search: ConvAlgoSearch = "HEURISTIC"
    arena_extend_strategy: ArenaStrategy = "kSameAsRequested"
    gpu_mem_limit: int | None = None
    trt_batch: tuple[int, int, int] | None = None
    trt_max_workspace_size: int | None = None

    def __post_init__(self) -> None:
        if self.cudnn_conv_algo_search not in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
            raise InputError(f"cudnn_conv_algo_search {self.cudnn_conv_algo_search!r} is not a choice",
                             hint="use EXHAUSTIVE, HEURISTIC or DEFAULT")
        if self.arena_extend_strategy not in ("kNextPowerOfTwo", "kSameAsRequested"):
            raise InputError(f"arena_extend_strategy {self.arena_extend_strategy!r} is not a choice",
                             hint="use kNextPowerOfTwo or kSameAsRequested")
        if self.trt_batch is not None:
            b = tuple(int(v) for v in self.trt_batch)
            if len(b) != 3 or not 1 <= b[0] <= b[1] <= b[2]:
                raise InputError(f"trt_batch {self.trt_batch!r} must be (min, opt, max) with 1 <= min <= opt <= max")




def parse_device(device: str | None) -> tuple[str, int]:
    """``"cpu"`` / ``"cuda[:N]"`` / ``"tensorrt[:N]"`` -> (kind, device index). Raises InputError otherwise."""
    text = (device or "cpu").strip().lower()
    kind, _, index = text.partition(":")
    if kind == "mps":  # a torch device onnxruntime has no provider for here: its sessions run on the CPU
        log.info("onnxruntime has no provider for %r; its sessions run on the CPU", device)
        return "cpu", 0
    if kind not in DEVICE_KINDS or (index and not index.isdigit()) or (kind == "cpu" and index not in ("", "0")):
        raise InputError(f"device {device!r} is not an onnxruntime device",
                         hint="use cpu, cuda, cuda:N, tensorrt or tensorrt:N")
    return kind, int(index) if index else 0


def cuda_options(dev_id: int, options: ProviderOptions) -> dict[str, str]:
    """CUDA EP options (string values, as onnxruntime's Python API passes them)."""
    opts = {"device_id": str(dev_id),
            "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
            "arena_extend_strategy": options.arena_extend_strategy,
            # copies on the compute stream (ONNX Runtime's default, stated: 0 may race, onnxruntime issue 4829)
            "do_copy_in_default_stream": "1"}
    if options.gpu_mem_limit is not None:
        opts["gpu_mem_limit"] = str(int(options.gpu_mem_limit))
    return opts


def tensorrt_options(dev_id: int, options: ProviderOptions,
                     inputs: Sequence[tuple[str, Sequence]] = ()) -> dict[str, str]:
    """TensorRT EP options. ``inputs`` ((name, shape) of the model's inputs) feed the optimisation profile
    when ``options.trt_batch`` is set (only inputs whose other axes are all fixed)."""
    opts = {"device_id": str(dev_id), "trt_fp16_enable": "1" if options.fp16 else "0"}
    if options.cache_dir is not None:
        root = Path(options.cache_dir).expanduser() / "tensorrt"
        opts.update({"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(root / "engines"),
                     "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(root / "timing")})
    if options.trt_max_workspace_size is not None:
        opts["trt_max_workspace_size"] = str(int(options.trt_max_workspace_size))
    if options.trt_batch is not None:
        profile: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
        for name, shape in inputs:
            rest = list(shape)[1:]
            if not shape or not all(isinstance(d, int) and d > 0 for d in rest):
                continue
            for key, b in zip(("min", "opt", "max"), options.trt_batch):
                profile[key].append(f"{name}:" + "x".join(str(d) for d in [int(b), *rest]))
        if profile["min"]:
            for key in ("min", "opt", "max"):
                opts[f"trt_profile_{key}_shapes"] = ",".join(profile[key])
    return opts


def providers_for(device: str, *, cache_dir: Path | None = None, options: ProviderOptions | None = None,
                  inputs: Sequence[tuple[str, Sequence]] = ()) -> list:
    """The provider list for a device string, filtered to what this onnxruntime build offers; CPU is always
    last. ``cache_dir`` (kept for callers of the old signature) overrides ``options.cache_dir``."""
    import onnxruntime as ort

    options = options or ProviderOptions()
    if cache_dir is not None:
        options = dataclasses.replace(options, cache_dir=Path(cache_dir))
    kind, dev_id = parse_device(device)
    available = set(ort.get_available_providers())
    wanted: list = []
    if kind == "tensorrt":
        wanted.append((TENSORRT, tensorrt_options(dev_id, options, inputs)))
    if kind in ("tensorrt", "cuda"):
        wanted.append((CUDA, cuda_options(dev_id, options)))
    out = []
    for name, opts in wanted:
        if name in available:
            out.append((name, opts))
        else:
            log.warning("%s requested for device %r but this onnxruntime build lacks it (has %s); falling back",
                        name, device, sorted(available))
    out.append(CPU)
    return out


def _input_shapes(path: Path | str) -> list[tuple[str, list]]:
    """(name, shape) of a model's inputs, read through a throw-away CPU session (no onnx dependency)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), sess_options=so, providers=[CPU])
    return [(i.name, list(i.shape)) for i in sess.get_inputs()]


def create_session(path: Path | str, *, device: str = "cpu", threads: int | None = None,
                   cache_dir: Path | None = None, options: ProviderOptions | None = None):
    """An ``onnxruntime.InferenceSession`` for a *verified* model file on ``device`` (see module doc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: some upstream exports carry initializers as inputs (harmless)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    kind, _ = parse_device(device)
    inputs: list = []
    try:
        if kind == "tensorrt" and options is not None and options.trt_batch is not None:
            inputs = _input_shapes(path)
        providers = providers_for(device, cache_dir=cache_dir, options=options, inputs=inputs)
        for name, opts in (p for p in providers if isinstance(p, tuple)):
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in opts:
                    Path(opts[key]).mkdir(parents=True, exist_ok=True)
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except InputError:
        raise
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model: {exc}", file=str(path)) from None
    used = sess.get_providers()
    if kind != "cpu" and used[0] == CPU:
        log.warning("session for %s runs on the CPU although %r was asked for", Path(path).name, device)
    return sess


# ------------------------------------------------------------------------------------------- IO binding
def _np_dtype(dtype):
    import numpy as np
    import torch

    table = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
             torch.int64: np.int64, torch.int32: np.int32, torch.int8: np.int8, torch.uint8: np.uint8,
             torch.bool: np.bool_}
    if dtype not in table:
        raise InputError(f"inputs: dtype {dtype} has no onnxruntime element type",
                         hint="use float32, float16, float64, int64, int32, int8, uint8 or bool")
    return table[dtype]


def session_device(session) -> tuple[str, int]:
    """("cuda", device id) when the session's first provider is CUDA or TensorRT, else ("cpu", 0)."""
    first = session.get_providers()[0]
    if first in GPU_PROVIDERS:
        opts = session.get_provider_options().get(first, {})
        return "cuda", int(opts.get("device_id", 0) or 0)
    return "cpu", 0


def run_bound(session, inputs: dict, output_names: Sequence[str] | None = None) -> dict:
    """Run ``session`` on torch tensors; returns {output name: torch tensor} on the inputs' device.

    CUDA tensors: bound to the session by device pointer (``IOBinding.bind_input(..., data_ptr)``), outputs
    allocated by onnxruntime on the same device and handed to torch through DLPack, so nothing passes through
    host memory. The session must run on that device (CUDA or TensorRT provider, same device id). torch's
    current stream is synchronised first (the inputs it wrote are complete); onnxruntime's run returns after
    its own stream has finished, so the outputs are ready.
    CPU tensors: ``session.run`` on zero-copy numpy views (a copy only for a non-contiguous tensor).

    Convention: shapes and dtypes are the model's; all inputs on one device; the inputs are never modified.
    """
    import torch

    if not inputs:
        raise InputError("inputs is empty", hint="pass {input name: tensor} for every model input")
    names = list(output_names) if output_names else [o.name for o in session.get_outputs()]
    devices = {t.device for t in inputs.values()}
    if len(devices) != 1 or not all(isinstance(t, torch.Tensor) for t in inputs.values()):
        raise InputError(f"inputs must be torch tensors on one device, got {sorted(map(str, devices))}",
                         hint="move them to one device first (run_bound never moves data)")
    device = devices.pop()
    if device.type == "cpu":
        feeds = {k: t.detach().contiguous().numpy() for k, t in inputs.items()}
        for t in inputs.values():
            _np_dtype(t.dtype)
        return {n: torch.from_numpy(o) for n, o in zip(names, session.run(names, feeds))}
    if device.type != "cuda":
        raise InputError(f"inputs are on {device}; run_bound takes cpu or cuda tensors")
    kind, dev_id = session_device(session)
    index = device.index if device.index is not None else torch.cuda.current_device()
    if kind != "cuda" or dev_id != index:
        raise InputError(f"inputs are on {device} but the session runs on "
                         f"{session.get_providers()[0]} (device {dev_id})",
                         hint=f"create the session with device='cuda:{index}' or 'tensorrt:{index}'")
    binding = session.io_binding()
    keep = []
    for name, t in inputs.items():
        t = t.detach().contiguous()
        keep.append(t)  # alive until the run ends
        binding.bind_input(name, "cuda", index, _np_dtype(t.dtype), tuple(t.shape), t.data_ptr())
    for name in names:
        binding.bind_output(name, "cuda", index)
    torch.cuda.current_stream(device).synchronize()
    session.run_with_iobinding(binding)
    outs = binding.get_outputs()
    result = {n: torch.from_dlpack(o) for n, o in zip(names, outs)}
    del keep
    return result
