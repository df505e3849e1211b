import pytest

from facegraph.core.errors import InputError
from facegraph.nodes.analysis import DetectFaces, FaceLandmarks
from facegraph.nodes.io import LoadImageSequence
from facegraph.nodes.temporal import (AnalyseShot, ExportTracking, ImportTracking, SaveContactSheet, SelectTrack,
                                      TrackCrops, TrackFaces)

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    from facegraph.plugin.demo import write_sample_plate

    d = tmp_path_factory.mktemp("plate")
    write_sample_plate(d / "plate.####.exr", 8)
    return str(d / "plate.####.exr")


def test_analyse_shot_crops_export_import(plate, tmp_path):
    out = AnalyseShot().analyse(plate, smoothing="rts", cache=False)
    faces, tracks, seq, summary = out["result"]
    assert len(faces) == 8 and len(tracks.tracks) == 1 and "1 track(s)" in summary
    images, alpha, lseq = LoadImageSequence().load(plate)
    crops, aligns, masks, cseq = TrackCrops().crops(images, lseq, tracks, size=128)
    assert tuple(crops.shape) == (8, 128, 128, 3) and cseq.frames == lseq.frames and aligns[0].crop_size == (128, 128)
    (one,) = SelectTrack().select(faces, tracks)
    assert all(len(ff) == 1 for ff in one)
    folder = ExportTracking().export(tracks, str(tmp_path / "t"), 256)["result"][0]
    back_faces, back = ImportTracking().load(folder)
    assert back_faces == faces
    with pytest.raises(InputError, match="no track 7"):
        TrackCrops().crops(images, lseq, tracks, track_id=7)
    png = SaveContactSheet().save(crops, str(tmp_path / "s.png"), count=4, sequence=cseq)["result"][0]
    assert (tmp_path / "s.png").stat().st_size > 1000 and png.endswith("s.png")


def test_track_faces_in_a_graph_batch(plate):
    images, _, seq = LoadImageSequence().load(plate)
    (det,) = DetectFaces().detect(images, sequence=seq)
    (lm,) = FaceLandmarks().landmarks(images, det, recrop=0)
    faces, tracks = TrackFaces().track(images, lm, smoothing="kalman", fps=24.0)
    assert len(tracks.tracks) == 1 and all(f.provenance == "smoothed" for ff in faces for f in ff.faces)
    with pytest.raises(InputError):
        TrackFaces().track(images, lm[:3])
