"""A video's crops for the I3D: decode -> mask/ROI -> one square uint8 crop per frame of the model's
time grid, in this process or in worker processes that make several videos' crops at once.

`VideoCrops` is the one place that turns a video into crops, whichever process runs it, so a crop
made in a worker is byte for byte the crop `analyze` makes in its own process.

`CropWorkers` (for `batch`): worker processes, each making one video's crops at a time with the
model's ONNX detector on the CPU (one thread each), and sending them to the process that started
it over a pipe of its own, in chunks of CHUNK_FRAMES crops, then the video's `CropTally` (frame
count, crop boxes, what the ROI tracker and the decoder saw). A worker makes at most AHEAD_CHUNKS
chunks ahead of its reader, so memory grows with the number of workers, not with the length or
number of the videos. This module imports neither torch nor the I3D, so a worker starts light.

Workers are spawned, not forked: the parent holds ONNX Runtime's and torch's threads, which a fork
does not copy. They ignore Ctrl-C (it reaches the whole process group; their parent ends them), a
SIGTERM ends them at once, and on Linux each ends with its parent, even one killed outright.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterator, Optional, TypeVar, Union

import numpy as np

from .errors import InputError, RunError
from .grid import FeatureGrid
from .mask import RigProfile, load_rig_profile
from .motion import MotionOptions
from .roi import Detector, RoiOptions, RoiTracker
from .runtime import cpu_cores, end_with_parent
from .video import TRUNCATED_PREFIX, Frame, VideoInfo, expected_frames, probe_video, read_frames, truncation

CHUNK_FRAMES = 32  # crops per message from a worker (about a second of video)
AHEAD_CHUNKS = 8  # chunks a worker makes ahead of its reader, so it goes on while its reader is busy

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
    """What a video's decoding leaves beside its crops (small: it travels back from a worker)."""

    info: VideoInfo  # what the container says (size upright, fps, duration, rotation)
    n_frames: int  # frames on the model's time grid
    boxes: np.ndarray  # (n_frames, 4) float32 crop squares x0, y0, x1, y1 in upright source pixels
    rat_found_fraction: Optional[float]  # share of frames where the detector saw the rat; None with no ROI
    gaps: list[tuple[float, float]]  # (start_s, end_s) intervals where the rat was lost
    decode_warnings: list[str]  # decoding problems, and `truncated` when set
    truncated: Optional[str]  # a warning when the frames end well before the container's stated duration
    track: np.ndarray  # (n_frames, 6) float32 the animal's box, score and who saw it (roi.Track's rows)
    motion: Optional[dict]  # what the motion model did (RoiTracker.motion_summary); None: not used
    detector_looks: int = 0  # frames the detector looked at (every_k-th, and the last)
    strip: dict = field(default_factory=dict)  # frame -> report.strip_image of it, at the report strip's moments


class VideoCrops:
    """The crops of one video, (S, S, 3) uint8 RGB, one per frame of `grid`, as an iterable;
    `tally()` after the last one. Streams: the frames since the detector's last frame are all
    it holds (and those since the one before, with `detect_ahead`: the detector then works in a
    thread of its own while the next frames decode), beside 40 bytes a frame of crop boxes and
    track rows. With `motion` (and a detector), a first, low-resolution pass over the video models
    its background and motion (motion.py, always PyAV) before the crops are made, and checks the
    detector with it.

    `decoder` (video.DECODERS) and `device`: "pyav" gives numpy crops; "torchcodec" decodes on
    `device` and gives torch uint8 tensors there, cropped where they are (video.crop_square).

    It also keeps small copies of the frames at the report strip's moments (report.strip_rows of
    the frame count the container promises), so the report need not seek back for them; where the
    count turns out otherwise, the report reads the frames it lacks from the video."""

    def __init__(self, path: Path, detector: Optional[Detector], roi_options: RoiOptions, input_size: int,
                 grid: FeatureGrid, profile: Union[RigProfile, str, Path, None] = None,
                 motion: Optional[MotionOptions] = None, decoder: str = "pyav", device: str = "cpu",
                 detect_ahead: bool = False):
        self.path, self.grid = Path(path), grid
        self.decoder, self.device = decoder, device
        self.info = probe_video(self.path)
        mask = None
        if profile is not None and detector is not None:  # a rig mask only sorts the detector's boxes
            profile = profile if isinstance(profile, RigProfile) else load_rig_profile(profile)
            mask = profile.in_pixels(self.info.width, self.info.height)
        self._tracker_args = (detector, input_size, roi_options, mask, grid.fps)
        # detect_ahead: the detector's work overlaps decoding (roi.RoiTracker)
        self.tracker = RoiTracker(*self._tracker_args, detect_ahead=detect_ahead)
        self.motion = motion if detector is not None else None
        self.warnings: list[str] = []
        self.boxes = Rows(4)  # one crop box per frame: 16 bytes a frame
        self.strip: dict[int, np.ndarray] = {}  # frame -> its report.strip_image
        self.track = Rows(6)  # the animal's box, score and who saw it, per frame (roi.Track): 24 bytes a frame
        self.n_frames = 0

    def __iter__(self) -> Iterator[np.ndarray]:  # (S, S, 3) uint8: numpy, or a torch tensor with torchcodec
        if self.motion is not None:
            from .motion import build_motion_model

            model = build_motion_model(self.path, self.motion, self.grid.fps)  # the first, low-resolution pass
            self.tracker = RoiTracker(*self._tracker_args, model, detect_ahead=self.tracker.detect_ahead)
        frames = self._keeping_strip(read_frames(self.path, self.grid.fps, self.warnings, self.decoder, self.device))
        if cpu_cores() > 2:  # decoding gets a thread of its own where there are cores for it
            frames = run_ahead(frames, depth=8)
        for roi_frame in self.tracker.crops(frames):
            self.n_frames += 1
            self.boxes.append(roi_frame.box)
            self.track.append(roi_frame.track_row())
            yield roi_frame.crop

    def _keeping_strip(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        from .report import strip_image, strip_rows

        promised = expected_frames(self.info, self.grid.fps)
        wanted = set(strip_rows(promised)) if promised else set()
        for frame in frames:
            if frame.index in wanted:
                self.strip[frame.index] = strip_image(frame.image)
            yield frame

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
                         decode_warnings=warnings, truncated=truncated, track=self.track.array(),
                         motion=self.tracker.motion_summary(), detector_looks=self.tracker.detect_calls,
                         strip=self.strip)


# --- worker processes -------------------------------------------------------------------------

@dataclass(frozen=True)
class DetectorFile:
    """A detector as a worker process loads it again: its ONNX file and settings, on the CPU."""

    onnx: Path
    imgsz: int
    classes: tuple[str, ...]
    conf: float
    nms_iou: float

    @classmethod
    def of(cls, detector: Detector) -> "DetectorFile":
        return cls(Path(detector.onnx_path), detector.imgsz, tuple(detector.classes), detector.conf,
                   detector.nms_iou)

    def load(self) -> Detector:
        return Detector(self.onnx, self.imgsz, self.classes, device="cpu", conf=self.conf, nms_iou=self.nms_iou,
                        threads=1)


@dataclass(frozen=True)
class CropRecipe:
    """Everything a worker needs to make a video's crops as this process would."""

    input_size: int  # the I3D's input side, pixels
    grid: FeatureGrid
    roi_options: RoiOptions
    detector: Optional[DetectorFile]  # None: whole frames (no ROI)
    mask: Optional[RigProfile] = None  # the rig's arena and mirror regions
    motion: Optional[MotionOptions] = None  # the motion model's options; None: off

    def crops(self, path: Path, detector: Optional[Detector]) -> VideoCrops:
        # decoded with PyAV, whatever the parent's decoder: a worker's crops cross to the parent
        # through a pipe, as numpy arrays (a CUDA tensor cannot; batch with torchcodec has no workers)
        return VideoCrops(path, detector, self.roi_options, self.input_size, self.grid, self.mask, self.motion,
                          decoder="pyav")


def _chunks(crops: VideoCrops, size: int) -> Iterator[np.ndarray]:
    chunk: list[np.ndarray] = []
    for crop in crops:
        chunk.append(crop)
        if len(chunk) == size:
            yield np.stack(chunk)  # (size, S, S, 3) uint8
            chunk = []
    if chunk:
        yield np.stack(chunk)


class _Words(Exception):
    """An exception that does not survive pickling, as its class name and text."""

    def __init__(self, name: str, text: str):
        super().__init__(name, text)
        self.name, self.text = name, text

    def again(self) -> Exception:
        # a plain exception of the same name and text: reported as the original would be
        return type(self.name, (Exception,), {})(self.text)


def _portable(e: Exception) -> Exception:
    """`e`, or where it does not survive pickling, its name and text (_Words)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any failure means: send the words, not the object
        return _Words(type(e).__name__, str(e))


def _work(conn, recipe: CropRecipe) -> None:
    """A worker process: (key, path) in, ("crops", key, chunk)... then ("done", key, tally) or
    ("error", key, exception) out; None ends it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends its workers
    end_with_parent()
    detector: Optional[Detector] = None
    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            key, path = task
            try:
                if detector is None and recipe.detector is not None:
                    detector = recipe.detector.load()
                crops = recipe.crops(path, detector)
                for chunk in run_ahead(_chunks(crops, CHUNK_FRAMES), depth=AHEAD_CHUNKS):
                    conn.send(("crops", key, chunk))
                conn.send(("done", key, crops.tally()))
            except (EOFError, BrokenPipeError, ConnectionResetError):
                raise
            except Exception as e:  # noqa: BLE001 - one bad video never stops the worker
                conn.send(("error", key, _portable(e)))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent has gone
        return


@dataclass
class _Worker:
    process: object  # multiprocessing's SpawnProcess
    conn: object  # this side of its duplex pipe
    key: Optional[Hashable] = None  # the video it is making crops of
    path: Optional[Path] = None


class CropWorkers:
    """Up to `count` worker processes making videos' crops, started as videos come. Use it as a
    context manager: on the way out the workers end (at once when an exception, Ctrl-C or SIGTERM
    is on its way up, else after finishing their video)."""

    def __init__(self, count: int, recipe: CropRecipe):
        import multiprocessing

        if count < 1:
            raise ValueError("CropWorkers needs at least one worker")
        self.count, self.recipe = count, recipe
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def __enter__(self) -> "CropWorkers":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(now=exc_type is not None)
        return False

    @property
    def busy(self) -> int:
        return sum(w.key is not None for w in self._workers)

    def has_room(self) -> bool:
        return self.busy < self.count

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_work, args=(theirs, self.recipe), name="ratscore-crops",
                                        daemon=True)
        process.start()
        theirs.close()  # its end lives in the worker now: a worker that dies reads as EOF here
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def submit(self, key: Hashable, path: Path) -> None:
        """Hand a video to an idle worker (one is started when none is idle and there is room)."""
        for worker in [w for w in self._workers if w.key is None and not w.process.is_alive()]:
            self._drop(worker)
        idle = next((w for w in self._workers if w.key is None), None)
        if idle is None:
            if len(self._workers) >= self.count:
                raise RuntimeError("CropWorkers.submit: every worker is busy")
            idle = self._start()
        idle.key, idle.path = key, Path(path)
        try:
            idle.conn.send((key, str(path)))
        except OSError:  # it died between the look and the send: the reader reports it with its video
            pass

    def receive(self, timeout: Optional[float] = None) -> list[tuple[str, Hashable, object]]:
        """Messages from the busy workers, waiting up to `timeout` (None: until there is one):
        ("crops", key, (n, S, S, 3) uint8), ("done", key, CropTally) or ("error", key, exception).
        A worker that ended unexpectedly gives a RunError for its video, and is replaced when
        needed."""
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.key is not None]
        if not busy:
            return []
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        messages = []
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            try:
                if worker.conn not in ready and not worker.conn.poll():
                    raise EOFError  # ended, and nothing left to read
                kind, key, payload = worker.conn.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=5)
                code = worker.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                messages.append(("error", worker.key, RunError(f"{worker.path}: the worker process making its "
                                                               f"crops ended unexpectedly ({how})")))
                self._drop(worker)
                continue
            if kind in ("done", "error"):
                worker.key = worker.path = None
            if isinstance(payload, _Words):
                payload = payload.again()
            messages.append((kind, key, payload))
        return messages

    def _drop(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        worker.conn.close()
        if worker.process.is_alive():
            worker.process.terminate()
        worker.process.join(timeout=5)

    def close(self, now: bool = False) -> None:
        """End every worker: idle ones are asked to stop, busy ones (or all, `now`) terminated."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.key is None and not now:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            else:
                worker.process.terminate()
        for worker in workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
