"""The motion model (motion.py): a drawn moving blob and a static white card. The blob is found,
the card is vetoed, and the blob stands in where the detector finds nothing; both sampling modes
of the first pass; a recording where nothing moves says nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ratscore.video import write_h264

from ratscore.motion import MotionOptions, build_motion_model, motion_labels, moving_blob
from ratscore.roi import SEEN_DETECTOR, SEEN_MOTION, RoiOptions, RoiTracker, box_iou
from ratscore.video import read_frames

W, H = 320, 240
CARD = (40, 30, 100, 70)  # a static white card: x0, y0, x1, y1
BLOB = (36, 20)  # the moving animal's size: width, height


def blob_at(i: int, fps: float = 30.0) -> tuple[int, int, int, int]:
    """The moving blob's box at frame i: it circles the middle of the frame, once in 4 s."""
    a = 2 * np.pi * (i / fps) / 4.0
    cx, cy = 180 + 70 * np.cos(a), 140 + 50 * np.sin(a)
    return (int(cx - BLOB[0] / 2), int(cy - BLOB[1] / 2), int(cx + BLOB[0] / 2), int(cy + BLOB[1] / 2))


def scene(i: int, moving: bool = True, fps: float = 30.0, floor: int = 100) -> np.ndarray:
    rng = np.random.default_rng(7)  # the same floor texture every frame
    image = (floor + rng.integers(-12, 13, (H, W, 1))).repeat(3, axis=2).astype(np.uint8)
    x0, y0, x1, y1 = CARD
    image[y0:y1, x0:x1] = 245
    if moving:
        x0, y0, x1, y1 = blob_at(i, fps)
        image[y0:y1, x0:x1] = (40, 35, 30)
    return image


def write_clip(path: Path, n_frames: int = 120, fps: float = 30.0, gop: int | None = None, moving: bool = True) -> Path:
    """An H.264 clip of `scene` (lossless luma); `gop`: a keyframe every that many frames."""
    options = {"qp": "0", "preset": "ultrafast", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
    write_h264(path, (scene(i, moving, fps) for i in range(n_frames)), fps, options)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("motion") / "blob.mp4")


class ScriptedDetector:
    """Detections from a script of the frame's index: that of the frame the tracker took last (it
    detects on a frame as soon as it takes it, and on the last frame after the stream ends)."""

    def __init__(self, script):
        self.script, self.index = script, None

    def frames(self, frames):
        for frame in frames:
            self.index = frame.index
            yield frame

    def __call__(self, image):
        return np.asarray(self.script(self.index), np.float32).reshape(-1, 6)


def test_the_blob_is_found_and_the_card_never_moved(clip):
    model = build_motion_model(clip)
    assert model.mode == "frames" and model.n_samples == 24 and model.informative  # 4 s, every 5th frame
    assert model.backgrounds.shape == (1, 120, 160)  # 160 px wide, the frame's aspect; one stretch
    assert len(model.cuts) == 0 and model.modelled.all()
    found = np.isfinite(model.boxes).all(axis=1)
    assert found.mean() > 0.8
    for t, box in zip(model.times[found], model.boxes[found]):
        assert box_iou(box, blob_at(int(round(t * 30))))[0, 0] > 0.5
    assert model.never_moved(CARD)
    assert not model.never_moved(blob_at(0)) and not model.never_moved(blob_at(60))
    assert model.unsteady == 0.0  # only the animal ever differs from the background
    labels = motion_labels(clip)
    assert len(labels) >= 0.8 * len(model.times)
    assert all(box_iou(box, blob_at(int(round(t * 30))))[0, 0] > 0.5 for t, box in labels)


DETECTED = [*range(0, 120, 5), 119]  # the frames the tracker detects on: every 5th and the last


def _track(clip, script, model):
    detector = ScriptedDetector(script)
    tracker = RoiTracker(detector, 32, RoiOptions(every_k=5, smoothing=1.0, margin=0.0), fps=30.0, motion=model)
    rows = np.stack([f.track_row() for f in tracker.crops(detector.frames(read_frames(clip)))])
    return tracker, rows


def test_a_box_on_the_card_is_vetoed_and_the_blob_stands_in(clip):
    model = build_motion_model(clip)

    def card_only(n):  # the detector boxes the card, confidently, and never the animal
        return [[*CARD, 0.9, 0]]

    tracker, rows = _track(clip, card_only, model)
    assert tracker.vetoed == len(DETECTED)  # every detection frame's card box
    at = DETECTED[1:]  # the first detection frame has no motion to compare with yet
    assert (rows[at, 5] == SEEN_MOTION).all() and np.isnan(rows[at, 4]).all()
    for n in at:
        assert box_iou(rows[n, :4], blob_at(n))[0, 0] > 0.5
    summary = tracker.motion_summary()
    assert summary["fallback_frames"] == len(at) and summary["vetoed_boxes"] == len(DETECTED)

    without, plain = _track(clip, card_only, None)  # no motion model: the card is the "animal"
    assert without.motion_summary() is None
    np.testing.assert_allclose(plain[100, :4], CARD)
    assert (plain[::5, 5] == SEEN_DETECTOR).all()


def test_the_fallback_where_the_detector_finds_nothing(clip):
    model = build_motion_model(clip)

    def animal_then_nothing(n):  # the detector sees the animal for 1 s, then nothing
        return [[*blob_at(n), 0.8, 0]] if n < 30 else []

    tracker, rows = _track(clip, animal_then_nothing, model)
    assert (rows[:30:5, 5] == SEEN_DETECTOR).all() and rows[0, 4] == pytest.approx(0.8)
    after = [n for n in DETECTED if n >= 30]
    assert (rows[after, 5] == SEEN_MOTION).all()
    assert all(box_iou(rows[n, :4], blob_at(n))[0, 0] > 0.5 for n in after)
    assert tracker.found_fraction == 1.0  # the motion model saw the animal where the detector did not
    # where both saw it, they agreed
    assert tracker.motion_agreeing == tracker.motion_moments == 5


def test_an_unsure_box_off_the_moving_animal_yields_to_it(clip):
    """The detector boxes a place the animal left 2 s before: scored 0.3 (unsure, as real rodents
    mostly are) the moving blob stands in for it; scored 0.8 the detector's box stands. The
    disagreement is counted either way (trust reads it)."""
    model = build_motion_model(clip)

    def stale(score):
        return lambda n: [[*blob_at(n - 60), score, 0]]

    unsure, rows = _track(clip, stale(0.3), model)
    at = [n for n in DETECTED if n >= 60]  # from 2 s on, the stale place is where the animal was
    assert (rows[at, 5] == SEEN_MOTION).all()
    assert all(box_iou(rows[n, :4], blob_at(n))[0, 0] > 0.5 for n in at)
    sure, rows = _track(clip, stale(0.8), model)
    assert (rows[at, 5] == SEEN_DETECTOR).all()
    assert unsure.motion_agreeing == sure.motion_agreeing < sure.motion_moments


def test_keyframe_sampling(tmp_path):
    """A recording with keyframes every 0.33 s is sampled at its keyframes only (and a few frames
    after each), and gives the same verdicts."""
    clip = write_clip(tmp_path / "gop.mp4", n_frames=150, gop=10)
    options = MotionOptions(min_spacing_s=0.3, min_keyframe_samples=8)
    model = build_motion_model(clip, options)
    assert model.mode == "keyframes" and model.n_samples == 15 and model.informative
    np.testing.assert_allclose(model.times, np.arange(15) * 10 / 30, atol=1e-3)
    assert model.never_moved(CARD) and not model.never_moved(blob_at(30))
    found = np.isfinite(model.boxes).all(axis=1)
    assert found.mean() > 0.8
    assert all(box_iou(b, blob_at(int(round(t * 30))))[0, 0] > 0.5 for t, b in zip(model.times[found], model.boxes[found]))
    # too few keyframes for the default: every frame is decoded instead
    assert build_motion_model(clip).mode == "frames"


def test_the_blob_box_leaves_out_a_trailing_tail():
    """A body with a thin tail trailing from it: the moving blob's box is the body's, as the
    detector's training boxes leave out the tail; with thin_share 0 it takes in the tail."""
    background = np.full((120, 160), 100, np.uint8)
    gray = background.copy()
    gray[50:68, 60:90] = 30  # the body: 30 x 18 at low resolution
    gray[58:61, 90:120] = 30  # the tail: 3 pixels thick (survives the speck filter), 30 long
    motion = (gray != background).astype(np.uint8) * 255  # all of it moved
    options = MotionOptions()
    (x, y, w, h), alone = moving_blob(gray, background, None, options, 4, motion=motion)
    assert alone and (y, h) == (50, 18) and x == 60
    assert 30 <= w <= 34  # the body, and at most a stub of the tail where it joins
    (x, y, w, h), _ = moving_blob(gray, background, None, replace(options, thin_share=0.0), 4, motion=motion)
    assert (x, w) == (60, 60)  # body and tail
    # a compact body keeps all of itself: nothing in it is thin
    round_body = background.copy()
    round_body[40:70, 50:80] = 30
    motion = (round_body != background).astype(np.uint8) * 255
    assert moving_blob(round_body, background, None, options, 4, motion=motion)[0] == (50, 40, 30, 30)


def test_a_light_switch_cuts_the_recording_into_two_backgrounds(tmp_path):
    """Halfway through, the lights come up (the floor 50 grey levels brighter), as when a lab's room
    lights go on in an overnight recording: each half gets its own background, the switch is not
    motion (the card is still vetoed), and the blob is found, and stands in, on both sides of it."""
    frames = (scene(i, floor=100 if i < 60 else 150) for i in range(120))
    clip = tmp_path / "lights.mp4"
    write_h264(clip, frames, 30.0, {"qp": "0", "preset": "ultrafast"})
    model = build_motion_model(clip)
    np.testing.assert_allclose(model.cuts, [[55 / 30, 60 / 30]], atol=1e-3)  # between the samples at frames 55 and 60
    assert model.modelled.tolist() == [True, True] and model.unsteady == 0.0
    assert model.never_moved(CARD) and model.informative
    found = np.isfinite(model.boxes).all(axis=1)
    assert found[model.times < 2].mean() > 0.8 and found[model.times >= 2].mean() > 0.8
    assert all(box_iou(b, blob_at(int(round(t * 30))))[0, 0] > 0.5 for t, b in zip(model.times[found], model.boxes[found]))
    label_times = [t for t, _ in model.labels()]  # train detector --videos gets frames from both sides
    assert min(label_times) < 2 <= max(label_times)

    follower = model.follower()  # every 5th frame from the 3rd: frame 58 lies between the cut's two samples
    blobs = {f.index: follower.blob(f.image, f.t_s) for f in read_frames(clip) if f.index % 5 == 3}
    assert blobs[3] is None and blobs[63] is None  # nothing to compare with yet; across the switch
    assert all(box_iou(b, blob_at(n))[0, 0] > 0.5 for n, b in blobs.items() if n not in (3, 63))

    tracker, rows = _track(clip, lambda n: [], model)  # the detector never finds the animal
    assert tracker.motion_summary()["scene_cuts_s"] == [[1.8, 2.0]]  # the picture changed between these seconds
    after = [n for n in DETECTED[1:] if n != 60]
    assert (rows[after, 5] == SEEN_MOTION).all()
    assert all(box_iou(rows[n, :4], blob_at(n))[0, 0] > 0.5 for n in after)


def test_a_lamp_that_fades_in_is_cut_once_the_change_adds_up(tmp_path):
    """The floor brightens by 50 grey levels over a second (frames 60 to 90): from one sample to the
    next it changes by 8 levels, under the motion threshold, so only against the stretch's first
    sample does the change add up to a cut. The stretches either side hold backgrounds of their own."""
    def floor(i):
        return 100 + int(round(50 * min(1.0, max(0.0, (i - 60) / 30))))

    frames = (scene(i, floor=floor(i)) for i in range(180))
    clip = tmp_path / "fade.mp4"
    write_h264(clip, frames, 30.0, {"qp": "0", "preset": "ultrafast"})
    model = build_motion_model(clip)
    assert len(model.cuts) >= 1 and model.cuts[0, 0] >= 60 / 30 and model.cuts[-1, 1] <= 95 / 30
    assert model.modelled[0] and model.modelled[-1] and model.unsteady <= 0.2
    found = np.isfinite(model.boxes).all(axis=1)
    assert found[model.times < 2].mean() > 0.8 and found[model.times > 3.2].mean() > 0.8
    assert model.never_moved(CARD)


def test_lights_that_keep_changing_are_unsteady(tmp_path):
    """The floor's brightness flips every third of a second: no stretch is long enough for a
    background, so every sample is unsteady (trust flags it) and nothing stands in for the detector."""
    frames = (scene(i, floor=100 if (i // 10) % 2 == 0 else 150) for i in range(120))
    clip = tmp_path / "flicker.mp4"
    write_h264(clip, frames, 30.0, {"qp": "0", "preset": "ultrafast"})
    model = build_motion_model(clip)
    assert len(model.cuts) >= 10 and not model.modelled.any()
    assert model.unsteady == 1.0 and model.labels() == []
    follower = model.follower()
    assert all(follower.blob(f.image, f.t_s) is None for f in read_frames(clip))
    assert MotionOptions().max_scene_change < 0.1


def test_nothing_moves_so_the_model_says_nothing(tmp_path):
    clip = write_clip(tmp_path / "still.mp4", n_frames=60, moving=False)
    model = build_motion_model(clip)
    assert model.n_samples == 12 and not model.informative
    assert not model.never_moved(CARD)  # no veto: a still animal would look just like the card
    assert model.labels() == []
    follower = model.follower()
    assert [follower.blob(f.image, f.t_s) for f in read_frames(clip)][::10] == [None] * 6


def test_the_motion_option_reaches_the_run_record(tiny_model):
    from ratscore.pipeline import AnalyzeOptions, Analyzer

    on = Analyzer(AnalyzeOptions(model_dir=tiny_model, device="cpu", no_roi=True))
    off = Analyzer(AnalyzeOptions(model_dir=tiny_model, device="cpu", no_roi=True, motion=False))
    assert on.run_record["motion"] is True and off.run_record["motion"] is False
    assert on.front.motion is None  # without a detector there is nothing for it to check
