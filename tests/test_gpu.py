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
    cpu = load_front_end(BUNDLED_MODEL_DIR, device="cpu").encoder
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
