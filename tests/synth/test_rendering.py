"""ratscore.synth.rendering: determinism, what the frames show, and the boxes."""

from __future__ import annotations

import numpy as np
import pytest

from ratscore.annotations import Segment
from ratscore.labels import LABEL_IDS, NORMAL_ID
from ratscore.synth.planning import VideoPlan, make_config, plan_clips
from ratscore.synth.frames import render_clip_frames

# small, clean frames: fast, and motion is the rat's own (no sensor noise, no flicker)
TINY = make_config({"resolutions": [[160, 120]], "noise_sigma": [0, 0], "flicker": [0, 0], "blur_sigma": [0, 0]})


def _single(au: int, seconds: float = 2.0, seed: int = 1) -> VideoPlan:
    return VideoPlan(f"t{au}", "training", seconds, (Segment(0.0, seconds, au),), 1000 + 17 * au + seed)


# ---- frames --------------------------------------------------------------------------------

def test_frames_are_deterministic():
    plan = plan_clips(3, seed=11)[1]
    a = [f for _, f in zip(range(25), render_clip_frames(plan, TINY))]
    b = [f for _, f in zip(range(25), render_clip_frames(plan, TINY))]
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image)
        assert x.rat_box == y.rat_box and x.reflection_box == y.reflection_box
    other = plan_clips(3, seed=12)[1]
    c = next(iter(render_clip_frames(other, TINY)))
    assert not np.array_equal(a[0].image, c.image)


def _motion_in_box(au: int, seed: int = 1) -> float:
    """Mean absolute frame difference inside the rat's box, after the first second."""
    frames = list(render_clip_frames(_single(au, 2.5, seed), TINY))[30:]
    diffs = []
    for prev, cur in zip(frames, frames[1:]):
        x0 = int(min(prev.rat_box[0], cur.rat_box[0]))
        y0 = int(min(prev.rat_box[1], cur.rat_box[1]))
        x1 = int(np.ceil(max(prev.rat_box[2], cur.rat_box[2])))
        y1 = int(np.ceil(max(prev.rat_box[3], cur.rat_box[3])))
        d = np.abs(cur.image[y0:y1, x0:x1].astype(np.int16) - prev.image[y0:y1, x0:x1].astype(np.int16))
        diffs.append(d.mean())
    return float(np.mean(diffs))


def test_motion_differs_by_class_where_it_should():
    staring = [_motion_in_box(LABEL_IDS["staring"], seed) for seed in (1, 2)]
    running = [_motion_in_box(LABEL_IDS["wild running"], seed) for seed in (1, 2)]
    shakes = _motion_in_box(LABEL_IDS["wet dog shakes"])
    assert max(staring) < 0.3  # arrest: nothing moves
    assert min(running) > 5.0 and min(running) > 20 * max(staring)
    assert shakes > 5 * max(staring)

def test_transitions_have_no_brightness_jump():
    plan = VideoPlan("x", "training", 3.0, (Segment(0.0, 1.5, NORMAL_ID), Segment(1.5, 3.0, LABEL_IDS["staring"])), 99)
    config = make_config({"resolutions": [[160, 120]]})
    means = np.array([f.image.mean() for f in render_clip_frames(plan, config)])
    steps = np.abs(np.diff(means))
    assert steps[40:50].max() < 3 * np.median(steps) + 0.5

@pytest.mark.parametrize("au", [0, 9, 10, 11, 12, 13, 3])
def test_boxes_cover_the_rendered_rat(au):
    for frame in list(render_clip_frames(_single(au, 1.5, 3), TINY, with_masks=True))[::4]:
        ys, xs = np.nonzero(frame.rat_mask)
        x0, y0, x1, y1 = frame.rat_box
        assert xs.min() >= np.floor(x0) and xs.max() + 1 <= np.ceil(x1)
        assert ys.min() >= np.floor(y0) and ys.max() + 1 <= np.ceil(y1)
        h, w = frame.image.shape[:2]
        if 0 < x0 and 0 < y0 and x1 < w and y1 < h:  # and tight: a few pixels of slack at most
            assert xs.min() - x0 < 5 and x1 - xs.max() - 1 < 5 and ys.min() - y0 < 5 and y1 - ys.max() - 1 < 5
        if frame.reflection_box is not None:
            rx0, ry0, rx1, ry1 = frame.reflection_box
            assert 0 <= rx0 < rx1 <= w and 0 <= ry0 < ry1 <= h


def test_reflections_show_in_some_frames_and_labels_follow_the_plan():
    plans = plan_clips(6, seed=21)
    seen = 0
    for plan in plans[:4]:
        for n, frame in enumerate(render_clip_frames(plan, TINY)):
            seen += frame.reflection_box is not None
            t = n / 30
            expected = [s.au_id for s in plan.segments if s.start_s <= t < s.end_s]
            assert frame.label_id == expected[0]
    assert seen > 0
