"""The varied style's furred body (synth/fur.py): half the varied videos, one smooth outline that the
label box bounds exactly, drawn from a generator of its own so that the other half render as before."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from ratscore.synth import varied
from ratscore.synth.frames import render_clip_frames, scene_and_timeline
from ratscore.synth.planning import make_config, plan_clips

VARIED = make_config({"style": "varied", "resolutions": [[160, 120]], "clip_seconds": 1.0, "min_segment_seconds": 0.5})
PLANS = plan_clips(12, seed=7, config=VARIED)

# frames of three seed-7 videos drawn with primitives, rendered by 3d33d24 (before fur.py)
BEFORE_FUR = {
    2: "22c4b3676a4ba45574c7e16a17aba4820e0c76ac526f4c1a595b6d6b0929b915",
    7: "c4d302310fc1e1cd0efc1e77936e4cf064befdfed69ffd6e47c25ed15671ae4c",
    11: "dfefaf74055b0226b25c868d74072a5b2dd3ee22eb93c60095f4137e571e5efc",
}


def _summary(plan):
    return scene_and_timeline(plan, VARIED)[1].look.summary


def _digest(plan) -> str:
    h = hashlib.sha256()
    for f in render_clip_frames(plan, VARIED):
        h.update(f.image.tobytes())
    return h.hexdigest()


def test_about_half_the_varied_videos_draw_fur_and_the_others_render_as_before():
    drawings = [_summary(p)["drawing"] for p in PLANS]
    assert set(drawings) == {"fur", "primitives"}
    assert 3 <= drawings.count("fur") <= 9
    for i, digest in BEFORE_FUR.items():
        assert drawings[i] == "primitives"
        assert _digest(PLANS[i]) == digest


def test_the_fur_choice_moves_nothing_else_in_the_video(monkeypatch):
    plan = PLANS[0]
    fur, fur_frames = _summary(plan), _digest(plan)
    monkeypatch.setattr(varied, "FUR_SHARE", 0.0)
    plain, plain_frames = _summary(plan), _digest(plan)
    assert fur.pop("drawing") == "fur" and plain.pop("drawing") == "primitives"
    assert fur == plain  # same arena, animal, view, distractors, empty frames
    assert fur_frames != plain_frames


def test_a_furred_body_is_one_outline_and_its_box_bounds_it_exactly():
    plan = next(p for p in PLANS if _summary(p)["drawing"] == "fur" and _summary(p)["animal"] == "none")
    frames = list(render_clip_frames(plan, VARIED, with_masks=True))
    boxed = 0
    for f in frames:
        if f.rat_box is None:
            continue
        boxed += 1
        ys, xs = np.nonzero(f.rat_mask)
        assert f.rat_box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # the parts merged into one body: the largest connected piece holds nearly all of it
        n, labels, stats, _ = cv2.connectedComponentsWithStats((f.rat_mask > 0).astype(np.uint8))
        assert stats[1:, cv2.CC_STAT_AREA].max() >= 0.95 * (f.rat_mask > 0).sum()
    assert boxed >= len(frames) // 2
