"""A plan's frames: its seeded scene and pose timeline, drawn in its synth style (rendering.py
draws classic; styles.py, varied.py and unseen.py the others)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .behaviours import build_timeline
from .planning import SynthConfig, VideoPlan
from .rendering import render_frames
from .scene import Scene, make_scene
from .unseen import unseen_scene
from .varied import varied_scene


def render_clip_frames(plan: VideoPlan, config: SynthConfig = SynthConfig(), with_masks: bool = False) -> Iterator:
    """Yield SynthFrame(image (H, W, 3) uint8 RGB, rat_box, reflection_box, label_id, rat_mask) per frame.

    Boxes are (x0, y0, x1, y1) in pixels; reflection_box is None while no reflection shows.
    """
    rng, scene, timeline, spans = scene_and_timeline(plan, config)
    n_frames = int(round(plan.duration * config.fps))
    return render_frames(scene, timeline, spans, config.fps, n_frames, rng, with_masks)


def scene_and_timeline(plan: VideoPlan, config: SynthConfig):
    """The generator, scene, pose timeline and (start, end, au) spans a plan renders with."""
    rng = np.random.default_rng(plan.render_seed)
    scene = make_scene(rng, config)
    spans = [(s.start_s, s.end_s, s.au_id) for s in plan.segments]
    timeline = build_timeline(spans, rng, config.transition_seconds)
    if config.style != "classic":
        # Another drawing of the same video: the classic scene above was still drawn, so the
        # timeline and the path are drawn from the same generator as classic's (the same motions);
        # the style's own look comes from generators of its own.
        scene = styled_scene(plan, config)
    return rng, scene, timeline, spans


def styled_scene(plan: VideoPlan, config: SynthConfig) -> Scene:
    """The scene of a plan in a style other than classic, its `look` set."""
    if config.style == "varied":
        return varied_scene(plan, config)
    if config.style == "unseen":
        return unseen_scene(plan, config)
    raise ValueError(f"no styled scene for {config.style!r}")
