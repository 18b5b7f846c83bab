"""What cameras other than classic's add to a frame: colour balance, infrared grey, sensor noise,
defocus, a low-resolution sensor scaled up, colour fringes, interlacing and JPEG-like compression.

Each effect keeps the animal where it was drawn (none moves pixels by more than a pixel), so the
labelled box stays true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from .rendering import _camera
from .scene import Scene


@dataclass
class Camera:
    tint: np.ndarray          # (3,) white balance gain per channel (before infrared grey)
    downscale: float          # 1: none; else the sensor's resolution is this share of the frame's
    jpeg_quality: Optional[int]  # None: no compression artefacts
    fringe: int               # colour fringe: red and blue shifted this many pixels apart
    interlace: bool           # odd rows from the previous frame (a moving animal shows combs)
    gamma: float
    last: Optional[np.ndarray] = field(default=None, repr=False)  # the last frame before interlacing

    def apply(self, frame: np.ndarray, scene: Scene, t: float, rng) -> np.ndarray:
        """frame (H, W, 3) uint8 RGB as drawn -> as the camera records it."""
        if not scene.gray and (np.abs(self.tint - 1.0) > 0.01).any():
            frame = np.clip(frame.astype(np.float32) * self.tint, 0, 255).astype(np.uint8)
        if abs(self.gamma - 1.0) > 0.02:
            lut = np.clip(255.0 * (np.arange(256) / 255.0) ** self.gamma, 0, 255).astype(np.uint8)
            frame = cv2.LUT(frame, lut)
        frame = _camera(frame, scene, t, rng)  # flicker, defocus, infrared grey, sensor noise
        h, w = frame.shape[:2]
        if self.downscale < 0.95:
            small = cv2.resize(frame, (max(8, int(w * self.downscale)), max(8, int(h * self.downscale))),
                               interpolation=cv2.INTER_AREA)
            frame = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.fringe and not scene.gray:
            frame = frame.copy()
            frame[:, self.fringe:, 0] = frame[:, :-self.fringe, 0]
            frame[:, :-self.fringe, 2] = frame[:, self.fringe:, 2]
        if self.interlace:
            whole, previous, self.last = frame, self.last, frame
            if previous is not None:
                frame = whole.copy()
                frame[1::2] = previous[1::2]
        if self.jpeg_quality is not None:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if ok:
                frame = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        return np.ascontiguousarray(frame)


def varied_camera(rng) -> Camera:
    """Lab cameras: webcams, CCTV, machine-vision; colour or infrared."""
    return Camera(tint=rng.uniform(0.8, 1.2, 3) if rng.random() < 0.6 else np.ones(3),
                  downscale=float(rng.uniform(0.35, 0.9)) if rng.random() < 0.3 else 1.0,
                  jpeg_quality=int(rng.integers(12, 85)) if rng.random() < 0.55 else None,
                  fringe=0, interlace=bool(rng.random() < 0.1), gamma=float(rng.uniform(0.7, 1.4)))
