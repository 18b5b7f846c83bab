"""The "unseen" style: the same behaviours drawn in a way no model may train on, to measure that
it learned the behaviour and not the renderer (BundleRecipe refuses it for every training stage).

Unlike classic (and varied), the animal is not a stack of anti-aliased circles and sticks: its
body is one smooth silhouette (the skeleton's parts blurred together and cut at half height),
shaded from its rim inward, with a fur texture and a dark outline; a fawn coat; a square head
cap; a hard, offset shadow from a low lamp. It walks on a checkerboard or lino tiles in a
square box with low walls, under a close wide-angle camera with a strong colour cast, colour
fringes and interlacing. The plans, motions and path are classic's (styles.py), so a video and
its classic twin show the same behaviour.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .animals import draw_animal
from .arenas import Arena, fit_camera, paint_arena, paint_bench, share_for_fill
from .body import CAP, PLUG, TAIL_N, TAIL_START, TAU
from .camera import Camera
from .planning import SynthConfig, VideoPlan
from .rendering import _draw_prims
from .scene import Scene
from .styles import Look, n_frames_of, style_rng, tether_point


def unseen_scene(plan: VideoPlan, config: SynthConfig) -> Scene:
    rng = style_rng(plan, "unseen")
    w, h = config.resolutions[rng.integers(len(config.resolutions))]
    floor = np.array(rng.choice([[200, 200, 195], [150, 160, 175], [185, 160, 120], [120, 130, 115]]), float)
    arena = Arena("unseen_box", False, (float(rng.uniform(1.0, 1.3)), 1.0), float(rng.uniform(0.25, 0.5)), "opaque",
                  "opaque", rng.uniform(60, 200, 3), str(rng.choice(["checker", "lino"])), floor, False)
    animal = draw_animal(rng, "rat", "albino", bool(rng.random() < 0.7))
    coat = np.array([rng.uniform(195, 215), rng.uniform(170, 190), rng.uniform(135, 155)])
    animal.colours[0] = coat
    elevation = rng.uniform(62, 85)
    scene = Scene(
        width=int(w), height=int(h), gray=bool(rng.random() < config.grayscale_fraction),
        sin_el=math.sin(math.radians(elevation)), cos_el=math.cos(math.radians(elevation)),
        cam_dist=rng.uniform(2.0, 2.8), scale=1.0, cx=0.0, cy=0.0, wall_h=arena.wall_h, rat_len=rng.uniform(0.55, 0.8),
        colours=animal.colours, cable_colour=(15.0, 15.0, 15.0), cable_px=3.0, cap=animal.cap, reflection=0.0,
        shadow=0.0, blur=rng.uniform(0.0, 0.7), noise=rng.uniform(0.0, 4.0), flicker=0.0, flicker_hz=0.1,
        flicker_phase=rng.uniform(0, TAU))
    fit_camera(scene, arena, rng, share_for_fill(scene, arena, rng.uniform(0.8, 1.0)))
    paint_arena(scene, arena, style_rng(plan, "unseen", 2), paint_bench(rng, scene.width, scene.height))
    length_px = scene.rat_len * scene.scale
    angle = rng.uniform(0, TAU)
    offset = np.array([math.cos(angle), math.sin(angle)]) * rng.uniform(0.08, 0.18) * length_px
    drawer = Silhouette(rng, coat, offset, animal.cap)
    camera = Camera(tint=np.array([1.15, 1.0, 0.8]) if rng.random() < 0.5 else np.array([0.85, 0.97, 1.18]),
                    downscale=1.0, jpeg_quality=None, fringe=int(rng.integers(1, 3)), interlace=True,
                    gamma=float(rng.uniform(0.8, 1.2)))
    tether = tether_point(scene, rng, spread=1.2) if animal.cap else None
    scene.look = Look(scene, rng, animal.prims, animal.colours, lambda n: False, None, camera, animal.cap,
                      (15.0, 15.0, 15.0), tether, drawer, margin=4.0 + float(np.abs(offset).max()) + 2)
    scene.look.summary = {"arena": arena.kind, "floor": arena.floor, "cap": animal.cap,
                          "elevation_deg": round(float(elevation), 1), "frames": n_frames_of(plan, config)}
    return scene


class Silhouette:
    """Draws the animal as one shaded, textured, outlined silhouette with a hard offset shadow."""

    def __init__(self, rng, coat, shadow_offset, cap: bool):
        self.coat, self.offset, self.cap = np.asarray(coat, float), shadow_offset, cap
        tile = rng.normal(0.0, 1.0, (32, 32)).astype(np.float32)
        self.texture = cv2.GaussianBlur(tile, (0, 0), 0.8) * 0.12  # fur, in the image (it slides: another renderer's trait)
        self.outline = tuple(float(c) for c in self.coat * 0.35)
        self.shadow_strength = rng.uniform(0.35, 0.55)

    def __call__(self, img, scene: Scene, body, p, u, v, k, depth, colours, roi):
        rx0, ry0, rx1, ry1 = roi
        region = img[ry0:ry1, rx0:rx1]
        hh, ww = region.shape[:2]
        look = scene.look
        body_prims = look.boxed[(look.boxed[:, 4] != CAP) & (look.boxed[:, 4] != PLUG) & (look.boxed[:, 4] < 6)]
        length_px = max(4.0, scene.rat_len * scene.scale)
        light = colours[0][0] / max(1.0, self.coat[0] * 1.0)
        # the silhouette: the parts drawn a little fatter, blurred together, cut at half height
        soft = np.zeros((hh, ww), np.float32)
        fat = body_prims.copy()
        fat[:, 3] *= 1.12
        _draw_prims(soft, u - rx0, v - ry0, k, depth, fat, [1.0] * 8, scene.rat_len)
        soft = cv2.GaussianBlur(soft, (0, 0), max(0.7, 0.025 * length_px))
        sil = (soft > 0.45).astype(np.uint8)
        # the hard shadow, offset away from the lamp
        dx, dy = int(round(self.offset[0])), int(round(self.offset[1]))
        shadow = np.zeros_like(sil)
        ys0, ys1 = max(0, dy), min(hh, hh + dy)
        xs0, xs1 = max(0, dx), min(ww, ww + dx)
        shadow[ys0:ys1, xs0:xs1] = sil[ys0 - dy:ys1 - dy, xs0 - dx:xs1 - dx]
        region[shadow > 0] = (region[shadow > 0] * (1 - self.shadow_strength)).astype(np.uint8)
        # the tail: a tapered grey line, not in the box
        tail = np.stack([u[TAIL_START:TAIL_START + TAIL_N] - rx0, v[TAIL_START:TAIL_START + TAIL_N] - ry0], axis=1)
        tail_col = tuple(float(c) * light for c in (160, 130, 125))
        for i in range(TAIL_N - 1):
            width = max(1, int(round(0.03 * length_px * (1 - i / TAIL_N))))
            cv2.line(region, tuple(np.round(tail[i]).astype(int)), tuple(np.round(tail[i + 1]).astype(int)), tail_col, width, cv2.LINE_AA)
        # shading from the rim inward, fur texture, outline
        dist = cv2.distanceTransform(sil, cv2.DIST_L2, 3)
        shade = 0.6 + 0.4 * np.sqrt(dist / max(1.0, float(dist.max())))
        reps = (hh // 32 + 1, ww // 32 + 1)
        tex = np.tile(self.texture, reps)[:hh, :ww]
        fill = self.coat[None, None, :] * light * (shade * (1.0 + tex))[..., None]
        on = sil > 0
        region[on] = np.clip(fill[on], 0, 255).astype(np.uint8)
        contours, _ = cv2.findContours(sil, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(region, contours, -1, tuple(c * light for c in self.outline), 1, cv2.LINE_AA)
        for eye in (15, 16):
            cv2.circle(region, (int(round(u[eye] - rx0)), int(round(v[eye] - ry0))), max(1, int(0.012 * length_px)),
                       (10.0, 10.0, 10.0), -1, cv2.LINE_AA)
        mask = sil * 255
        if self.cap:  # a square block of cement with a bright connector
            c = np.array([u[17] - rx0, v[17] - ry0])
            half = max(2.0, 0.05 * length_px)
            corners = np.array([c + (-half, -half), c + (half, -half), c + (half, half), c + (-half, half)])
            cv2.fillPoly(region, [np.round(corners).astype(np.int32)], (70.0, 70.0, 75.0), cv2.LINE_AA)
            cv2.circle(region, (int(round(u[18] - rx0)), int(round(v[18] - ry0))), max(1, int(0.02 * length_px)),
                       (230.0, 200.0, 90.0), -1, cv2.LINE_AA)
            cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 255)
        return mask
