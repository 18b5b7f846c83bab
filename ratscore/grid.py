"""The time grid: the one place that says how frames become clips and clips become seconds.

Videos are resampled to `fps`; feature i is the clip of frames [i * clip_stride, i * clip_stride
+ clip_frames), and its time is the clip's centre, (i * clip_stride + clip_frames / 2) / fps
(the layout of the released RatSeizure I3D features, and ActionFormer's grid-to-seconds rule).
A model folder states its grid (manifest fps, clip_frames, clip_stride); these defaults are the
RatSeizure release's and the bundled model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_FPS = 30.0  # frames per second the videos are resampled to
CLIP_FRAMES = 16  # frames per clip (one feature)
CLIP_STRIDE = 4  # frames between the starts of consecutive clips


@dataclass(frozen=True)
class FeatureGrid:
    # field names follow the release config (dataset.default_fps / feat_stride / num_frames)
    fps: float = MODEL_FPS  # frame rate the features were computed at
    feat_stride: int = CLIP_STRIDE  # frames between consecutive features
    num_frames: int = CLIP_FRAMES  # frames per feature (clip length)

    def __post_init__(self):
        if not (self.fps > 0 and self.feat_stride >= 1 and self.num_frames >= 1):
            raise ValueError(f"a time grid needs fps > 0, stride >= 1 and clip frames >= 1, got {self}")

    def feature_time(self, i) -> float | np.ndarray:
        """Centre time (s) of feature i (unclamped)."""
        return (np.asarray(i) * self.feat_stride + 0.5 * self.num_frames) / self.fps

    def to_seconds(self, grid: np.ndarray, duration: float) -> np.ndarray:
        """Feature-grid positions -> seconds, clamped to [0, duration]."""
        seconds = (np.asarray(grid, dtype=np.float32) * self.feat_stride + 0.5 * self.num_frames) / self.fps
        return np.clip(seconds, 0.0, duration)

    def to_grid(self, seconds) -> np.ndarray:
        """Seconds -> feature-grid positions (the training targets' coordinates)."""
        return np.asarray(seconds, dtype=np.float64) * self.fps / self.feat_stride - 0.5 * self.num_frames / self.feat_stride

    def num_features(self, n_frames: int) -> int:
        """Features (whole clips) in n_frames frames."""
        return 0 if n_frames < self.num_frames else (n_frames - self.num_frames) // self.feat_stride + 1

    def clip_ends(self, n: int) -> bool:
        """Whether the n-th frame (counting from 1) completes a clip."""
        return n >= self.num_frames and (n - self.num_frames) % self.feat_stride == 0


DEFAULT_GRID = FeatureGrid()
