"""The region of interest: find the rat, follow it, and cut a square around it for I3D.

A YOLO detector (exported to ONNX by `detector.py`) runs on every k-th frame and on the last one.
Between two detection frames the box is interpolated, so the crop glides rather than jumps;
detection boxes are also smoothed over time (exponential average) because a detector's box
jitters by a few pixels from frame to frame and I3D would read that jitter as motion.

Rat or reflection: the detector has a class for each (the synthetic data labels them apart), a
rig profile's mask drops boxes outside the arena or inside mirror regions, and when several
boxes still claim to be the rat the one that continues the track (largest overlap with the last
box, then nearest) wins over the most confident one.

When the rat is lost the last box is held, and the time it was missing is reported as a gap.
Without a detector (`--no-roi`) every frame is used whole, padded to a square.

A motion model of the recording (motion.py), when given, checks the detector: a box on something
that never moved in the whole recording is dropped, and where the detector finds nothing, or
only an unsure box (scored under 0.5, as real rodents mostly are) that misses the moving blob,
the blob stands in for it. The animal's box at every frame, with who saw it there, is kept
(`RoiFrame.track_row`, `Track`) for track.csv.

Streaming: only the frames since the last detection frame are buffered (k frames; 2k with
`detect_ahead`, where the detector's work on one detection frame overlaps the decoding of the next
k frames).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

import numpy as np

from .mask import RigMask
from .video import Frame, blank_like, crop_square, resize_image, to_numpy

if TYPE_CHECKING:
    from .motion import MotionModel

LETTERBOX_FILL = 114  # ultralytics pads letterboxed images with this grey
RECOGNISED_SCORE = 0.5  # a box scored this or more: the detector recognised the animal itself (drawn rats
# score it in nearly every look, real rodents mostly 0.25 to 0.5); trust.py counts such looks


@dataclass(frozen=True)
class RoiOptions:
    every_k: int = 5  # run the detector on every k-th frame; boxes in between are interpolated
    conf: float = 0.25  # detections scoring below this are ignored
    nms_iou: float = 0.5  # overlapping boxes of one class above this IoU are merged (NMS)
    margin: float = 0.25  # the crop's side is (1 + margin) x the box's longer side
    smoothing: float = 0.6  # weight of a new detection in the running box average (1: no smoothing)
    min_gap_s: float = 0.5  # lost-rat intervals shorter than this are not listed as gaps
    min_side: int = 32  # smallest crop side, pixels (a tiny box still gives a usable crop)
    rat_class: int = 0  # detector class id of the rat (1 is its reflection)
    unsure_score: float = RECOGNISED_SCORE  # a detector box scored under this that misses the moving blob
    # yields to the blob


@dataclass
class RoiFrame:
    index: int  # frame number on the model's time grid
    t_s: float  # seconds
    crop: np.ndarray  # (S, S, 3) uint8 RGB, resized to the I3D input size (a torch tensor where the frame was one)
    box: np.ndarray  # (4,) the square cut from the frame: x0, y0, x1, y1 in upright source pixels
    found: bool  # the detector (or the motion model) saw the rat here (False: a held or guessed box)
    rat: Optional[np.ndarray] = None  # (4,) the animal's box (smoothed, interpolated or held); None: none yet
    score: float = float("nan")  # the detector's confidence at this very frame; NaN where it did not see it here
    seen: int = 0  # who saw the animal at this very frame: SEEN_NONE, SEEN_DETECTOR, SEEN_MOTION, SEEN_WHOLE

    def track_row(self) -> np.ndarray:
        """(6,) float32: the animal's box (NaN before the first sighting), score, seen (a Track row)."""
        box = self.rat if self.rat is not None else (np.nan,) * 4
        return np.array([*box, self.score, self.seen], np.float32)


SEEN_NONE, SEEN_DETECTOR, SEEN_MOTION, SEEN_WHOLE = 0, 1, 2, 3  # SEEN_WHOLE: no detector, the whole frame


@dataclass
class Track:
    """The animal's box at every frame of the model's time grid: what track.csv holds."""

    fps: float  # the grid's frame rate
    width: int  # frame size, upright source pixels
    height: int
    rows: np.ndarray  # (N, 6) float32: x0, y0, x1, y1 (NaN before the first sighting), score (NaN: none), seen
    max_gap_s: float = 1.0  # frames between two sightings at most this far apart count as found

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def seen(self) -> np.ndarray:
        return self.rows[:, 5].astype(np.uint8)

    @property
    def score(self) -> np.ndarray:
        return self.rows[:, 4]

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) the animal's box; the whole frame where there was none yet (a guess)."""
        boxes = self.rows[:, :4].copy()
        boxes[~np.isfinite(boxes).all(axis=1)] = (0, 0, self.width, self.height)
        return boxes

    def found(self) -> np.ndarray:
        """(N,) bool: seen at the frame, or between two sightings at most max_gap_s apart."""
        seen = np.flatnonzero(self.seen != SEEN_NONE)
        found = np.zeros(len(self.rows), bool)
        found[seen] = True
        if len(seen) > 1:
            starts, ends = seen[:-1], seen[1:]
            close = (ends - starts) <= self.max_gap_s * self.fps + 1e-6
            edges = np.zeros(len(self.rows) + 1, np.int64)
            np.add.at(edges, starts[close], 1)
            np.add.at(edges, ends[close], -1)
            found |= np.cumsum(edges)[:-1] > 0
        return found

    def lost(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of each run of frames not found."""
        found = self.found()
        if found.all():
            return []
        edges = np.flatnonzero(np.diff(np.concatenate([[1], found.astype(np.int8), [1]])))
        return [(s / self.fps, e / self.fps) for s, e in zip(edges[::2], edges[1::2])]


class Detector:
    """A YOLO detector exported to ONNX (ultralytics' layout: (1, 4 + classes, anchors), boxes as
    centre x, centre y, width, height in letterboxed input pixels, class scores after sigmoid)."""

    def __init__(self, onnx_path: str | Path, imgsz: int, classes: Sequence[str], device: str = "cpu",
                 conf: float = 0.25, nms_iou: float = 0.5, threads: int = 1):
        from .runtime import onnx_session

        # one thread: the detector runs beside the decoding thread and the I3D (runtime.py)
        self.session = onnx_session(onnx_path, device, threads=threads, what="detector ONNX model")
        self.onnx_path = Path(onnx_path)  # a worker process (crops.py) loads the same file again
        self.input_name = self.session.get_inputs()[0].name
        self.imgsz, self.classes, self.conf, self.nms_iou = int(imgsz), list(classes), conf, nms_iou

    def letterbox(self, image) -> tuple[np.ndarray, float, tuple[int, int]]:
        """(H, W, 3) uint8 -> (1, 3, S, S) float32 numpy in [0, 1], with the scale and (left, top)
        padding. `image` a numpy array, or a torch tensor: then resized and padded where it is (a
        GPU's frame stays there) and only the small S x S canvas comes to the host."""
        h, w = image.shape[:2]
        scale = self.imgsz / max(h, w)
        nw, nh = int(round(w * scale)), int(round(h * scale))
        resized = resize_image(image, nw, nh, area=False) if (nw, nh) != (w, h) else image  # bilinear, as YOLO's
        left, top = (self.imgsz - nw) // 2, (self.imgsz - nh) // 2
        canvas = blank_like(image, (self.imgsz, self.imgsz, 3), LETTERBOX_FILL)
        canvas[top:top + nh, left:left + nw] = resized
        tensor = to_numpy(canvas).transpose(2, 0, 1)[None].astype(np.float32) / 255.0  # (1, 3, S, S)
        return tensor, scale, (left, top)

    def __call__(self, image) -> np.ndarray:
        """Detections in source pixels: (M, 6) rows of x0, y0, x1, y1, score, class id."""
        tensor, scale, (left, top) = self.letterbox(image)
        out = self.session.run(None, {self.input_name: tensor})[0][0]  # (4 + C, A)
        return decode_yolo(out, scale, (left, top), self.conf, self.nms_iou, image.shape[:2])


def decode_yolo(out: np.ndarray, scale: float, pad: tuple[int, int], conf: float, nms_iou: float,
                frame_hw: tuple[int, int]) -> np.ndarray:
    """Raw YOLO head output (4 + C, A) -> (M, 6) boxes in frame pixels after per-class NMS."""
    preds = out.T  # (A, 4 + C)
    scores = preds[:, 4:]
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(preds)), cls]
    keep = best >= conf
    if not keep.any():
        return np.zeros((0, 6), np.float32)
    preds, cls, best = preds[keep], cls[keep], best[keep]
    cx, cy, w, h = preds[:, 0], preds[:, 1], preds[:, 2], preds[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad[0]) / scale
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad[1]) / scale
    fh, fw = frame_hw
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, fw)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, fh)
    order = nms(boxes, best, cls, nms_iou)
    return np.concatenate([boxes[order], best[order, None], cls[order, None].astype(np.float32)], axis=1).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in a (N, 4) with each in b (M, 4) -> (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def boxes_overlap(a, b, share: float = 0.1) -> bool:
    """Whether two boxes overlap by at least `share` of the smaller one's area."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h >= share * max(smaller, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    kept: list[int] = []
    for i in order:
        same = [j for j in kept if classes[j] == classes[i]]
        if not same or box_iou(boxes[i], boxes[same]).max() <= iou:
            kept.append(i)
    return np.asarray(kept, dtype=int)


def square_around(box: np.ndarray, margin: float, min_side: int, width: int, height: int) -> np.ndarray:
    """The square crop for a rat box: centred on it, side (1 + margin) x its longer side, moved
    inside the frame where it fits (so it shows picture rather than black border)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(float(max(box[2] - box[0], box[3] - box[1])) * (1 + margin), float(min_side))
    x0, y0 = cx - side / 2, cy - side / 2
    if side <= width:
        x0 = min(max(x0, 0.0), width - side)
    if side <= height:
        y0 = min(max(y0, 0.0), height - side)
    return np.array([x0, y0, x0 + side, y0 + side], np.float32)


def whole_frame_square(width: int, height: int) -> np.ndarray:
    """The whole frame padded to a square (centred), so nothing is cut off."""
    side = max(width, height)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], np.float32)


class RoiTracker:
    """Turns a stream of frames into a stream of square crops following the rat."""

    def __init__(self, detector: Optional[Detector], out_size: int, options: RoiOptions = RoiOptions(),
                 mask: Optional[RigMask] = None, fps: float = 30.0, motion: Optional["MotionModel"] = None,
                 detect_ahead: bool = False):
        self.detector, self.out_size, self.options, self.mask, self.fps = detector, out_size, options, mask, fps
        # the detector looks at a detection frame in a thread of its own while the next k frames
        # decode, and its boxes are used once they are in: the same boxes, in the same order
        self.detect_ahead = detect_ahead
        self.motion = motion  # the recording's motion model (motion.py): veto and fallback; None: none
        self._follower = motion.follower() if motion is not None else None
        self.last_score = float("nan")  # confidence of the box choose_rat picked last
        self.vetoed = 0  # detector boxes dropped: nothing moved inside them in the whole recording
        self.motion_fallbacks = 0  # detection frames where the moving blob stood in for the detector
        self.motion_moments = 0  # detection frames with both a detector box and a moving blob
        self.motion_agreeing = 0  # ... of which the two overlapped
        self.track: Optional[np.ndarray] = None  # smoothed rat box (4,), source pixels
        self.n_frames = 0
        self.n_found = 0
        self.lost_runs: list[tuple[int, int]] = []  # [start, end) frame ranges without the rat
        self._lost_since: Optional[int] = None
        self._seen_last = False  # the previous detection frame found the rat
        self.detect_calls = 0

    # --- the rat box at a detection frame ---------------------------------------------------
    def choose_rat(self, detections: np.ndarray) -> Optional[np.ndarray]:
        """The rat among detections (M, 6), or None. Reflection-class boxes and boxes the mask
        rules out never count; among rat boxes, continuity with the track beats confidence."""
        rats = [d for d in detections if int(d[5]) == self.options.rat_class
                and (self.mask is None or self.mask.keeps(d[:4]))]
        if self.motion is not None and rats:
            moving = [d for d in rats if not self.motion.never_moved(d[:4])]
            self.vetoed += len(rats) - len(moving)
            rats = moving
        if not rats:
            return None
        rats = np.asarray(rats)
        if self.track is None or len(rats) == 1:
            pick = int(np.argmax(rats[:, 4]))
        else:
            overlaps = box_iou(self.track, rats[:, :4])[0]
            if overlaps.max() > 0:
                pick = int(np.argmax(overlaps + 1e-3 * rats[:, 4]))
            else:
                centre = (self.track[:2] + self.track[2:]) / 2
                pick = int(np.argmin(np.linalg.norm((rats[:, :2] + rats[:, 2:4]) / 2 - centre, axis=1)))
        self.last_score = float(rats[pick, 4])
        return rats[pick, :4]

    def _update_track(self, rat: Optional[np.ndarray]) -> bool:
        if rat is None:
            self._seen_last = False
            return False
        a = self.options.smoothing
        # Start afresh after a gap or a jump: averaging with a stale box would put the crop
        # between where the rat was and where it is.
        fresh = self.track is None or not self._seen_last or box_iou(self.track, rat)[0, 0] == 0
        self.track = rat.astype(np.float32) if fresh else (a * rat + (1 - a) * self.track).astype(np.float32)
        self._seen_last = True
        return True

    # --- bookkeeping ------------------------------------------------------------------------
    def _count(self, index: int, found: bool) -> None:
        self.n_frames += 1
        if found:
            self.n_found += 1
            if self._lost_since is not None:
                self.lost_runs.append((self._lost_since, index))
                self._lost_since = None
        elif self._lost_since is None:
            self._lost_since = index

    def motion_summary(self) -> Optional[dict]:
        """What the motion model did in this pass (None without one)."""
        m = self.motion
        if m is None:
            return None
        return {"mode": m.mode, "samples": m.n_samples, "informative": bool(m.informative),
                "vetoed_boxes": self.vetoed, "fallback_frames": self.motion_fallbacks,
                "moments_with_motion": self.motion_moments, "agreeing": self.motion_agreeing,
                "unsteady_share": round(float(m.unsteady), 4),
                "scene_cuts_s": [[round(float(a), 1), round(float(b), 1)] for a, b in m.cuts]}  # lights switched

    def finish(self) -> None:
        if self._lost_since is not None:
            self.lost_runs.append((self._lost_since, self.n_frames))
            self._lost_since = None

    @property
    def found_fraction(self) -> Optional[float]:
        if self.detector is None:
            return None
        return self.n_found / self.n_frames if self.n_frames else 0.0

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """Intervals (start_s, end_s) in which the rat was not seen, at least min_gap_s long."""
        runs = [(s / self.fps, e / self.fps) for s, e in self.lost_runs]
        return [(s, e) for s, e in runs if e - s >= self.options.min_gap_s - 1e-9]

    # --- the stream -------------------------------------------------------------------------
    def _emit(self, frame: Frame, rat_box: Optional[np.ndarray], found: bool, seen: int = SEEN_NONE,
              score: float = float("nan")) -> RoiFrame:
        h, w = frame.image.shape[:2]
        if rat_box is None:
            square = whole_frame_square(w, h)
        else:
            square = square_around(rat_box, self.options.margin, self.options.min_side, w, h)
        self._count(frame.index, found)
        rat = None if rat_box is None else np.asarray(rat_box, np.float32)
        return RoiFrame(frame.index, frame.t_s, crop_square(frame.image, square, self.out_size), square, found,
                        rat, score, seen)

    def _look(self, frame: Frame, detections: np.ndarray) -> tuple[Optional[np.ndarray], int, float]:
        """The animal at a detection frame: (box, who saw it, the detector's score). The detector's
        `detections` there first; the moving blob where it finds nothing, or where its box is unsure
        and misses the blob. Where both see something, whether they overlap is counted (trust.py
        reads it)."""
        rat = self.choose_rat(detections)
        blob = self._follower.blob(frame.image, frame.t_s) if self._follower is not None else None
        if rat is not None and blob is not None:
            self.motion_moments += 1
            agree = boxes_overlap(rat, blob)
            self.motion_agreeing += int(agree)
            if not agree and self.last_score < self.options.unsure_score:
                rat = None  # an unsure box off the moving animal yields to it
        if rat is not None:
            return rat, SEEN_DETECTOR, self.last_score
        if blob is not None:
            self.motion_fallbacks += 1
            return blob, SEEN_MOTION, float("nan")
        return None, SEEN_NONE, float("nan")

    def crops(self, frames: Iterable[Frame]) -> Iterator[RoiFrame]:
        if self.detector is None:
            for frame in frames:
                h, w = frame.image.shape[:2]
                square = whole_frame_square(w, h)
                self._count(frame.index, True)
                yield RoiFrame(frame.index, frame.t_s, crop_square(frame.image, square, self.out_size), square, True,
                               np.array([0, 0, w, h], np.float32), float("nan"), SEEN_WHOLE)
            return
        k = max(1, self.options.every_k)
        pending: list[Frame] = []  # frames after the last detection frame, waiting for the next one
        last_box: Optional[np.ndarray] = None  # track at the last detection frame
        last_found = False

        def settle(frame: Frame, waiting: list[Frame], detections: np.ndarray) -> Iterator[RoiFrame]:
            """The animal at detection frame `frame`, then the frames that waited for it and the frame itself."""
            nonlocal last_box, last_found
            self.detect_calls += 1
            rat, seen, score = self._look(frame, detections)
            found = self._update_track(rat)
            box = self.track  # held when not found
            for j, between_frame in enumerate(waiting, start=1):
                # interpolate between the two detection frames; hold when either end is missing
                if last_box is not None and box is not None:
                    f = j / (len(waiting) + 1)
                    between = (1 - f) * last_box + f * box
                else:
                    between = box if last_box is None else last_box
                yield self._emit(between_frame, between, last_found and found)
            yield self._emit(frame, box, found, seen, score)
            last_box = None if box is None else box.copy()
            last_found = found

        ahead = ThreadPoolExecutor(1, thread_name_prefix="ratscore-detect") if self.detect_ahead else None
        started = None  # (detection frame, the frames waiting for it, its detections' future)
        try:
            for n, frame in enumerate(frames):
                if n % k:
                    pending.append(frame)
                    continue
                if ahead is None:
                    yield from settle(frame, pending, self.detector(frame.image))
                else:
                    look = ahead.submit(self.detector, frame.image)
                    if started is not None:
                        yield from settle(started[0], started[1], started[2].result())
                    started = (frame, pending, look)
                pending = []
            if started is not None:
                yield from settle(started[0], started[1], started[2].result())
            if pending:  # the video ends between detection frames: its last frame is one too
                last = pending.pop()
                yield from settle(last, pending, self.detector(last.image))
        finally:
            if ahead is not None:
                ahead.shutdown(wait=True, cancel_futures=True)
        self.finish()
