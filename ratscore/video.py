"""Decoding: frames streamed with their timestamps, resampled to the model's frame rate.

A video is read once, front to back, one frame at a time (PyAV, threaded decoding), so memory
does not depend on its length. Frames come out as RGB uint8 (grayscale sources are expanded to
three equal channels), turned upright according to the container's rotation (display matrix),
and resampled by timestamp to a fixed rate (30 fps for the model): each output frame n at time
n / fps is the source frame shown at that moment, so 25 fps, 60 fps and variable frame rate
recordings all give the same time grid.

Two decoders give those frames: PyAV (the default: numpy arrays) and, when asked for, torchcodec
(`decoder="torchcodec"`: torch uint8 tensors on the decoder's device, "cpu" or "cuda", so a GPU
decodes and crops without the frames crossing to the host). torchcodec needs FFmpeg's system
libraries (4 to 7) and, for "cuda", a build with CUDA decoding; it is imported only when asked
for, so a machine without those libraries never loads it. `crop_square` and `resize_image` take
either kind of image and give back the same kind, on the same device.

A truncated or damaged file is read as far as it decodes; where it broke goes into the warnings
list rather than failing the whole video. Anything but a regular file (a FIFO, a device) is
refused before it is opened (check_video_file).

Writing: `write_h264` is the one H.264 encoder (the synthetic world's videos, the decoder's own
check, the benchmarks' and tests' clips).
"""

from __future__ import annotations

import functools
import math
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from fractions import Fraction
from typing import IO, Any, Iterable, Iterator, Optional, Union

import numpy as np

from .errors import InputError
from .files import atomic_write
from .grid import MODEL_FPS

# --decoder: "auto" is PyAV, the decoder every speed figure so far was measured with (docs/RESULTS.md);
# decoding on a GPU (torchcodec) is not measured yet, so it is asked for by name
DECODERS = ("auto", "pyav", "torchcodec")

# the file extensions taken as videos, wherever a folder is searched for them (extract, batch)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv", ".mts", ".ts")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # pixels, upright (after rotation)
    height: int  # pixels, upright (after rotation)
    source_fps: float  # the container's average frame rate
    duration_s: Optional[float]  # the container's claim; None when it does not say
    rotation: int  # degrees counter-clockwise applied to make frames upright (0, 90, 180, 270)
    codec: str


@dataclass
class Frame:
    index: int  # frame number on the resampled grid
    t_s: float  # index / fps, seconds from the video's first frame
    image: Any  # (H, W, 3) uint8 RGB, upright: a numpy array (PyAV), or a torch tensor on the decoder's device (torchcodec)
    source_t_s: float  # timestamp of the source frame shown, seconds from the first frame


def check_video_file(path: str | Path) -> Path:
    """`path` when it names a regular file; else InputError in one line. Checked with stat, which
    never opens the file: opening a FIFO blocks until something writes to it, and a device such as
    /dev/zero never ends, so neither may reach a decoder or a hash."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a video file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
        raise InputError(f"{path}: not a regular file ({kind}); give a video file")
    return path


def _open(path: Path):
    import av

    path = check_video_file(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a readable video, or cut off before its index ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: not a video (no video stream)")
    return container


def _reason(e: Exception) -> str:
    return (getattr(e, "strerror", None) or str(e)).strip().splitlines()[0] if str(e) else type(e).__name__


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _rotation_of(frame) -> int:
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle / 90.0)) * 90 % 360


def probe_video(path: str | Path) -> VideoInfo:
    """What the container says about a video (size upright, fps, duration, rotation)."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        rotation = 0
        width, height = stream.codec_context.width, stream.codec_context.height
        try:  # the rotation lives on decoded frames; peek at the first one
            for frame in container.decode(stream):
                rotation = _rotation_of(frame)
                width, height = frame.width, frame.height
                break
        except Exception:  # noqa: BLE001 - damaged files are judged by read_frames, which reports where
            pass
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(path, width, height, fps, duration, rotation, stream.codec_context.name)
    finally:
        container.close()


def _source_frames(path: Path, warnings: list[str]) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp seconds from the first frame, upright RGB image) for every decodable frame."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        step = 1.0 / float(rate) if rate else 1.0 / MODEL_FPS
        t0 = None
        last_t = None
        count = 0
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.FFmpegError as e:
                where = f"{last_t:.2f} s" if last_t is not None else "the start"
                warnings.append(f"decoding stopped at {where} after {count} frames ({_reason(e)})")
                break
            t = frame.time
            if t is None:  # no timestamp: assume the nominal rate
                t = (last_t + step) if last_t is not None else 0.0
            if t0 is None:
                t0 = t
            t -= t0
            if last_t is not None and t <= last_t:  # out of order or repeated stamps: keep time moving
                t = last_t + 1e-6
            image = frame.to_ndarray(format="rgb24")  # gray and any YUV layout -> (H, W, 3)
            last_t = t
            count += 1
            yield t, _upright(image, _rotation_of(frame))
        if count:
            claimed = None
            if stream.duration is not None and stream.time_base is not None:
                claimed = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                claimed = container.duration / 1_000_000
            short = truncation(claimed, last_t + step)
            if short:
                warnings.append(short)
    finally:
        container.close()


def _torchcodec_frames(path: Path, warnings: list[str], device: str) -> Iterator[tuple[float, Any]]:
    """As _source_frames, decoded by torchcodec on `device`: the image is a (H, W, 3) uint8 RGB
    torch tensor there. torchcodec turns frames upright itself (the display matrix, as _upright)."""
    from torchcodec.decoders import VideoDecoder

    path = check_video_file(path)
    try:
        # NHWC: (H, W, 3) frames as PyAV gives them; 0 threads: FFmpeg chooses, as PyAV's AUTO does.
        # Its default seek mode ("exact") first reads the file's packets without decoding them, so
        # len() is the frames the file holds (a cut file's too), not its header's claim.
        decoder = VideoDecoder(str(path), device=device, dimension_order="NHWC", num_ffmpeg_threads=0)
    except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError or ValueError for unreadable files
        raise InputError(f"{path}: not a readable video, or cut off before its index ({_torchcodec_reason(e)})") from None
    meta = decoder.metadata
    step = 1.0 / meta.average_fps if meta.average_fps else 1.0 / MODEL_FPS
    t0 = None
    last_t = None
    count = 0
    # frame by frame in presentation order: the next index continues decoding, it does not seek
    for i in range(len(decoder)):
        try:
            frame = decoder.get_frame_at(i)
        except Exception as e:  # noqa: BLE001 - a damaged frame ends the video where it is, as with PyAV
            where = f"{last_t:.2f} s" if last_t is not None else "the start"
            warnings.append(f"decoding stopped at {where} after {count} frames ({_torchcodec_reason(e)})")
            break
        t = float(frame.pts_seconds)
        if t0 is None:
            t0 = t
        t -= t0
        if last_t is not None and t <= last_t:  # repeated stamps: keep time moving, as _source_frames
            t = last_t + 1e-6
        last_t = t
        count += 1
        yield t, frame.data
    if count:
        short = truncation(_torchcodec_claimed_s(path, meta), last_t + step)
        if short:
            warnings.append(short)


def _torchcodec_claimed_s(path: Path, meta) -> Optional[float]:
    """The length a file claims, as _source_frames reads it: the stream's header, else the
    container's (Matroska states only the container's)."""
    if meta.duration_seconds_from_header:
        return meta.duration_seconds_from_header
    from torchcodec.decoders import get_container_metadata

    try:
        return get_container_metadata(str(path)).duration_seconds_from_header
    except Exception:  # noqa: BLE001 - no claim, no truncation warning
        return None


def _torchcodec_reason(e: Exception) -> str:
    """torchcodec's error text without the C++ source location it starts with."""
    import re

    return re.sub(r"^.*\.cpp:\d+, ", "", _reason(e))


def is_tensor(image) -> bool:
    """Whether `image` is a torch tensor, without importing torch: a process that never loaded
    torch (a PyAV worker) holds none."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def to_numpy(image) -> np.ndarray:
    """A numpy array of `image` (a tensor is copied to the host; on the CPU it is shared, not copied)."""
    return image.cpu().numpy() if is_tensor(image) else image


def stack_images(images) -> Any:
    """Images (or clips) of one kind, stacked on a new first axis: np.stack, or torch.stack for tensors."""
    images = list(images)
    if images and is_tensor(images[0]):
        import torch

        return torch.stack(images)
    return np.stack(images)


def blank_like(image, shape: tuple[int, ...], value: int = 0) -> Any:
    """An array of `shape` filled with `value`, of `image`'s kind, dtype and device."""
    if is_tensor(image):
        return image.new_full(shape, value)
    return np.full(shape, value, image.dtype)


def resize_image(image, width: int, height: int, area: bool) -> Any:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, of `image`'s kind and device. `area`: the area
    filter, to shrink (each output pixel the mean of the source pixels under it, in proportion to
    how much of each it covers: nothing aliases), else bilinear. A numpy array goes through OpenCV
    (INTER_AREA, INTER_LINEAR); a tensor through torch where it is, with the same two filters."""
    if not is_tensor(image):
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    import torch

    x = image.float()  # (H, W, 3); float32 on every device: a GPU's interpolate takes no uint8
    if area:
        # torch's own "area" mode pools whole pixels and its antialiased bilinear weighs them as a
        # triangle: neither is OpenCV's INTER_AREA, and the tiny I3D's features notice (by up to
        # 13% of their range on the sample clips). The filter is separable: two small matrices.
        x = torch.einsum("yh,hwc,xw->yxc", _area_weights(image.shape[0], height, x.device), x,
                         _area_weights(image.shape[1], width, x.device))
    else:
        import torch.nn.functional as F

        x = F.interpolate(x.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False)
        x = x[0].permute(1, 2, 0)  # (1, 3, height, width) -> (height, width, 3)
    # halves up, as OpenCV's uint8 resizing rounds (torch.round takes them to even): a frame halved for
    # the detector then matches OpenCV's to the level, where round() misses 8% of its pixels by one
    return torch.floor(x + 0.5).clamp(0, 255).to(torch.uint8).contiguous()


def _area_weights(n_in: int, n_out: int, device) -> Any:
    """(n_out, n_in) float32: how much of source pixel i output pixel j covers, over its width
    (output pixel j spans [j, j + 1) * n_in / n_out of the source, as OpenCV's INTER_AREA has it)."""
    import torch

    scale = n_in / n_out
    edges = torch.arange(n_out + 1, device=device, dtype=torch.float64) * scale  # (n_out + 1,)
    source = torch.arange(n_in, device=device, dtype=torch.float64)  # (n_in,) left edges
    covered = (torch.minimum(edges[1:, None], source[None] + 1) - torch.maximum(edges[:-1, None], source[None]))
    return (covered.clamp(min=0) / scale).float()


@functools.lru_cache(maxsize=None)
def torchcodec_problem(device: str = "cpu") -> Optional[str]:
    """Why torchcodec cannot decode on `device` ("cpu" or "cuda") here, in words; None when it can.
    Imports it and decodes a tiny H.264 clip made in memory there (once per process and device):
    an import that works can still lack FFmpeg's libraries or, on a GPU, CUDA decoding."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # noqa: BLE001 - any import failure means: not usable
        return f"torchcodec is not installed or does not load ({_reason(e)})"
    if torchcodec.ffmpeg_major_version is None:
        return ("torchcodec cannot load FFmpeg's libraries (it needs FFmpeg 4 to 7 installed, "
                "e.g. apt install ffmpeg or libmpv2)")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is available here"
    try:
        frame = VideoDecoder(_tiny_h264(), device=device, dimension_order="NHWC").get_frame_at(0)
    except Exception as e:  # noqa: BLE001 - whatever stops a tiny clip stops a video
        where = "on the GPU (a torchcodec build with CUDA decoding is needed)" if device == "cuda" else "here"
        return f"torchcodec cannot decode {where}: {_torchcodec_reason(e)}"
    if frame.data.device.type != device:
        return f"torchcodec decoded on {frame.data.device.type}, not {device}"
    return None


def _tiny_h264() -> bytes:
    """A 2-frame 128x128 H.264 MP4 in memory (the GPU's decoder takes nothing much smaller)."""
    import io

    buffer = io.BytesIO()
    write_h264(buffer, [np.zeros((128, 128, 3), np.uint8)] * 2, fps=30)
    return buffer.getvalue()


def write_h264(target: Union[str, Path, IO[bytes]], frames: Iterable[np.ndarray], fps: float,
               options: Optional[dict] = None) -> int:
    """Encode (H, W, 3) uint8 RGB frames (even H and W) as an H.264 MP4 at `fps`; returns how
    many were written. `target`: a path, written under a temporary name and renamed once whole
    (the file is whole or absent), or an open binary file. `options`: the encoder's (x264), e.g.
    {"crf": "20", "preset": "fast", "g": "60"}.

    RGB -> YUV 4:2:0 is OpenCV's (BT.601, limited range, as swscale's default), not swscale's:
    swscale's result varies with the input buffer's memory alignment, and the synthetic world
    needs the same frames and options to give the same bytes."""
    if isinstance(target, (str, os.PathLike)):
        written = []
        atomic_write(Path(target), lambda f: written.append(write_h264(f, frames, fps, options)))
        return written[0]
    import av
    import cv2

    count = 0
    with av.open(target, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = {key: str(value) for key, value in options.items()}
        for image in frames:
            if count == 0:
                if image.shape[0] % 2 or image.shape[1] % 2:  # 4:2:0 halves both sides
                    raise ValueError(f"H.264 4:2:0 needs an even width and height, got {image.shape[1]}x{image.shape[0]}")
                stream.width, stream.height = image.shape[1], image.shape[0]
            yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)  # (H * 3 / 2, W)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
            count += 1
        container.mux(stream.encode(None))
    return count


def check_decoder_name(decoder: str) -> str:
    """`decoder` when it is one of DECODERS, else an InputError (a check that loads nothing)."""
    if decoder not in DECODERS:
        raise InputError(f"--decoder must be auto, pyav or torchcodec, got {decoder!r}")
    return decoder


def resolve_decoder(decoder: str, device: str = "cpu") -> str:
    """The decoder to use: "auto" -> "pyav" (see DECODERS); "torchcodec" when it decodes on
    `device` here; an unknown name, or torchcodec where it cannot decode, is an InputError."""
    if check_decoder_name(decoder) == "auto":
        return "pyav"
    if decoder == "torchcodec":
        problem = torchcodec_problem(device)
        if problem:
            raise InputError(f"--decoder torchcodec (on {device}): {problem}")
    return decoder


# A recording whose frames end this much before its container's stated duration is reported as
# truncated: more than TRUNCATED_S seconds or TRUNCATED_SHARE of the stated length short, whichever
# is less, but never for less than TRUNCATED_FLOOR_S (containers round their durations).
TRUNCATED_S = 1.0
TRUNCATED_SHARE = 0.02
TRUNCATED_FLOOR_S = 0.1
TRUNCATED_PREFIX = "truncated: "


def truncation(stated_s: Optional[float], decoded_s: float) -> Optional[str]:
    """A one-line warning when `decoded_s` (the length the frames cover) falls short of the
    container's `stated_s` (see TRUNCATED_S); None when it does not, or when nothing is stated."""
    if not stated_s or not math.isfinite(stated_s) or stated_s <= 0:
        return None
    allowed = max(min(TRUNCATED_S, TRUNCATED_SHARE * stated_s), TRUNCATED_FLOOR_S)
    if stated_s - decoded_s <= allowed:
        return None
    return (f"{TRUNCATED_PREFIX}the file says {stated_s:.2f} s but its frames end at {decoded_s:.2f} s "
            f"({100 * (1 - decoded_s / stated_s):.0f}% missing)")


def read_frames(path: str | Path, fps: float = MODEL_FPS, warnings: Optional[list[str]] = None,
                decoder: str = "pyav", device: str = "cpu") -> Iterator[Frame]:
    """Stream a video's frames resampled to `fps` by timestamp.

    Output frame n (time n / fps) is the source frame on screen at that time: the latest frame
    whose timestamp is at or before it (with a small tolerance for timestamps rounded by the
    container). The last source frame is shown for its nominal duration. Problems met while
    decoding (truncation) are appended to `warnings`. InputError when nothing decodes.

    `decoder` (DECODERS): "pyav" gives numpy images; "torchcodec" torch tensors on `device`
    ("cpu" or "cuda"). An unknown name, or torchcodec where it cannot decode, is an InputError.
    """
    path = Path(path)
    warnings = [] if warnings is None else warnings
    if resolve_decoder(decoder, device) == "torchcodec":
        source = _torchcodec_frames(path, warnings, device)
    else:
        source = _source_frames(path, warnings)
    period = 1.0 / fps
    tolerance = 0.25 * period  # timestamps rounded to a coarse time base land a bit late
    index = 0
    shown: Optional[tuple[float, Any]] = None  # (timestamp, image): the image of either decoder, handed on as it is
    intervals = []  # recent source frame intervals, for the last frame's duration
    for t, image in source:
        if shown is not None:
            # every grid time before this frame appears shows the previous frame
            while index * period < t - tolerance:
                yield Frame(index, index * period, shown[1], shown[0])
                index += 1
            intervals = (intervals + [t - shown[0]])[-8:]
        shown = (t, image)
    if shown is None:
        detail = f" ({warnings[-1]})" if warnings else ""
        raise InputError(f"{path}: no frames could be decoded{detail}")
    last_duration = float(np.median(intervals)) if intervals else period
    end = shown[0] + last_duration
    while index * period < end - tolerance:
        yield Frame(index, index * period, shown[1], shown[0])
        index += 1


def expected_frames(info: VideoInfo, fps: float = MODEL_FPS) -> Optional[int]:
    """How many resampled frames the container's duration promises (for progress bars)."""
    if not info.duration_s:
        return None
    return max(1, int(math.ceil(info.duration_s * fps - 0.25)))


def crop_square(image, box, out_size: Optional[int] = None):
    """The square region `box` = (x0, y0, x1, y1) of `image`, padded with black where it leaves
    the frame, resized to out_size x out_size when given (resize_image: area filter to shrink,
    bilinear to grow). (H, W, 3) -> (S, S, 3) uint8: a numpy array, or for a torch tensor a tensor
    on its device."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {box}")
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        crop = image[y0:y1, x0:x1]
    else:
        crop = blank_like(image, (y1 - y0, x1 - x0, 3))
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    if out_size is not None and crop.shape[:2] != (out_size, out_size):
        crop = resize_image(crop, out_size, out_size, area=crop.shape[0] > out_size)
    return crop


# How far before t crop_at seeks, try after try, until decoding starts on a keyframe at or before
# t; after these it decodes from the first frame. A seek may land past t (MPEG-TS is searched by
# timestamp, not by an index) or on a frame decoding cannot start from (an index that marks every
# frame, or intra-refresh points, as keyframes): a decoder then drops frames, or builds them on
# references it never saw (grey or green pictures with only the changes drawn).
SEEK_BACK_S = (0.0, 5.0, 30.0, 120.0)


def crop_at(video_path: str | Path, t_s: float, box=None, out_size: Optional[int] = None) -> np.ndarray:
    """The frame shown at t_s seconds (from the first frame), cropped to `box` (x0, y0, x1, y1 in
    upright source pixels; None: the whole frame). For report stills. (H, W, 3) uint8 RGB.

    The frame is the one read_frames shows at t_s: decoding starts on a keyframe at or before t_s
    (found by seeking, SEEK_BACK_S) and runs forward to t_s, so it is never half decoded."""
    path = Path(video_path)
    target = max(0.0, float(t_s))
    image = None
    for back in SEEK_BACK_S:
        if target - back <= 0:
            break
        image = _decode_until(path, target, seek_s=target - back)
        if image is not None:
            break
    if image is None:
        image = _decode_until(path, target, seek_s=None)
    if image is None:
        raise InputError(f"{path}: no frame could be decoded at {target:.2f} s")
    return image if box is None else crop_square(image, box, out_size)


def _decode_until(path: Path, target: float, seek_s: Optional[float]) -> Optional[np.ndarray]:
    """The last whole frame shown at or before `target` s (upright RGB), decoding from a seek to
    the keyframe at or before `seek_s` (None: from the first frame). None when the seek fails, or
    when decoding after it does not start with a keyframe at or before `target`."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base
        t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        late = target + 0.25 / MODEL_FPS  # as read_frames: timestamps rounded to a coarse base land late
        if seek_s is not None:
            if not tb:
                return None
            try:  # backward, keyframes only: the keyframe at or before seek_s, in the stream's time base
                container.seek(int((t0 + seek_s) / tb), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return None
        chosen = None
        try:
            for frame in container.decode(stream):
                if getattr(frame, "is_corrupt", False):  # built on missing references
                    if seek_s is not None and chosen is None:
                        return None
                    continue
                t = (frame.time if frame.time is not None else t0) - t0
                if chosen is None and seek_s is not None and (t > late or not frame.key_frame):
                    return None
                if chosen is not None and t > late:
                    break
                chosen = frame
        except av.FFmpegError:
            pass  # a damaged tail: keep the last good frame
        return None if chosen is None else _upright(chosen.to_ndarray(format="rgb24"), _rotation_of(chosen))
    finally:
        container.close()
