"""read_export: version-1 documents round-trip; every malformed document is an InputError naming the file and
the place in it (never KeyError / TypeError / ValueError / AttributeError)."""
import copy
import json

import numpy as np
import pytest

from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.shot import ShotResult, SmoothedTrack, read_export, to_json, write_export
from facegraph.core.types import Alignment, Face, FrameFaces, HeadPose, Landmarks


def _result() -> ShotResult:
    rng = np.random.default_rng(0)
    frames, faces, aligns = [], [], []
    for i, n in enumerate((1001, 1002, 1003)):
        face = Face(box=[10 + i, 20, 110 + i, 140], score=0.9, keypoints=rng.uniform(20, 100, (5, 2)),
                    landmarks=Landmarks(points=rng.uniform(20, 100, (68, 2)), scheme="ibug68"),
                    pose=HeadPose(yaw=5.0 + i), provenance="smoothed", notes=("gate=ok",), track_id=0)
        frames.append(FrameFaces(frame=n, size=(640, 480), faces=(face, Face(box=[0, 0, 5, 5], score=0.2))))
        faces.append(face)
        aligns.append(Alignment(crop_from_frame=[[0.01, 0.001, -0.1 - i / 1000], [-0.001, 0.01, -0.2]],
                                crop_size=(1, 1), template="ffhq", frame=n, face_index=0, rms=0.5))
    track = SmoothedTrack(0, (1001, 1002, 1003), tuple(faces), tuple(aligns), (False, True, False))
    return ShotResult(frames=frames, tracks=[track], fps=24.0, template="ffhq", params={"smooth": "rts"},
                      source={"path": "plate.####.exr"})


@pytest.fixture(scope="module")
def doc():
    return to_json(_result(), crop_size=(256, 256))


def _write(tmp_path, doc_or_bytes):
    p = tmp_path / "tracking.json"
    p.write_bytes(doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode())
    return p


def _same(a: ShotResult, b: ShotResult) -> None:
    assert a.frames == b.frames and a.fps == b.fps and a.template == b.template
    assert a.params == b.params and a.source == b.source and len(a.tracks) == len(b.tracks)
    for s, t in zip(a.tracks, b.tracks):
        assert (s.track_id, s.frames, s.filled, s.faces) == (t.track_id, t.frames, t.filled, t.faces)
        for x, y in zip(s.alignments, t.alignments):
            assert y.crop_size == (1, 1) and np.allclose(x.crop_from_frame, y.crop_from_frame, atol=1e-15)


def test_version_1_round_trips(tmp_path, doc):
    assert doc["version"] == 2 and "fit" not in doc
    v1 = {**doc, "version": 1}  # what facegraph wrote before the fit existed
    _same(_result(), read_export(_write(tmp_path, v1)))
    write_export(_result(), tmp_path / "out", crop_size=(512, 512))
    _same(_result(), read_export(tmp_path / "out"))  # the folder form


def test_optional_keys_have_defaults(tmp_path, doc):
    d = copy.deepcopy(doc)
    for k in ("version", "fps", "params", "source", "generator", "conventions"):
        del d[k]
    back = read_export(_write(tmp_path, d))
    assert back.fps == 25.0 and back.params == {} and back.source == {}


def _set(path, value):
    """A mutation of the document: set (or with value=KeyError, delete) the key at ``path``."""
    def mutate(d):
        *parents, last = path
        for k in parents:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value(d[last]) if callable(value) else value
    return mutate


FACE = ("frames", 0, "faces", 0)
ALIGN = ("tracks", 0, "alignments", 0)
MALFORMED = [
    (_set(("template",), KeyError), r"tracking.json: missing key 'template'"),
    (_set(("template",), "ffhq"), r"tracking.json: template must be an object, got string"),
    (_set(("template", "name"), KeyError), r"tracking.json: template: missing key 'name'"),
    (_set(("template", "name"), 3), r"template.name must be a string, got integer"),
    (_set(("schema",), "other.tracking"), r"not a facegraph tracking export \(schema \"other.tracking\"\)"),
    (_set(("schema",), KeyError), r"not a facegraph tracking export \(schema null\)"),
    (_set(("version",), 3), r"export version 3 is newer than this facegraph reads \(2\) \[file=.*\]. upgrade facegraph"),
    (_set(("version",), "1"), r"version must be an integer, got string"),
    (_set(("version",), 0), r"unknown export version 0"),
    (_set(("fps",), "fast"), r"fps must be a number, got string"),
    (_set(("fps",), -24), r"fps must be a positive number"),
    (_set(("params",), []), r"params must be an object, got array"),
    (_set(("frames",), KeyError), r"tracking.json: missing key 'frames'"),
    (_set(("frames",), {}), r"frames must be an array, got object"),
    (_set(("frames", 0), 5), r"frames\[0\] must be an object \(a FrameFaces record\), got integer"),
    (_set(("frames", 0, "frame"), "1001"), r"frames\[0\].frame must be an integer, got string"),
    (_set(("frames", 1, "frame"), 1001), r"frames\[1\]: frame 1001 is listed twice"),
    (_set(("frames", 0, "size"), [640]), r"frames\[0\].size must be \[width, height\]"),
    (_set(("frames", 0, "faces"), {"a": 1}), r"frames\[0\].faces must be an array, got object"),
    (_set(FACE + ("score",), "high"), r"frames\[0\].faces\[0\].score must be a number, got string"),
    (_set(FACE + ("score",), None), r"frames\[0\].faces\[0\].score must not be null"),
    (_set(FACE + ("box",), [1, 2]), r"frames\[0\]: Face.box must have shape \(4,\)"),
    (_set(FACE + ("box",), ["a", 1, 2, 3]), r"frames\[0\]: malformed \(ValueError"),
    (_set(FACE + ("box",), [[1, 2], [3]]), r"frames\[0\]: malformed \(ValueError"),
    (_set(FACE + ("box",), {"x": 1}), r"box must be an array of numbers, got object"),
    (_set(FACE + ("box",), [5, 5, 1, 1]), r"frames\[0\]: Face.box must be \(x0, y0, x1, y1\) with x1 >= x0"),
    (_set(FACE + ("box",), KeyError), r"frames\[0\].faces\[0\]: missing key 'box'"),
    (_set(FACE + ("landmarks",), []), r"faces\[0\].landmarks must be an object \(a Landmarks record\)"),
    (_set(FACE + ("landmarks", "scheme"), KeyError), r"Landmarks.scheme must name the point order"),
    (_set(FACE + ("type",), "Landmarks"), r"faces\[0\] is a 'Landmarks' record where a Face was expected"),
    (_set(FACE + ("provenance",), "guessed"), r"Face.provenance must be one of"),
    (_set(FACE + ("track_id",), "0"), r"faces\[0\].track_id must be an integer, got string"),
    (_set(FACE + ("notes",), [1]), r"faces\[0\].notes must be an array of strings"),
    (_set(FACE + ("pose", "yaw"), [5]), r"pose.yaw must be a number, got array"),
    (_set(("tracks",), "none"), r"tracks must be an array, got string"),
    (_set(("tracks", 0), []), r"tracks\[0\]: a track must be an object, got array"),
    (_set(("tracks", 0, "track_id"), KeyError), r"tracks\[0\]: missing key 'track_id'"),
    (_set(("tracks", 0, "track_id"), 7), r"tracks\[0\]: frames\[0\]: frame 1001 has no face with track_id 7"),
    (_set(("tracks", 0, "filled"), [True, False]), r"tracks\[0\]: 3 frames, 2 filled flags and 3 alignments"),
    (_set(("tracks", 0, "filled"), [1, 0, 1]), r"tracks\[0\]: frames must be integers and filled booleans"),
    (_set(("tracks", 0, "frames"), [1003, 1002, 1001]), r"tracks\[0\]: frame numbers must increase"),
    (_set(("tracks", 0, "frames"), [999, 1002, 1003]), r"frame 999 is not in the document's frames"),
    (_set(ALIGN + ("crop_size",), [0, 0]), r"tracks\[0\].alignments\[0\]: Alignment.crop_size must be"),
    (_set(ALIGN + ("crop_size",), ["a", "b"]), r"alignments\[0\].crop_size must be an array of integers"),
    (_set(ALIGN + ("crop_from_frame",), [[0, 0, 0], [0, 0, 0]]), r"Alignment.crop_from_frame is singular"),
    (_set(ALIGN + ("crop_from_frame",), [[1, 2], [3, 4]]), r"crop_from_frame must have shape \(2, 3\)"),
    (_set(ALIGN + ("crop_from_frame",), [[10**400, 0, 0], [0, 1, 0]]), r"alignments\[0\]: malformed"),
    (_set(ALIGN + ("rms",), "low"), r"alignments\[0\].rms must be a number, got string"),
]


@pytest.mark.parametrize("mutate, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_document_is_an_input_error(tmp_path, doc, mutate, message):
    d = copy.deepcopy(doc)
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(InputError, match=message) as exc:
        read_export(p)
    assert str(p) in str(exc.value)  # names the file in full, too


@pytest.mark.parametrize("data, message", [
    (b"", "not valid JSON"),
    (b"hello", "not valid JSON"),
    (b"\xff\xfe\x00\xd8", "not valid JSON"),
    (b"[" * 100_000, "nested too deeply|not valid JSON"),
    (b"[1, 2]", "the document must be a JSON object, got array"),
    (b"null", "the document must be a JSON object, got null"),
])
def test_not_a_json_object_is_an_input_error(tmp_path, data, message):
    p = _write(tmp_path, data)
    with pytest.raises(InputError, match=message) as exc:
        read_export(p)
    assert str(exc.value).startswith("tracking.json: ") and str(p) in str(exc.value)


def test_truncated_file_says_so(tmp_path, doc):
    text = json.dumps(doc).encode()
    for cut in (1, len(text) // 3, len(text) - 1):
        with pytest.raises(InputError, match="not valid JSON.*may be truncated"):
            read_export(_write(tmp_path, text[:cut]))


def test_missing_file_is_an_io_error(tmp_path):
    with pytest.raises(ImageIOError, match="cannot read tracking export"):
        read_export(tmp_path / "nope")


def test_version_2_carries_the_fit(tmp_path):
    import dataclasses

    fit = {"schema": "facegraph.fit", "version": 1, "model": "mediapipe_canonical", "identity": [0.5],
           "frames": [{"frame": 1, "expression": [0.1], "camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}]}
    write_export(dataclasses.replace(_result(), fit=fit), tmp_path / "out", crop_size=(512, 512))
    back = read_export(tmp_path / "out")
    assert back.fit == fit
    bad = json.loads((tmp_path / "out" / "tracking.json").read_text())
    bad["fit"] = {"schema": "other"}
    with pytest.raises(InputError, match="fit"):
        read_export(_write(tmp_path, bad))
