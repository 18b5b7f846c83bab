"""Decoding: resampling to 30 fps by timestamp, rotation, grayscale, damaged and bad files.

Also holds `make_video`, the small-video writer the other front-end tests use.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ratscore.errors import InputError
from ratscore.video import crop_at, crop_square, probe_video, read_frames, write_h264


def frame_image(i: int, width: int, height: int, rat_box=None) -> np.ndarray:
    """A dark frame whose top-left 32x32 patch encodes i (brightness 8 * (i % 30)) and, when given,
    a bright ellipse-ish blob filling rat_box = (x0, y0, x1, y1)."""
    image = np.full((height, width, 3), 30, np.uint8)
    image[:32, :32] = 8 * (i % 30) + 10
    if rat_box is not None:
        x0, y0, x1, y1 = (int(v) for v in rat_box)
        image[y0:y1, x0:x1] = (200, 180, 160)
    return image


def make_video(path: Path, n_frames: int = 40, fps: float = 30.0, width: int = 160, height: int = 120,
               times=None, rotation: int = 0, gray: bool = False, boxes=None, faststart: bool = False) -> Path:
    """Write a small H.264 video (lossless luma). `times`: per-frame timestamps (s) for a variable
    frame rate; `boxes`: per-frame blob boxes."""
    import av

    path = Path(path)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            image = frame_image(i, width, height, None if boxes is None else boxes[i])
            if gray:
                image = np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts = int(round(times[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def patch_id(image: np.ndarray) -> int:
    """The source frame number (mod 30) encoded by frame_image."""
    return int(round((image[4:28, 4:28].mean() - 10) / 8))


def test_constant_30fps_is_one_to_one(tmp_path):
    path = make_video(tmp_path / "a.mp4", n_frames=40)
    frames = list(read_frames(path))
    assert len(frames) == 40
    assert [f.index for f in frames] == list(range(40))
    assert [patch_id(f.image) for f in frames] == [i % 30 for i in range(40)]
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert frames[10].t_s == pytest.approx(10 / 30)


def test_15fps_doubles_each_frame(tmp_path):
    path = make_video(tmp_path / "b.mp4", n_frames=20, fps=15)
    frames = list(read_frames(path))
    assert len(frames) == 40
    assert [patch_id(f.image) for f in frames] == [i // 2 for i in range(40)]


def test_60fps_keeps_every_other_frame(tmp_path):
    path = make_video(tmp_path / "c.mp4", n_frames=60, fps=60)
    frames = list(read_frames(path))
    assert len(frames) == 30
    assert [patch_id(f.image) for f in frames] == [(2 * i) % 30 for i in range(30)]


def test_variable_frame_rate_follows_timestamps(tmp_path):
    # 10 frames at 30 fps, then a 0.2 s hold on frame 10, then 30 fps again
    times = [i / 30 for i in range(11)] + [10 / 30 + 0.2 + j / 30 for j in range(1, 10)]
    path = make_video(tmp_path / "v.mkv", n_frames=len(times), times=times)
    frames = list(read_frames(path))
    ids = [patch_id(f.image) for f in frames]
    assert ids[:11] == list(range(11))
    assert ids[11:17] == [10] * 6  # frame 10 stays on screen 0.2 s longer than one period
    assert ids[17:] == list(range(11, 20))
    assert len(frames) == 26


def test_rotation_metadata_is_honoured(tmp_path):
    path = make_video(tmp_path / "r.mp4", n_frames=16, width=160, height=96, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    first = next(iter(read_frames(path)))
    assert first.image.shape == (160, 96, 3)
    # rotated 90 degrees counter-clockwise: the top-left patch moves to the bottom-left
    assert first.image[-32:, :32].mean() == pytest.approx(10, abs=2)


def test_grayscale_gives_three_equal_channels(tmp_path):
    path = make_video(tmp_path / "g.mp4", n_frames=16, gray=True)
    image = next(iter(read_frames(path))).image
    assert image.shape == (120, 160, 3)
    assert np.abs(image[..., 0].astype(int) - image[..., 2]).max() <= 2


def test_gray_pixel_format(tmp_path):
    import av

    path = tmp_path / "gray.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray"
        for i in range(20):
            plane = np.full((48, 64), 7 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(plane, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = list(read_frames(path))
    assert len(frames) == 20
    assert frames[3].image.shape == (48, 64, 3) and int(frames[3].image[0, 0, 1]) == 21


@pytest.mark.parametrize("name, faststart", [("t.mkv", False), ("t.mp4", True)])
def test_truncated_file_reads_what_decodes_and_says_where(tmp_path, name, faststart):
    path = make_video(tmp_path / name, n_frames=90, faststart=faststart)
    data = path.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) // 2])
    warnings: list[str] = []
    frames = list(read_frames(cut, warnings=warnings))
    assert 10 < len(frames) < 90
    assert warnings and ("truncated" in warnings[-1] or "stopped" in warnings[-1])


def test_mp4_cut_before_its_index_is_one_clear_error(tmp_path):
    path = make_video(tmp_path / "late_index.mp4", n_frames=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(InputError, match="cut.mp4: not a readable video"):
        list(read_frames(cut))


def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello, not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4"):
        list(read_frames(bad))
    with pytest.raises(InputError, match="no such file"):
        list(read_frames(tmp_path / "missing.mp4"))


def test_zero_frames(tmp_path):
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = 64, 48
    with pytest.raises(InputError, match="empty.mp4"):
        list(read_frames(path))


def test_streaming_does_not_hold_frames(tmp_path):
    path = make_video(tmp_path / "s.mp4", n_frames=30)
    ids = set()
    for frame in read_frames(path):
        ids.add(id(frame.image))
        del frame
    assert len(ids) >= 2  # each frame is a new array, handed on, not accumulated


def test_crop_at_and_crop_square(tmp_path):
    boxes = [(20 + i, 30, 60 + i, 70) for i in range(30)]
    path = make_video(tmp_path / "k.mp4", n_frames=30, boxes=boxes)
    still = crop_at(path, 0.5, box=(35, 30, 75, 70))  # frame 15: blob at x 35..75
    assert still.shape == (40, 40, 3)
    assert still.mean() > 150
    whole = crop_at(path, 0.5)
    assert whole.shape == (120, 160, 3) and patch_id(whole) == 15
    edge = crop_square(np.full((10, 10, 3), 255, np.uint8), (-5, -5, 5, 5), out_size=20)
    assert edge.shape == (20, 20, 3) and edge[0, 0].max() == 0 and edge[-1, -1].min() == 255


def test_write_h264_gives_the_frames_back_the_same_bytes_each_time_and_nothing_half_written(tmp_path):
    def frames(n=20):
        for i in range(n):
            image = np.full((48, 64, 3), 30, np.uint8)
            image[8:24, 2 * i: 2 * i + 16] = (220, 120, 40)
            yield image

    lossless = {"qp": "0", "preset": "ultrafast"}
    assert write_h264(tmp_path / "a.mp4", frames(), 30, lossless) == 20
    back = list(read_frames(tmp_path / "a.mp4"))
    assert len(back) == 20 and back[0].image.shape == (48, 64, 3)
    assert np.abs(back[5].image[16, 20].astype(int) - (220, 120, 40)).max() <= 6  # only 4:2:0's rounding
    write_h264(tmp_path / "b.mp4", frames(), 30, lossless)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()

    def broken():  # the frames stop with an error halfway: the old file stays, no temporary is left
        yield from frames(5)
        raise RuntimeError("the camera fell over")

    before = (tmp_path / "a.mp4").read_bytes()
    with pytest.raises(RuntimeError, match="fell over"):
        write_h264(tmp_path / "a.mp4", broken(), 30)
    assert (tmp_path / "a.mp4").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
    with pytest.raises(ValueError, match="even width and height, got 63x48"):
        write_h264(tmp_path / "odd.mp4", [np.zeros((48, 63, 3), np.uint8)], 30)
    assert not (tmp_path / "odd.mp4").exists()
