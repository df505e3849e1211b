"""The synthesis jobs end to end on real frames: the demo plate (a real portrait photo moved by known motion),
a real source still from ../shared/data, the real detector / landmark models. Run through the shipped
templates (example_workflows/) with the headless runner, as the editor and the CLI run them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facegraph.core.io.images import read_image, write_image
from facegraph.plugin.demo import write_sample_plate
from facegraph.plugin.runner import run_file

pytestmark = pytest.mark.shared
WF = Path(__file__).resolve().parents[2] / "example_workflows"
FRAMES = 4


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthesis")
    numbers = write_sample_plate(root / "plate" / "plate.####.exr", FRAMES)
    return root, str(root / "plate" / "plate.####.exr"), f"{numbers[0]}-{numbers[-1]}"


def _face_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean |change| inside the changed region, fraction of pixels changed by more than 1e-3)."""
    d = np.abs(a[..., :3] - b[..., :3]).max(-1)
    return float(d[d > 1e-3].mean()) if (d > 1e-3).any() else 0.0, float((d > 1e-3).mean())


def test_face_replace_template(plate, data, tmp_path):
    root, pattern, frames = plate
    out = tmp_path / "replace" / "r.####.exr"
    run = run_file(WF / "face_replace.json", {
        "1.path": pattern, "1.frames": frames, "2.folder": str(tmp_path / "tracking"),
        "3.source": str(data / "stills" / "s0.jpg"), "3.plate": pattern, "3.frames": frames,
        "3.output": str(out), "3.preview_path": str(tmp_path / "ba.png"), "3.texture_size": 512,
        "4.plate": pattern, "4.frames": frames, "4.folder": str(tmp_path / "f3d"), "4.texture_size": 256})
    assert "4 frame(s) written" in run.outputs["3"][2]
    doc = json.loads((tmp_path / "tracking" / "tracking.json").read_text())
    assert doc["version"] == 2 and doc["fit"]["schema"] == "facegraph.fit" and len(doc["fit"]["frames"]) == 4
    for n in range(1001, 1001 + FRAMES):
        before, _ = read_image(pattern.replace("####", str(n)))
        after, info = read_image(str(out).replace("####", str(n)))
        assert after.shape == before.shape and np.isfinite(after).all()
        change, frac = _face_change(before, after)
        assert 0.005 < frac < 0.25, f"frame {n}: {frac:.3f} of the frame changed (the face only, please)"
        assert change > 0.01
        # outside the face's neighbourhood the plate is bit-identical
        assert (before[:40] == after[:40]).all()
        assert info.attribute("facegraph:graph_hash")
    assert (tmp_path / "ba.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "tracking" / "tracking.json").read_text())["tracks"]
    # resume with the same graph keeps every frame
    mtime = Path(str(out).replace("####", "1001")).stat().st_mtime_ns
    run = run_file(WF / "face_replace.json", {
        "1.path": pattern, "1.frames": frames, "2.folder": str(tmp_path / "tracking"),
        "3.source": str(data / "stills" / "s0.jpg"), "3.plate": pattern, "3.frames": frames,
        "3.output": str(out), "3.preview_path": str(tmp_path / "ba.png"), "3.texture_size": 512,
        "4.plate": pattern, "4.frames": frames, "4.folder": str(tmp_path / "f3d"), "4.texture_size": 256})
    assert "4 kept" in run.outputs["3"][2]
    assert Path(str(out).replace("####", "1001")).stat().st_mtime_ns == mtime


def test_face_paint_template(plate, tmp_path):
    root, pattern, frames = plate
    decal = np.zeros((256, 256, 4), np.float32)
    decal[100:156, :, :3] = (2.0, 0.1, 0.1)  # a bright red band across the UV layout, alpha 1 there
    decal[100:156, :, 3] = 1.0
    decal[..., :3] *= decal[..., 3:]
    write_image(tmp_path / "decal.exr", decal, pixel_type="float")
    out = tmp_path / "paint" / "p.####.exr"
    run = run_file(WF / "face_paint.json", {
        "1.path": pattern, "1.frames": frames, "2.decal": str(tmp_path / "decal.exr"), "2.plate": pattern,
        "2.frames": frames, "2.output": str(out), "2.preview_path": ""})
    assert "4 frame(s) written" in run.outputs["2"][2]
    before, _ = read_image(pattern.replace("####", "1002"))
    after, _ = read_image(str(out).replace("####", "1002"))
    red = (after[..., 0] - before[..., 0] > 0.2) & (after[..., 1] <= before[..., 1] + 1e-3)
    assert 50 < red.sum() < 0.1 * red.size, red.sum()
    assert (before[:40] == after[:40]).all()


def test_unstabilise_template_round_trip(plate, tmp_path):
    from facegraph.plugin.cli import main

    root, pattern, frames = plate
    assert main(["-q", "analyse", pattern, "--out", str(tmp_path / "shot"), "--no-preview"]) == 0
    crops = sorted((tmp_path / "shot" / "crops").glob("crop.*.exr"))
    assert len(crops) == FRAMES
    graded = tmp_path / "graded"
    for c in crops:  # a "processed" crop sequence: the crops darkened by a stop
        px, _ = read_image(c)
        write_image(graded / c.name, px * 0.5, pixel_type="float")
    out = tmp_path / "unstab" / "u.####.exr"
    run = run_file(WF / "unstabilise.json", {
        "1.path": str(tmp_path / "shot" / "tracking"), "2.crops": str(graded / "crop.####.exr"),
        "2.plate": pattern, "2.frames": frames, "2.output": str(out), "2.preview_path": ""})
    assert "4 frame(s) written" in run.outputs["2"][2]
    before, _ = read_image(pattern.replace("####", "1003"))
    after, _ = read_image(str(out).replace("####", "1003"))
    ratio = after[..., :3].sum() / before[..., :3].sum()
    assert 0.5 < ratio < 0.98  # the face region went a stop down, the rest did not move
    assert (before == after).all(-1).mean() > 0.3  # outside the crop's footprint: bit-identical


@pytest.mark.parametrize("model", ["mediapipe_canonical", "bfm_3ddfa"])
def test_export_face_fit(plate, tmp_path, model):
    """fit.json + an OBJ per frame + the UV texture; each OBJ lines up with that frame's landmarks."""
    from facegraph.core.io.mesh import read_obj
    from facegraph.core.io.source import open_source
    from facegraph.core.shot import SmoothOptions
    from facegraph.models.morphable import load_morphable_model
    from facegraph.models.pipeline.synthesis import export_face_fit
    from facegraph.models.shot import AnalysisOptions, analyse_shot

    root, pattern, frames = plate
    src = open_source(pattern)
    result = analyse_shot(src, AnalysisOptions(), SmoothOptions(fps=24.0))
    doc = export_face_fit(src, result, tmp_path / "f3d", model=model, texture_size=256)
    assert doc["schema"] == "facegraph.fit" and len(doc["frames"]) == FRAMES
    m = load_morphable_model(model)
    assert len(doc["identity"]) in (m.n_identity, 3 * m.n_vertices)
    main = result.main_track()
    face = dict(zip(main.frames, main.faces))[1002]
    v, f, vt = read_obj(tmp_path / "f3d" / "mesh" / "face.1002.obj")
    assert v.shape == (m.n_vertices, 3) and f.shape == m.triangles.shape and vt is not None
    h = result.frames[0].size[1]
    lm = np.asarray(face.landmarks.points[:, :2], float)
    idx = m.landmark_indices("mediapipe478")
    ok = idx >= 0
    screen = np.stack([v[:, 0], h - v[:, 1]], 1)  # back to y-down pixels
    err = np.linalg.norm(screen[idx[ok]] - lm[:len(idx)][ok], axis=1)
    scale = np.ptp(lm[:, 0])
    assert np.median(err) < 0.05 * scale, (np.median(err), scale)
    tex, _ = read_image(tmp_path / "f3d" / "texture.exr")
    assert tex.shape == (256, 256, 4) and (tex[..., 3] > 0.5).mean() > 0.3


def test_face_replace_refuses_a_source_without_a_face(plate, tmp_path):
    from facegraph.core.errors import FacegraphError

    root, pattern, frames = plate
    write_image(tmp_path / "blank.exr", np.full((128, 128, 3), 0.18, np.float32))
    with pytest.raises(FacegraphError, match="no face found in the source photo") as e:
        run_file(WF / "face_replace.json", {
            "1.path": pattern, "1.frames": frames, "2.folder": str(tmp_path / "tracking"),
            "3.source": str(tmp_path / "blank.exr"), "3.plate": pattern, "3.frames": frames,
            "3.output": str(tmp_path / "r" / "r.####.exr"), "4.plate": pattern, "4.folder": str(tmp_path / "f")})
    assert "node=3" in str(e.value)
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_bfm_fit_starts_from_3ddfa_regression(data):
    """Where 3DDFA_V2 is the landmark model, its regressed parameters (stored as the BFM's N(0,1)
    coefficients and a frame camera) start the BFM fit: the warm fit is as good as a cold one in <= 3
    iterations."""
    from facegraph.core.morphable.fit import FitOptions, fit, init_from_camera
    from facegraph.models.morphable import load_morphable_model
    from facegraph.models.pipeline.synthesis import FaceMesh, face_vertices, largest_face
    from facegraph.models.shot import AnalysisOptions, ShotAnalyser

    px, _ = read_image(data / "stills" / "s0.jpg")
    face = largest_face(ShotAnalyser(AnalysisOptions(landmarks="tddfa_v2_mb05", eyes="off")).analyse_frame(px, 0))
    assert face.morphable is not None and face.morphable.model == "bfm_3ddfa" and face.landmarks.scheme == "ibug68"
    m = load_morphable_model("bfm_3ddfa")
    pts = np.asarray(face.landmarks.points[:, :2], np.float64)
    opts = FitOptions(scheme="ibug68", use_contour=False)
    cold = fit(m, pts, options=opts)
    init = init_from_camera(m, face.morphable.shape, face.morphable.expression, face.morphable.camera)
    warm = fit(m, pts, options=opts, init=init)
    assert warm.iterations <= opts.warm_iterations and warm.rms < 1.5 * cold.rms + 0.5, (warm.rms, cold.rms)
    v = face_vertices(face, FaceMesh.of("bfm_3ddfa"), (px.shape[1], px.shape[0]))
    assert v.shape == (m.n_vertices, 3) and np.isfinite(v).all()


def test_export_face_fit_node_never_writes_over_what_it_reads(plate, tmp_path):
    """Outside any run (as inside ComfyUI) the node is its own guard job: a plate that is one of its outputs
    (a still named texture.exr in the export folder) is refused, not replaced."""
    import shutil

    from facegraph.core.errors import ImageIOError
    from facegraph.core.io.source import open_source
    from facegraph.core.shot import SmoothOptions
    from facegraph.models.shot import AnalysisOptions, analyse_shot
    from facegraph.nodes import NODE_CLASSES

    root, pattern, frames = plate
    still = tmp_path / "f3d" / "texture.exr"
    still.parent.mkdir()
    shutil.copy(pattern.replace("####", "1001"), still)
    before = still.read_bytes()
    result = analyse_shot(open_source(str(still)), AnalysisOptions(), SmoothOptions(fps=24.0))
    with pytest.raises(ImageIOError, match="input"):
        NODE_CLASSES["FacegraphExportFaceFit"]().export(result, str(still), folder=str(tmp_path / "f3d"),
                                                        texture_size=64)
    assert still.read_bytes() == before
