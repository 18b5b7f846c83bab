"""The I3D in reduced precision (issue 26): fp16/bf16 under autocast in PyTorch, fp32 everywhere
else. On the CPU the arithmetic is in the same formats a GPU uses, so the tolerances measured here
are the ones tests/test_gpu.py holds the GPU to (fp16 there: "auto" on a GPU)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import one_line_error
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.features import ClipEncoder, load_front_end
from ratscore.i3d import I3DConfig, InceptionI3d
from ratscore.runtime import resolve_precision

# Largest difference from fp32 features, as a share of the largest fp32 feature. Measured on the
# bundled I3D over the five sample clips (CPU, docs/RESULTS.md): bf16 1.3%, fp16 0.16%.
BF16_TOLERANCE = 0.02
FP16_TOLERANCE = 0.005


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_auto_precision_is_fp16_on_a_gpu_and_fp32_on_the_cpu():
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(InputError, match="--precision must be"):
        resolve_precision("fp64", "cpu")


@pytest.fixture(scope="module")
def narrow_i3d():
    torch.manual_seed(0)
    return InceptionI3d(I3DConfig(width=0.125, input_size=64)).eval()


@pytest.mark.parametrize("precision, tolerance", [("bf16", BF16_TOLERANCE), ("fp16", FP16_TOLERANCE)])
def test_reduced_precision_features_stay_near_fp32(narrow_i3d, precision, tolerance):
    clips = np.random.default_rng(0).integers(0, 256, (3, 16, 64, 64, 3), dtype=np.uint8)
    exact = ClipEncoder(64, narrow_i3d.feature_dim, model=narrow_i3d, precision="fp32")(clips)
    reduced_encoder = ClipEncoder(64, narrow_i3d.feature_dim, model=narrow_i3d, precision=precision)
    reduced = reduced_encoder(clips)
    assert reduced.dtype == np.float32 and reduced.shape == exact.shape
    error = _relative_error(reduced, exact)
    assert 0 < error < tolerance  # not zero: the reduced arithmetic really ran
    # a torch tensor of the same clips (crops made on a GPU arrive so) gives the same features
    np.testing.assert_array_equal(reduced_encoder(torch.from_numpy(clips)), reduced)


def test_an_onnx_only_model_refuses_reduced_precision_and_auto_settles_on_fp32(tiny_model):
    assert load_front_end(tiny_model, device="cpu", no_roi=True, precision="auto").encoder.precision == "fp32"
    with pytest.raises(InputError, match=r"no PyTorch weights \(i3d.pt\).*--precision fp32"):
        load_front_end(tiny_model, device="cpu", no_roi=True, precision="bf16")


@pytest.mark.parametrize("precision, tolerance", [("bf16", BF16_TOLERANCE), ("fp16", FP16_TOLERANCE)])
def test_bundled_i3d_in_reduced_precision_keeps_to_the_measured_tolerance(precision, tolerance):
    from ratscore.model import BUNDLED_MODEL_DIR

    exact = load_front_end(BUNDLED_MODEL_DIR, device="cpu").encoder  # the CPU default: fp32
    reduced = load_front_end(BUNDLED_MODEL_DIR, device="cpu", precision=precision).encoder
    assert exact.backend == "torch" and exact.precision == "fp32"
    assert reduced.backend == "torch" and reduced.precision == precision
    clips = np.random.default_rng(2).integers(0, 256, (2, 16, exact.input_size, exact.input_size, 3), dtype=np.uint8)
    assert 0 < _relative_error(reduced(clips), exact(clips)) < tolerance


def test_cli_refuses_an_unknown_precision(tmp_path):
    from ratscore.model import BUNDLED_MODEL_DIR

    sample = BUNDLED_MODEL_DIR.parent / "sample_videos" / "clip_7_0001.mp4"
    result = CliRunner().invoke(app, ["analyze", str(sample), "-o", str(tmp_path / "out"), "--precision", "fp64"])
    assert "--precision must be auto, fp32, bf16 or fp16" in one_line_error(result)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
