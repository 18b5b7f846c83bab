"""The synthetic rat's surroundings: camera, chamber, colours and lighting of one video, drawn from
the config's ranges, and its painted static background (bedding, transparent wall, light).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .body import TAU

_BEDDINGS = ((205, 175, 125), (185, 145, 95), (228, 224, 214), (160, 125, 85), (215, 200, 160))


@dataclass
class Scene:
    width: int
    height: int
    gray: bool
    sin_el: float       # camera elevation (90 degrees = straight down)
    cos_el: float
    cam_dist: float     # camera distance in chamber radii (perspective)
    scale: float        # pixels per chamber radius at the chamber's centre
    cx: float
    cy: float
    wall_h: float       # wall height, chamber radii
    rat_len: float      # body length, chamber radii
    colours: np.ndarray  # (6, 3) base colours of the colour slots (RGB)
    cable_colour: tuple
    cable_px: float
    cap: bool
    reflection: float   # reflection opacity at the wall
    shadow: float
    blur: float
    noise: float
    flicker: float
    flicker_hz: float
    flicker_phase: float
    bg: np.ndarray = None         # (H, W, 3) uint8, with the front wall overlay
    bg_plain: np.ndarray = None   # (H, W, 3) uint8, without it
    overlay: np.ndarray = None    # (H, W, 3) float32 front wall (rim, glints) drawn over the rat
    overlay_a: np.ndarray = None  # (H, W) float32
    band: np.ndarray = None       # (H, W) float32 where the wall shows reflections, and how much
    band_box: tuple = (0, 0, 0, 0)
    illum: np.ndarray = None      # (H, W) float32 light falling on each pixel
    noise_bank: list = None
    look: object = None           # a named style's per-frame drawing (styles.Look); None: classic

    def project(self, pts: np.ndarray):
        """World points (N, 3) in chamber radii (x right, y away, z up) -> u, v, px per unit, depth."""
        depth = pts[:, 1] * self.cos_el - pts[:, 2] * self.sin_el
        k = self.scale * self.cam_dist / (self.cam_dist + depth)
        u = self.cx + k * pts[:, 0]
        v = self.cy - k * (pts[:, 1] * self.sin_el + pts[:, 2] * self.cos_el)
        return u, v, k, depth


def _uniform(rng, r):
    return float(rng.uniform(r[0], r[1]))


def make_scene(rng: np.random.Generator, config) -> Scene:
    """Draw one video's look from the config's ranges, and paint its static background."""
    w, h = config.resolutions[rng.integers(len(config.resolutions))]
    elev = 90.0 if config.view == "topdown" else _uniform(rng, config.camera_elevation_deg)
    mouse = config.animal == "mouse"
    fur = rng.uniform(50, 85, 3) if mouse else np.array([rng.uniform(225, 250), rng.uniform(215, 240), rng.uniform(198, 228)])
    pink = np.array([rng.uniform(200, 235), rng.uniform(140, 175), rng.uniform(140, 170)])
    if mouse:
        pink = pink * 0.6
    eye = (20, 15, 15) if mouse else (rng.uniform(110, 160), 25, 35)
    cap = rng.choice([[225, 225, 218], [205, 200, 195], [230, 190, 185], [120, 170, 120]]) * rng.uniform(0.9, 1.05)
    plug = rng.choice([[30, 30, 32], [60, 60, 60], [40, 80, 40]])
    mouth = pink * 0.55
    colours = np.array([fur, pink, eye, cap, plug, mouth], dtype=float)
    scene = Scene(
        width=int(w), height=int(h), gray=bool(rng.random() < config.grayscale_fraction),
        sin_el=math.sin(math.radians(elev)), cos_el=math.cos(math.radians(elev)),
        cam_dist=rng.uniform(3.5, 6.0), scale=1.0, cx=0.0, cy=0.0, wall_h=rng.uniform(0.7, 1.1),
        rat_len=_uniform(rng, config.rat_length) * (0.6 if mouse else 1.0), colours=colours,
        cable_colour=tuple(float(c) for c in rng.choice([[25, 25, 25], [50, 50, 60], [200, 200, 200], [40, 60, 120]])),
        cable_px=rng.uniform(1.2, 2.6), cap=not mouse, reflection=_uniform(rng, config.reflection_strength),
        shadow=rng.uniform(0.12, 0.3), blur=_uniform(rng, config.blur_sigma), noise=_uniform(rng, config.noise_sigma),
        flicker=_uniform(rng, config.flicker), flicker_hz=rng.uniform(0.05, 0.6), flicker_phase=rng.uniform(0, TAU),
    )
    _fit_chamber(scene, rng, _uniform(rng, config.chamber_fill))
    _paint_background(scene, rng, _uniform(rng, config.brightness))
    return scene


def _circle(z: float, n: int = 72) -> np.ndarray:
    a = np.linspace(0.0, TAU, n, endpoint=False)
    return np.stack([np.cos(a), np.sin(a), np.full(n, z)], axis=1)


def _fit_chamber(scene: Scene, rng, fill: float) -> None:
    ring = np.concatenate([_circle(0.0), _circle(scene.wall_h)])
    u, v, _, _ = scene.project(ring)
    span_u, span_v = u.max() - u.min(), v.max() - v.min()
    s = min(fill * scene.width / span_u, 0.94 * scene.height / span_v)
    scene.scale = s
    free_u, free_v = scene.width - s * span_u, scene.height - s * span_v
    scene.cx = -s * u.min() + free_u * rng.uniform(0.3, 0.7)
    scene.cy = -s * v.min() + free_v * rng.uniform(0.3, 0.7)


def _poly(scene, pts) -> np.ndarray:
    u, v, _, _ = scene.project(pts)
    return np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)


def _paint_background(scene: Scene, rng, brightness: float) -> None:
    w, h = scene.width, scene.height
    top, bottom = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp).astype(np.float32) * np.ones((1, w, 1), np.float32)
    for _ in range(rng.integers(0, 4)):  # lab clutter around the chamber
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + rng.uniform(10, w / 3)), int(y0 + rng.uniform(10, h / 3))),
                      tuple(float(c) for c in rng.uniform(40, 220, 3)), -1)
    floor = _poly(scene, _circle(0.0))
    rim = _poly(scene, _circle(scene.wall_h))
    bedding = np.array(_BEDDINGS[rng.integers(len(_BEDDINGS))], float) * rng.uniform(0.9, 1.08, 3)
    cv2.fillPoly(img, [floor], tuple(bedding), cv2.LINE_AA, 4)
    # bedding flakes, denser than the eye can count
    n = int(min(6000, 0.25 * (scene.scale ** 2)))
    r, a = np.sqrt(rng.random(n)) * 0.98, rng.uniform(0, TAU, n)
    u, v, k, _ = scene.project(np.stack([r * np.cos(a), r * np.sin(a), np.zeros(n)], axis=1))
    sizes = rng.uniform(0.006, 0.02, n) * k
    tints = bedding[None, :] * rng.uniform(0.72, 1.15, (n, 1))
    angles = rng.uniform(0, 180, n)
    for i in range(n):
        cv2.ellipse(img, (int(u[i] * 16), int(v[i] * 16)), (max(1, int(sizes[i] * 16)), max(1, int(sizes[i] * 8))),
                    float(angles[i]), 0, 360, tuple(tints[i]), -1, cv2.LINE_AA, 4)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    # the transparent wall: tint, rims, glints; the near half goes to an overlay drawn over the rat
    hull = cv2.convexHull(np.concatenate([floor, rim]))
    floor_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(floor_mask, [floor], 255, cv2.LINE_8, 4)
    hull_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(hull_mask, [hull], 255, cv2.LINE_8, 4)
    wall = (hull_mask > 0) & (floor_mask == 0)
    tint = rng.uniform(200, 255, 3)
    img[wall] = img[wall] * 0.9 + tint.astype(np.float32) * 0.1
    circ_f, circ_r = _circle(0.0), _circle(scene.wall_h)
    far = circ_f[:, 1] >= 0
    edge = tuple(bedding * 0.6)
    cv2.polylines(img, [floor[far]], False, edge, 1, cv2.LINE_AA, 4)
    cv2.polylines(img, [rim[circ_r[:, 1] >= 0]], False, tuple(tint), 1, cv2.LINE_AA, 4)
    overlay = np.zeros((h, w, 3), np.float32)
    overlay_a = np.zeros((h, w), np.float32)
    cv2.polylines(overlay, [rim[circ_r[:, 1] < 0]], False, tuple(float(c) for c in tint), 2, cv2.LINE_AA, 4)
    cv2.polylines(overlay_a, [rim[circ_r[:, 1] < 0]], False, 0.5, 2, cv2.LINE_AA, 4)
    for _ in range(rng.integers(1, 4)):  # vertical glints on the near wall
        ang = rng.uniform(math.pi * 1.1, math.pi * 1.9)
        p0, p1 = (math.cos(ang), math.sin(ang), 0.0), (math.cos(ang), math.sin(ang), scene.wall_h)
        seg = _poly(scene, np.array([p0, p1]))
        width = int(rng.uniform(2, 6) * scene.scale / 150) + 1
        cv2.line(overlay, tuple(seg[0]), tuple(seg[1]), (255, 255, 255), width, cv2.LINE_AA, 4)
        cv2.line(overlay_a, tuple(seg[0]), tuple(seg[1]), float(rng.uniform(0.06, 0.18)), width, cv2.LINE_AA, 4)
    overlay_a = cv2.GaussianBlur(overlay_a, (0, 0), 1.0)
    # light: a gradient, a vignette and a soft spot
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xs / w - 0.5, ys / h - 0.5
    sx, sy = rng.uniform(-0.3, 0.3, 2)
    illum = brightness * (1.0 + rng.uniform(-0.25, 0.25) * xn + rng.uniform(-0.25, 0.25) * yn)
    illum = illum * (1.0 - rng.uniform(0.0, 0.6) * (xn ** 2 + yn ** 2)) + rng.uniform(0.0, 0.25) * np.exp(
        -((xn - sx) ** 2 + (yn - sy) ** 2) / rng.uniform(0.02, 0.1))
    scene.illum = illum.astype(np.float32)
    plain = img * scene.illum[..., None]
    lit_overlay = np.minimum(overlay * scene.illum[..., None], 255.0)
    scene.bg_plain = np.clip(plain, 0, 255).astype(np.uint8)
    scene.bg = np.clip(plain * (1 - overlay_a[..., None]) + lit_overlay * overlay_a[..., None], 0, 255).astype(np.uint8)
    scene.overlay, scene.overlay_a = lit_overlay, overlay_a
    # reflections show on the wall band, fading with height above the floor's far edge
    first_floor_row = np.where(floor_mask.any(axis=0), floor_mask.argmax(axis=0), h).astype(np.float32)
    wall_px = max(2.0, scene.scale * scene.wall_h * scene.cos_el)
    fade = np.clip(1.0 - (first_floor_row[None, :] - ys) / wall_px, 0.0, 1.0)
    band = np.where(wall, 0.25 + 0.75 * fade, 0.0).astype(np.float32)
    scene.band = cv2.GaussianBlur(band, (0, 0), 1.0)
    rows, cols = np.nonzero(scene.band > 0.02)
    scene.band_box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(rows) else (0, 0, 0, 0)
    if scene.noise > 0.3:
        bank = []
        for _ in range(6):
            n = rng.standard_normal((h, w, 1 if scene.gray else 3), dtype=np.float32) * scene.noise
            bank.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        scene.noise_bank = bank
