"""A second opinion on the detector that needs no training: the recording's background and motion.

Before the frames go through the detector and the I3D, a first pass reads the recording at low
resolution (gray, `width` pixels wide):

- where the recording has keyframes every few seconds (most H.264 and MJPEG files), only packets
  near keyframes are decoded: each keyframe at least `min_spacing_s` after the last sample, and the
  few frames after it (a short frame difference). The rest of the file is read but not decoded,
  which keeps the pass a small share of the time decoding takes.
- where it has fewer than `min_keyframe_samples` such keyframes (a short clip, a stream with one
  keyframe), every frame is decoded and every `every_k`-th frame of the model's grid is sampled.

From the samples it keeps the background (the median of up to `keep` samples spread over the
recording) and a map of where anything ever moved (pixels that differed between a sample and the
next frame or the previous sample). Where most of the picture changes from one sample to the next,
or since the first sample after the last cut (the room lights switched off for the night, a lamp
fading in), the scene is cut there: each stretch between cuts has its own background, and the
change itself is not motion. Per kept sample it gives the moving blob's box: the largest
connected region that differs from the background and holds motion, without its parts much
thinner than the rest (a tail, a cable: _body_box); and how many samples differ
from the background where nothing moves beyond the animal (`unsteady`: the scene changed, so the
background does not hold; trust.py flags it).

The detector pass uses it two ways (roi.RoiTracker): a detector box whose inside saw no motion in
the whole recording is dropped (a still object: a bottle, a white card, a mark on the floor), and
where the detector finds nothing, the moving blob at that frame stands in for it. Both only when
the model is informative: enough samples, and something animal-sized moved somewhere.

What it cannot do: an animal that does not move for the whole recording looks like the floor (no
motion, so no veto of anything near it and no fallback box), and with something else moving (a
cable, a hand, a light that flickers) its box may be dropped; a moving cable or the animal's
reflection can also be taken for the animal where the detector finds nothing. Where the scene
changes in a way that is no clean cut (a camera bumped, a light on part of the picture, lights
that flicker, joined clips too short to hold a background of their own) its background fits none
of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np


MOTION_DEFAULT = True  # analyze, batch and extract use the motion model unless told --no-motion


@dataclass(frozen=True)
class MotionOptions:
    width: int = 160  # samples are downscaled to this width (gray), keeping the frame's aspect
    min_spacing_s: float = 1.0  # keyframe samples at least this far apart (and at least duration / max_samples)
    max_samples: int = 1000  # at most about this many keyframe samples over a recording
    partner_packets: int = 3  # packets decoded after each sampled keyframe, for a short frame difference
    min_keyframe_samples: int = 24  # fewer keyframe samples than this: decode every frame instead
    every_k: int = 5  # with every frame decoded: sample every k-th frame of the model's grid
    keep: int = 256  # samples kept for the background median and the per-sample boxes (thinned evenly)
    threshold: int = 12  # gray levels: a pixel differing more than this is motion, or foreground
    min_blob_share: float = 0.002  # the smallest moving blob, as a share of the frame's area
    max_blob_share: float = 0.5  # a larger region is a change of light, not an animal
    min_samples: int = 8  # with fewer samples the model says nothing (no veto, no fallback)
    core: float = 0.1  # a box's inside: the box shrunk by this share of its size on each side
    thin_share: float = 0.3  # a blob's parts thinner than this share of its thickest part (a tail, a
    # cable) are left out of its box, as the detector's labels leave out the tail; 0: keep all
    max_scene_change: float = 0.05  # a sample whose still differences from the background beyond the animal
    # cover more than this share of the frame has a changed scene (scene_change)
    scene_cut_share: float = 0.5  # a sample differing by over 2 x threshold from the previous one, or from its
    # stretch's first, over more than this share of the frame: the scene was cut there (lights switched or
    # faded) and a stretch with its own background begins; as max_blob_share, a change this large is the
    # light, not an animal


@dataclass
class MotionModel:
    """The first pass's result: background, motion map and per-sample blob boxes of one recording.
    Box coordinates are upright source pixels (x0, y0, x1, y1), as the detector's."""

    options: MotionOptions
    width: int  # source frame size, upright
    height: int
    backgrounds: np.ndarray  # (S, h, w) uint8 gray at low resolution: one per stretch between scene cuts
    modelled: np.ndarray  # (S,) bool: the stretch had min_samples kept samples, so its background holds
    cuts: np.ndarray  # (S - 1, 2) float32 seconds: the scene changed between these two samples' times
    moved: np.ndarray  # (h, w) int32: in how many samples each low-resolution pixel moved
    times: np.ndarray  # (N,) float32 seconds of the kept samples
    boxes: np.ndarray  # (N, 4) float32 the moving blob of each kept sample; NaN where there was none
    clear: np.ndarray  # (N,) bool: the kept sample's blob stands out alone (no other sizeable moving region)
    n_samples: int  # samples taken (kept or not)
    mode: str  # "keyframes" or "frames"
    unsteady: float = 0.0  # share of kept samples whose scene changed within their stretch (options.max_scene_change)
    # or whose stretch is too short for a background of its own: there the background does not hold
    informative: bool = field(init=False)  # enough samples, and something animal-sized moved

    def __post_init__(self):
        big = _largest_area(self.moved > 0)
        self.informative = self.n_samples >= self.options.min_samples and big >= self._min_blob_px

    @property
    def small_size(self) -> tuple[int, int]:
        """(w, h) of the low-resolution samples."""
        return self.backgrounds.shape[2], self.backgrounds.shape[1]

    def background_at(self, t_s: float, gray: np.ndarray) -> Optional[np.ndarray]:
        """The background of the stretch that holds time `t_s`; None where that stretch has none.
        Between a cut's two samples the change came at some moment unknown: the background of the
        two stretches that `gray` (the frame at low resolution) differs from less."""
        stretch = int(np.searchsorted(self.cuts[:, 1], t_s, side="right"))
        candidates = [stretch]
        if stretch < len(self.cuts) and t_s > self.cuts[stretch, 0]:
            candidates.append(stretch + 1)
        candidates = [k for k in candidates if self.modelled[k]]
        if len(candidates) < 2:
            return self.backgrounds[candidates[0]] if candidates else None
        import cv2

        best = min(candidates, key=lambda k: float(cv2.absdiff(gray, self.backgrounds[k]).mean()))
        return self.backgrounds[best]

    @property
    def _min_blob_px(self) -> int:
        w, h = self.small_size
        return max(4, int(round(self.options.min_blob_share * w * h)))

    def never_moved(self, box) -> bool:
        """Whether nothing moved inside `box` (its core) in the whole recording; False when the
        model is not informative (then it vouches for nothing)."""
        if not self.informative:
            return False
        x0, y0, x1, y1 = self._small_core(box)
        return not self.moved[y0:y1, x0:x1].any()

    def _small_core(self, box) -> tuple[int, int, int, int]:
        w, h = self.small_size
        sx, sy = w / max(1, self.width), h / max(1, self.height)
        bx0, by0, bx1, by1 = (float(v) for v in box[:4])
        dx, dy = self.options.core * (bx1 - bx0), self.options.core * (by1 - by0)
        x0 = int(np.clip(np.floor((bx0 + dx) * sx), 0, w - 1))
        y0 = int(np.clip(np.floor((by0 + dy) * sy), 0, h - 1))
        x1 = int(np.clip(np.ceil((bx1 - dx) * sx), x0 + 1, w))
        y1 = int(np.clip(np.ceil((by1 - dy) * sy), y0 + 1, h))
        return x0, y0, x1, y1

    def to_source(self, small_box) -> np.ndarray:
        """A low-resolution (x, y, w, h) region -> (x0, y0, x1, y1) in source pixels."""
        w, h = self.small_size
        x, y, bw, bh = small_box
        fx, fy = self.width / w, self.height / h
        return np.array([x * fx, y * fy, (x + bw) * fx, (y + bh) * fy], np.float32)

    def follower(self) -> "MotionFollower":
        return MotionFollower(self)

    def labels(self, min_separation: float = 4.0) -> list[tuple[float, np.ndarray]]:
        """(time s, box) of kept samples where one moving blob stands out (no other moving region
        of more than 1 / min_separation of its area): frames with a box to train a detector on
        (`train detector --videos`). Empty when the model is not informative."""
        if not self.informative:
            return []
        return [(float(t), b.copy()) for t, b, clear in zip(self.times, self.boxes, self.clear)
                if clear and np.isfinite(b).all()]


class MotionFollower:
    """The moving blob at each detection frame of the main pass (in order): the largest region that
    differs from the recording's background and moved since the previous call."""

    def __init__(self, model: MotionModel):
        self.model = model
        self._previous: Optional[np.ndarray] = None

    def blob(self, image: np.ndarray, t_s: float) -> Optional[np.ndarray]:
        """(4,) box in source pixels of the frame at `t_s` seconds, or None (no motion, nothing
        sizeable, a stretch without a background, or a model that says nothing)."""
        from .video import to_numpy

        m = self.model
        # a torch frame (torchcodec; from a GPU, a copy to the host at detection frames only) is made
        # gray by the very code the first pass (PyAV) made the background with: the two compare exactly
        gray = small_gray(to_numpy(image), m.small_size)
        previous, self._previous = self._previous, gray
        if previous is None or not m.informative:
            return None
        background = m.background_at(t_s, gray)
        if background is None:
            return None
        found = moving_blob(gray, background, previous, m.options, m._min_blob_px)
        return None if found is None else m.to_source(found[0])


def small_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) RGB -> (h, w) uint8 gray at `size` (w, h): the one conversion both passes use, so
    their pictures compare."""
    import cv2

    if image.shape[1] != size[0] or image.shape[0] != size[1]:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _changed(a: np.ndarray, b: np.ndarray, threshold: int) -> np.ndarray:
    """uint8 mask (0/255) of pixels differing by more than `threshold`, specks removed."""
    import cv2

    mask = (cv2.absdiff(a, b) > threshold).astype(np.uint8) * 255
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _KERNEL3)


_KERNEL3 = np.ones((3, 3), np.uint8)
_KERNEL5 = np.ones((5, 5), np.uint8)


def _is_cut(a: np.ndarray, b: np.ndarray, options: MotionOptions) -> bool:
    """Whether two low-resolution pictures cannot share one background: over options.scene_cut_share
    of the frame differs by more than twice the threshold (each may differ from a background by up
    to the threshold; a light that flickers a little stays within it). The light changed, not an animal."""
    import cv2

    return np.count_nonzero(cv2.absdiff(a, b) > 2 * options.threshold) > options.scene_cut_share * a.size


def _largest_area(mask: np.ndarray) -> int:
    import cv2

    mask = np.ascontiguousarray(mask.astype(np.uint8))
    if not mask.any():
        return 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


class _Regions(NamedTuple):
    """The regions of one low-resolution sample that differ from the background."""
    labels: np.ndarray  # (h, w) int32: 1 + the region's row in stats, 0 where the sample matches the background
    stats: np.ndarray  # (K, 5) x, y, w, h, area of each region
    moving: np.ndarray  # (K,) bool: whether each region holds motion


def _regions(gray: np.ndarray, background: np.ndarray, motion: np.ndarray, options: MotionOptions) -> _Regions:
    """The regions of `gray` that differ from `background` (closed over small gaps), and whether each
    holds motion (`motion`)."""
    import cv2

    foreground = cv2.morphologyEx(_changed(gray, background, options.threshold), cv2.MORPH_CLOSE, _KERNEL5)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    return _Regions(labels, stats[1:], np.bincount(labels[motion > 0], minlength=n)[1:] > 0)


def moving_blob(gray: np.ndarray, background: np.ndarray, motion_ref: Optional[np.ndarray], options: MotionOptions,
                min_px: int, motion: Optional[np.ndarray] = None) -> Optional[tuple[tuple[int, int, int, int], bool]]:
    """The largest region of `gray` that differs from `background` and holds motion (pixels that
    differ from `motion_ref`, or the given `motion` mask): ((x, y, w, h) at low resolution of its
    body (see _body_box), whether it stands out alone), or None."""
    if motion is None:
        if motion_ref is None or _is_cut(gray, motion_ref, options):  # a cut: all changed, nothing tells the animal
            return None
        motion = _changed(gray, motion_ref, options.threshold)
    if not motion.any():
        return None
    return _largest_moving(_regions(gray, background, motion, options), options, min_px, gray.size)


def _largest_moving(regions: _Regions, options: MotionOptions, min_px: int,
                    frame_px: int) -> Optional[tuple[tuple[int, int, int, int], bool]]:
    """moving_blob's answer from `_regions`' figures."""
    import cv2

    areas = regions.stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    max_px = options.max_blob_share * frame_px
    ok = [i for i in range(len(areas)) if regions.moving[i] and min_px <= areas[i] <= max_px]
    if not ok:
        return None
    ok.sort(key=lambda i: -areas[i])
    best = ok[0]
    alone = len(ok) == 1 or areas[ok[1]] * 4 <= areas[best]
    return _body_box(regions, best, options.thin_share), alone


def _body_box(regions: _Regions, index: int, thin_share: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) of region `index` without its thin parts: what lies farther than thin_share x
    the region's greatest half-thickness from its edge, grown back by that distance (an opening
    whose size follows the blob). A tail or a cable trailing from the body is thinner than the body
    by far, so the box keeps to the body, as the detector's training boxes do; the head and the
    limbs of a rat are thick enough at 160 px to stay in."""
    import cv2

    x, y, w, h = (int(v) for v in regions.stats[index, :4])
    if thin_share <= 0:
        return x, y, w, h
    mask = np.pad((regions.labels[y:y + h, x:x + w] == index + 1).astype(np.uint8), 1)  # an edge all round
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    radius = thin_share * float(depth.max())
    if radius < 1.0:  # too small a blob to tell a tail from a body at this resolution
        return x, y, w, h
    side = 2 * int(np.ceil(radius)) + 1
    body = cv2.dilate((depth >= radius).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    ys, xs = np.nonzero(body & mask)
    return x + int(xs.min()) - 1, y + int(ys.min()) - 1, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1


def scene_change(regions: _Regions, options: MotionOptions, frame_px: int) -> float:
    """Share of the frame that differs from the background, holds no motion and is not the animal
    (from `_regions`' figures of one sample): the largest differing region is the animal, however
    big or still, unless it covers more than options.max_blob_share of the frame (then it is the
    light, not an animal).

    From a camera that stays put what is left is specks and shadows (at most 2% of the frame in any
    sample of the synthetic renders and the continuous real recordings measured,
    benchmarks/README.md), and regions that move (a mirror view of the animal, a wheel, a cable)
    do not count. Much more means the scene itself changed within the sample's stretch: the camera
    moved, a light changed part of the picture or flickered, or the file joins clips of other
    scenes too short for backgrounds of their own."""
    import cv2

    if not len(regions.stats):
        return 0.0
    areas = regions.stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    animal_sized = areas <= options.max_blob_share * frame_px
    counted = ~(animal_sized & regions.moving)
    largest = int(np.argmax(areas))
    if animal_sized[largest]:
        counted[largest] = False
    return float(areas[counted].sum() / frame_px)


# --- the first pass ---------------------------------------------------------------------------

class _Samples:
    """Gathers samples: the motion map as they come, and an evenly thinned set kept for the end."""

    def __init__(self, options: MotionOptions):
        self.options = options
        self.moved: Optional[np.ndarray] = None
        self.kept: list[tuple[float, np.ndarray, np.ndarray]] = []  # (t, gray, packed motion mask)
        self.every = 1  # keep every n-th sample (doubles each time the kept set is thinned)
        self.count = 0
        self.previous: Optional[np.ndarray] = None
        self.previous_t = 0.0
        self.reference: Optional[np.ndarray] = None  # the current stretch's first sample: a fade is cut once it adds up
        self.cuts: list[tuple[float, float]] = []  # (t of the sample before, t of the sample after) each scene cut

    def add(self, t: float, gray: np.ndarray, partner: Optional[np.ndarray]) -> None:
        """A sample at `t` s; `partner` a frame shortly after it (None: compare with the previous sample).
        A change over most of the frame is a scene cut, not motion: it would mark every pixel moved
        and leave nothing for the veto."""
        options = self.options
        if self.moved is None:
            self.moved = np.zeros(gray.shape, np.int32)
        motion = np.zeros(gray.shape, np.uint8)
        if partner is not None and partner.shape == gray.shape:
            if not _is_cut(gray, partner, options):  # a cut between the two is told by the next sample
                motion |= _changed(gray, partner, options.threshold)
        if self.previous is not None and self.previous.shape == gray.shape:
            # a light that fades in over seconds changes little from one sample to the next; against the
            # stretch's first sample the change adds up, where an animal's covers at most its two places
            if _is_cut(gray, self.previous, options) or _is_cut(gray, self.reference, options):
                self.cuts.append((self.previous_t, t))
                self.reference = gray
            else:
                motion |= _changed(gray, self.previous, options.threshold)
        if self.reference is None or self.reference.shape != gray.shape:
            self.reference = gray
        self.moved += motion > 0
        self.previous, self.previous_t = gray, t
        if self.count % self.every == 0:
            self.kept.append((t, gray, np.packbits(motion > 0)))
            if len(self.kept) > self.options.keep:
                self.kept = self.kept[::2]
                self.every *= 2
        self.count += 1

    def model(self, width: int, height: int, mode: str) -> MotionModel:
        options = self.options
        if self.moved is None:  # nothing decoded: an empty model that says nothing
            w = max(1, min(options.width, width))
            h = max(1, int(round(height * w / max(1, width))))
            empty = np.zeros((h, w), np.uint8)
            return MotionModel(options, width, height, empty[None], np.zeros(1, bool), np.zeros((0, 2), np.float32),
                               empty.astype(np.int32), np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                               np.zeros(0, bool), 0, mode)
        times = np.array([t for t, _, _ in self.kept], np.float32)
        cuts = np.array(self.cuts, np.float32).reshape(-1, 2)
        stretch_of = np.searchsorted(cuts[:, 1], times, side="right")  # (N,) the stretch of each kept sample
        shape = self.kept[0][1].shape
        backgrounds = np.zeros((len(cuts) + 1, *shape), np.uint8)
        modelled = np.zeros(len(cuts) + 1, bool)
        for k in range(len(cuts) + 1):
            members = [g for (_, g, _), s in zip(self.kept, stretch_of) if s == k]
            if members:
                backgrounds[k] = np.median(np.stack(members), axis=0).astype(np.uint8)
            # a recording without cuts keeps its one background whatever its length, as before cuts existed
            modelled[k] = len(members) >= options.min_samples or not len(cuts)
        model = MotionModel(options, width, height, backgrounds, modelled, cuts, self.moved, times,
                            np.full((len(self.kept), 4), np.nan, np.float32), np.zeros(len(self.kept), bool),
                            self.count, mode)
        changed = 0
        for i, (_, gray, packed) in enumerate(self.kept):
            if not modelled[stretch_of[i]]:  # too short a stretch to hold a background: no box, and unsteady
                changed += 1
                continue
            motion = np.unpackbits(packed, count=gray.size).reshape(gray.shape) * np.uint8(255)
            regions = _regions(gray, backgrounds[stretch_of[i]], motion, options)  # once for both readings
            found = _largest_moving(regions, options, model._min_blob_px, gray.size)
            if found is not None:
                model.boxes[i] = model.to_source(found[0])
                model.clear[i] = found[1]
            changed += scene_change(regions, options, gray.size) > options.max_scene_change
        model.unsteady = changed / len(self.kept)
        return model


def build_motion_model(video_path, options: MotionOptions = MotionOptions(), fps: float = 30.0) -> MotionModel:
    """The first pass over a video (see the module doc). `fps`: the model's grid, for `every_k`."""
    from .video import probe_video

    path = Path(video_path)
    info = probe_video(path)
    size = _small_size(info.width, info.height, options.width)
    samples = _keyframe_pass(path, options, size, info.duration_s)
    mode = "keyframes"
    if samples.count < options.min_keyframe_samples:
        samples = _frame_pass(path, options, size, fps)
        mode = "frames"
    return samples.model(info.width, info.height, mode)


def _small_size(width: int, height: int, target: int) -> tuple[int, int]:
    w = max(1, min(target, width))
    return w, max(1, int(round(height * w / max(1, width))))


def _rgb(frame) -> np.ndarray:
    from .video import _rotation_of, _upright

    return _upright(frame.to_ndarray(format="rgb24"), _rotation_of(frame))


def _keyframe_pass(path: Path, options: MotionOptions, size: tuple[int, int], duration_s: Optional[float]) -> _Samples:
    """Samples at keyframes: each keyframe (at least the spacing after the last sample) and the
    last-shown of the few frames decoded after it. Other packets are read, not decoded."""
    import av

    from .video import _open

    samples = _Samples(options)
    spacing = max(options.min_spacing_s, (duration_s or 0.0) / max(1, options.max_samples))
    container = _open(path)
    try:
        stream = container.streams.video[0]
        context = stream.codec_context
        tb = stream.time_base
        t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        due = -np.inf
        group: list = []
        left = 0

        def finish():
            frames = list(group)
            try:
                frames += context.decode(None)  # drain what the decoder holds back for reordering
            except av.FFmpegError:
                pass
            context.flush_buffers()
            good = [f for f in frames if not getattr(f, "is_corrupt", False)]
            key = next((f for f in good if f.key_frame), None)
            if key is None:
                return
            t = (key.time if key.time is not None else t0) - t0
            gray = small_gray(_rgb(key), size)
            later = [f for f in good if f is not key]
            partner = small_gray(_rgb(later[-1]), size) if later else None
            samples.add(t, gray, partner)

        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if left == 0 and packet.is_keyframe and tb and float(packet.pts * tb) - t0 >= due:
                group, left = [], 1 + options.partner_packets
                due = float(packet.pts * tb) - t0 + spacing
            if left:
                try:
                    group += context.decode(packet)
                except av.FFmpegError:
                    pass
                left -= 1
                if left == 0:
                    finish()
        if left:
            finish()
    except av.FFmpegError:
        pass  # a damaged tail: the samples so far stand (the main pass reports the damage)
    finally:
        container.close()
    return samples


def _frame_pass(path: Path, options: MotionOptions, size: tuple[int, int], fps: float) -> _Samples:
    """Samples every k-th frame of the model's grid, decoding every frame."""
    import av

    from .video import _open

    samples = _Samples(options)
    step = max(1, options.every_k) / fps
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0 = None
        due = 0.0
        for frame in container.decode(stream):
            t = frame.time
            if t is None:
                continue
            t0 = t if t0 is None else t0
            shown = t - t0 + 0.25 / fps  # as read_frames: timestamps rounded to a coarse base land late
            if shown >= due:
                samples.add(t - t0, small_gray(_rgb(frame), size), None)
                due = (np.floor(shown / step) + 1) * step
    except av.FFmpegError:
        pass
    finally:
        container.close()
    return samples


def motion_labels(video_path, options: MotionOptions = MotionOptions(), fps: float = 30.0) -> list[tuple[float, np.ndarray]]:
    """Frames of a video with the moving animal's box, found without a detector: (time s, (4,) box
    in upright source pixels) for each sample of the first pass where one moving blob stands out.
    For a detector trained on a lab's own videos; check a few by eye, since a moving cable or a
    hand is a moving blob too."""
    return build_motion_model(video_path, options, fps).labels()
