"""Drawing the synthetic rat, frame by frame.

The renderer integrates the pose's speed and turning into a path inside the chamber, builds
the body's 3-D skeleton, projects it through an oblique camera and draws it with anti-aliased
cv2 primitives, once for the rat and once, mirrored about the nearest chamber wall and faded,
for its reflection; then adds what the camera adds.

planning.py owns plans and config, writing.py the files; this module owns only what a frame looks like.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Iterator, NamedTuple, Optional

import cv2
import numpy as np

from .behaviours import Sequence
from .body import _CAP_PRIMS, _PRIMS, TAU, F, _without_tail, body_points
from .scene import Scene, _poly

# ---------------------------------------------------------------------------------------------
# Rendering a video frame by frame.

_MASK_COLOURS = [255] * 8  # every colour slot a body may use (styles add a hood and an LED), for masks


class SynthFrame(NamedTuple):
    image: np.ndarray                 # (H, W, 3) uint8 RGB
    rat_box: Optional[tuple]          # (x0, y0, x1, y1) pixels, the rat's body (tail and cable left out);
                                      # None where no animal shows (never in the classic style)
    reflection_box: Optional[tuple]   # (x0, y0, x1, y1) pixels of the visible reflection's body, or None
    label_id: int                     # the ground-truth action unit at this frame
    rat_mask: Optional[np.ndarray]    # (H, W) uint8 pixels the rat's body was drawn on, as rat_box bounds it (only when asked for)


class _Body:
    """Where the rat is in the chamber: integrates the pose's speed and turning, keeps off the wall."""

    def __init__(self, rng, scene: Scene):
        self.reach = 1.0 - 0.5 * scene.rat_len  # the body centre stays this close to the centre
        r, a = self.reach * math.sqrt(rng.uniform(0.05, 1.0)), rng.uniform(0, TAU)  # rats keep to the walls
        self.x, self.y, self.heading = r * math.cos(a), r * math.sin(a), rng.uniform(0, TAU)
        self.gait = 0.0

    def step(self, p: np.ndarray, dt: float, rat_len: float) -> None:
        speed = p[F["speed"]] * rat_len
        moving = min(1.0, speed / (0.3 * rat_len))
        turn = p[F["turn"]]
        r = math.hypot(self.x, self.y) + 1e-9
        nx, ny = self.x / r, self.y / r
        wall = p[F["wall"]]
        if abs(wall) > 0.05:  # circle along the wall, at a radius just inside reach
            tx, ty = (-ny, nx) if wall > 0 else (ny, -nx)
            inward = 3.0 * (r - (self.reach - 0.05))
            want = math.atan2(ty - inward * ny, tx - inward * nx)
            turn += abs(wall) * 6.0 * _wrap(want - self.heading) * moving
        out = math.cos(self.heading) * nx + math.sin(self.heading) * ny
        near = (r - (self.reach - 0.2)) / 0.2
        if near > 0 and out > 0:  # approaching the wall head-on: veer along it
            cross = math.cos(self.heading) * ny - math.sin(self.heading) * nx
            turn += math.copysign(4.0 * near * out, cross if cross else 1.0) * moving
        self.heading += turn * dt
        self.x += speed * math.cos(self.heading) * dt
        self.y += speed * math.sin(self.heading) * dt
        r = math.hypot(self.x, self.y)
        if r > self.reach:
            self.x, self.y = self.x * self.reach / r, self.y * self.reach / r
        self.gait += TAU * p[F["gait_freq"]] * dt


def _wrap(a: float) -> float:
    return (a + math.pi) % TAU - math.pi


def _draw_prims(img, u, v, k, depth, prims, colours, rat_len, skip_colour=None):
    """Painter's algorithm over the skeleton's circles and limb/tail segments."""
    kinds = prims[:, 0]
    a, b = prims[:, 1].astype(int), prims[:, 2].astype(int)
    size = prims[:, 3] * rat_len * k[a]
    order = np.argsort(-(depth[a] + depth[b]) * 0.5, kind="stable")
    ua, va = np.round(u[a] * 16).astype(np.int64), np.round(v[a] * 16).astype(np.int64)
    ub, vb = np.round(u[b] * 16).astype(np.int64), np.round(v[b] * 16).astype(np.int64)
    for i in order:
        col = colours[int(prims[i, 4])]
        if kinds[i] == 0:
            cv2.circle(img, (int(ua[i]), int(va[i])), max(8, int(size[i] * 16)), col, -1, cv2.LINE_AA, 4)
        else:
            cv2.line(img, (int(ua[i]), int(va[i])), (int(ub[i]), int(vb[i])), col, max(1, int(round(size[i]))), cv2.LINE_AA, 4)


def _extent(u, v, k, prims, rat_len, width=None, height=None):
    """(x0, y0, x1, y1) box of the drawn primitives, in pixel-area coordinates (pixel i spans [i, i + 1)).

    With a frame size, each primitive is clipped to the frame first, so parts out of view do not
    stretch the box along the frame's edge.
    """
    a, b = prims[:, 1].astype(int), prims[:, 2].astype(int)
    size = prims[:, 3] * rat_len * k[a]
    # as drawn: circles of at least half a pixel, lines at least one pixel thick; cv2's anti-aliasing
    # spills a little beyond either (most for small circles), so each gets a margin that holds the spill
    half = np.where(prims[:, 0] == 0, np.maximum(size, 0.5), np.maximum(1.0, np.round(size)) / 2) + 2.7
    x0 = np.minimum(u[a], u[b]) - half + 0.5  # cv2 puts pixel centres on integers, hence + 0.5
    x1 = np.maximum(u[a], u[b]) + half + 0.5
    y0 = np.minimum(v[a], v[b]) - half + 0.5
    y1 = np.maximum(v[a], v[b]) + half + 0.5
    if width is not None:
        x0, y0 = np.maximum(x0, 0.0), np.maximum(y0, 0.0)
        x1, y1 = np.minimum(x1, float(width)), np.minimum(y1, float(height))
        seen = (x1 > x0) & (y1 > y0)
        if seen.any():
            x0, y0, x1, y1 = x0[seen], y0[seen], x1[seen], y1[seen]
    return float(x0.min()), float(y0.min()), float(x1.max()), float(y1.max())


def _clip_box(box, w, h):
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def render_frames(scene: Scene, timeline: Sequence, labels: list, fps: float, n_frames: int,
                  rng: np.random.Generator, with_masks: bool = False) -> Iterator[SynthFrame]:
    """Yield the video's frames one at a time. labels: (start_s, end_s, au_id) for SynthFrame.label_id."""
    prims = np.array(_PRIMS + (_CAP_PRIMS if scene.cap else []), dtype=float)
    boxed = _without_tail(prims)
    body = _Body(rng, scene)
    dt = 1.0 / fps
    w, h = scene.width, scene.height
    starts = [s for s, _, _ in labels]
    cable_ctrl = None
    top = np.array([[0.0, 0.0, 3.0]])
    tu, tv, _, _ = scene.project(top)
    top_uv = np.array([tu[0], tv[0]])
    noise_pick = np.random.default_rng(rng.integers(2 ** 32))
    for n in range(n_frames):
        t = n * dt
        p = timeline.pose(t)
        body.step(p, dt, scene.rat_len)
        local = body_points(p, body.gait)
        c, s = math.cos(body.heading), math.sin(body.heading)
        world = np.empty_like(local)
        world[:, 0] = body.x + scene.rat_len * (c * local[:, 0] - s * local[:, 1])
        world[:, 1] = body.y + scene.rat_len * (s * local[:, 0] + c * local[:, 1])
        world[:, 2] = scene.rat_len * local[:, 2]
        u, v, k, depth = scene.project(world)
        if scene.look is not None:  # a named style other than classic draws the frame its own way
            label = labels[min(max(bisect_right(starts, t) - 1, 0), len(labels) - 1)][2]
            yield scene.look.frame(n, t, p, body, world, u, v, k, depth, label, with_masks)
            continue
        light = float(scene.illum[int(min(max(np.median(v), 0), h - 1)), int(min(max(np.median(u), 0), w - 1))])
        colours = [tuple(float(x) for x in np.minimum(col * light, 255)) for col in scene.colours]
        box = _extent(u, v, k, prims, scene.rat_len, w, h)  # all that is drawn, tail included
        frame = scene.bg.copy()
        # region the rat, its shadow and the wall overlay touch: restore the plain background there
        rx0, ry0 = int(max(0, box[0] - 4)), int(max(0, box[1] - 4))
        rx1, ry1 = int(min(w, box[2] + 4)), int(min(h, box[3] + 4))
        if rx1 > rx0 and ry1 > ry0:
            frame[ry0:ry1, rx0:rx1] = scene.bg_plain[ry0:ry1, rx0:rx1]
        reflection_box = _draw_reflection(frame, scene, world, prims, boxed, colours, body)
        _draw_shadow(frame, scene, body, p)
        _draw_prims(frame, u, v, k, depth, prims, colours, scene.rat_len)
        if rx1 > rx0 and ry1 > ry0:
            a = scene.overlay_a[ry0:ry1, rx0:rx1, None]
            roi = frame[ry0:ry1, rx0:rx1].astype(np.float32)
            frame[ry0:ry1, rx0:rx1] = (roi * (1 - a) + scene.overlay[ry0:ry1, rx0:rx1] * a).astype(np.uint8)
        if scene.cap:
            anchor = np.array([u[19], v[19]])
            want = anchor + (top_uv - anchor) * 0.45 + np.array([0.0, 0.1 * (top_uv[1] - anchor[1])])
            cable_ctrl = want if cable_ctrl is None else cable_ctrl + 0.35 * (want - cable_ctrl)  # the cable lags
            tt = np.linspace(0.0, 1.0, 12)[:, None]
            curve = (1 - tt) ** 2 * anchor + 2 * (1 - tt) * tt * cable_ctrl + tt ** 2 * top_uv
            col = tuple(float(x) * light for x in scene.cable_colour)
            cv2.polylines(frame, [np.round(curve * 16).astype(np.int32)], False, col,
                          max(1, int(round(scene.cable_px * scene.scale / 150))), cv2.LINE_AA, 4)
        frame = _camera(frame, scene, t, noise_pick)
        mask = None
        if with_masks:
            mask = np.zeros((h, w), np.uint8)
            _draw_prims(mask, u, v, k, depth, boxed, _MASK_COLOURS, scene.rat_len)
        label = labels[min(max(bisect_right(starts, t) - 1, 0), len(labels) - 1)][2]
        rat_box = _clip_box(_extent(u, v, k, boxed, scene.rat_len, w, h), w, h)
        yield SynthFrame(frame, rat_box, reflection_box, label, mask)


def _draw_shadow(frame, scene: Scene, body: _Body, p) -> None:
    a = np.linspace(0, TAU, 16, endpoint=False)
    c, s = math.cos(body.heading), math.sin(body.heading)
    ex, ey = 0.45 * scene.rat_len * np.cos(a), 0.17 * scene.rat_len * np.sin(a)
    pts = np.stack([body.x + c * ex - s * ey, body.y + s * ex + c * ey, np.zeros_like(a)], axis=1)
    poly = _poly(scene, pts)
    x0, y0 = np.maximum(poly.min(axis=0) // 16 - 1, 0)
    x1, y1 = np.minimum(poly.max(axis=0) // 16 + 2, [scene.width, scene.height])
    if x1 <= x0 or y1 <= y0:
        return
    roi = frame[y0:y1, x0:x1]
    dark = roi.copy()
    cv2.fillPoly(dark, [poly - np.array([x0 * 16, y0 * 16])], (0, 0, 0), cv2.LINE_AA, 4)
    strength = scene.shadow / (1.0 + 4.0 * p[F["z"]])
    cv2.addWeighted(dark, strength, roi, 1 - strength, 0, dst=roi)


def _draw_reflection(frame, scene: Scene, world, prims, boxed, colours, body: _Body) -> Optional[tuple]:
    """The rat mirrored about the wall tangent nearest to it, faded, seen only on the wall band.
    Returns the box of the visible part of the primitives `boxed` (the body: see _without_tail)."""
    r = math.hypot(body.x, body.y)
    near = min(1.0, max(0.0, 1.0 - (body.reach - r) / 0.45)) ** 1.5
    strength = scene.reflection * near
    if strength < 0.02 or scene.band_box[2] == 0:
        return None
    nx, ny = (body.x / r, body.y / r) if r > 1e-6 else (0.0, 1.0)
    along = world[:, 0] * nx + world[:, 1] * ny
    mirrored = world.copy()
    mirrored[:, 0] += 2.0 * (1.0 - along) * nx
    mirrored[:, 1] += 2.0 * (1.0 - along) * ny
    u, v, k, depth = scene.project(mirrored)
    ext = _extent(u, v, k, prims, scene.rat_len)
    bx0, by0, bx1, by1 = scene.band_box
    x0, y0 = int(max(ext[0], bx0)), int(max(ext[1], by0))
    x1, y1 = int(min(ext[2] + 1, bx1)), int(min(ext[3] + 1, by1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    roi = frame[y0:y1, x0:x1]
    drawn = roi.copy()

    def faded(drawn_prims) -> np.ndarray:
        # how strongly the reflection of these primitives shows at each pixel of the region
        mask = np.zeros(roi.shape[:2], np.uint8)
        _draw_prims(mask, u - x0, v - y0, k, depth, drawn_prims, _MASK_COLOURS, scene.rat_len)
        return cv2.GaussianBlur(mask.astype(np.float32) * (strength / 255.0), (0, 0), 0.8) * scene.band[y0:y1, x0:x1]

    _draw_prims(drawn, u - x0, v - y0, k, depth, prims, colours, scene.rat_len)
    alpha = faded(prims)
    roi[:] = (roi * (1 - alpha[..., None]) + drawn * alpha[..., None]).astype(np.uint8)
    ys, xs = np.nonzero(faded(boxed) > 0.08)  # fainter than this, a person would not call it a reflection
    if len(xs) < 12:
        return None
    return (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))


def _camera(frame, scene: Scene, t: float, rng) -> np.ndarray:
    """What the camera adds: flicker, defocus, sensor noise, infrared monochrome."""
    if scene.flicker > 0:
        gain = 1.0 + scene.flicker * math.sin(TAU * scene.flicker_hz * t + scene.flicker_phase)
        frame = cv2.convertScaleAbs(frame, alpha=gain)
    if scene.blur > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), scene.blur)
    if scene.gray:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]
    if scene.noise_bank:
        plus, minus = scene.noise_bank[rng.integers(len(scene.noise_bank))]
        frame = cv2.subtract(cv2.add(frame, plus), minus)
        if frame.ndim == 2:
            frame = frame[..., None]
    if scene.gray:
        frame = cv2.cvtColor(frame.reshape(scene.height, scene.width), cv2.COLOR_GRAY2RGB)
    return frame
