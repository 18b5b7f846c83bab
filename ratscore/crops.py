"""A video's crops for the I3D: decode -> mask/ROI -> one square uint8 crop per frame of the model's
time grid.

`VideoCrops` is the one place that turns a video into crops. This module imports neither torch
nor the I3D.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, TypeVar, Union

import numpy as np

from .errors import InputError
from .grid import FeatureGrid
from .mask import RigProfile, load_rig_profile
from .roi import Detector, RoiOptions, RoiTracker
from .runtime import cpu_cores
from .video import TRUNCATED_PREFIX, VideoInfo, probe_video, read_frames, truncation

T = TypeVar("T")
_DONE = object()


def run_ahead(items: Iterator[T], depth: int = 64) -> Iterator[T]:
    """Yield what `items` yields, produced by a background thread up to `depth` items ahead.

    An exception raised by `items` is raised here, in the consumer, where it would have been
    raised without the thread. Closing this generator (or an exception in the consumer) stops
    the producer and closes `items` in its own thread, so files it holds open are released.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((None, item)):
                    return
            put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((e, None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="ratscore-decode", daemon=True)
    worker.start()
    try:
        while True:
            tag, item = slots.get()
            if tag is _DONE:
                return
            if tag is not None:
                raise tag
            yield item
    finally:
        stop.set()
        worker.join()


class Rows:
    """A float32 (N, width) array grown by doubling: no Python object per row."""

    def __init__(self, width: int):
        self.data, self.n = np.empty((1024, width), np.float32), 0

    def append(self, row) -> None:
        if self.n == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.n] = row
        self.n += 1

    def array(self) -> np.ndarray:
        return self.data[: self.n].copy()


@dataclass
class CropTally:
    """What a video's decoding leaves beside its crops."""

    info: VideoInfo  # what the container says (size upright, fps, duration, rotation)
    n_frames: int  # frames on the model's time grid
    boxes: np.ndarray  # (n_frames, 4) float32 crop squares x0, y0, x1, y1 in upright source pixels
    rat_found_fraction: Optional[float]  # share of frames where the detector saw the rat; None with no ROI
    gaps: list[tuple[float, float]]  # (start_s, end_s) intervals where the rat was lost
    decode_warnings: list[str]  # decoding problems, and `truncated` when set
    truncated: Optional[str]  # a warning when the frames end well before the container's stated duration


class VideoCrops:
    """The crops of one video, (S, S, 3) uint8 RGB, one per frame of `grid`, as an iterable;
    `tally()` after the last one. Streams: the frames since the detector's last frame are all
    it holds, beside 16 bytes a frame of crop boxes."""

    def __init__(self, path: Path, detector: Optional[Detector], roi_options: RoiOptions, input_size: int,
                 grid: FeatureGrid, profile: Union[RigProfile, str, Path, None] = None):
        self.path, self.grid = Path(path), grid
        self.info = probe_video(self.path)
        mask = None
        if profile is not None and detector is not None:  # a rig mask only sorts the detector's boxes
            profile = profile if isinstance(profile, RigProfile) else load_rig_profile(profile)
            mask = profile.in_pixels(self.info.width, self.info.height)
        self.tracker = RoiTracker(detector, input_size, roi_options, mask, grid.fps)
        self.warnings: list[str] = []
        self.boxes = Rows(4)  # one crop box per frame: 16 bytes a frame, the only per-frame state kept
        self.n_frames = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        frames = read_frames(self.path, self.grid.fps, self.warnings)
        if cpu_cores() > 2:  # decoding gets a thread of its own where there are cores for it
            frames = run_ahead(frames, depth=8)
        for roi_frame in self.tracker.crops(frames):
            self.n_frames += 1
            self.boxes.append(roi_frame.box)
            yield roi_frame.crop

    def tally(self) -> CropTally:
        """After the last crop; InputError for a video shorter than one clip."""
        n, grid = self.n_frames, self.grid
        if n < grid.num_frames:
            raise InputError(f"{self.path}: {n} frames at {grid.fps:g} fps ({n / grid.fps:.2f} s) is "
                             f"shorter than one {grid.num_frames}-frame clip")
        # the length decoded against the container's claim, on the model's grid: read_frames judges
        # the same on source timestamps, so its own truncation line gives way to this one
        truncated = truncation(self.info.duration_s, n / grid.fps)
        warnings = [w for w in self.warnings if not w.startswith(TRUNCATED_PREFIX)] + ([truncated] if truncated else [])
        return CropTally(info=self.info, n_frames=n, boxes=self.boxes.array(),
                         rat_found_fraction=self.tracker.found_fraction, gaps=self.tracker.gaps,
                         decode_warnings=warnings, truncated=truncated)
