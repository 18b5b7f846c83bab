"""Decoders: torchcodec (frames as torch tensors; on the CPU here, on a GPU in test_gpu.py) against
PyAV, crops and the detector on tensors against OpenCV on arrays, and `--decoder` on the command line.

torchcodec loads FFmpeg's libraries from the system; where it cannot, its tests are skipped, except
on CI (CI=true: `make boris` installs libmpv2, which brings FFmpeg), where they fail instead.

The tolerances below were measured on the sample clips (2026-12-02; torchcodec 0.17.0 on Debian's
FFmpeg 5.1, PyAV 16 with its own FFmpeg, torch 2.14.1, CPU) and are asserted a little above that.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import one_line_error
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.model import BUNDLED_MODEL_DIR
from ratscore.video import crop_square, read_frames, resolve_decoder, torchcodec_problem

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"
runner = CliRunner()

# Crops, torch's area filter and bilinear against OpenCV's INTER_AREA and INTER_LINEAR: at most 1
# level anywhere, shrinking or growing (measured 1: OpenCV's bilinear weights are fixed-point; its
# area filter and a halving were the same to the level). The detector's letterboxed input: at most
# 1 level (measured 0 for 640 x 480 halved to 320). Its boxes, and a tracked video's crop squares
# and animal boxes: within 1 pixel (measured 0).
CROP_MAX_LEVELS = 1
BOX_PIXELS = 1.0


def need_torchcodec(device: str = "cpu") -> None:
    """Skip where torchcodec cannot decode on `device`; on CI (CI=true) fail instead."""
    problem = torchcodec_problem(device)
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to decode with torchcodec on {device}: {problem}")
    pytest.skip(problem)


def _frames(path: Path, every: int = 1, **decoder) -> list:
    return [f for f in read_frames(path, **decoder)][::every]


# --- frames -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["clip_7_0000.mp4", "clip_7_0002.mp4"])
def test_torchcodec_frames_are_pyavs(name):
    need_torchcodec()
    pyav = _frames(SAMPLES / name)
    torchcodec = _frames(SAMPLES / name, decoder="torchcodec", device="cpu")
    assert len(torchcodec) == len(pyav) == 300
    assert [f.t_s for f in torchcodec] == [f.t_s for f in pyav]
    assert [f.source_t_s for f in torchcodec] == [f.source_t_s for f in pyav]
    image = torchcodec[0].image
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.device.type == "cpu"
    assert tuple(image.shape) == pyav[0].image.shape
    for a, b in zip(pyav, torchcodec):  # the same FFmpeg decoder and colour conversion: the same pixels (measured)
        np.testing.assert_array_equal(b.image.numpy(), a.image)


def test_torchcodec_turns_frames_upright_and_reports_truncation(tmp_path):
    from test_video import make_video

    need_torchcodec()
    rotated = make_video(tmp_path / "r.mp4", n_frames=16, width=160, height=96, rotation=90)
    a, b = _frames(rotated), _frames(rotated, decoder="torchcodec")
    assert b[0].image.shape == (160, 96, 3)
    np.testing.assert_array_equal(b[0].image.numpy(), a[0].image)
    whole = make_video(tmp_path / "t.mkv", n_frames=90)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    warnings: list[str] = []
    frames = list(read_frames(cut, warnings=warnings, decoder="torchcodec"))
    assert 10 < len(frames) < 90 and len(frames) == len(_frames(cut))
    assert warnings and warnings[-1].startswith("truncated: the file says 3.00 s")


def test_torchcodec_on_a_file_that_is_no_video_is_an_input_error(tmp_path):
    need_torchcodec()
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello, not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4: not a readable video") as caught:
        list(read_frames(bad, decoder="torchcodec"))
    assert ".cpp" not in str(caught.value)  # torchcodec's source location is left out


def test_decoder_names_and_an_unloadable_torchcodec(monkeypatch):
    assert resolve_decoder("auto") == "pyav" and resolve_decoder("pyav", "cuda") == "pyav"
    with pytest.raises(InputError, match="--decoder must be auto, pyav or torchcodec, got 'nvdec'"):
        list(read_frames(SAMPLES / "clip_7_0001.mp4", decoder="nvdec"))
    monkeypatch.setattr("ratscore.video.torchcodec_problem", lambda device: "it cannot load FFmpeg's libraries")
    with pytest.raises(InputError, match=r"--decoder torchcodec \(on cpu\): it cannot load FFmpeg's libraries"):
        list(read_frames(SAMPLES / "clip_7_0001.mp4", decoder="torchcodec"))


def test_the_default_path_never_imports_torchcodec(tmp_path):
    # torchcodec fails to import without FFmpeg's libraries: PyAV's path must not need it
    code = ("import sys\n"
            "from ratscore.features import load_front_end, extract_features\n"
            f"front = load_front_end(device='cpu')\n"
            f"result = extract_features({str(SAMPLES / 'clip_7_0001.mp4')!r}, front, progress=False)\n"
            "assert result.features.shape[0] > 0\n"
            "print('torchcodec' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


# --- crops and the detector on tensors ----------------------------------------------------------

def _sample_images(name: str = "clip_7_0000.mp4", every: int = 30) -> list[np.ndarray]:
    return [f.image for f in _frames(SAMPLES / name, every)]


def test_torch_crop_square_is_opencvs_within_the_tolerance():
    rng = np.random.default_rng(0)
    shrunk = grown = 0
    for image in _sample_images():  # 320 x 240
        h, w = image.shape[:2]
        tensor = torch.from_numpy(image)
        for size in (80, 224):
            for _ in range(4):
                side = rng.uniform(20, 400)  # larger and smaller than `size`; partly out of the frame
                x0, y0 = rng.uniform(-100, w - side / 2), rng.uniform(-100, h - side / 2)
                box = (x0, y0, x0 + side, y0 + side)
                a, b = crop_square(image, box, size), crop_square(tensor, box, size)
                assert isinstance(b, torch.Tensor) and b.dtype == torch.uint8 and tuple(b.shape) == (size, size, 3)
                assert np.abs(a.astype(int) - b.numpy().astype(int)).max() <= CROP_MAX_LEVELS, (box, size)
                shrunk, grown = shrunk + (round(side) > size), grown + (round(side) < size)
    assert shrunk >= 10 and grown >= 10


def test_torch_crop_square_pads_with_black_as_opencv():
    image = _sample_images()[0]
    tensor = torch.from_numpy(image)
    box = (-40, -30, 120, 130)  # 160 x 160, its top-left 40 x 30 outside the frame
    np.testing.assert_array_equal(crop_square(tensor, box).numpy(), crop_square(image, box))  # no resize: exact
    for size in (64, 320):  # shrinking and growing: the corner deep in the padding is black in both
        a, b = crop_square(image, box, size), crop_square(tensor, box, size).numpy()
        corner = slice(0, size // 8)
        assert a[corner, corner].max() == 0 and b[corner, corner].max() == 0
        assert b[size // 2:, size // 2:].mean() > 10  # the picture is there


def test_detector_on_a_tensor_finds_the_numpy_boxes():
    from ratscore.features import load_front_end

    detector = load_front_end(device="cpu", motion=False).detector
    compared = 0
    for name in ("clip_7_0000.mp4", "clip_7_0002.mp4"):  # 320 x 240 (no resize) and 640 x 480 (halved)
        for image in _sample_images(name, every=60):
            tensor = torch.from_numpy(image)
            (a, scale_a, pad_a), (b, scale_b, pad_b) = detector.letterbox(image), detector.letterbox(tensor)
            assert isinstance(b, np.ndarray) and b.dtype == np.float32 and b.shape == a.shape
            assert (scale_a, pad_a) == (scale_b, pad_b)
            assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # a level of a pixel at most
            boxes_a, boxes_b = detector(image), detector(tensor)
            assert len(boxes_a) == len(boxes_b) and (boxes_a[:, 5] == boxes_b[:, 5]).all()
            assert np.abs(boxes_a[:, :4] - boxes_b[:, :4]).max(initial=0) <= BOX_PIXELS
            compared += len(boxes_a)
    assert compared >= 5


def test_the_roi_tracker_on_torchcodec_frames_crops_as_on_pyavs():
    """The whole crop stream (detector, motion model, interpolation, crops) of a 640 x 480 clip."""
    from ratscore.crops import VideoCrops
    from ratscore.features import load_front_end

    need_torchcodec()
    front = load_front_end(device="cpu")
    assert front.motion is not None and front.detector is not None
    runs = {}
    for decoder in ("pyav", "torchcodec"):
        stream = VideoCrops(SAMPLES / "clip_7_0002.mp4", front.detector, front.roi_options, front.input_size,
                            front.grid, None, front.motion, decoder, "cpu")
        crops = list(stream)
        runs[decoder] = (crops, stream.tally())
    (crops_a, a), (crops_b, b) = runs["pyav"], runs["torchcodec"]
    assert all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8 for c in crops_b)
    assert all(isinstance(c, np.ndarray) for c in crops_a)
    assert np.abs(np.stack(crops_a).astype(int) - torch.stack(crops_b).numpy().astype(int)).max() <= CROP_MAX_LEVELS
    assert a.n_frames == b.n_frames == 300 and a.info == b.info
    assert np.abs(a.boxes - b.boxes).max() <= BOX_PIXELS
    assert (a.track[:, 5] == b.track[:, 5]).all()  # who saw the animal, frame by frame
    assert np.nanmax(np.abs(a.track[:, :4] - b.track[:, :4])) <= BOX_PIXELS
    assert (a.rat_found_fraction, a.gaps, a.motion, a.decode_warnings, a.truncated, a.detector_looks) == \
           (b.rat_found_fraction, b.gaps, b.motion, b.decode_warnings, b.truncated, b.detector_looks)


# --- the whole chain and the command line ------------------------------------------------------

# Features of the bundled model, torchcodec against PyAV on the CPU: within FEATURE_ATOL (measured
# at most 0.019 on the four sample clips, whose largest features are 2.2 to 3.2; the decoded frames
# are the same, the crops within a level); the events the same, their boundaries within one frame
# (measured 0.008 s) and their scores within 0.01 (measured 0.001).
FEATURE_ATOL = 0.03
EVENT_BOUNDARY_S = 1 / 30
EVENT_SCORE = 0.01


def _events_and_features(out: Path, stem: str) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.read_csv(out / f"{stem}.events.csv"), np.load(out / f"{stem}.features.npy")


def assert_same_events(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.au) == list(b.au)
    np.testing.assert_allclose(b[["start_s", "end_s"]].to_numpy(), a[["start_s", "end_s"]].to_numpy(),
                               atol=EVENT_BOUNDARY_S + 1e-9)
    np.testing.assert_allclose(b.score.to_numpy(), a.score.to_numpy(), atol=EVENT_SCORE)


def test_analyze_with_torchcodec_finds_pyavs_events(tmp_path):
    need_torchcodec()
    video = SAMPLES / "clip_7_0003.mp4"  # the sample clip whose features differ most
    runs = {}
    for decoder in ("pyav", "torchcodec"):
        out = tmp_path / decoder
        # 0.05: 8 events, the nearest scores 0.040 and 0.058, far from it as scores go here
        result = runner.invoke(app, ["analyze", str(video), "-o", str(out), "--device", "cpu", "--keep-features",
                                     "--threshold", "0.05", "--decoder", decoder])
        assert result.exit_code == 0, result.output
        runs[decoder] = _events_and_features(out, video.stem)
    (events_a, features_a), (events_b, features_b) = runs["pyav"], runs["torchcodec"]
    assert features_a.shape == features_b.shape
    assert np.abs(features_a - features_b).max() <= FEATURE_ATOL
    assert len(events_a) >= 5
    assert_same_events(events_a, events_b)


def test_extract_with_torchcodec_gives_the_same_result_as_pyav(tmp_path):
    from dataclasses import fields

    from ratscore.features import FeatureResult, extract_features, load_front_end

    need_torchcodec()
    video = SAMPLES / "clip_7_0001.mp4"
    results = {}
    for decoder in ("pyav", "torchcodec"):
        front = load_front_end(device="cpu", decoder=decoder)
        assert front.decoder == decoder and front.decode_device == "cpu"
        results[decoder] = extract_features(video, front, progress=False)
    a, b = results["pyav"], results["torchcodec"]
    for field in fields(FeatureResult):  # the same structure, whatever decoded
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert type(x) is type(y), field.name
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and x.dtype == y.dtype, field.name
    assert np.abs(a.features - b.features).max() <= FEATURE_ATOL
    assert np.abs(a.boxes - b.boxes).max() <= BOX_PIXELS
    assert (a.n_frames, a.gaps, a.rat_found_fraction, a.motion) == (b.n_frames, b.gaps, b.rat_found_fraction, b.motion)


def test_batch_with_torchcodec_runs_in_its_own_process(tmp_path, tiny_model, monkeypatch):
    from ratscore.pipeline import Analyzer

    need_torchcodec()
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("clip_7_0000.mp4", "clip_7_0001.mp4"):
        shutil.copy(SAMPLES / name, folder / name)

    def no_workers(self, jobs, workers):
        raise AssertionError("batch --decoder torchcodec started worker processes")

    monkeypatch.setattr(Analyzer, "analyze_many", no_workers)
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(folder), "-o", str(out), "--model", str(tiny_model), "--no-roi",
                                 "--device", "cpu", "--decoder", "torchcodec", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "2 analysed" in result.stdout
    assert "--workers 2: not with the torchcodec decoder" in result.stdout  # said, not silently dropped
    assert (out / "clip_7_0000.events.csv").is_file() and (out / "clip_7_0001.events.csv").is_file()


@pytest.mark.parametrize("command", ["analyze", "extract", "batch"])
def test_an_unknown_decoder_is_one_line_exit_2(tmp_path, command):
    target = SAMPLES if command == "batch" else SAMPLES / "clip_7_0001.mp4"
    result = runner.invoke(app, [command, str(target), "-o", str(tmp_path / "out"), "--decoder", "nvdec"])
    err = one_line_error(result)
    assert "--decoder must be auto, pyav or torchcodec, got 'nvdec'" in err


def test_torchcodec_that_cannot_load_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr("ratscore.video.torchcodec_problem", lambda device: "it cannot load FFmpeg's libraries")
    result = runner.invoke(app, ["analyze", str(SAMPLES / "clip_7_0001.mp4"), "-o", str(tmp_path / "out"),
                                 "--device", "cpu", "--decoder", "torchcodec"])
    err = one_line_error(result)
    assert "--decoder torchcodec (on cpu): it cannot load FFmpeg's libraries" in err
