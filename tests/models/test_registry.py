"""Registry-driven checks: every spec well formed, licences flagged, and the registry agrees with the mirror."""
import pytest

from facegraph.core.errors import ModelError
from facegraph.models.registry import LICENCE_CLASSES, TASKS, ModelFile, ModelSpec, Registry, registry

SPECS = list(registry())


def test_registry_parses_and_has_the_expected_families():
    reg = registry()
    assert len(reg) >= 20
    families = {s.family for s in reg}
    for fam in ("yunet", "ultraface", "scrfd", "retinaface", "yolo5face", "blazeface", "mediapipe_mesh",
                "mediapipe_iris", "pfld", "tddfa", "fan_heatmap", "bfm", "sfm"):
        assert fam in families


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_spec_is_well_formed(spec: ModelSpec):
    assert spec.task in TASKS
    assert spec.licence_class in LICENCE_CLASSES
    assert spec.licence
    assert spec.files
    for f in spec.files:
        assert f.url and f.url.startswith("https://"), f"{spec.id}: {f.path} needs its official URL"
        assert f.size and f.size > 0
        assert f.sha256 is None or len(f.sha256) == 64


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_restricted_models_are_flagged_and_never_default(spec):
    if spec.licence_class != "permissive":
        assert spec.restricted and spec.licence_flag
        assert not spec.default


def test_one_default_per_task_at_most_and_the_main_ones_exist():
    reg = registry()
    assert reg.default("detect").id == "yunet_n"
    assert reg.default("landmarks").id == "mediapipe_landmarker_v2"
    for task in TASKS:
        assert sum(s.default for s in reg if s.task == task) <= 1


def test_registry_rejects_restricted_default_and_duplicates():
    f = (ModelFile(path="a.onnx", sha256="0" * 64, size=1, url="https://x"),)
    bad = ModelSpec(id="x", task="detect", family="yunet", runtime="onnx", licence="GPL", licence_class="gpl",
                    files=f, default=True)
    with pytest.raises(ModelError, match="cannot be the default"):
        Registry([bad])
    ok = ModelSpec(id="x", task="detect", family="yunet", runtime="onnx", licence="MIT",
                   licence_class="permissive", files=f)
    with pytest.raises(ModelError, match="duplicate"):
        Registry([ok, ok])


def test_unknown_id_is_a_clear_error():
    with pytest.raises(ValueError, match="known ids"):
        registry().get("nope")


@pytest.mark.shared
def test_registry_hashes_match_the_mirror_and_cover_every_file(mirror, mirror_sums):
    sums = mirror_sums
    registered = {f.path: f for s in registry() for f in s.files}
    missing = sorted(set(sums) - set(registered))
    assert not missing, f"mirror files not in the registry: {missing}"
    for path, sha in sums.items():
        assert registered[path].sha256 == sha, path
        assert registered[path].size == (mirror / path).stat().st_size, path
    unmirrored = sorted(p for p in registered if p not in sums)
    # only FaceFusion's releases are registered without a mirrored copy (no sha256 is published for them)
    assert all(p.startswith("facefusion/") and registered[p].sha256 is None for p in unmirrored), unmirrored
