"""track.csv: the animal's box at every frame of the model's grid, in the source video's upright
pixels and seconds from its start; found and held; written by analyze and extract; the report's
strip of frames and the picture's band where the animal was lost."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ratscore.features import FrontEnd, extract_features, extract_to_folder
from ratscore.grid import DEFAULT_GRID
from ratscore.labels import RacineMap
from ratscore.roi import SEEN_DETECTOR, SEEN_NONE, SEEN_WHOLE, RoiOptions, RoiTracker, Track
from ratscore.timeline import score_events
from ratscore.video import read_frames
from ratscore.writers import TRACK_COLUMNS, write_track_csv
from test_roi import ScriptedDetector, frames, rat_at
from test_video import make_video


class FakeEncoder:
    """Stands in for the I3D: the track does not depend on the features."""

    input_size, feature_dim = 16, 4

    def __call__(self, clips):
        return np.zeros((len(clips), self.feature_dim), np.float32)


def bright_blob(image):
    """The box of make_video's blob (its only pixels redder than blue), as a detector would give it."""
    ys, xs = np.nonzero(image[..., 0].astype(int) - image[..., 2].astype(int) > 20)
    if not len(xs):
        return np.zeros((0, 6), np.float32)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9, 0]], np.float32)


def front(detector=None, every_k: int = 1) -> FrontEnd:
    return FrontEnd(FakeEncoder(), detector, RoiOptions(every_k=every_k, smoothing=1.0, margin=0.0), DEFAULT_GRID, 8)


def table(track) -> pd.DataFrame:
    buf = io.BytesIO()
    write_track_csv(track, buf)
    return pd.read_csv(io.BytesIO(buf.getvalue()))


def test_columns_one_row_per_frame_and_whole_frames_without_a_detector(tmp_path):
    video = make_video(tmp_path / "rat.mp4", n_frames=40)
    result = extract_features(video, front(), no_roi=True, progress=False)
    t = table(result.track)
    assert list(t.columns) == TRACK_COLUMNS == ["frame", "time_s", "found", "x1", "y1", "x2", "y2", "score"]
    assert len(t) == result.n_frames == 40 and list(t.frame) == list(range(40))
    np.testing.assert_allclose(t.time_s, np.arange(40) / 30, atol=1e-4)
    assert (t.found == 1).all() and t.score.isna().all()
    assert (t[["x1", "y1", "x2", "y2"]].to_numpy() == [0, 0, 160, 120]).all()
    assert (result.track.seen == SEEN_WHOLE).all()
    assert result.track.rows.dtype == np.float32 and result.track.rows.shape == (40, 6)


def test_a_rotated_video_gives_upright_pixels(tmp_path):
    boxes = [(20 + 2 * i, 30, 60 + 2 * i, 70) for i in range(30)]
    video = make_video(tmp_path / "turned.mp4", n_frames=30, rotation=90, boxes=boxes)
    result = extract_features(video, front(bright_blob), progress=False)
    assert (result.width, result.height, result.rotation) == (120, 160, 90)
    upright = [bright_blob(f.image)[0, :4] for f in read_frames(video)]
    assert all(f.image.shape[:2] == (160, 120) for f in read_frames(video))
    t = table(result.track)
    np.testing.assert_allclose(t[["x1", "y1", "x2", "y2"]].to_numpy(), np.stack(upright), atol=0.05)
    assert (t.x2 <= 120).all() and (t.y2 <= 160).all() and (t.found == 1).all()
    assert t.score.to_numpy() == pytest.approx(0.9)


def test_a_25_fps_video_is_on_the_30_fps_grid_in_seconds_from_its_start(tmp_path):
    boxes = [(10 + 2 * i, 20, 50 + 2 * i, 60) for i in range(50)]  # the blob moves 2 px a source frame
    video = make_video(tmp_path / "pal.mp4", n_frames=50, fps=25.0, boxes=boxes)
    result = extract_features(video, front(bright_blob), progress=False)
    t = table(result.track)
    assert len(t) == result.n_frames == 60  # 2 s at 30 fps
    np.testing.assert_allclose(t.time_s, np.arange(60) / 30, atol=1e-4)
    for n in (0, 7, 30, 59):  # grid frame n shows the source frame on screen at n / 30 s (read_frames'
        shown = int(np.floor((n + 0.25) / 30 * 25 + 1e-6))  # tolerance: a quarter of a grid frame)
        assert t.x1[n] == pytest.approx(10 + 2 * shown, abs=1)


def test_found_is_seen_or_between_sightings_at_most_1_s_apart():
    rows = np.full((120, 6), np.nan, np.float32)
    rows[:, 5] = SEEN_NONE
    for n in (0, 10, 20, 50, 100):  # 30 frames from 20 to 50 (1 s): bridged; 50 frames to 100: not
        rows[n, 5] = SEEN_DETECTOR
    track = Track(30.0, 160, 120, rows)
    found = track.found()
    assert found[:51].all() and not found[51:100].any() and found[100] and not found[101:].any()
    assert track.lost() == [(51 / 30, 100 / 30), (101 / 30, 120 / 30)]
    assert (track.boxes == [0, 0, 160, 120]).all()  # no box at all: the whole frame is the guess


def test_a_gap_longer_than_1_s_is_held_with_found_0():
    def script(n):  # the rat is gone from 1 s to 2.5 s
        return [] if 30 <= n < 75 else [rat_at(10) + [0.7, 0]]

    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=5, smoothing=1.0, margin=0.0))
    track = Track(30.0, 320, 240, np.stack([f.track_row() for f in tracker.crops(frames(120))]))
    t = table(track)
    assert (t.found[:26] == 1).all() and (t.found[26:75] == 0).all() and (t.found[75:] == 1).all()
    np.testing.assert_allclose(t[["x1", "y1", "x2", "y2"]].to_numpy(), np.tile(rat_at(10), (120, 1)))  # held
    ran = (t.frame % 5 == 0) | (t.frame == 119)  # every 5th frame and the last
    saw = ran & ((t.frame < 30) | (t.frame >= 75))
    np.testing.assert_allclose(t.score[saw], 0.7)
    assert t.score[~saw].isna().all()  # a score only where the detector ran and saw the rat


def test_extract_writes_the_track_beside_the_features(tmp_path, tiny_model):
    video = make_video(tmp_path / "rat_02.mp4", n_frames=40)
    out = tmp_path / "features"
    [(path, result)] = extract_to_folder(video, out, tiny_model, device="cpu", no_roi=True, progress=False)
    assert path == out / "rat_02.npy"
    t = pd.read_csv(out / "rat_02.track.csv")
    assert list(t.columns) == TRACK_COLUMNS and len(t) == 40


def test_the_main_pass_keeps_the_strip_frames_it_promised(tmp_path):
    from ratscore.crops import VideoCrops
    from ratscore.grid import DEFAULT_GRID
    from ratscore.report import STRIP_WIDTH, strip_rows
    from ratscore.roi import RoiOptions

    video = make_video(tmp_path / "wide.mp4", n_frames=60, width=320, height=240)
    crops = VideoCrops(video, None, RoiOptions(), 32, DEFAULT_GRID)
    assert sum(1 for _ in crops) == 60
    strip = crops.tally().strip
    assert sorted(strip) == strip_rows(60)
    assert all(image.shape == (180, STRIP_WIDTH, 3) and image.dtype == np.uint8 for image in strip.values())


def test_the_report_strip_and_the_lost_band_on_the_picture(tmp_path):
    from ratscore.plots import timeline_figure
    from ratscore.report import render_report, strip_rows, track_strip

    video = make_video(tmp_path / "rat.mp4", n_frames=90, boxes=[(40, 40, 80, 70)] * 90)
    rows = np.tile(np.array([40, 40, 80, 70, 0.9, SEEN_DETECTOR], np.float32), (90, 1))
    rows[30:75, 5] = SEEN_NONE  # lost for 1.5 s
    track = Track(30.0, 160, 120, rows)
    scoring = score_events([], "rat", 3.0, 30.0, "m@1", RacineMap())
    scoring.summary["trust"] = {"familiar": False, "reasons": ["the rat was found in only 50% of frames"]}
    scoring.track = track
    scoring.strip = track_strip(video, track)
    assert [round(f["t_s"], 2) for f in scoring.strip] == [round(int((k + 0.5) * 90 / 8) / 30, 2) for k in range(8)]
    assert all(f["image"].shape == (120, 160, 3) for f in scoring.strip)
    assert [f["found"] for f in scoring.strip] == [True, True, True, False, False, False, False, True]
    still = scoring.strip[0]["image"]
    assert (still[40, 50] == (0, 200, 0)).all()  # the box drawn in green on the frame
    html = render_report(scoring)
    assert html.count("class='frame'") == 8 and "lost" in html
    # the frames the main pass kept are used as they are; the rest are read back from the video
    kept = {i: np.full((120, 160, 3), 7, np.uint8) for i in strip_rows(90)[::2]}
    again = track_strip(video, track, kept)
    for k, frame in enumerate(again):
        assert (frame["image"][60, 5] == 7).all() == (k % 2 == 0)
        np.testing.assert_array_equal(frame["image"][40, 50], scoring.strip[k]["image"][40, 50])  # the same box
    assert kept[strip_rows(90)[0]][40, 50, 1] == 7  # drawn on a copy, not on what was kept
    fig = timeline_figure(scoring)
    try:
        assert fig._suptitle.get_text().startswith("UNFAMILIAR: the rat was found in only 50%")
        bands = [p for ax in fig.axes for p in ax.patches if p.get_hatch() == "//"]
        assert len(bands) == 2  # one on each panel
        start, end = bands[0].get_x(), bands[0].get_x() + bands[0].get_width()
        assert start == pytest.approx(30 / 30) and end == pytest.approx(75 / 30)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
