"""The named drawings of the synthetic world (SynthConfig.style; planning.STYLES):

    classic  the RatSeizure-like rig every stage of the recipe trains on: a white rat with a head
             cap and cable in a clear round chamber over bedding, seen obliquely (scene.py and
             rendering.py). Frozen: tests/synth/test_classic_pinned.py holds its digests.
    varied   what labs' footage varies, for the detector (varied.py): coats, rats and mice,
             sizes from about 1% to 60% of the frame, side, oblique and top views, arenas,
             infrared and colour, noise, blur, compression; half its animals drawn as one
             furred body (fur.py); things that are not animals (distractors.py); frames and
             whole videos with no animal (no box).
    unseen   a drawing nothing may train on (unseen.py): another body outline and texture,
             camera and light, to measure that a model learned the behaviour, not the renderer.

A style other than classic renders the same plans with the same motions (the timeline and the
animal's path come from classic's generator); everything it draws comes from generators of its
own (`style_rng`), so classic's draws never move. Its per-video `Look` draws each frame.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import cv2
import numpy as np

from .planning import STYLES, SynthConfig, VideoPlan
from .rendering import _MASK_COLOURS, SynthFrame, _draw_prims, _draw_reflection, _draw_shadow, _extent, _without_tail
from .scene import Scene

__all__ = ["STYLES", "Look", "style_rng"]


def style_rng(plan: VideoPlan, style: str, part: int = 0) -> np.random.Generator:
    """A style's own generator for one video (part: one stream per use)."""
    return np.random.default_rng([plan.render_seed, 0x5757, STYLES.index(style), part])


class Look:
    """How one video of a named style draws a frame, after the animal's pose is projected.

    animal_drawer(img, scene, body, p, u, v, k, depth, colours, roi) draws the animal (and its
    shadow) and returns the mask (uint8, the roi's shape) of the pixels its body covers, as a box
    bounds it (tail and tether left out); None: the classic primitives and shadow.
    """

    def __init__(self, scene: Scene, rng: np.random.Generator, prims: np.ndarray, colours: np.ndarray,
                 absent: Callable[[int], bool], props=None, camera=None, cap: bool = False, cable_colour=(30, 30, 30),
                 tether_top=None, animal_drawer=None, margin: float = 4.0):
        self.scene, self.prims, self.boxed = scene, prims, _without_tail(prims)
        self.colours, self.absent, self.props, self.camera = colours, absent, props, camera
        self.cap, self.cable_colour, self.tether_top = cap, cable_colour, tether_top
        self.animal_drawer, self.margin = animal_drawer, margin
        self.noise_rng = np.random.default_rng(rng.integers(2 ** 32))
        self.cable_ctrl = None

    def frame(self, n: int, t: float, p, body, world, u, v, k, depth, label: int, with_masks: bool) -> SynthFrame:
        s = self.scene
        w, h = s.width, s.height
        img = s.bg.copy()
        box = reflection_box = None
        full_mask = np.zeros((h, w), np.uint8) if with_masks else None
        if not self.absent(n):
            box, reflection_box = self._draw_animal(img, p, body, world, u, v, k, depth, full_mask)
        if self.props is not None:
            self.props.foreground(img, n, t, box)
        if self.camera is not None:
            img = self.camera.apply(img, s, t, self.noise_rng)
        return SynthFrame(img, box, reflection_box, label, full_mask)

    def _draw_animal(self, img, p, body, world, u, v, k, depth, full_mask):
        s = self.scene
        w, h = s.width, s.height
        light = float(s.illum[int(min(max(np.median(v), 0), h - 1)), int(min(max(np.median(u), 0), w - 1))])
        colours = [tuple(float(x) for x in np.minimum(col * light, 255)) for col in self.colours]
        x0, y0, x1, y1 = _extent(u, v, k, self.prims, s.rat_len)  # all that is drawn, tail included
        m = self.margin
        rx0, ry0 = int(max(0, math.floor(x0 - m))), int(max(0, math.floor(y0 - m)))
        rx1, ry1 = int(min(w, math.ceil(x1 + m))), int(min(h, math.ceil(y1 + m)))
        if rx1 <= rx0 or ry1 <= ry0:  # all out of view
            return None, None
        roi = (rx0, ry0, rx1, ry1)
        img[ry0:ry1, rx0:rx1] = s.bg_plain[ry0:ry1, rx0:rx1]
        reflection_box = None
        if s.reflection > 0:
            reflection_box = _draw_reflection(img, s, world, self.prims, self.boxed, colours, body)
        if self.animal_drawer is None:
            _draw_shadow(img, s, body, p)
            _draw_prims(img, u, v, k, depth, self.prims, colours, s.rat_len)
            mask = np.zeros((ry1 - ry0, rx1 - rx0), np.uint8)
            _draw_prims(mask, u - rx0, v - ry0, k, depth, self.boxed, _MASK_COLOURS, s.rat_len)
        else:
            mask = self.animal_drawer(img, s, body, p, u, v, k, depth, colours, roi)
        a = s.overlay_a[ry0:ry1, rx0:rx1, None]  # what stands between the camera and the animal
        region = img[ry0:ry1, rx0:rx1].astype(np.float32)
        img[ry0:ry1, rx0:rx1] = (region * (1 - a) + s.overlay[ry0:ry1, rx0:rx1] * a).astype(np.uint8)
        if self.cap:
            self._tether(img, u, v, light)
        seen = (mask > 0) & (s.overlay_a[ry0:ry1, rx0:rx1] < 0.5)  # hidden behind an opaque wall: not in the box
        if full_mask is not None:
            full_mask[ry0:ry1, rx0:rx1] = np.where(seen, 255, 0)
        ys, xs = np.nonzero(seen)
        if len(xs) < 4:
            return None, reflection_box
        return (float(rx0 + xs.min()), float(ry0 + ys.min()), float(rx0 + xs.max() + 1), float(ry0 + ys.max() + 1)), reflection_box

    def _tether(self, img, u, v, light) -> None:
        """The cable from the head cap up to the commutator; it lags the head."""
        if self.tether_top is None:
            return
        top = np.asarray(self.tether_top, float)
        anchor = np.array([u[19], v[19]])
        want = anchor + (top - anchor) * 0.45 + np.array([0.0, 0.1 * (top[1] - anchor[1])])
        self.cable_ctrl = want if self.cable_ctrl is None else self.cable_ctrl + 0.35 * (want - self.cable_ctrl)
        tt = np.linspace(0.0, 1.0, 12)[:, None]
        curve = (1 - tt) ** 2 * anchor + 2 * (1 - tt) * tt * self.cable_ctrl + tt ** 2 * top
        col = tuple(float(x) * light for x in self.cable_colour)
        cv2.polylines(img, [np.round(curve * 16).astype(np.int32)], False, col,
                      max(1, int(round(2.0 * self.scene.scale / 150))), cv2.LINE_AA, 4)


def absent_frames(kind: str, n_frames: int, rng) -> Callable[[int], bool]:
    """Which frames show no animal: 'none' (all show it), 'all' (an empty arena), 'start' or 'end'
    (put in or taken out: a stretch of 15-40% of the frames without it)."""
    if kind == "none":
        return lambda n: False
    if kind == "all":
        return lambda n: True
    cut = int(round(n_frames * rng.uniform(0.15, 0.4)))
    if kind == "start":
        return lambda n: n < cut
    return lambda n: n >= n_frames - cut


def n_frames_of(plan: VideoPlan, config: SynthConfig) -> int:
    return int(round(plan.duration * config.fps))


def tether_point(scene: Scene, rng, spread: float = 0.3) -> Optional[tuple]:
    """Where the tether goes up out of the arena: a commutator above it, in pixels."""
    u, v, _, _ = scene.project(np.array([[rng.uniform(-spread, spread), rng.uniform(-spread, spread), rng.uniform(2.0, 3.5)]]))
    return (float(u[0]), float(v[0]))
