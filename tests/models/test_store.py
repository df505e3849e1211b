import hashlib
import logging
from pathlib import Path

import pytest

from facegraph.core.errors import IntegrityError, ModelError, ModelNotFoundError
from facegraph.models.registry import ModelFile, ModelSpec
from facegraph.models.store import ModelStore


def _spec(tmp_path: Path, content: bytes = b"model-bytes", *, sha: str | None = "auto", url=None, files=1):
    fs = []
    for i in range(files):
        data = content + bytes([i])
        digest = hashlib.sha256(data).hexdigest() if sha == "auto" else sha
        fs.append(ModelFile(path=f"fam/m{i}.onnx", sha256=digest, size=len(data), url=url))
    return ModelSpec(id="m", task="detect", family="yunet", runtime="onnx", licence="MIT",
                     licence_class="permissive", files=tuple(fs))


def _put(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_resolution_order_explicit_host_cache_mirror(tmp_path):
    spec = _spec(tmp_path)
    data = b"model-bytes\x00"
    mirror, cache, host = tmp_path / "mirror", tmp_path / "cache", tmp_path / "host"
    store = ModelStore(cache_dir=cache, mirrors=[mirror], offline=True, host_dirs=lambda: [host])
    _put(mirror, "fam/m0.onnx", data)
    assert store.resolve(spec).locations == {"fam/m0.onnx": "mirror"}
    _put(cache / "models", "fam/m0.onnx", data)
    assert store.resolve(spec).locations == {"fam/m0.onnx": "cache"}
    _put(host, "m0.onnx", data)  # users drop files flat into the host folder
    assert store.resolve(spec).locations == {"fam/m0.onnx": "host"}
    explicit = _put(tmp_path / "elsewhere", "mine.onnx", data)
    res = store.resolve(spec, explicit=explicit)
    assert res.locations == {"fam/m0.onnx": "explicit"} and res.path() == explicit


def test_tampered_copy_is_rejected_with_both_hashes(tmp_path):
    spec = _spec(tmp_path)
    mirror = tmp_path / "mirror"
    _put(mirror, "fam/m0.onnx", b"tampered")
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[mirror], offline=True)
    with pytest.raises(IntegrityError) as exc:
        store.resolve(spec)
    msg = str(exc.value)
    assert spec.files[0].sha256 in msg and hashlib.sha256(b"tampered").hexdigest() in msg
    assert "model=m" in msg


def test_offline_missing_file_names_where_it_looked(tmp_path):
    spec = _spec(tmp_path, url="https://example.invalid/m0.onnx")
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[tmp_path / "nowhere"], offline=True)
    with pytest.raises(ModelNotFoundError, match="FACEGRAPH_OFFLINE=1 forbids download") as exc:
        store.resolve(spec)
    assert "nowhere" in str(exc.value)


def test_download_verifies_and_deletes_a_corrupt_file(tmp_path):
    served = _put(tmp_path / "server", "m0.onnx", b"wrong bytes")
    spec = _spec(tmp_path, url=served.as_uri())
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[], offline=False)
    with pytest.raises(IntegrityError, match="deleted"):
        store.resolve(spec)
    leftovers = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert leftovers == []


def test_download_of_a_good_file_lands_in_the_cache(tmp_path):
    served = _put(tmp_path / "server", "m0.onnx", b"model-bytes\x00")
    spec = _spec(tmp_path, url=served.as_uri())
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[], offline=False)
    res = store.resolve(spec)
    assert res.locations == {"fam/m0.onnx": "download"}
    assert res.path() == tmp_path / "c" / "models" / "fam" / "m0.onnx"
    assert store.resolve(spec).locations == {"fam/m0.onnx": "cache"}


def test_unpinned_file_is_refused_until_pinned(tmp_path):
    spec = _spec(tmp_path, sha=None)
    mirror = tmp_path / "mirror"
    p = _put(mirror, "fam/m0.onnx", b"model-bytes\x00")
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[mirror], offline=True)
    with pytest.raises(ModelError, match="no published sha256"):
        store.resolve(spec)
    store.pin(spec.files[0], hashlib.sha256(p.read_bytes()).hexdigest())
    assert store.resolve(spec).path() == p
    p.write_bytes(b"changed")
    with pytest.raises(IntegrityError):
        store.resolve(spec)


def test_explicit_path_that_does_not_exist(tmp_path):
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[], offline=True)
    with pytest.raises(ModelNotFoundError, match="explicit path"):
        store.resolve(_spec(tmp_path), explicit=tmp_path / "missing.onnx")


def test_multi_file_spec_resolves_every_file(tmp_path):
    spec = _spec(tmp_path, files=3)
    mirror = tmp_path / "mirror"
    for i in range(3):
        _put(mirror, f"fam/m{i}.onnx", b"model-bytes" + bytes([i]))
    res = ModelStore(cache_dir=tmp_path / "c", mirrors=[mirror], offline=True).resolve(spec)
    assert len(res.paths) == 3 and set(res.locations.values()) == {"mirror"}


def test_a_broken_host_bridge_does_not_break_resolution(tmp_path, caplog):
    def broken():
        raise RuntimeError("no folder_paths")

    mirror = tmp_path / "mirror"
    _put(mirror, "fam/m0.onnx", b"model-bytes\x00")
    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[mirror], offline=True, host_dirs=broken)
    with caplog.at_level(logging.WARNING):
        assert store.resolve(_spec(tmp_path)).locations["fam/m0.onnx"] == "mirror"
    assert "host model folders unavailable" in caplog.text


@pytest.mark.shared
def test_every_mirrored_model_resolves_and_verifies(mirror, tmp_path):
    from facegraph.models.registry import registry

    store = ModelStore(cache_dir=tmp_path / "c", mirrors=[mirror], offline=True)
    for spec in registry():
        if all(f.sha256 for f in spec.files):
            res = store.resolve(spec)
            assert set(res.locations.values()) == {"mirror"}, spec.id


def test_the_shot_cache_folder_is_an_input_and_never_moves_the_model_cache(tmp_path, monkeypatch):
    from facegraph.models.store import default_cache_dir, shot_cache_dir
    from facegraph.plugin.chunks import cache_folder

    monkeypatch.delenv("FACEGRAPH_SHOT_CACHE", raising=False)
    assert shot_cache_dir() == default_cache_dir() / "shots"
    assert shot_cache_dir(tmp_path / "given") == tmp_path / "given"  # a node's cache_folder input
    models = default_cache_dir()
    with cache_folder(tmp_path / "farm"):  # --cache DIR
        assert shot_cache_dir() == tmp_path / "farm" and default_cache_dir() == models
        assert shot_cache_dir(tmp_path / "given") == tmp_path / "given"  # the node's own folder wins
    assert shot_cache_dir() == default_cache_dir() / "shots"


def test_analyse_shot_writes_its_cache_in_the_folder_it_is_given(tmp_path):
    from facegraph.nodes.temporal import analysis_options

    _, root = analysis_options(None, None, 1, "auto", True, str(tmp_path / "c"))
    assert root == tmp_path / "c"
    assert analysis_options(None, None, 1, "auto", False, str(tmp_path / "c"))[1] is None  # cache off
