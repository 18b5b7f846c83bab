"""Video -> I3D features: decode -> mask/ROI crop -> clips on the model's time grid -> I3D -> (T, D).

The output follows the released RatSeizure features: float32 (T, D), feature i covering the
clip of frames [i * stride, i * stride + clip frames) of the video resampled to the grid's fps
(grid.py; 16 frames, stride 4, 30 fps for the release and the bundled model).

Everything streams: frames are decoded, cropped and dropped one at a time (crops.py); a ring of
the last 16 crops makes the clips, and clips go through the network in batches. Memory is the
network, one batch of clips, a short queue of crops and the (small) features and boxes, whatever
the length of the video. Decoding, detection and cropping run in a background thread, ahead of
I3D (PyAV, OpenCV and ONNX Runtime release the GIL), so the two halves overlap on a multi-core CPU.
With the torchcodec decoder (`FrontEnd.decoder`) frames, crops and clips are torch uint8 tensors
on the run's device, so on a GPU nothing but the detector's small letterboxed input leaves it.

`extract_many` (for `batch`) makes several videos' crops at once in worker processes and runs
one I3D here over all of them. On the CPU every clip goes through the I3D in the very batch it
would have in `extract_features` (the same clips of the same video, batch_size at a time): ONNX
Runtime on more than one thread can give a row that differs in its last bits with the batch's
size, so only this keeps the features identical to one video at a time. On a GPU the clips of
several videos share larger batches (MIXED_BATCHES x batch_size), where size pays.

I3D runs in PyTorch (weights in pytorch-i3d's format) or ONNX Runtime (a model folder's
`i3d.onnx`); both give the same features to within float rounding.
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Optional, Union

import numpy as np

from .errors import InputError, RunError
from .i3d import I3DConfig, InceptionI3d, config_from_state_dict
from .mask import RigProfile, load_rig_profile
from .motion import MOTION_DEFAULT, MotionOptions
from .crops import CropTally, VideoCrops, run_ahead
from .roi import Detector, RoiOptions, Track
from .runtime import cores_beside_one_thread, keep_freed_memory, onnx_session, resolve_device, resolve_precision
from .grid import DEFAULT_GRID, FeatureGrid
from .video import VIDEO_SUFFIXES, expected_frames, probe_video, resolve_decoder, stack_images



@dataclass
class FeatureResult:
    video: str  # the video's id (file stem)
    features: np.ndarray  # (T, D) float32; feature i covers frames [i * stride, i * stride + clip) at fps
    grid: FeatureGrid  # the model's time grid (fps, clip frames, stride)
    duration_s: float  # n_frames / fps
    n_frames: int  # frames on the model's time grid
    source_fps: float  # the container's frame rate
    rat_found_fraction: Optional[float]  # share of frames where the detector saw the rat; None with no ROI
    gaps: list[tuple[float, float]]  # (start_s, end_s) intervals where the rat was lost (last box held)
    boxes: np.ndarray  # (n_frames, 4) float32 crop squares x0, y0, x1, y1 in upright source pixels
    decode_warnings: list[str] = field(default_factory=list)  # decoding problems, and `truncated` when set
    truncated: Optional[str] = None  # a warning when the frames end well before the container's stated duration
    width: int = 0  # frame size in source pixels, upright (after the rotation tag); 0: unknown
    height: int = 0
    rotation: int = 0  # degrees the container's rotation tag turned the frames to make them upright
    track: Optional[Track] = None  # the animal's box at every frame (track.csv); None: not kept
    motion: Optional[dict] = None  # what the motion model did (RoiTracker.motion_summary); None: not used
    detector_looks: int = 0  # frames the detector looked at; the track's SEEN_DETECTOR rows are those it saw the animal in
    strip: dict = field(default_factory=dict)  # frame -> the report strip's small copy of it (CropTally.strip)

    @property
    def fps(self) -> float:
        """The model's frame rate."""
        return self.grid.fps

    def feature_time(self, i: int) -> float:
        """Centre time (s) of feature i."""
        return float(self.grid.feature_time(i))


# --- I3D weights ----------------------------------------------------------------------------

def load_i3d_weights(weights, input_size: int = 224) -> tuple[I3DConfig, dict]:
    """(config, state_dict) from a pytorch-i3d state_dict file or dict (also our own
    {"config", "state_dict"} checkpoints and DataParallel "module." prefixes). Weights load
    with weights_only=True: no code in the file runs. Only the feature layers are kept."""
    where = str(weights) if isinstance(weights, (str, Path)) else "I3D weights"
    config = None
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"{path}: no such I3D weights file")
        from .checkpoint import load_failure, torch_load_plain

        try:
            weights = torch_load_plain(path)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means the file is not plain weights
            needs_code, reason = load_failure(path, e)
            if needs_code:
                raise InputError(f"{path}: not a PyTorch weights file that loads safely: it needs code to load, "
                                 f"not only weights ({reason})") from None
            raise InputError(f"{path}: not a PyTorch weights file ({reason})") from None
    if isinstance(weights, dict) and "state_dict" in weights and isinstance(weights["state_dict"], dict):
        if isinstance(weights.get("config"), dict):
            try:
                config = I3DConfig(**{**weights["config"], "num_classes": 0})
            except TypeError:
                raise InputError(f"{where}: the checkpoint's I3D config is not understood") from None
        weights = weights["state_dict"]
    if not isinstance(weights, dict):
        raise InputError(f"{where}: expected a state_dict (a mapping of names to tensors)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}
    try:
        inferred = config_from_state_dict(state, input_size)
    except KeyError:
        raise InputError(f"{where}: not a pytorch-i3d InceptionI3d state_dict (no Conv3d_1a_7x7.conv3d.weight)") from None
    config = config or I3DConfig(width=inferred.width, input_size=input_size)
    expected = InceptionI3d(config).state_dict()
    for key, value in expected.items():
        if key not in state:
            raise InputError(f"{where}: missing I3D weight {key} (not a pytorch-i3d InceptionI3d state_dict?)")
        got = getattr(state[key], "shape", None)
        if got is None or tuple(got) != tuple(value.shape):
            raise InputError(f"{where}: I3D weight {key} has shape {tuple(got) if got is not None else '?'}, "
                             f"expected {tuple(value.shape)} (width {config.width:g})")
    return config, {k: state[k] for k in expected}


def build_i3d(config: I3DConfig, state_dict: dict) -> InceptionI3d:
    model = InceptionI3d(replace(config, num_classes=0))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


class ClipEncoder:
    """uint8 clips (B, 16, S, S, 3) RGB -> features (B, D) float32, in PyTorch or ONNX Runtime.

    In PyTorch the network runs in `precision` ("fp32", "bf16" or "fp16", runtime.resolve_precision):
    the reduced ones under autocast, so the convolutions take bf16/fp16 while the pooling and the
    output stay fp32. The weights and clips are channels-last (NDHWC: the layout cuDNN's fast 3-D
    convolution kernels read, and on the CPU oneDNN's, where it halves the bundled I3D's time
    against ONNX Runtime's; benchmarks/README.md). On a GPU cuDNN picks its kernels by timing them
    on the first batch of each shape (cudnn.benchmark): batches of one size repeat over a whole
    study. On the CPU the network takes all cores but one, as the ONNX form does: one core stays
    with the thread that decodes and crops ahead of the I3D (runtime.py).
    """

    def __init__(self, input_size: int, feature_dim: int, model: Optional[InceptionI3d] = None,
                 onnx_path: Optional[Path] = None, device: str = "cpu", precision: str = "fp32"):
        self.input_size, self.feature_dim, self.device = input_size, feature_dim, device
        self.model, self.session = model, None
        self.precision = resolve_precision(precision, device)
        self.threads = cores_beside_one_thread() if device == "cpu" else 0  # torch's, for the CPU path
        if device == "cpu":
            keep_freed_memory()  # its batches reuse one another's buffers instead of paging them in again
        if model is not None:
            import torch

            self.model = model.to(device).eval().to(memory_format=torch.channels_last_3d)
            if device == "cuda":
                torch.backends.cudnn.benchmark = True
        elif self.precision != "fp32":
            raise InputError(f"--precision {self.precision}: the I3D's ONNX form runs in fp32 only; "
                             f"its PyTorch weights (i3d.pt) are needed for {self.precision}")
        elif onnx_path is not None:
            # one core stays with the thread that decodes and crops ahead of the I3D (runtime.py)
            self.session = onnx_session(onnx_path, device, threads=cores_beside_one_thread(), what="I3D ONNX model")
        else:
            raise ValueError("ClipEncoder needs a model or an ONNX file")

    @property
    def backend(self) -> str:
        return "torch" if self.model is not None else "onnx"

    @property
    def on_gpu(self) -> bool:
        if self.session is not None:
            return "CUDAExecutionProvider" in self.session.get_providers()
        return self.device == "cuda"

    @staticmethod
    def normalise(clips: np.ndarray) -> np.ndarray:
        # (B, T, S, S, 3) uint8 -> (B, 3, T, S, S) float32 in [-1, 1]
        x = clips.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
        return np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))

    def __call__(self, clips) -> np.ndarray:
        """`clips`: a numpy array, or a torch uint8 tensor on any device (crops made on a GPU)."""
        import torch

        if self.session is not None:
            if isinstance(clips, torch.Tensor):
                clips = clips.cpu().numpy()
            return self.session.run(None, {"clips": self.normalise(clips)})[0].astype(np.float32)
        with torch.inference_mode(), _torch_threads(self.threads):
            # the same arithmetic as normalise, on the model's device: a GPU gets a quarter of the
            # bytes (uint8, not float32) and the CPU is spared the conversion
            if not isinstance(clips, torch.Tensor):
                clips = torch.from_numpy(np.ascontiguousarray(clips))
            x = clips.to(self.device, non_blocking=True)
            x = (x.float() * (2.0 / 255.0) - 1.0).permute(0, 4, 1, 2, 3)  # (B, 3, T, S, S)
            x = x.contiguous(memory_format=torch.channels_last_3d)  # strides of (B, T, S, S, 3): no copy
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
            with torch.autocast(device_type=self.device, dtype=dtype) if dtype else nullcontext():
                return self.model(x).float().cpu().numpy()


@contextmanager
def _torch_threads(threads: int):
    """torch's CPU threads set to `threads` (0: left as they are) for a block, then put back: the
    setting is the process's, and the I3D's share of the cores is not everyone's."""
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads and threads != before:
            torch.set_num_threads(before)


# --- the front end: what a model folder (or a weights file) provides -------------------------

@dataclass
class FrontEnd:
    encoder: ClipEncoder  # the I3D
    detector: Optional[Detector]  # None: whole frames (no ROI)
    roi_options: RoiOptions  # how the detector's boxes become crops
    grid: FeatureGrid = DEFAULT_GRID  # frame rate, clip length and stride of the features
    batch_size: int = 8  # clips per network call
    motion: Optional[MotionOptions] = None  # the motion model's first pass checks the detector; None: off
    decoder: str = "pyav"  # "pyav" (numpy frames) or "torchcodec" (torch frames on decode_device); never "auto"
    decode_device: str = "cpu"  # where torchcodec decodes and crops: the run's device

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim


def front_end_model(model_dir=None):
    """The model whose front end extraction uses: `model_dir` (a folder or a loaded `model.Model`),
    else the bundled model when it has a front end, else None (I3D weights given on their own)."""
    from .model import BUNDLED_MODEL_DIR, MANIFEST_NAME, Model, load_model

    if isinstance(model_dir, Model):
        return model_dir
    if model_dir is not None:
        return load_model(model_dir)
    if (BUNDLED_MODEL_DIR / MANIFEST_NAME).is_file():
        bundled = load_model(BUNDLED_MODEL_DIR)
        return bundled if bundled.has_front_end else None
    return None


def load_front_end(model_dir=None, i3d_weights=None, device: str = "auto", no_roi: bool = False,
                   backend: str = "auto", batch_size: int = 8, input_size: int = 224,
                   motion: bool = MOTION_DEFAULT, precision: str = "auto", decoder: str = "auto") -> FrontEnd:
    """The I3D and ROI detector for extraction, on the model's time grid.

    `i3d_weights` (a pytorch-i3d state_dict file) overrides the model folder's I3D and runs in
    PyTorch. A model folder's I3D runs in PyTorch when the folder has its weights (i3d.pt), else in
    ONNX Runtime (`backend` forces one): on the CPU PyTorch's oneDNN convolutions run it in about
    half ONNX Runtime's time (ClipEncoder), and on a GPU torch's convolutions need nothing beyond
    torch, where ONNX Runtime's CUDA provider needs its own CUDA libraries. Without
    `no_roi` the folder must hold a detector; `motion` checks it with the recording's motion model
    (motion.py; nothing to check without a detector). `precision` is the I3D's arithmetic
    (ClipEncoder): bf16 or fp16 need the PyTorch form; "auto" is fp16 where the I3D runs in PyTorch
    on a GPU, else fp32. `decoder` (video.DECODERS): "auto" is PyAV; "torchcodec" decodes on the
    run's device, and is an InputError where it cannot (before any model loads).
    """
    device = resolve_device(device)
    decoder = resolve_decoder(decoder, device)
    wanted = resolve_precision(precision, device)
    model = front_end_model(model_dir)
    if model is not None and not model.has_front_end and i3d_weights is None:
        raise InputError(f"{model.path}: the model has no I3D front end (it scores features only); "
                         f"give --i3d-weights FILE to extract features")
    grid = model.grid if model is not None else DEFAULT_GRID
    if i3d_weights is not None:
        config, state = load_i3d_weights(i3d_weights, input_size)
        network = build_i3d(config, state)
        encoder = ClipEncoder(config.input_size, network.feature_dim, model=network, device=device, precision=wanted)
    elif model is not None:
        spec = model.i3d
        reduced_asked = precision not in ("auto", "fp32")  # bf16/fp16 by name: only PyTorch has them
        if backend == "torch" or (backend == "auto" and (spec.weights or reduced_asked or not spec.onnx)):
            if not spec.weights:
                raise InputError(f"{model.path}: the model's I3D has no PyTorch weights (i3d.pt); use the ONNX backend"
                                 + (" and --precision fp32" if reduced_asked else ""))
            config, state = load_i3d_weights(model.file(spec.weights), spec.input_size)
            encoder = ClipEncoder(spec.input_size, spec.feature_dim, model=build_i3d(config, state), device=device,
                                  precision=wanted)
        else:  # the ONNX form is fp32: "auto" settles there
            encoder = ClipEncoder(spec.input_size, spec.feature_dim, onnx_path=model.file(spec.onnx), device=device,
                                  precision="fp32" if precision == "auto" else wanted)
    else:
        raise InputError("no I3D to extract features with: give --model DIR (a model with a front end) "
                         "or --i3d-weights FILE (pytorch-i3d weights)")
    detector = None
    options = RoiOptions()
    if not no_roi:
        spec = model.detector if model is not None else None
        if spec is None:
            where = f"{model.path}: the model has" if model is not None else "there is"
            raise InputError(f"{where} no ROI detector; pass --no-roi to use whole frames")
        options = RoiOptions(every_k=spec.every_k, conf=spec.conf, margin=spec.margin, rat_class=spec.rat_class)
        detector = Detector(model.file(spec.onnx), spec.imgsz, spec.classes, device=device, conf=options.conf)
    motion_options = MotionOptions() if motion and detector is not None else None
    return FrontEnd(encoder, detector, options, grid, batch_size, motion_options, decoder,
                    device if decoder == "torchcodec" else "cpu")


# --- extraction -------------------------------------------------------------------------------

def clips_from(crops: Iterator[np.ndarray], grid: FeatureGrid = DEFAULT_GRID) -> Iterator[np.ndarray]:
    """Windows of grid.num_frames crops every grid.feat_stride crops: (clip frames, S, S, 3) each,
    of the crops' kind (numpy arrays, or torch tensors on their device)."""
    ring: deque = deque(maxlen=grid.num_frames)
    for n, crop in enumerate(crops, start=1):
        ring.append(crop)
        if grid.clip_ends(n):
            yield stack_images(ring)


def _progress(enabled: bool, name: str, total: Optional[int]):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("frames"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def extract_features(video_path, model_dir: Union[str, Path, FrontEnd, None] = None, device: str = "auto",
                     mask_profile: Union[str, Path, RigProfile, None] = None, no_roi: bool = False,
                     i3d_weights=None, progress: bool = True, batch_size: int = 8,
                     decoder: str = "auto",
                     on_features: Optional[Callable[[np.ndarray], None]] = None) -> FeatureResult:
    """I3D features of one video (see the module doc for the layout).

    `model_dir` is a model folder or an already loaded FrontEnd (reuse it across videos; its own
    decoder then decodes). `on_features` is given each new (B, D) run of features as it is made
    (the localizer scores chunks while the video decodes). InputError for an unreadable video or
    one shorter than one clip.
    """
    path = Path(video_path)
    if isinstance(model_dir, FrontEnd):
        front = model_dir
    else:
        front = load_front_end(model_dir, i3d_weights, device, no_roi, batch_size=batch_size, decoder=decoder)
    stream = VideoCrops(path, front.detector, front.roi_options, front.input_size, front.grid, mask_profile,
                        front.motion, front.decoder, front.decode_device, detect_ahead=True)
    total = expected_frames(stream.info, front.grid.fps)
    with _progress(progress, path.name, total) as bar:
        task = bar.add_task(path.name[:40], total=total) if bar is not None else None

        def crops():
            for crop in stream:
                if bar is not None and stream.n_frames % 8 == 0:
                    bar.update(task, completed=stream.n_frames)
                yield crop

        features = encode_crops(front, run_ahead(crops()), path, on_features)
    return feature_result(path, front.grid, stream.tally(), features)


def encode_crops(front: FrontEnd, crops: Iterator, path: Path,
                 on_features: Optional[Callable[[np.ndarray], None]] = None) -> list[np.ndarray]:
    """The I3D's features of a video's crops, a (B, D) array per network call: the grid's clips,
    front.batch_size at a time (the last call takes what is left), each also handed to
    `on_features` as it is made."""
    features: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for clip in clips_from(crops, front.grid):
        batch.append(clip)
        if len(batch) == front.batch_size:
            features.append(_encode(front, batch, path))
            batch = []
            if on_features is not None:
                on_features(features[-1])
    if batch:
        features.append(_encode(front, batch, path))
        if on_features is not None:
            on_features(features[-1])
    return features


def feature_result(path: Path, grid: FeatureGrid, tally: CropTally, features: list[np.ndarray]) -> FeatureResult:
    """A video's FeatureResult from its crops' tally and its I3D features, batch by batch."""
    feats = np.concatenate(features).astype(np.float32, copy=False)
    info = tally.info
    return FeatureResult(video=Path(path).stem, features=feats, grid=grid, duration_s=tally.n_frames / grid.fps,
                         n_frames=tally.n_frames, source_fps=info.source_fps,
                         rat_found_fraction=tally.rat_found_fraction, gaps=tally.gaps, boxes=tally.boxes,
                         decode_warnings=tally.decode_warnings, truncated=tally.truncated,
                         width=info.width, height=info.height, rotation=info.rotation,
                         track=Track(grid.fps, info.width, info.height, tally.track), motion=tally.motion,
                         detector_looks=tally.detector_looks, strip=tally.strip)


MIXED_BATCHES = 4  # on a GPU, clips of several videos share I3D calls of MIXED_BATCHES x batch_size clips


@dataclass(eq=False)
class _Video:
    """A video of extract_many on its way: crops in, clips, features out."""

    key: Hashable
    path: Path
    grid: FeatureGrid
    ring: deque  # the last grid.num_frames crops
    n_crops: int = 0
    group: list = field(default_factory=list)  # its clips waiting for the I3D (per-video batches)
    parts: list = field(default_factory=list)  # (B, D) features, in clip order
    waiting: int = 0  # its clips waiting in a shared batch (mixed batches)
    tally: Optional[CropTally] = None  # set when its crops are all in
    error: Optional[Exception] = None  # what its extraction raised
    task: Optional[int] = None  # its progress bar

    def clips(self, crops: np.ndarray) -> Iterator[np.ndarray]:
        """The clips that the crops (n, S, S, 3) complete, as clips_from makes them."""
        for crop in crops:
            self.ring.append(crop)
            self.n_crops += 1
            if self.grid.clip_ends(self.n_crops):
                yield np.stack(self.ring)

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.tally is not None and not self.waiting)


def extract_many(jobs: Iterable[tuple[Hashable, Optional[Path]]], front: FrontEnd, workers: int,
                 mask_profile: Union[str, Path, RigProfile, None] = None,
                 progress: bool = False) -> Iterator[tuple[Hashable, Union[FeatureResult, Exception, None]]]:
    """extract_features for many videos, their crops made by `workers` worker processes (crops.py)
    and their clips run through `front`'s I3D here.

    `jobs`: (key, video path), or (key, None) for a place in the order without a video; read
    as workers become free. The workers decode with PyAV whatever `front.decoder` says (their crops
    cross a pipe as numpy arrays): `batch` with torchcodec runs without them. Yields (key, outcome)
    in the order of `jobs`: the video's FeatureResult, the exception extract_features would have
    raised for it, or None. At most
    2 x `workers` videos are between `jobs` and the caller at once; closing this generator (or an
    exception, Ctrl-C, SIGTERM) ends the workers.
    """
    import itertools

    from .crops import CropRecipe, CropWorkers, DetectorFile

    profile = mask_profile if front.detector is not None else None
    if profile is not None and not isinstance(profile, RigProfile):
        profile = load_rig_profile(profile)
    recipe = CropRecipe(front.input_size, front.grid, front.roi_options,
                        DetectorFile.of(front.detector) if front.detector is not None else None, profile,
                        front.motion)
    jobs = iter(jobs)
    mixed = front.encoder.on_gpu
    size = front.batch_size * (MIXED_BATCHES if mixed else 1)
    shared: list[tuple[_Video, np.ndarray]] = []  # mixed batches: clips of any video waiting for the I3D
    order: deque = deque()  # in job order: a _Video, or (key, None) for a job without a video
    flying: dict[int, _Video] = {}  # videos a worker is on, by worker key
    ids = itertools.count()
    videos_held = 0
    more = True

    def encode_group(video: _Video) -> None:
        try:
            video.parts.append(_encode(front, video.group, video.path))
        except Exception as e:  # noqa: BLE001 - the video's failure, as in extract_features
            video.error = e
        video.group = []

    def encode_shared() -> None:
        batch = list(shared)
        shared.clear()
        for video, _ in batch:
            video.waiting -= 1
        try:
            rows = _encode(front, [clip for _, clip in batch], batch[0][0].path)
        except Exception as e:  # noqa: BLE001 - the failure of every video in the batch
            for video, _ in batch:
                video.error = video.error or e
            return
        start = 0
        for video, run in itertools.groupby(batch, key=lambda item: item[0]):
            n = len(list(run))
            video.parts.append(rows[start:start + n])
            start += n

    def take(video: _Video, crops: np.ndarray) -> None:
        for clip in video.clips(crops):
            if mixed:
                shared.append((video, clip))
                video.waiting += 1
                if len(shared) >= size:
                    encode_shared()
            else:
                video.group.append(clip)
                if len(video.group) == size:
                    encode_group(video)
            if video.error is not None:
                return

    def fail(video: _Video, error: Exception) -> None:
        video.error = video.error or error
        if video.waiting:
            shared[:] = [(v, clip) for v, clip in shared if v is not video]
            video.waiting = 0

    with CropWorkers(max(1, workers), recipe) as pool, _progress(progress, "", None) as bar:
        while True:
            while more and pool.has_room() and videos_held < 2 * max(1, workers):
                try:
                    key, path = next(jobs)
                except StopIteration:
                    more = False
                    break
                if path is None:
                    order.append((key, None))
                    continue
                video = _Video(key, Path(path), front.grid, deque(maxlen=front.grid.num_frames))
                worker_key = next(ids)
                flying[worker_key] = video
                order.append(video)
                videos_held += 1
                pool.submit(worker_key, video.path)
                if bar is not None:
                    video.task = bar.add_task(video.path.name[:40], total=_frames_promised(video.path, front.grid))
            while order:
                head = order[0]
                if not isinstance(head, _Video):
                    order.popleft()
                    yield head
                    continue
                if head.error is None and head.tally is not None and head.waiting:
                    encode_shared()  # its last clips: the I3D runs on what waits, whatever its size
                if not head.finished:
                    break
                order.popleft()
                videos_held -= 1
                if bar is not None:
                    bar.remove_task(head.task)
                outcome: Union[FeatureResult, Exception]
                if head.error is not None:
                    outcome = head.error
                else:
                    try:
                        outcome = feature_result(head.path, front.grid, head.tally, head.parts)
                    except Exception as e:  # noqa: BLE001 - the video's failure
                        outcome = e
                yield head.key, outcome
            if not order and not more:
                return
            for kind, worker_key, payload in pool.receive():
                video = flying.get(worker_key)
                if video is None:
                    continue
                if kind == "crops":
                    if video.error is None:
                        take(video, payload)
                        if bar is not None:
                            bar.update(video.task, completed=video.n_crops)
                    continue
                del flying[worker_key]
                if kind == "error":
                    fail(video, payload)
                elif video.error is None:
                    if video.group:
                        encode_group(video)  # its last batch, smaller than batch_size as in extract_features
                    video.tally = payload


def _frames_promised(path: Path, grid: FeatureGrid) -> Optional[int]:
    try:
        return expected_frames(probe_video(path), grid.fps)
    except Exception:  # noqa: BLE001 - a progress bar without a total
        return None


def _encode(front: FrontEnd, batch: list[np.ndarray], path: Path) -> np.ndarray:
    try:
        return front.encoder(stack_images(batch))  # (B, 16, S, S, 3) uint8, numpy or torch -> (B, D)
    except MemoryError:
        raise RunError(f"{path}: out of memory running I3D on a batch of {len(batch)} clips; lower the batch size") from None


@dataclass
class FolderScan:
    """What a folder holds, as `extract` and `batch` see it; paths relative to the folder, sorted."""

    videos: list[Path] = field(default_factory=list)  # regular, readable files named like videos
    unusable: list[tuple[Path, str]] = field(default_factory=list)  # named like videos, cannot be read: (path, why)
    other_files: int = 0  # files not named like videos (hidden files included)
    folders_not_searched: int = 0  # sub-folders without `recursive`, and links to folders (never followed)

    def check_names(self, folder: Path) -> None:
        """InputError when two videos of one folder share a stem: every output is keyed by it."""
        seen: dict[tuple[Path, str], Path] = {}
        for rel in self.videos:
            other = seen.setdefault((rel.parent, rel.stem), rel)
            if other != rel:
                raise InputError(f"{Path(folder) / other.parent}: {other.name} and {rel.name} share the name "
                                 f"{rel.stem!r}, and every output is named after it; rename one of them")


def _entry_problem(path: Path, is_dir_ok: bool, try_read: bool) -> tuple[str, Optional[str]]:
    """('file' | 'folder', why it cannot be read as a video or None) of one folder entry; a link to a
    folder counts as not readable (never followed). Path.is_file() and friends hide a link loop or
    raise on it, depending on the Python version, hence lstat/stat here."""
    import errno
    import os
    import stat

    try:
        own = os.lstat(path)
    except OSError as e:
        return "file", f"cannot read ({e.strerror or e})"
    link = stat.S_ISLNK(own.st_mode)
    try:
        st = os.stat(path) if link else own
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "file", "a symbolic link that loops back on itself"
        if e.errno == errno.ENOENT:
            return "file", "a broken symbolic link (its target does not exist)"
        return "file", f"cannot follow its symbolic link ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        if is_dir_ok and not link:
            return "folder", None
        return "folder", "a link to a folder (not followed)" if link else "a folder, not a video file"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
        return "file", f"not a regular file ({kind})"
    if try_read:
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError as e:
            return "file", f"cannot read ({e.strerror or e})"
    return "file", None


def scan_folder(folder: Path, recursive: bool = False, pattern: Optional[str] = None) -> FolderScan:
    """Every entry of `folder` (and its sub-folders with `recursive`; links to folders are never
    followed, so a link loop cannot trap the walk): videos to read, entries named like videos that
    cannot be read (listed, never skipped silently), and a count of everything else. A video is a
    file whose name has a video extension (video.VIDEO_SUFFIXES), or matches `pattern` when given;
    hidden files (".name") are never videos."""
    import fnmatch
    import os

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")

    def named_like_video(name: str) -> bool:
        if pattern:
            return fnmatch.fnmatch(name.lower(), pattern.lower())
        return Path(name).suffix.lower() in VIDEO_SUFFIXES

    scan = FolderScan()

    def walk(rel: Path) -> None:
        try:
            names = sorted(os.listdir(folder / rel))
        except OSError as e:
            if rel == Path():
                raise InputError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
            scan.unusable.append((rel, f"a sub-folder that cannot be listed ({e.strerror or e})"))
            return
        for name in names:
            entry = rel / name
            video_like = named_like_video(name) and not name.startswith(".")
            kind, problem = _entry_problem(folder / entry, is_dir_ok=recursive, try_read=video_like)
            if kind == "folder" and problem is None:
                walk(entry)
            elif video_like and problem is None:
                scan.videos.append(entry)
            elif video_like:
                scan.unusable.append((entry, problem))
            elif kind == "folder":
                scan.folders_not_searched += 1
            else:
                scan.other_files += 1

    walk(Path())
    scan.videos.sort()
    scan.unusable.sort()
    return scan


def video_files(source: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The videos to extract: the file itself, or every video file in a folder (sorted, not
    recursive), and the folder's entries named like videos that cannot be read, with the reason.
    InputError (before any model loads) when two of the folder's videos share a stem."""
    from .video import check_video_file

    source = Path(source)
    if source.is_file():
        return [source], []
    if source.is_dir():
        scan = scan_folder(source)
        scan.check_names(source)
        if not scan.videos and not scan.unusable:
            raise InputError(f"{source}: no video files in this folder")
        return [source / p for p in scan.videos], [(source / p, why) for p, why in scan.unusable]
    if source.exists():
        check_video_file(source)  # a pipe or a device: one line saying what it is
    raise InputError(f"{source}: no such file or folder")


def extract_to_folder(source, out_dir, model_dir=None, device: str = "auto", mask_profile=None,
                      no_roi: bool = False, i3d_weights=None, progress: bool = True,
                      motion: bool = MOTION_DEFAULT, precision: str = "auto",
                      decoder: str = "auto") -> list[tuple[Path, FeatureResult]]:
    """`ratscore extract`: <out_dir>/<video_id>.npy and <video_id>.track.csv for each video. Bad
    videos are InputErrors naming the video; one model load serves every video."""
    from .files import atomic_write, check_output_folder, recover
    from .writers import TrackWriter, write_track_csv

    videos, unusable = video_files(Path(source))
    check_output_folder(out_dir)
    recover(out_dir)  # temporary files a killed run left
    total = len(videos) + len(unusable)
    front = load_front_end(model_dir, i3d_weights, device, no_roi, motion=motion, precision=precision,
                           decoder=decoder)
    profile = load_rig_profile(mask_profile) if mask_profile is not None else None
    written = []
    failures = {path: f"{path}: {why}" for path, why in unusable}  # never skipped without a word
    for video in videos:
        try:
            result = extract_features(video, front, device, profile, no_roi, progress=progress)
        except InputError as e:
            if total == 1:
                raise
            failures[video] = str(e)  # one bad recording does not stop a folder
            continue
        target = Path(out_dir) / f"{result.video}.npy"
        atomic_write(target, lambda f: np.save(f, result.features))
        atomic_write(TrackWriter().path(out_dir, result.video), lambda f: write_track_csv(result.track, f))
        written.append((target, result))
    if failures:
        first = failures[min(failures)]
        raise RunError(f"{len(failures)} of {total} videos failed (first: {first})")
    return written


# --- feature files (a folder of <video_id>.npy) --------------------------------------------

def load_features(features_dir: str | Path, video_ids, input_dim: Optional[int] = None) -> dict[str, np.ndarray]:
    """video_id -> (T, D) float32 features; InputError on missing files, a wrong dimension or bad values."""
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: no such features folder")
    import os

    video_ids = list(video_ids)
    inside = os.path.normpath(features_dir)
    for v in video_ids:
        # by name, not through links: a folder of links to feature files elsewhere is fine, an id
        # that climbs out of the folder ("../x", "/abs/x", "a/b") is not
        path = os.path.normpath(os.path.join(features_dir, f"{v}.npy"))
        if not isinstance(v, str) or not v or os.path.dirname(path) != inside or Path(path).name != f"{v}.npy":
            raise InputError(f"{features_dir}: video id {v!r} does not name a file inside the features folder")
    missing = [v for v in video_ids if not (features_dir / f"{v}.npy").is_file()]
    if missing:
        shown = ", ".join(f"{v}.npy" for v in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{features_dir}: {len(missing)} feature file(s) the annotations list are missing: {shown}")
    out = {}
    for v in video_ids:
        out[v] = check_features(_load_npy(features_dir / f"{v}.npy"), f"{features_dir / (v + '.npy')}", input_dim)
    return out


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npy feature file ({str(e).splitlines()[0]})") from None


def check_features(features, where: str, input_dim: Optional[int] = None) -> np.ndarray:
    """Validated (T, D) float32 features of one video."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] < 1:
        raise InputError(f"{where}: features must be a (T, D) array with T >= 1, got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        raise InputError(f"{where}: features must be floating point, got {features.dtype}")
    if input_dim is not None and features.shape[1] != input_dim:
        raise InputError(f"{where}: features have dimension {features.shape[1]}, the model expects {input_dim}")
    features = features.astype(np.float32, copy=False)
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise InputError(f"{where}: features hold NaN or infinite values ({bad} of {features.shape[0]} steps)")
    return features


# --- the features of annotated videos, cached per front end (train localizer --videos, benchmark --videos)

def find_annotated_videos(folder: str | Path, video_ids) -> dict[str, Path]:
    """video id -> its file in `folder` (not searched below it): the video whose name without the
    extension is the id, with any of video.VIDEO_SUFFIXES. InputError, before anything is decoded,
    for a folder that is not there, annotated videos without a file (the first few named), or two
    files of one annotated id."""
    folder = Path(folder)
    scan = scan_folder(folder)
    by_stem: dict[str, list[Path]] = {}
    for rel in scan.videos:
        by_stem.setdefault(rel.stem, []).append(folder / rel)
    ids = list(dict.fromkeys(video_ids))
    for vid in ids:
        found = by_stem.get(vid, [])
        if len(found) > 1:
            raise InputError(f"{folder}: {found[0].name} and {found[1].name} are both video {vid!r} of the "
                             f"annotations; move or rename one of them")
    missing = [vid for vid in ids if vid not in by_stem]
    if missing:
        unusable = {p.stem: why for p, why in scan.unusable}
        shown = ", ".join(f"{v} ({unusable[v]})" if v in unusable else v for v in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"{folder}: no video file for {len(missing)} of the {len(ids)} annotated videos: "
                         f"{shown}{more} (looked for <video id> with a video extension such as .mp4 or .avi)")
    return {vid: by_stem[vid][0] for vid in ids}


def front_end_key(model_dir=None, i3d_weights=None, no_roi: bool = False, mask_profile=None,
                  motion: bool = MOTION_DEFAULT) -> str:
    """A short hash of everything that makes a video's features, for the same arguments as
    load_front_end: the model folder's front-end settings and the bytes of its files (detector, I3D)
    or of the I3D weights file, the time grid, whole frames or not, the motion model's options
    (with a detector) and the rig mask file. Features
    cached under one key are those this front end gives, to within float rounding between the
    I3D's ONNX and PyTorch forms."""
    import hashlib
    import json

    model = front_end_model(model_dir)
    front = (model.manifest.get("front_end") or {}) if model is not None else {}
    grid = model.grid if model is not None else DEFAULT_GRID
    parts: dict = {"grid": [grid.fps, grid.feat_stride, grid.num_frames], "no_roi": bool(no_roi)}
    files: list[Path] = []
    if i3d_weights is not None:
        parts["i3d"] = "weights file"
        files.append(Path(i3d_weights))
    elif model is not None and model.i3d is not None:
        parts["i3d"] = front.get("i3d")
        files += [model.file(name) for name in (model.i3d.onnx, model.i3d.weights) if name]
    if not no_roi and model is not None and model.detector is not None:
        parts["detector"] = front.get("detector")
        files.append(model.file(model.detector.onnx))
        if motion:  # only when on: keys made before the motion model existed stay as they were without it
            from dataclasses import asdict

            parts["motion"] = asdict(MotionOptions())
    if mask_profile is not None:
        parts["mask"] = True
        files.append(Path(mask_profile))
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in files:
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return digest.hexdigest()[:16]


@dataclass
class CachedFeatures:
    folder: Path  # <cache>/<front end key>/: a features folder holding <video_id>.npy for every video asked for
    extracted: list[str] = field(default_factory=list)  # ids whose features were made in this call
    reused: list[str] = field(default_factory=list)  # ids whose features were already in the cache


def cached_features(videos: dict[str, Path], cache_dir: str | Path, front: FrontEnd, key: str, fingerprint,
                    device: str = "auto", mask_profile=None, log=None, progress: bool = False,
                    extract: Optional[Callable[[str, Path], np.ndarray]] = None) -> CachedFeatures:
    """The features of each video (id -> file) as <cache_dir>/<key>/<id>.npy, extracted with `front`
    (whose front_end_key is `key`) only where the cache has none for this very file. `extract(id,
    path)`: (T, D) features made another way (benchmarks/bench_true_boxes.py: from the renderer's
    true boxes), cached the same way.

    Beside each .npy a stamp (<id>.json) holds `fingerprint(video)` (pipeline.video_fingerprint): a
    video that changed, or another file of the same name, is extracted again. The .npy is written
    whole or not at all and its stamp after it (an old stamp is removed first), so an interrupted
    run resumes with the next video. `log` gets one line per video."""
    import json
    import time

    from .files import atomic_write, atomic_write_text

    say = log or (lambda line: None)
    folder = Path(cache_dir) / key
    profile = mask_profile
    if mask_profile is not None and not isinstance(mask_profile, RigProfile):
        profile = load_rig_profile(mask_profile)
    out = CachedFeatures(folder)
    for n, (vid, path) in enumerate(videos.items(), start=1):
        target, stamp_path = folder / f"{vid}.npy", folder / f"{vid}.json"
        stamp = {"fingerprint": fingerprint(Path(path))}
        if target.is_file() and _read_stamp(stamp_path) == stamp:
            out.reused.append(vid)
            say(f"[features] {n}/{len(videos)} {vid}: in the cache")
            continue
        stamp_path.unlink(missing_ok=True)  # a stamp never vouches for features it was not written with
        started = time.perf_counter()
        if extract is not None:
            features, length, found, warnings = extract(vid, Path(path)), "", "", []
        else:
            result = extract_features(path, front, device, profile, front.detector is None, progress=progress)
            features, warnings = result.features, result.decode_warnings
            length = f"{result.duration_s:.1f} s -> "
            found = ("" if result.rat_found_fraction is None
                     else f", rat found in {100 * result.rat_found_fraction:.0f}% of frames")
        atomic_write(target, lambda f: np.save(f, features))
        atomic_write_text(stamp_path, json.dumps(stamp) + "\n")
        out.extracted.append(vid)
        say(f"[features] {n}/{len(videos)} {vid}: {length}{features.shape[0]} x {features.shape[1]}{found} "
            f"({time.perf_counter() - started:.1f} s)")
        for warning in warnings:
            say(f"[features] {vid}: warning: {warning}")
    return out


def _read_stamp(path: Path) -> Optional[dict]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
