"""`facegraph analyse` on a real clip with dropouts: blacked-out frames, a half-covered face, a missing file."""
import json

import pytest

from facegraph.core.io.images import write_image
from facegraph.core.io.video import iter_video, probe_video
from facegraph.plugin.cli import main

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def dropout_plate(data, tmp_path_factory):
    d = tmp_path_factory.mktemp("dropout")
    frames = list(iter_video(data / "video" / "d0.mp4", range(30), first_frame=1001))
    for f in frames:
        px = f.pixels.copy()
        if f.number in (1010, 1011):
            px[:] = 0.0                                   # blacked-out frames
        if 1018 <= f.number <= 1021:
            px[250:, :] = 0.0                              # the lower half of the face covered
        if f.number != 1025:                               # a frame missing on disk
            write_image(d / f"plate.{f.number}.exr", px, pixel_type="half")
    return d / "plate.####.exr"


def test_dropouts_do_not_abort_and_are_flagged(dropout_plate, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "analyse", str(dropout_plate), "--out", str(out), "--frames", "1001-1030",
                 "--missing", "hold", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "missing input frames [1025]" in text
    doc = json.loads((out / "tracking" / "tracking.json").read_text())
    assert doc["schema"] == "facegraph.tracking" and len(doc["frames"]) == 30
    track = max(doc["tracks"], key=lambda t: len(t["frames"]))
    assert track["frames"][0] == 1001 and track["frames"][-1] == 1030  # one track through every dropout
    filled = {f for f, was in zip(track["frames"], track["filled"]) if was}
    assert {1010, 1011, 1025} <= filled
    notes = {ff["frame"]: [n for f in ff["faces"] for n in f["notes"]] for ff in doc["frames"]}
    assert any(n.startswith("filled:") for n in notes[1010])
    assert any("missing-frame" in n for n in notes[1025])
    assert len(list((out / "crops").glob("*.exr"))) == 30
    assert probe_video(out / "overlay.mp4").frame_count == 30
    assert (out / "contact_sheet.png").stat().st_size > 50_000
    assert (out / "tracking" / "track_0.chan").exists()


def test_analyse_a_still_and_a_movie_range(data, tmp_path, capsys):
    assert main(["-q", "analyse", str(data / "stills" / "s0.jpg"), "--out", str(tmp_path / "a"), "--no-cache",
                 "--no-preview"]) == 0
    assert main(["-q", "analyse", str(data / "video" / "d10.mp4"), "--out", str(tmp_path / "b"), "--frames",
                 "1001-1012", "--smooth", "one-euro", "--no-cache", "--no-crops"]) == 0
    doc = json.loads((tmp_path / "b" / "tracking" / "tracking.json").read_text())
    assert doc["fps"] == pytest.approx(30.0) and doc["params"]["smooth"] == "one-euro"
    assert not (tmp_path / "b" / "crops").exists()
