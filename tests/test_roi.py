"""ROI: rig profiles (mask), YOLO output decoding, the rat track (class, continuity, mask, gaps)."""

from __future__ import annotations

import numpy as np
import pytest

from ratscore.errors import InputError
from ratscore.mask import load_rig_profile, point_in_polygon
from ratscore.roi import RoiOptions, RoiTracker, box_iou, decode_yolo, nms, square_around, whole_frame_square
from ratscore.video import Frame

W, H = 320, 240


def write(tmp_path, text, name="rig.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rig_profile_relative_and_pixels(tmp_path):
    relative = load_rig_profile(write(tmp_path, "arena: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]\n"
                                                "reflections:\n  - [[0.1, 0.1], [0.9, 0.1], [0.9, 0.3], [0.1, 0.3]]\n"))
    assert relative.relative
    mask = relative.in_pixels(W, H)
    assert mask.keeps((150, 150, 170, 170))  # centre (160, 160): arena floor
    assert not mask.keeps((0, 0, 20, 20))  # outside the arena
    assert not mask.keeps((150, 40, 170, 60))  # in the reflection band
    pixels = load_rig_profile(write(tmp_path, "units: pixels\narena: [[32, 24], [288, 24], [288, 216], [32, 216]]\n", "px.yaml"))
    assert not pixels.relative and pixels.in_pixels(W, H).keeps((100, 100, 120, 120))
    assert not pixels.in_pixels(W, H).keeps((290, 100, 310, 120))
    empty = load_rig_profile(write(tmp_path, "reflections: []\n", "empty.yaml"))
    assert empty.arena is None and empty.in_pixels(W, H).keeps((0, 0, 5, 5))


def test_point_in_polygon_concave():
    l_shape = np.array([[0, 0], [10, 0], [10, 2], [2, 2], [2, 10], [0, 10]], float)
    assert point_in_polygon(1, 5, l_shape) and point_in_polygon(5, 1, l_shape)
    assert not point_in_polygon(5, 5, l_shape) and not point_in_polygon(-1, 1, l_shape)


@pytest.mark.parametrize("text, message", [
    ("arena: [[0, 0], [1, 0]\n", "not valid YAML at line"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("arena: [[0, 0], [1, 0]]\n", "at least 3"),
    ("arena: [[0, 0], [1, 0], [a, 1]]\n", "must be numbers"),
    ("arena: [[0, 0], [1, 0], [1, 1]]\nunits: inches\n", "units must be"),
    ("units: relative\narena: [[0, 0], [100, 0], [1, 1]]\n", r"relative coordinates must lie in \[0, 1\]"),
    ("arena: [[0, 0], [1, 0], [1, 1]]\nmirrors: []\n", "unknown rig profile key"),
    ("reflections: {a: 1}\n", "must be a list of polygons"),
])
def test_bad_rig_profiles_are_one_line_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        load_rig_profile(path)
    assert "rig.yaml" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="no such rig profile"):
        load_rig_profile(tmp_path / "missing.yaml")


def test_decode_yolo_maps_boxes_back_to_the_frame():
    # a 640x480 frame letterboxed to 256: scale 0.4, 32 px of padding top and bottom
    scale, pad = 0.4, (0, 32)
    out = np.zeros((4 + 2, 3), np.float32)  # three anchors
    out[:, 0] = [100, 50, 102, 60, 0.9, 0.1]  # rat
    out[:, 1] = [101, 50, 100, 60, 0.8, 0.05]  # the same rat again, weaker: suppressed by NMS
    out[:, 2] = [200, 100, 40, 20, 0.1, 0.7]  # reflection
    dets = decode_yolo(out, scale, pad, conf=0.25, nms_iou=0.5, frame_hw=(480, 640))
    assert dets.shape == (2, 6)
    rat = dets[dets[:, 5] == 0][0]
    # y0 would be -30: boxes are clipped to the frame
    np.testing.assert_allclose(rat[:4], [(100 - 51) / 0.4, 0.0, (100 + 51) / 0.4, (50 + 30 - 32) / 0.4], atol=1e-3)
    assert rat[4] == pytest.approx(0.9)
    assert decode_yolo(out * np.array([[1], [1], [1], [1], [0], [0]], np.float32), scale, pad, 0.25, 0.5, (480, 640)).shape == (0, 6)


def test_square_crop_geometry():
    square = square_around(np.array([100, 100, 140, 120]), margin=0.5, min_side=32, width=W, height=H)
    assert square[2] - square[0] == pytest.approx(60) and square[3] - square[1] == pytest.approx(60)
    assert (square[0] + square[2]) / 2 == pytest.approx(120)
    edge = square_around(np.array([0, 0, 40, 40]), margin=0.5, min_side=32, width=W, height=H)
    assert edge[0] == 0 and edge[1] == 0  # moved inside the frame rather than padded
    np.testing.assert_allclose(whole_frame_square(W, H), [0, -40, 320, 280])
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0] == pytest.approx(1 / 3)


class ScriptedDetector:
    """Stands in for the ONNX detector: detections per frame from a script, counts its calls."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def __call__(self, image):
        n = int(image[0, 0, 0])  # the frame number is written into the first pixel
        self.calls.append(n)
        return np.asarray(self.script(n), np.float32).reshape(-1, 6)


def frames(n):
    for i in range(n):
        image = np.zeros((H, W, 3), np.uint8)
        image[0, 0, 0] = i
        yield Frame(i, i / 30, image, i / 30)


def rat_at(n):
    x = 40 + 4 * n
    return [x, 120, x + 40, 160]


def test_tracker_follows_the_rat_not_its_reflection():
    def script(n):  # the rat moves right; its reflection sits above it, and is more confident
        return [rat_at(n) + [0.8, 0], [rat_at(n)[0], 20, rat_at(n)[2], 60, 0.95, 1]]

    detector = ScriptedDetector(script)
    tracker = RoiTracker(detector, 32, RoiOptions(every_k=5, smoothing=1.0, margin=0.0))
    out = list(tracker.crops(frames(21)))
    assert detector.calls == [0, 5, 10, 15, 20]  # every k-th frame only
    assert [o.index for o in out] == list(range(21))
    for o in out:  # interpolation between detections tracks the moving rat exactly here
        expected = square_around(np.array(rat_at(o.index), float), 0.0, 32, W, H)
        np.testing.assert_allclose(o.box, expected, atol=1e-3)
        assert o.crop.shape == (32, 32, 3) and o.found
    assert tracker.found_fraction == 1.0 and tracker.gaps == []


def test_track_continuity_beats_confidence():
    def script(n):  # from frame 10 a reflection is misread as a second, more confident "rat"
        dets = [rat_at(n) + [0.7, 0]]
        if n >= 10:
            dets.append([200, 10, 240, 50, 0.99, 0])
        return dets

    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=5, smoothing=1.0, margin=0.0))
    out = list(tracker.crops(frames(26)))
    assert all(abs(o.box[1] - 120) < 1e-3 for o in out)  # never jumps to the impostor at y = 10


def test_mask_drops_reflections_the_detector_calls_rats(tmp_path):
    from ratscore.mask import RigMask

    def script(n):
        return [[140, 10, 180, 50, 0.99, 0], rat_at(n) + [0.5, 0]]  # impostor in the top band

    band = RigMask(None, [np.array([[0, 0], [W, 0], [W, 70], [0, 70]], float)])
    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=1, smoothing=1.0, margin=0.0), mask=band)
    out = list(tracker.crops(frames(5)))
    assert all(o.box[1] == pytest.approx(120) for o in out)
    unmasked = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=1, smoothing=1.0, margin=0.0))
    assert list(unmasked.crops(frames(1)))[0].box[1] == pytest.approx(10)  # without it: the impostor


def test_lost_rat_holds_the_last_box_and_reports_the_gap():
    def script(n):  # the rat disappears from frame 30 to 59 (1 s), then comes back
        return [] if 30 <= n < 60 else [rat_at(10) + [0.9, 0]]

    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=5, smoothing=1.0, margin=0.0, min_gap_s=0.5))
    out = list(tracker.crops(frames(90)))
    held = square_around(np.array(rat_at(10), float), 0.0, 32, W, H)
    for o in out:
        np.testing.assert_allclose(o.box, held, atol=1e-3)
    lost = [o.index for o in out if not o.found]
    assert lost[0] in range(26, 31) and lost[-1] in range(59, 60)
    assert len(tracker.gaps) == 1
    start, end = tracker.gaps[0]
    assert 26 / 30 <= start <= 1.0 and end == pytest.approx(60 / 30)
    assert tracker.found_fraction == pytest.approx(1 - len(lost) / 90)


def test_no_rat_yet_uses_the_whole_frame_and_smoothing_damps_jitter():
    def script(n):
        if n < 10:
            return []
        jitter = 6 if n % 2 else -6
        return [[100 + jitter, 100, 140 + jitter, 140, 0.9, 0]]

    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=1, smoothing=0.3, margin=0.0, min_gap_s=0.2))
    out = list(tracker.crops(frames(40)))
    np.testing.assert_allclose(out[0].box, whole_frame_square(W, H))
    assert not out[0].found and out[10].found
    centres = np.array([(o.box[0] + o.box[2]) / 2 for o in out[20:]])
    assert np.ptp(centres) < 6  # raw detections swing by 12 px
    assert tracker.gaps == [(0.0, 10 / 30)]


def test_no_detector_means_whole_frames():
    tracker = RoiTracker(None, 32)
    out = list(tracker.crops(frames(3)))
    assert all(o.found for o in out) and tracker.found_fraction is None
    np.testing.assert_allclose(out[0].box, whole_frame_square(W, H))


def test_track_restarts_after_a_gap_instead_of_averaging_with_a_stale_box():
    def script(n):  # seen at the left, lost for 1 s, then seen far to the right
        if n < 20:
            return [[20, 100, 60, 140, 0.9, 0]]
        if n < 50:
            return []
        return [[240, 100, 280, 140, 0.9, 0]]

    tracker = RoiTracker(ScriptedDetector(script), 32, RoiOptions(every_k=5, smoothing=0.3, margin=0.0))
    out = list(tracker.crops(frames(60)))
    assert out[50].box[0] == pytest.approx(240)  # not 0.3 * 240 + 0.7 * 20


def _iou(a, b):
    """Brute force IoU of two boxes given as lists of Python floats."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_nms(candidates, iou):
    """candidates: (score, class, box, index); best score first, drop a box overlapping a kept one of its class."""
    kept = []
    for cand in sorted(candidates, key=lambda c: -c[0]):
        if all(k[1] != cand[1] or _iou(k[2], cand[2]) <= iou for k in kept):
            kept.append(cand)
    return kept


def _random_head(rng, anchors, classes=2, imgsz=320):
    """A YOLO head output (4 + C, A): confident boxes clustered around three objects (as a detector's
    neighbouring anchors see them) and weak scattered ones, some reaching out of the picture. Integer
    centres and even sizes keep every coordinate exact in float32, so the reference (Python floats)
    sees the very same boxes. Class scores are all distinct (no ties to order)."""
    objects, object_sizes = rng.integers(40, imgsz - 40, (3, 2)), 2 * rng.integers(10, 50, (3, 2))
    which = rng.integers(0, 4, anchors)
    near = which < 3  # the others are scattered
    obj = np.minimum(which, 2)
    centres = np.where(near[:, None], objects[obj] + rng.integers(-8, 9, (anchors, 2)),
                       rng.integers(-20, imgsz + 20, (anchors, 2)))
    sizes = np.where(near[:, None], object_sizes[obj] + 2 * rng.integers(-6, 7, (anchors, 2)),
                     2 * rng.integers(4, 60, (anchors, 2)))
    raw = rng.random((classes, anchors)) * np.where(near, 1.0, 0.4)  # scattered boxes mostly score low
    scores = (raw.ravel().argsort().argsort().reshape(raw.shape) + 1) / (raw.size + 1)  # ranks: all distinct
    return np.concatenate([centres.T, sizes.T, scores], axis=0).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("nms_iou", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("anchors", [6, 25, 130])  # a few to ~100 boxes pass the confidence filter
def test_decode_yolo_matches_a_brute_force_reference(anchors, seed, nms_iou):
    rng = np.random.default_rng(seed)
    out = _random_head(rng, anchors)
    scale, pad, (fh, fw), conf = 0.5, (0, 40), (480, 640), 0.25  # a 640x480 frame letterboxed to 320
    candidates = []
    for a in range(out.shape[1]):
        cx, cy, w, h, *scores = (float(v) for v in out[:, a])
        cls = max(range(len(scores)), key=lambda c: scores[c])
        if scores[cls] < conf:
            continue
        box = [min(max((cx - w / 2 - pad[0]) / scale, 0.0), fw), min(max((cy - h / 2 - pad[1]) / scale, 0.0), fh),
               min(max((cx + w / 2 - pad[0]) / scale, 0.0), fw), min(max((cy + h / 2 - pad[1]) / scale, 0.0), fh)]
        candidates.append((scores[cls], cls, box, a))
    kept = _greedy_nms(candidates, nms_iou)
    expected = np.array([k[2] + [k[0], k[1]] for k in kept], np.float32).reshape(-1, 6)
    dets = decode_yolo(out, scale, pad, conf, nms_iou, (fh, fw))
    assert kept and (anchors < 20 or len(kept) < len(candidates))  # NMS had work to do
    assert dets.dtype == np.float32 and np.array_equal(dets, expected)  # same boxes, same order


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 120))
    xy = rng.uniform(0, 600, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 120, (n, 2))], axis=1).astype(np.float32)
    boxes[: n // 10, 2] = boxes[: n // 10, 0]  # zero width, as a box clipped at the frame's edge can be
    scores = rng.permutation(n).astype(np.float32) / n
    classes = rng.integers(0, 2, n)
    candidates = [(float(scores[i]), int(classes[i]), [float(v) for v in boxes[i]], i) for i in range(n)]
    expected = [k[3] for k in _greedy_nms(candidates, 0.5)]
    assert nms(boxes, scores, classes, 0.5).tolist() == expected


@pytest.mark.parametrize("every_k", [1, 5])
@pytest.mark.parametrize("length", [1, 4, 5, 6, 20, 21, 23])
def test_detecting_ahead_changes_nothing_but_the_thread(length, every_k):
    """With detect_ahead the detector runs in a thread of its own while later frames decode; the
    crops, boxes, track, gaps and the detector's calls are those of the tracker without it."""
    import threading

    def script(n):  # seen, lost for a while, seen elsewhere, with a more confident impostor at times
        if 7 <= n < 14:
            return []
        dets = [rat_at(n) + [0.6, 0]]
        if n % 3 == 0:
            dets.append([200, 10, 240, 50, 0.9, 0])
        return dets

    def run(ahead):
        detector, threads = ScriptedDetector(script), set()

        def look(image):  # the detector, noting the thread it was called in
            threads.add(threading.current_thread().name)
            return detector(image)

        tracker = RoiTracker(look, 32, RoiOptions(every_k=every_k, smoothing=0.3, margin=0.1, min_gap_s=0.1),
                             detect_ahead=ahead)
        out = list(tracker.crops(frames(length)))
        return tracker, detector, out, threads

    plain, plain_detector, plain_out, plain_threads = run(False)
    ahead, ahead_detector, ahead_out, ahead_threads = run(True)
    assert [o.index for o in ahead_out] == [o.index for o in plain_out] == list(range(length))
    for a, p in zip(ahead_out, plain_out):
        np.testing.assert_array_equal(a.box, p.box)
        np.testing.assert_array_equal(a.crop, p.crop)
        np.testing.assert_array_equal(a.track_row(), p.track_row())
    assert ahead_detector.calls == plain_detector.calls
    assert (ahead.detect_calls, ahead.gaps, ahead.found_fraction) == (plain.detect_calls, plain.gaps,
                                                                      plain.found_fraction)
    assert plain_threads == {threading.current_thread().name}
    if length > 1:  # the last frame, when it is not a k-th one, is looked at where it is
        assert any(name.startswith("ratscore-detect") for name in ahead_threads)


def test_a_detector_failing_ahead_fails_the_stream_and_leaves_no_thread():
    import threading

    def failing(image):
        if int(image[0, 0, 0]) == 10:
            raise RuntimeError("the detector broke at frame 10")
        return np.asarray([rat_at(int(image[0, 0, 0])) + [0.9, 0]], np.float32)

    tracker = RoiTracker(failing, 32, RoiOptions(every_k=5), detect_ahead=True)
    seen = []
    with pytest.raises(RuntimeError, match="broke at frame 10"):
        for crop in tracker.crops(frames(40)):
            seen.append(crop.index)
    assert seen == list(range(6))  # frames 0-5 were settled by the looks that worked
    assert not any(t.name.startswith("ratscore-detect") for t in threading.enumerate())

    stopped = RoiTracker(failing, 32, RoiOptions(every_k=5), detect_ahead=True).crops(frames(40))
    next(stopped)
    stopped.close()  # a consumer that stops early (an error further down the chain) ends the thread too
    assert not any(t.name.startswith("ratscore-detect") for t in threading.enumerate())
