"""The varied style's second way of drawing an animal: as fur looks on camera.

A real rat or mouse is one smooth furred body, not the classic stack of circles and sticks whose
outline shows each part. Trained only on the stack, the detector learnt the stack: it missed a
smooth body drawn another way in half the frames (docs/RESULTS.md, 2026-12-03). So half of the
varied videos draw the same skeleton this way (varied.FUR_SHARE); small detectors could not show
a gain from it beyond what their training seed alone moves (RESULTS, eleventh session):

- the body's parts, a little fatter or leaner per animal, merged into one outline by a closing
  and smoothed over a few hundredths of a body length;
- its coat pattern (hood, pink ears, paws and snout) blurred into a smooth colour field;
- lit from one side over a rounded relief, with a grain of fur in the image;
- a feathered edge, and the classic soft shadow under it; the head cap, connector and LED stay
  crisp on top, as hard things do.

This is not the unseen style's drawing (unseen.py), which nothing may train on: that one blurs and
thresholds, shades from the rim inward, outlines the body and casts a hard offset shadow.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .animals import LED
from .body import CAP, EYE, PLUG, TAIL_START
from .rendering import _MASK_COLOURS, _draw_prims, _draw_shadow
from .scene import Scene

_HARD = (CAP, PLUG, LED)  # colour slots of hard things, drawn crisp over the fur


class FurBody:
    """Draws one video's animal as a smooth, lit, furred body (styles.Look's animal_drawer)."""

    def __init__(self, rng: np.random.Generator, prims: np.ndarray):
        colour = prims[:, 4]
        tail = (prims[:, 0] == 1) & (prims[:, 1] >= TAIL_START)
        hard = np.isin(colour, _HARD)
        self.tail, self.hard = prims[tail], prims[hard]
        self.eyes = prims[(colour == EYE) & ~tail]
        self.soft = prims[~tail & ~hard].copy()
        self.soft[:, 3] *= rng.uniform(0.95, 1.3)  # lean to well fed
        self.closing = rng.uniform(0.04, 0.09)      # body lengths: how far apart parts still merge
        self.smooth = rng.uniform(0.01, 0.03)       # body lengths: outline smoothing
        angle = rng.uniform(0, 2 * math.pi)
        self.light = np.array([math.cos(angle), math.sin(angle)], np.float32)
        self.relief = rng.uniform(0.1, 0.35)
        self.feather = rng.uniform(0.4, 1.2)        # pixels
        grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (64, 64)).astype(np.float32), (0, 0), sigmaX=2.5, sigmaY=0.6)
        grain /= max(1e-6, float(grain.std()))
        self.grain = (grain.T if rng.random() < 0.5 else grain) * rng.uniform(0.0, 0.12)

    def __call__(self, img, scene: Scene, body, p, u, v, k, depth, colours, roi):
        rx0, ry0, rx1, ry1 = roi
        region = img[ry0:ry1, rx0:rx1]
        hh, ww = region.shape[:2]
        uu, vv = u - rx0, v - ry0
        length_px = max(4.0, scene.rat_len * float(np.median(k)))
        _draw_shadow(img, scene, body, p)
        _draw_prims(region, uu, vv, k, depth, self.tail, colours, scene.rat_len)
        # one outline: the parts merged by a closing, then smoothed
        parts = np.zeros((hh, ww), np.uint8)
        _draw_prims(parts, uu, vv, k, depth, self.soft, _MASK_COLOURS, scene.rat_len)
        size = max(3, int(round(self.closing * length_px)) | 1)
        merged = cv2.morphologyEx(parts, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        sigma = max(0.5, self.smooth * length_px)
        body_mask = (cv2.GaussianBlur(merged.astype(np.float32) / 255.0, (0, 0), sigma) > 0.5).astype(np.uint8)
        if not body_mask.any():
            body_mask = (parts > 127).astype(np.uint8)
        # the coat: each part's colour, spread smoothly over the outline (normalised blur)
        paint = np.zeros((hh, ww, 3), np.uint8)
        _draw_prims(paint, uu, vv, k, depth, self.soft, colours, scene.rat_len)
        colour_sigma = max(0.7, 0.02 * length_px)
        coat = cv2.GaussianBlur(paint.astype(np.float32), (0, 0), colour_sigma)
        weight = cv2.GaussianBlur(parts.astype(np.float32) / 255.0, (0, 0), colour_sigma)[..., None]
        coat = coat / np.maximum(weight, 1e-3)
        # relief: a smooth dome over the outline (no ridge along the spine), lit from one side
        dist = cv2.distanceTransform(body_mask, cv2.DIST_L2, 3)
        half_width = max(1.0, float(dist.max()))
        solid = body_mask.astype(np.float32)
        height = cv2.GaussianBlur(solid, (0, 0), 0.6 * half_width)
        height /= max(1e-6, float(height.max()))
        gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
        # Sobel weighs a step of one by 8; a dome this wide slopes by about 0.66 / half_width at most
        lit = np.clip((gx * self.light[0] + gy * self.light[1]) * half_width / 8 * 1.5, -1.0, 1.0)
        shade = 0.8 + 0.2 * height - self.relief * lit
        grain = np.tile(self.grain, (hh // 64 + 1, ww // 64 + 1))[:hh, :ww]
        fill = coat * (shade * (1.0 + grain))[..., None]
        alpha = cv2.GaussianBlur(solid, (0, 0), self.feather)[..., None]
        region[:] = np.clip(region * (1.0 - alpha) + fill * alpha, 0, 255).astype(np.uint8)
        _draw_prims(region, uu, vv, k, depth, self.eyes, colours, scene.rat_len)
        mask = body_mask * 255
        if len(self.hard):
            _draw_prims(region, uu, vv, k, depth, self.hard, colours, scene.rat_len)
            _draw_prims(mask, uu, vv, k, depth, self.hard, _MASK_COLOURS, scene.rat_len)
        return mask
