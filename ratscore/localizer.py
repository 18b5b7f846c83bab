"""RaSeformer: the temporal action localization network (the network only).

An ActionFormer-style convolutional transformer, as in the RatSeizure release: two masked
embedding convolutions, 2 stem and 5 branch transformer blocks (each branch block halves the
time axis, giving 6 pyramid levels), an identity neck with a LayerNorm per level, and
classification / regression heads shared over the levels. Local attention keeps, per head and
per query, only the top-K keys of its window (the centre key always kept); window 1 on a level
means full attention there.

Parameter names follow the release (`backbone.stem.0.attn.query_conv.conv.weight`, ...) so its
checkpoint loads with a plain strict `load_state_dict`. The forward pass uses only operations
ONNX exports (no data-dependent Python control flow), with a dynamic time axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LocalizerConfig:
    input_dim: int = 1024  # feature dimension D of the input (I3D RGB: 1024)
    num_classes: int = 14  # action units
    embd_dim: int = 512  # width of the embedding convolutions and transformer blocks
    embd_kernel_size: int = 3  # kernel of the embedding convolutions
    embd_with_ln: bool = True  # LayerNorm after each embedding convolution
    n_head: int = 4  # attention heads
    backbone_arch: tuple[int, int, int] = (2, 2, 5)  # (embedding convs, stem blocks, branch blocks)
    scale_factor: int = 2  # downsampling between pyramid levels
    n_mha_win_size: tuple[int, ...] = (9, 9, 9, 1, 1, 1)  # attention window per level; <= 1: full attention
    attn_keep_ratio: float = 0.5  # share of a local window's keys kept per query (1.0: plain local attention)
    fpn_dim: int = 512  # neck width (the identity neck needs fpn_dim == embd_dim)
    fpn_with_ln: bool = True  # LayerNorm per pyramid level in the neck
    head_dim: int = 512  # width of the classification / regression heads
    head_kernel_size: int = 3  # kernel of the head convolutions
    head_num_layers: int = 3  # head convolutions, the output one included
    head_with_ln: bool = True  # LayerNorm inside the heads
    regression_range: tuple[tuple[float, float], ...] = (
        (0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))  # regressed distance per level, grid steps
    max_seq_len: int = 96  # training sequence length (inputs are padded to at least this)
    dropout: float = 0.0  # dropout in the projections / MLP
    droppath: float = 0.1  # stochastic depth rate (also makes the per-channel AffineDropPath scales)
    cls_prior_prob: float = 0.01  # initial foreground probability of the classifier bias

    def __post_init__(self):
        # normalise lists (from YAML / JSON) to tuples so configs compare and hash
        object.__setattr__(self, "backbone_arch", tuple(int(a) for a in self.backbone_arch))
        win = self.n_mha_win_size
        win = (win,) * (self.backbone_arch[2] + 1) if isinstance(win, int) else win  # one size for all levels
        object.__setattr__(self, "n_mha_win_size", tuple(int(w) for w in win))
        object.__setattr__(self, "regression_range", tuple(tuple(float(v) for v in r) for r in self.regression_range))
        if len(self.backbone_arch) != 3:
            raise ValueError("backbone_arch must be (embedding convs, stem blocks, branch blocks)")
        if len(self.n_mha_win_size) != self.num_levels or len(self.regression_range) != self.num_levels:
            raise ValueError(f"n_mha_win_size and regression_range need one entry per pyramid level ({self.num_levels})")
        if self.fpn_dim != self.embd_dim:
            raise ValueError("the identity neck needs fpn_dim == embd_dim")
        if self.embd_dim % self.n_head:
            raise ValueError("embd_dim must be a multiple of n_head")
        if any(w > 1 and w % 2 == 0 for w in self.n_mha_win_size):
            raise ValueError("local attention windows must be odd")

    @property
    def num_levels(self) -> int:
        return self.backbone_arch[2] + 1

    @property
    def fpn_strides(self) -> tuple[int, ...]:
        return tuple(self.scale_factor ** i for i in range(self.num_levels))

    @property
    def max_div_factor(self) -> int:
        """Inputs are padded to a multiple of this, so every level's downsampling is exact."""
        factor = 1
        for s, w in zip(self.fpn_strides, self.n_mha_win_size):
            factor = max(factor, s * (w // 2) * 2 if w > 1 else s)
        return factor

    def padded_length(self, length: int) -> int:
        """The length an input of `length` steps is padded to (as the release does at inference)."""
        if length <= self.max_seq_len:
            return self.max_seq_len
        d = self.max_div_factor
        return (length + d - 1) // d * d

    def to_dict(self) -> dict:
        d = asdict(self)
        d["backbone_arch"] = list(self.backbone_arch)
        d["n_mha_win_size"] = list(self.n_mha_win_size)
        d["regression_range"] = [list(r) for r in self.regression_range]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LocalizerConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown localizer config key(s): {', '.join(unknown)}")
        return cls(**d)


class MaskedConv1D(nn.Module):
    """Conv1d whose output is zeroed where the (downsampled) mask is off."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x, mask):
        # x: (B, C, T); mask: (B, 1, T) bool
        out = self.conv(x)  # (B, C', T / stride)
        if self.stride > 1:
            mask = mask[:, :, :: self.stride]  # nearest-neighbour downsampling of an exact multiple
        return out * mask.to(out.dtype), mask


class LayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, T) tensor; weight and bias shaped (1, C, 1)."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))

    def forward(self, x):
        mu = x.mean(dim=1, keepdim=True)
        res = x - mu
        sigma = (res * res).mean(dim=1, keepdim=True)
        return res / torch.sqrt(sigma + self.eps) * self.weight + self.bias


class Scale(nn.Module):
    """A learnable scalar on a level's regression output."""

    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale


class AffineDropPath(nn.Module):
    """Per-channel scale (initialised small) and stochastic depth on a residual branch."""

    def __init__(self, num_dim, drop_prob=0.0, init_scale_value=1e-4):
        super().__init__()
        self.scale = nn.Parameter(init_scale_value * torch.ones(1, num_dim, 1))
        self.drop_prob = drop_prob

    def forward(self, x):
        x = self.scale * x
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x / keep * torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))


class _ConvAttentionBase(nn.Module):
    """Depthwise conv (optionally strided) + LayerNorm before the q/k/v projections."""

    def __init__(self, n_embd, n_head, stride, attn_pdrop, proj_pdrop):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.n_channels = n_embd // n_head
        self.scale = 1.0 / math.sqrt(self.n_channels)
        kernel_size = stride + 1 if stride > 1 else 3
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_conv", MaskedConv1D(n_embd, n_embd, kernel_size, stride=stride,
                                                        padding=kernel_size // 2, groups=n_embd, bias=False))
            setattr(self, f"{name}_norm", LayerNorm(n_embd))
        self.key = nn.Conv1d(n_embd, n_embd, 1)
        self.query = nn.Conv1d(n_embd, n_embd, 1)
        self.value = nn.Conv1d(n_embd, n_embd, 1)
        self.attn_drop = nn.Dropout(attn_pdrop)
        self.proj_drop = nn.Dropout(proj_pdrop)
        self.proj = nn.Conv1d(n_embd, n_embd, 1)

    def _qkv(self, x, mask):
        # -> q, k, v: (B, nh, T', hs); mask: (B, 1, T')
        q, out_mask = self.query_conv(x, mask)
        k, _ = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self.query(self.query_norm(q))
        k = self.key(self.key_norm(k))
        v = self.value(self.value_norm(v))
        B, C, T = q.shape
        q, k, v = (t.reshape(B, self.n_head, self.n_channels, T).transpose(2, 3) for t in (q, k, v))
        return q, k, v, out_mask

    def _project(self, out, mask):
        # out: (B, nh, T', hs) -> (B, C, T')
        B, nh, T, hs = out.shape
        out = out.transpose(2, 3).reshape(B, nh * hs, T)
        return self.proj_drop(self.proj(out)) * mask.to(out.dtype), mask


class MaskedMHCA(_ConvAttentionBase):
    """Full (global) multi-head attention over the valid steps."""

    def __init__(self, n_embd, n_head, stride=1, attn_pdrop=0.0, proj_pdrop=0.0):
        super().__init__(n_embd, n_head, stride, attn_pdrop, proj_pdrop)

    def forward(self, x, mask):
        q, k, v, mask = self._qkv(x, mask)
        att = (q * self.scale) @ k.transpose(-2, -1)  # (B, nh, T, T)
        att = att.masked_fill(~mask[:, :, None, :], float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        out = att @ (v * mask[:, :, :, None].to(v.dtype))  # (B, nh, T, hs)
        return self._project(out, mask)


class LocalTopKMHCA(_ConvAttentionBase):
    """Windowed attention keeping, per head and query, the centre key and the top-(M-1) others.

    M = ceil(window * keep_ratio). Keys that are not kept get -1e4 before the softmax, as the
    release masks invalid keys, so they weigh exactly zero; with keep_ratio 1.0 every key of the
    window is kept (plain local attention).
    """

    def __init__(self, n_embd, n_head, window_size, stride=1, attn_pdrop=0.0, proj_pdrop=0.0, keep_ratio=0.5):
        super().__init__(n_embd, n_head, stride, attn_pdrop, proj_pdrop)
        assert window_size > 1 and window_size % 2 == 1, "the local window must be odd"
        self.window_size = window_size
        self.window_overlap = window_size // 2
        self.keep_ratio = float(keep_ratio)
        self.num_keep = max(1, int(math.ceil(window_size * self.keep_ratio)))

    def forward(self, x, mask):
        q, k, v, mask = self._qkv(x, mask)
        B, nh, T, hs = q.shape
        W, w = self.window_size, self.window_overlap
        # window j of query t is key t + j - w; padding keys are invalid
        k_pad = F.pad(k, (0, 0, w, w))  # (B, nh, T + 2w, hs)
        v_pad = F.pad(v, (0, 0, w, w))
        m_pad = F.pad(mask, (w, w), value=False)  # (B, 1, T + 2w)
        idx = torch.arange(T, device=x.device)[:, None] + torch.arange(W, device=x.device)[None, :]  # (T, W)
        k_win = k_pad[:, :, idx]  # (B, nh, T, W, hs)
        v_win = v_pad[:, :, idx]
        m_win = m_pad[:, :, idx]  # (B, 1, T, W)
        score = (q.unsqueeze(3) @ k_win.transpose(-1, -2)).squeeze(3)  # (B, nh, T, W)
        valid = m_win.expand(B, nh, T, W)
        keep = valid
        if self.num_keep < W:
            centre = torch.zeros(W, dtype=torch.bool, device=x.device)
            centre[w] = True
            if self.num_keep > 1:
                ranked = score.masked_fill(~valid, -1e9).masked_fill(centre, -1e9)
                top = torch.topk(ranked, self.num_keep - 1, dim=-1).indices  # (B, nh, T, M-1)
                chosen = torch.zeros_like(score).scatter(-1, top, 1.0) > 0
                keep = (chosen | centre) & valid
            else:
                keep = centre.expand(B, nh, T, W) & valid
        att = (score * self.scale).masked_fill(~keep, -1e4)
        att = self.attn_drop(F.softmax(att, dim=-1))
        out = (att.unsqueeze(3) @ v_win).squeeze(3)  # (B, nh, T, hs)
        return self._project(out, mask)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block; a strided block halves the time axis (max-pooled skip)."""

    def __init__(self, n_embd, n_head, stride, mha_win_size, keep_ratio, proj_pdrop, path_pdrop):
        super().__init__()
        self.ln1 = LayerNorm(n_embd)
        self.ln2 = LayerNorm(n_embd)
        if mha_win_size > 1:
            self.attn = LocalTopKMHCA(n_embd, n_head, mha_win_size, stride, proj_pdrop=proj_pdrop, keep_ratio=keep_ratio)
        else:
            self.attn = MaskedMHCA(n_embd, n_head, stride, proj_pdrop=proj_pdrop)
        self.pool_skip = nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2) if stride > 1 else nn.Identity()
        self.mlp = nn.Sequential(
            nn.Conv1d(n_embd, 4 * n_embd, 1), nn.GELU(), nn.Dropout(proj_pdrop),
            nn.Conv1d(4 * n_embd, n_embd, 1), nn.Dropout(proj_pdrop))
        if path_pdrop > 0.0:
            self.drop_path_attn = AffineDropPath(n_embd, drop_prob=path_pdrop)
            self.drop_path_mlp = AffineDropPath(n_embd, drop_prob=path_pdrop)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def forward(self, x, mask):
        out, out_mask = self.attn(self.ln1(x), mask)
        m = out_mask.to(out.dtype)
        out = self.pool_skip(x) * m + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self.mlp(self.ln2(out)) * m)
        return out, out_mask


class ConvTransformerBackbone(nn.Module):
    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        n_embd = cfg.embd_dim
        self.embd = nn.ModuleList()
        self.embd_norm = nn.ModuleList()
        for i in range(cfg.backbone_arch[0]):
            self.embd.append(MaskedConv1D(cfg.input_dim if i == 0 else n_embd, n_embd, cfg.embd_kernel_size,
                                          padding=cfg.embd_kernel_size // 2, bias=not cfg.embd_with_ln))
            self.embd_norm.append(LayerNorm(n_embd) if cfg.embd_with_ln else nn.Identity())
        block = dict(n_embd=n_embd, n_head=cfg.n_head, keep_ratio=cfg.attn_keep_ratio,
                     proj_pdrop=cfg.dropout, path_pdrop=cfg.droppath)
        self.stem = nn.ModuleList(
            TransformerBlock(stride=1, mha_win_size=cfg.n_mha_win_size[0], **block) for _ in range(cfg.backbone_arch[1]))
        self.branch = nn.ModuleList(
            TransformerBlock(stride=cfg.scale_factor, mha_win_size=cfg.n_mha_win_size[1 + i], **block)
            for i in range(cfg.backbone_arch[2]))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x, mask):
        # x: (B, D, T); mask: (B, 1, T) -> per level (B, C, T / 2^l), (B, 1, T / 2^l)
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class IdentityNeck(nn.Module):
    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        self.fpn_norms = nn.ModuleList(
            LayerNorm(cfg.fpn_dim) if cfg.fpn_with_ln else nn.Identity() for _ in range(cfg.num_levels))

    def forward(self, feats):
        return [norm(x) for norm, x in zip(self.fpn_norms, feats)]


class _Head(nn.Module):
    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        self.head = nn.ModuleList()
        self.norm = nn.ModuleList()
        for i in range(cfg.head_num_layers - 1):
            self.head.append(MaskedConv1D(cfg.fpn_dim if i == 0 else cfg.head_dim, cfg.head_dim, cfg.head_kernel_size,
                                          padding=cfg.head_kernel_size // 2, bias=not cfg.head_with_ln))
            self.norm.append(LayerNorm(cfg.head_dim) if cfg.head_with_ln else nn.Identity())

    def _trunk(self, x, mask):
        for conv, norm in zip(self.head, self.norm):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))
        return x


class ClsHead(_Head):
    def __init__(self, cfg: LocalizerConfig):
        super().__init__(cfg)
        self.cls_head = MaskedConv1D(cfg.head_dim, cfg.num_classes, cfg.head_kernel_size, padding=cfg.head_kernel_size // 2)
        if cfg.cls_prior_prob > 0:
            # start every class near the prior so the focal loss does not explode at step 0
            nn.init.constant_(self.cls_head.conv.bias, -math.log((1 - cfg.cls_prior_prob) / cfg.cls_prior_prob))

    def forward(self, feats, masks):
        return [self.cls_head(self._trunk(x, m), m)[0] for x, m in zip(feats, masks)]


class RegHead(_Head):
    def __init__(self, cfg: LocalizerConfig):
        super().__init__(cfg)
        self.scale = nn.ModuleList(Scale() for _ in range(cfg.num_levels))
        self.offset_head = MaskedConv1D(cfg.head_dim, 2, cfg.head_kernel_size, padding=cfg.head_kernel_size // 2)

    def forward(self, feats, masks):
        return [F.relu(scale(self.offset_head(self._trunk(x, m), m)[0]))
                for x, m, scale in zip(feats, masks, self.scale)]


class RaSeformer(nn.Module):
    """features (B, D, T) + mask (B, 1, T) -> per level class logits (B, T_l, C) and offsets (B, T_l, 2).

    T must be a multiple of `config.max_div_factor` (pad with zeros and mask the padding).
    Offsets are distances to the segment's start and end in units of the level's stride.
    """

    def __init__(self, config: LocalizerConfig):
        super().__init__()
        self.config = config
        self.backbone = ConvTransformerBackbone(config)
        self.neck = IdentityNeck(config)
        self.cls_head = ClsHead(config)
        self.reg_head = RegHead(config)

    def forward(self, features, mask):
        feats, masks = self.backbone(features, mask)
        feats = self.neck(feats)
        logits = [x.transpose(1, 2) for x in self.cls_head(feats, masks)]  # per level (B, T_l, C)
        offsets = [x.transpose(1, 2) for x in self.reg_head(feats, masks)]  # per level (B, T_l, 2)
        return logits, offsets


class AveragedRaSeformer(nn.Module):
    """Several RaSeformers of one config, trained on the same features with different seeds, as one
    network with a single RaSeformer's inputs and outputs: per level the members' mean class
    probability (given back as a logit) and their mean offsets.

    One training draw finds some episodes and misses others that the next draw finds; the mean of
    a few draws is steadier than any of them (docs/RESULTS.md, fourteenth session).
    """

    def __init__(self, members: list[RaSeformer]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an average needs at least two RaSeformers")
        if any(m.config != members[0].config for m in members[1:]):
            raise ValueError("the averaged RaSeformers must share one config")
        self.config = members[0].config
        self.members = nn.ModuleList(members)

    def forward(self, features, mask):
        outputs = [m(features, mask) for m in self.members]  # (logits, offsets) each
        logits, offsets = [], []
        for level in range(self.config.num_levels):
            p = torch.stack([torch.sigmoid(o[0][level]) for o in outputs]).mean(0)  # (B, T_l, C)
            p = p.clamp(1e-7, 1 - 1e-7)  # a finite logit: decoding takes the sigmoid again
            logits.append(torch.log(p) - torch.log1p(-p))
            offsets.append(torch.stack([o[1][level] for o in outputs]).mean(0))  # (B, T_l, 2)
        return logits, offsets
