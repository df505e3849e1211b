"""What ComfyUI users see and control, tested headless with stand-ins shaped like ComfyUI's modules.

Pictures on nodes ({"ui": {"images": [{"filename", "subfolder", "type"}]}}), one forward-only bar per node,
interruption per frame, licence flags at the loaders. No models, no shared data: synthetic faces only.
"""
import logging
import sys
import types

import cv2
import numpy as np
import pytest

from facegraph.core import progress
from facegraph.core.shot import SmoothOptions, process_shot
from facegraph.core.types import Face, FrameFaces
from facegraph.models import loader
from facegraph.models.registry import registry
from facegraph.nodes.analysis import DrawLandmarks, FaceInfo, LoadDetector, LoadLandmarker
from facegraph.nodes.temporal import ExportTracking, SaveContactSheet, TrackCrops, track_picture
from facegraph.nodes.types import numpy_to_image
from facegraph.plugin import comfyui
from facegraph.plugin.runner import Runner

KP = np.array([[38.0, 52.0], [74.0, 52.0], [56.0, 72.0], [42.0, 92.0], [70.0, 92.0]])


def _faces(n=5):
    return [FrameFaces(frame=1001 + i, size=(160, 120),
                       faces=(Face(box=[20.0 + i, 20.0, 92.0 + i, 110.0], score=0.9, keypoints=KP + [i, 0]),))
            for i in range(n)]


def _images(n=5):
    rng = np.random.default_rng(0)
    return numpy_to_image(rng.random((n, 120, 160, 3)).astype(np.float32) * 0.5)


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    """Stand-ins for folder_paths, comfy.utils.ProgressBar and comfy.model_management, with the bridges on."""
    fp = types.ModuleType("folder_paths")
    fp.get_temp_directory = lambda: str(tmp_path / "temp")
    fp.get_output_directory = lambda: str(tmp_path / "output")
    bars = []

    class ProgressBar:  # comfy.utils.ProgressBar(total): update_absolute(value, total=None, preview=None), update(n)
        def __init__(self, total):
            self.total, self.current, self.values = total, 0, []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            self.values.append(self.current)

        def update(self, value):
            self.update_absolute(self.current + value)

    class InterruptProcessingException(Exception):
        pass

    state = {"interrupt_after": None, "checks": 0}

    def throw_exception_if_processing_interrupted():
        state["checks"] += 1
        if state["interrupt_after"] is not None and state["checks"] > state["interrupt_after"]:
            raise InterruptProcessingException()

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    mm = types.ModuleType("comfy.model_management")
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.InterruptProcessingException = InterruptProcessingException
    pkg = types.ModuleType("comfy")
    pkg.utils, pkg.model_management = utils, mm
    for k, v in {"folder_paths": fp, "comfy": pkg, "comfy.utils": utils, "comfy.model_management": mm}.items():
        monkeypatch.setitem(sys.modules, k, v)
    progress.set_fallback(comfyui.ComfyReporter())
    progress.set_ui_folder(comfyui._ui_folder)
    try:
        yield types.SimpleNamespace(root=tmp_path, bars=bars, state=state, Interrupted=InterruptProcessingException)
    finally:
        progress.set_fallback(None)
        progress.set_ui_folder(None)


def _check_refs(refs, root, kind="temp"):
    for r in refs:
        assert set(r) == {"filename", "subfolder", "type"} and r["type"] == kind
        pic = cv2.imread(str(root / r["subfolder"] / r["filename"]))
        assert pic is not None and pic.dtype == np.uint8


# ------------------------------------------------------------------------------------------ pictures
def test_ui_images_headless_go_to_a_folder_of_our_own():
    pics = [np.full((10, 20, 3), v, np.uint8) for v in (0, 128, 255)]
    refs = progress.ui_images(pics, "pre view")
    assert len(refs) == 3 and len({r["filename"] for r in refs}) == 3
    assert all(r["filename"].startswith("pre_view_") for r in refs)
    _check_refs(refs, progress.ui_folder("temp"))
    again = progress.ui_images(pics[:1], "pre view")
    assert again[0]["filename"] not in {r["filename"] for r in refs}  # a re-run never overwrites a shown picture
    assert progress.preview_picks(300, 4) == [0, 100, 199, 299] and progress.preview_picks(3, 0) == []


def test_ui_images_inside_comfyui_use_its_temp_and_output_folders(comfy):
    refs = progress.ui_images([np.zeros((4, 4, 3), np.uint8)], "x", kind="output")
    _check_refs(refs, comfy.root / "output", kind="output")
    _check_refs(progress.ui_images([np.zeros((4, 4, 3), np.uint8)], "x"), comfy.root / "temp")


def test_draw_landmarks_previews_in_the_node_and_still_passes_frames_on(comfy):
    assert DrawLandmarks.OUTPUT_NODE is True
    out = DrawLandmarks().draw(_images(), _faces(), preview_count=3)
    assert len(out["ui"]["images"]) == 3
    _check_refs(out["ui"]["images"], comfy.root / "temp")
    (preview,) = out  # callers that unpack the outputs keep working
    assert tuple(preview.shape) == (5, 120, 160, 3) and preview is out["result"][0]
    assert DrawLandmarks().draw(_images(), _faces(), preview_count=0)["ui"]["images"] == []


def test_contact_sheet_and_export_show_a_picture(comfy, tmp_path):
    prev = DrawLandmarks().draw(_images(), _faces(), preview_count=0)["result"][0]
    out = SaveContactSheet().save(prev, str(tmp_path / "sheet.png"), count=4, columns=2, tile_width=64)
    assert out["ui"]["text"] == [str(tmp_path / "sheet.png")] and len(out["ui"]["images"]) == 1
    _check_refs(out["ui"]["images"], comfy.root / "temp")
    result = process_shot(_faces(), SmoothOptions(method="rts", fps=24.0))
    pic = track_picture(result)
    assert pic.shape == (384, 512, 3) and pic.dtype == np.uint8 and pic.max() > 24
    exp = ExportTracking().export(result, str(tmp_path / "t"), 64)
    assert "1 track(s) over 5 frame(s)" in exp["ui"]["text"][0] and len(exp["ui"]["images"]) == 1
    _check_refs(exp["ui"]["images"], comfy.root / "temp")


def test_a_graph_ending_in_face_info_runs_headless(tmp_path):
    assert FaceInfo.OUTPUT_NODE is True
    result = process_shot(_faces(), SmoothOptions(method="rts", fps=24.0))
    folder = ExportTracking().export(result, str(tmp_path / "t"), 64)["result"][0]
    graph = {"1": {"class_type": "FacegraphImportTracking", "inputs": {"path": folder}},
             "2": {"class_type": "FacegraphFaceInfo", "inputs": {"faces": ["1", 0], "landmarks": False}}}
    run = Runner().run(graph)
    assert run.order == ["1", "2"] and run.outputs["2"][1] == 5
    assert '"frame": 1001' in run.ui["2"]["text"][0]


# ------------------------------------------------------------------------------ progress, interrupt
def test_nested_tasks_drive_one_forward_only_bar(comfy):
    """Analyse Shot's shape: an outer per-frame task with a detect (1 job) and a landmarks task in each frame."""
    with progress.task(4, "analyse frames") as outer:
        for _ in range(4):
            for inner_total in (1, 3):
                with progress.task(inner_total, "inner") as inner:
                    for _ in range(inner_total):
                        inner.advance()
            outer.advance()
    assert len(comfy.bars) == 1 and comfy.bars[0].total == 4
    values = comfy.bars[0].values
    assert values == sorted(values) and values[-1] == 4
    # detect: half the step; landmarks (3 faces): half of the rest, in thirds; then the step completes
    assert values[:5] == pytest.approx([0.5, 7 / 12, 8 / 12, 0.75, 1.0])


def test_sequential_tasks_each_get_a_bar_and_no_comfy_means_no_bar(comfy, monkeypatch):
    with progress.task(2, "a") as bar:
        bar.advance(2)
    with progress.task(3, "b") as bar:
        bar.advance()
    assert [(b.total, b.values) for b in comfy.bars] == [(2, [2]), (3, [1])]
    monkeypatch.delitem(sys.modules, "comfy.utils")
    monkeypatch.setattr(sys.modules["comfy"], "utils", None, raising=False)
    with progress.task(3, "c") as bar:
        bar.advance()
    assert len(comfy.bars) == 2


@pytest.mark.parametrize("node", ["draw", "crops"])
def test_per_frame_nodes_report_and_stop_when_interrupted(comfy, node):
    faces = _faces()
    result = process_shot(faces, SmoothOptions(method="rts", fps=24.0))

    def call():
        if node == "draw":
            return DrawLandmarks().draw(_images(), faces, preview_count=0)
        return _crops(tuple(ff.frame for ff in faces), result)

    call()
    assert comfy.bars[-1].total == 5 and comfy.bars[-1].values[-1] == 5
    comfy.state.update(interrupt_after=2, checks=0)
    with pytest.raises(comfy.Interrupted):
        call()
    assert comfy.bars[-1].values == [1, 2]


def _crops(frames, result):
    from facegraph.core.io.frames import SequenceInfo

    info = SequenceInfo(pattern="x.####.exr", frames=frames, filled=(), data_window=(0, 0, 160, 120),
                        display_window=(0, 0, 160, 120), fps=24.0)
    return TrackCrops().crops(_images(), info, result, size=32)


# ------------------------------------------------------------------------------------------ licences
def test_loaders_flag_licences_where_the_user_chooses():
    reg = registry()
    ids = loader.runnable_ids("detect")
    spec = LoadDetector.INPUT_TYPES()["required"]["model"]
    assert spec[0] == ids  # the combo values themselves are unchanged
    for i in ids:
        flag = reg.get(i).licence_flag
        assert f"{i}: {flag or 'permissive'}" in LoadDetector.DESCRIPTION
        assert (f"{i} ({flag})" in spec[1]["tooltip"]) == bool(flag)
    assert "scrfd_500m: NON-COMMERCIAL" in LoadDetector.DESCRIPTION
    assert "yolo5face_500m: GPL" in LoadDetector.DESCRIPTION
    assert "pfld: LICENCE UNKNOWN" in LoadLandmarker.DESCRIPTION
    assert "not for commercial use" in loader.licence_note(reg.get("scrfd_500m"))
    assert loader.licence_note(reg.get("yunet_n")) == "yunet_n: licence Apache-2.0"


def test_restricted_models_warn_once_and_the_loader_shows_the_licence(monkeypatch, caplog):
    monkeypatch.setattr(loader, "_warned", set())
    loaded = []
    monkeypatch.setattr(loader.ModelHandle, "get", lambda self: loaded.append(self.model_id))
    with caplog.at_level(logging.WARNING, logger="facegraph.models.loader"):
        out = LoadDetector().load("scrfd_500m", "cpu")  # get() is stubbed: the warning is load_model's
        assert loader.warn_restricted(registry().get("yunet_n")) is False  # permissive: never
        assert loader.warn_restricted(registry().get("retinaface_mnet025")) is True
        assert loader.warn_restricted(registry().get("retinaface_mnet025")) is False
    assert loaded == ["scrfd_500m"] and out["result"][0].model_id == "scrfd_500m"
    assert "NON-COMMERCIAL" in out["ui"]["text"][0]
    (handle,) = out
    assert handle.model_id == "scrfd_500m"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retinaface_mnet025" in warnings[0] and "NON-COMMERCIAL" not in warnings[0]


def test_load_model_warns_when_it_builds_a_restricted_model(monkeypatch, caplog):
    from facegraph.models.cache import ModelCache

    monkeypatch.setattr(loader, "_warned", set())
    monkeypatch.setattr(loader, "WRAPPERS", dict(loader.WRAPPERS, scrfd="fake:Model"))

    class Store:
        def resolve(self, spec, explicit=None):
            return "files"

    fake = types.ModuleType("facegraph.models.fake")
    fake.Model = lambda spec, resolved, device, threads: ("model", spec.id)
    monkeypatch.setitem(sys.modules, "facegraph.models.fake", fake)
    cache = ModelCache()
    with caplog.at_level(logging.WARNING, logger="facegraph.models.loader"):
        for device in ("cpu", "cpu"):
            assert loader.load_model("scrfd_500m", device=device, store=Store(), cache=cache) == ("model",
                                                                                                "scrfd_500m")
        loader.load_model("scrfd_500m", device="cpu", threads=2, store=Store(), cache=cache)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "scrfd_500m" in warnings[0].getMessage()


@pytest.mark.shared
def test_detect_faces_reports_per_frame_in_model_batches_and_stops(comfy, mirror):
    from facegraph.nodes.analysis import CHUNK, DetectFaces

    n = 2 * CHUNK + 3
    (faces,) = DetectFaces().detect(_images(n))
    assert len(faces) == n
    bar = comfy.bars[-1]
    # one step per frame, a batch at a time (the detector's own nested task moves the bar within a batch)
    assert bar.total == n and bar.values == sorted(bar.values) and {CHUNK, 2 * CHUNK, n} <= set(bar.values)
    comfy.state.update(interrupt_after=2, checks=0)
    with pytest.raises(comfy.Interrupted):
        DetectFaces().detect(_images(n))
    assert comfy.bars[-1].values[-1] < n  # stopped within the shot, not after it


def test_a_node_running_two_tasks_keeps_one_bar_that_never_goes_back(monkeypatch):
    """ComfyUI shows one bar per node: a node that loads then writes continues its bar (the total grows, the
    value never falls); the next node, or the same node in the next prompt, starts its own."""
    import dataclasses

    calls = []

    class Bar:
        def __init__(self, total):
            self.n = len([c for c in calls if c[0] == "new"])
            calls.append(("new", self.n, total))

        def update(self, v):
            calls.append(("update", self.n, v))

        def update_absolute(self, v, total=None):
            calls.append(("absolute", self.n, v, total))

    @dataclasses.dataclass
    class Ctx:
        prompt_id: str
        node_id: str

    where = {"ctx": Ctx("p1", "5")}
    cx = types.ModuleType("comfy_execution")
    cxu = types.ModuleType("comfy_execution.utils")
    cxu.get_executing_context = lambda: where["ctx"]
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = Bar
    mm = types.ModuleType("comfy.model_management")
    mm.throw_exception_if_processing_interrupted = lambda: None
    pkg = types.ModuleType("comfy")
    pkg.utils, pkg.model_management = utils, mm
    for k, v in {"comfy": pkg, "comfy.utils": utils, "comfy.model_management": mm, "comfy_execution": cx,
                 "comfy_execution.utils": cxu}.items():
        monkeypatch.setitem(sys.modules, k, v)
    progress.set_fallback(comfyui.ComfyReporter())
    try:
        def work(n):
            with progress.task(n, "t") as bar:
                for _ in range(n):
                    bar.advance()
        work(3)
        work(2)  # same node: the same bar goes on, 3 of 5 then 5 of 5
        assert calls == [("new", 0, 3), ("update", 0, 1), ("update", 0, 1), ("update", 0, 1),
                         ("absolute", 0, 3.0, 5.0), ("update", 0, 1), ("update", 0, 1)]
        calls.clear()
        where["ctx"] = Ctx("p1", "6")
        work(1)
        where["ctx"] = Ctx("p2", "6")  # the same node in the next prompt
        work(1)
        assert [c[:2] for c in calls if c[0] == "new"] == [("new", 0), ("new", 1)]
        calls.clear()
        where["ctx"] = None  # no execution context: a bar per task, as before
        work(1)
        work(1)
        assert len([c for c in calls if c[0] == "new"]) == 2
    finally:
        progress.set_fallback(None)
