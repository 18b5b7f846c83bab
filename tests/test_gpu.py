"""Checks that need a CUDA GPU: marked `gpu`, skipped without one (CI has none; run them with
`pytest -m gpu` where there is one). On a GPU the I3D runs in PyTorch, in fp16 under autocast,
channels-last, with cuDNN's autotuning (features.ClipEncoder), so its features differ from the CPU's
fp32 ones in the third digit, not more (tests/test_precision.py measures the same on the CPU); the
events must be the same: boundaries within one frame, scores within 0.01."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.model import BUNDLED_MODEL_DIR

pytestmark = pytest.mark.gpu
SAMPLE = BUNDLED_MODEL_DIR.parent / "sample_videos" / "clip_7_0001.mp4"


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_auto_takes_the_gpu():
    from ratscore.runtime import resolve_device

    assert resolve_device("auto") == "cuda"


def test_bundled_i3d_runs_in_torch_on_the_gpu_and_gives_the_cpu_features():
    from ratscore.features import load_front_end

    gpu = load_front_end(BUNDLED_MODEL_DIR, device="cuda").encoder
    cpu = load_front_end(BUNDLED_MODEL_DIR, device="cpu", backend="onnx").encoder
    assert gpu.backend == "torch" and next(gpu.model.parameters()).is_cuda
    assert cpu.backend == "onnx"
    clips = np.random.default_rng(0).integers(0, 256, (4, 16, gpu.input_size, gpu.input_size, 3), dtype=np.uint8)
    assert _relative_error(gpu(clips), cpu(clips)) < 1e-2


def test_full_size_i3d_on_the_gpu_gives_the_cpu_features(tmp_path):
    import torch

    from ratscore.features import load_front_end
    from ratscore.i3d import I3DConfig, InceptionI3d

    torch.manual_seed(0)
    torch.save(InceptionI3d(I3DConfig()).state_dict(), tmp_path / "rgb_like.pt")  # pytorch-i3d's layout
    gpu = load_front_end(i3d_weights=tmp_path / "rgb_like.pt", device="cuda", no_roi=True).encoder
    cpu = load_front_end(i3d_weights=tmp_path / "rgb_like.pt", device="cpu", no_roi=True).encoder
    clips = np.random.default_rng(1).integers(0, 256, (2, 16, 224, 224, 3), dtype=np.uint8)
    features = gpu(clips)
    assert features.shape == (2, 1024)
    assert _relative_error(features, cpu(clips)) < 1e-2


def test_the_gpu_i3d_is_fp16_channels_last_and_autotuned():
    import torch

    from ratscore.features import load_front_end

    gpu = load_front_end(BUNDLED_MODEL_DIR, device="cuda").encoder
    assert gpu.precision == "fp16" and torch.backends.cudnn.benchmark
    kernels = [p for p in gpu.model.parameters() if p.dim() == 5]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in kernels)


def test_analyze_on_the_gpu_finds_the_cpu_events(tmp_path):
    """Every event the CPU reports with a score of at least 0.05 (the long tail below it reorders
    on any rounding), on every 10-s sample clip."""
    runner = CliRunner()
    frame_s = 1 / 30
    for sample in sorted(SAMPLE.parent.glob("clip_7_*.mp4")):
        events = {}
        for device in ("cpu", "cuda"):
            out = tmp_path / device
            result = runner.invoke(app, ["analyze", str(sample), "-o", str(out), "--device", device])
            assert result.exit_code == 0, result.output
            events[device] = pd.read_csv(out / f"{sample.stem}.events.csv")
        cpu, gpu = events["cpu"], events["cuda"]
        assert len(cpu) > 0
        for _, e in cpu[cpu.score >= 0.05].iterrows():
            same = gpu[(gpu.au_id == e.au_id) & ((gpu.start_s - e.start_s).abs() <= frame_s + 1e-6)
                       & ((gpu.end_s - e.end_s).abs() <= frame_s + 1e-6)]
            assert len(same) > 0, f"{sample.name}: no GPU event for {e.au} {e.start_s}-{e.end_s} s"
            assert (same.score - e.score).abs().min() <= 0.01


def test_onnx_runtime_takes_its_cuda_provider_when_it_has_one():
    import onnxruntime as ort

    from ratscore.runtime import onnx_session

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this ONNX Runtime ({ort.__version__}) has no CUDA provider (onnxruntime-gpu brings it)")
    session = onnx_session(BUNDLED_MODEL_DIR / "localizer.onnx", "cuda")
    assert session.get_providers()[0] == "CUDAExecutionProvider"


def test_torchcodec_on_the_gpu_crops_and_extracts_as_pyav_on_the_cpu():
    """--decoder torchcodec on a GPU against the CPU's default path (PyAV, OpenCV, ONNX Runtime).
    Not measured yet (no GPU where this was written): the GPU's decoder (NVDEC and torchcodec's CUDA
    colour conversion) is not bit-exact, and torchcodec's own tests allow its frames 3 levels from
    the CPU's (CUDA 13 builds), so frames and crops get those 3 levels on top of test_decoders.py's
    tolerances; the features get the GPU's I3D's (1e-2 of the largest, as above) on top of its."""
    import torch
    from test_decoders import BOX_PIXELS, CROP_MAX_LEVELS, FEATURE_ATOL, need_torchcodec

    from ratscore.crops import VideoCrops
    from ratscore.features import extract_features, load_front_end
    from ratscore.video import read_frames

    need_torchcodec("cuda")
    nvdec_levels = 3
    video = SAMPLE.parent / "clip_7_0002.mp4"  # 640 x 480: crops shrink and the letterbox halves the frame
    frames_gpu = list(read_frames(video, decoder="torchcodec", device="cuda"))
    frames_cpu = list(read_frames(video))
    assert [f.t_s for f in frames_gpu] == [f.t_s for f in frames_cpu]
    assert frames_gpu[0].image.is_cuda
    assert max(np.abs(a.image.cpu().numpy().astype(int) - b.image).max()
               for a, b in zip(frames_gpu, frames_cpu)) <= nvdec_levels
    gpu = load_front_end(device="cuda", decoder="torchcodec")
    cpu = load_front_end(device="cpu")
    assert (gpu.decoder, gpu.decode_device, cpu.decoder) == ("torchcodec", "cuda", "pyav")
    streams = {}
    for name, front in (("gpu", gpu), ("cpu", cpu)):
        stream = VideoCrops(video, front.detector, front.roi_options, front.input_size, front.grid, None, front.motion,
                            front.decoder, front.decode_device)
        streams[name] = (list(stream), stream.tally())
    (crops_gpu, tally_gpu), (crops_cpu, tally_cpu) = streams["gpu"], streams["cpu"]
    assert all(isinstance(c, torch.Tensor) and c.is_cuda for c in crops_gpu)
    diff = np.abs(np.stack(crops_cpu).astype(int) - torch.stack(crops_gpu).cpu().numpy().astype(int))
    # on average: a crop square that rounds to the next pixel (a box a tenth of a pixel away) moves edges
    assert diff.mean() <= CROP_MAX_LEVELS + nvdec_levels
    assert tally_gpu.n_frames == tally_cpu.n_frames and np.abs(tally_gpu.boxes - tally_cpu.boxes).max() <= BOX_PIXELS
    features_gpu = extract_features(video, gpu, progress=False).features
    features_cpu = extract_features(video, cpu, progress=False).features
    assert features_gpu.shape == features_cpu.shape
    assert np.abs(features_gpu - features_cpu).max() <= FEATURE_ATOL + 1e-2 * np.abs(features_cpu).max()
