"""Training of the RaSeformer localizer on cached features, and the configuration it reads.

The recipe is the RatSeizure release's (`configs/ratseizure_i3d.yaml` over ActionFormer's
defaults): random feature cropping (a random 90-100 % of a clip, at most `max_seq_len` steps,
keeping at least one action of which half survives), point-based label assignment with centre
sampling (radius 1.5 strides) and one regression range per pyramid level, sigmoid focal loss
plus DIoU loss normalised by a running count of positives, AdamW (no weight decay on biases,
norms and scales) with linear warm-up then cosine decay per iteration, gradient clipping, and
an exponential moving average of the weights, which is the model that is saved.

One option the release does not have, off by default: with `cover_long_videos` an epoch draws one
random window per `max_seq_len` steps of each video instead of one per video, so that a long
recording (mostly normal behaviour) weighs as much as the clips it could be cut into. The bundled
model's recipe turns it on; videos no longer than `max_seq_len` give one window either way.

`train_localizer` writes a model directory: localizer.pt (EMA state dict + every config),
localizer.onnx, feature_stats.npz and manifest.json.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..annotations import VideoAnnotation, read_annotations, split
from ..features import load_features
from ..config import read_yaml_mapping
from ..errors import InputError
from ..labels import NUM_CLASSES
from ..localizer import LocalizerConfig, RaSeformer
from ..grid import FeatureGrid
from ..postprocess import PostprocessConfig
from ..runtime import resolve_device


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1e-4  # AdamW peak learning rate
    weight_decay: float = 0.05  # on convolution weights only
    epochs: int = 20  # cosine epochs, after the warm-up (the release's meaning)
    warmup_epochs: int = 20  # linear warm-up epochs from 0 to the peak rate
    batch_size: int = 2  # clips per step
    clip_grad_l2norm: float = 1.0  # gradient norm clip; <= 0 disables
    init_loss_norm: float = 100.0  # initial value of the running positive count that divides the losses
    loss_weight: float = 1.0  # weight of the DIoU loss against the focal loss
    center_sample: str = "radius"  # "radius": positives within center_sample_radius strides of an action's centre; "none"
    center_sample_radius: float = 1.5  # in strides of the point's level
    label_smoothing: float = 0.0  # label smoothing of the classification targets
    trunc_thresh: float = 0.5  # a cropped action must keep this share of its length to stay a target
    crop_ratio: Optional[tuple[float, float]] = (0.9, 1.0)  # random crop length range (share of the clip); None: no crop
    ema_decay: float = 0.999  # EMA of the weights
    seed: int = 1234567891  # random seed of initialisation, cropping and shuffling
    cover_long_videos: bool = False  # True: an epoch draws one window per max_seq_len steps of each video (not the release's)

    def __post_init__(self):
        if self.crop_ratio is not None:
            object.__setattr__(self, "crop_ratio", tuple(float(c) for c in self.crop_ratio))

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.warmup_epochs


@dataclass(frozen=True)
class Setup:
    """Everything a config file decides: network, training, post-processing, feature grid."""

    localizer: LocalizerConfig = LocalizerConfig()
    train: TrainConfig = TrainConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    grid: FeatureGrid = FeatureGrid()

    def to_dict(self) -> dict:
        t = asdict(self.train)
        t["crop_ratio"] = list(self.train.crop_ratio) if self.train.crop_ratio else None
        return {"localizer": self.localizer.to_dict(), "train": t,
                "postprocess": self.postprocess.to_dict(), "grid": asdict(self.grid)}

    @classmethod
    def from_dict(cls, d: dict) -> "Setup":
        return cls(LocalizerConfig.from_dict(d["localizer"]), TrainConfig(**d["train"]),
                   PostprocessConfig.from_dict(d["postprocess"]), FeatureGrid(**d["grid"]))


# Release config keys that name paths, devices or workers: meaningless here, accepted and unused.
_IGNORED = {
    "": {"dataset_name", "train_split", "val_split", "output_folder", "devices", "model_name", "init_rand_seed"},
    "dataset": {"json_file", "feat_folder", "file_prefix", "file_ext", "downsample_rate", "force_upsampling"},
    "loader": {"num_workers"},
    "model": {"max_buffer_len_factor", "fpn_start_level"},
    "train_cfg": {"head_empty_cls"},
    "test_cfg": {"voting_thresh", "iou_threshold", "ext_score_file"},  # voting/iou: unused by multiclass Gaussian soft-NMS
    "opt": {"momentum", "schedule_steps", "schedule_gamma"},
}
# Keys whose only supported value is the release's: anything else is another architecture or method.
_FIXED = {
    ("model", "backbone_type"): "convTransformer", ("model", "fpn_type"): "identity",
    ("model", "use_abs_pe"): False, ("model", "use_rel_pe"): False, ("model", "fpn_start_level"): 0,
    ("test_cfg", "nms_method"): "soft", ("test_cfg", "multiclass_nms"): True,
    ("opt", "type"): "AdamW", ("opt", "warmup"): True, ("opt", "schedule_type"): "cosine",
    ("dataset", "downsample_rate"): 1, ("dataset", "force_upsampling"): False,
    ("model", "max_buffer_len_factor"): None, ("train_cfg", "head_empty_cls"): None,
}
_MAP = {  # (section, key) -> (target, field)
    **{("dataset", k): ("localizer", k) for k in ("input_dim", "num_classes", "max_seq_len")},
    ("dataset", "feat_stride"): ("grid", "feat_stride"), ("dataset", "num_frames"): ("grid", "num_frames"),
    ("dataset", "default_fps"): ("grid", "fps"),
    ("dataset", "trunc_thresh"): ("train", "trunc_thresh"), ("dataset", "crop_ratio"): ("train", "crop_ratio"),
    **{("model", k): ("localizer", k) for k in (
        "backbone_arch", "scale_factor", "regression_range", "n_head", "n_mha_win_size", "embd_kernel_size",
        "embd_dim", "embd_with_ln", "fpn_dim", "fpn_with_ln", "head_dim", "head_kernel_size", "head_num_layers",
        "head_with_ln")},
    ("train_cfg", "attn_keep_ratio"): ("localizer", "attn_keep_ratio"),
    ("train_cfg", "cls_prior_prob"): ("localizer", "cls_prior_prob"),
    ("train_cfg", "dropout"): ("localizer", "dropout"), ("train_cfg", "droppath"): ("localizer", "droppath"),
    **{("train_cfg", k): ("train", k) for k in (
        "init_loss_norm", "clip_grad_l2norm", "center_sample", "center_sample_radius", "loss_weight", "label_smoothing")},
    ("train_cfg", "ema_decay"): ("train", "ema_decay"), ("", "seed"): ("train", "seed"),
    ("opt", "learning_rate"): ("train", "learning_rate"), ("opt", "weight_decay"): ("train", "weight_decay"),
    ("opt", "epochs"): ("train", "epochs"), ("opt", "warmup_epochs"): ("train", "warmup_epochs"),
    ("loader", "batch_size"): ("train", "batch_size"),
    **{("test_cfg", k): ("postprocess", k) for k in (
        "pre_nms_thresh", "pre_nms_topk", "min_score", "max_seg_num", "nms_sigma", "duration_thresh",
        "chunk_len", "chunk_overlap")},
}


def release_setup() -> Setup:
    """The RatSeizure release's configuration (its YAML over ActionFormer's defaults)."""
    return Setup()


def read_config(path: str | Path | None) -> Setup:
    """A release-style YAML config (sections dataset/model/opt/loader/train_cfg/test_cfg) over the
    release's values; InputError naming the key on anything unknown or unsupported."""
    if path is None:
        return release_setup()
    path = Path(path)
    doc = read_yaml_mapping(path, "config file")
    updates: dict[str, dict] = {"localizer": {}, "train": {}, "postprocess": {}, "grid": {}}
    sections = {s for s, _ in _MAP if s} | {s for s in _IGNORED if s} | {s for s, _ in _FIXED}
    for section, body in doc.items():
        if section in sections:
            if not isinstance(body, dict):
                raise InputError(f"{path}: {section} must be a mapping")
            pairs = [(section, key, value) for key, value in body.items()]
        else:
            pairs = [("", section, body)]
        for sec, key, value in pairs:
            where = f"{path}: {sec + '.' if sec else ''}{key}"
            if (sec, key) in _FIXED:
                want = _FIXED[(sec, key)]
                if want is not None and value != want:
                    raise InputError(f"{where} = {value!r} is not supported (only {want!r}, as in the RatSeizure release)")
                continue
            if key in _IGNORED.get(sec, ()):
                continue
            if (sec, key) not in _MAP:
                raise InputError(f"{where}: unknown config key")
            target, name = _MAP[(sec, key)]
            updates[target][name] = value
    base = release_setup()
    try:
        setup = Setup(
            LocalizerConfig.from_dict({**base.localizer.to_dict(), **updates["localizer"]}),
            replace(base.train, **updates["train"]),
            PostprocessConfig.from_dict({**base.postprocess.to_dict(), **updates["postprocess"]}),
            replace(base.grid, **updates["grid"]))
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None
    if setup.localizer.num_classes != NUM_CLASSES:
        raise InputError(f"{path}: num_classes must be {NUM_CLASSES} (the RatSeizure action units)")
    if setup.grid.fps is None:
        raise InputError(f"{path}: dataset.default_fps must be set (features are at a fixed frame rate)")
    return setup


# ---------------------------------------------------------------- data

@dataclass
class _Clip:
    video_id: str
    feats: torch.Tensor  # (D, T)
    segments: torch.Tensor  # (N, 2) on the feature grid
    labels: torch.Tensor  # (N,)


def _make_clips(videos: dict[str, VideoAnnotation], features: dict[str, np.ndarray], grid: FeatureGrid) -> list[_Clip]:
    clips = []
    for vid, ann in videos.items():
        segs = np.asarray([[s.start_s, s.end_s] for s in ann.segments], np.float64).reshape(-1, 2)
        clips.append(_Clip(vid, torch.from_numpy(np.ascontiguousarray(features[vid].T)),
                           torch.from_numpy(grid.to_grid(segs).astype(np.float32)),
                           torch.as_tensor([s.au_id for s in ann.segments], dtype=torch.long)))
    return clips


def random_crop(clip: _Clip, max_seq_len: int, cfg: TrainConfig, grid: FeatureGrid, rng: random.Random,
                max_trials: int = 200) -> _Clip:
    """A random window of the clip (the release's truncate_feats): actions cut to less than
    trunc_thresh of their length are dropped, the others clipped to the window."""
    T = clip.feats.shape[1]
    length = max_seq_len
    if T <= max_seq_len:
        if cfg.crop_ratio is None:
            return clip
        length = rng.randint(max(round(cfg.crop_ratio[0] * T), 1), min(round(cfg.crop_ratio[1] * T), T))
        if length == T:
            return clip
    offset = 0.5 * grid.num_frames / grid.feat_stride
    segs, n = clip.segments, clip.segments.shape[0]
    for _ in range(max_trials):
        st = rng.randint(0, T - length)
        ed = st + length
        left = torch.clamp(segs[:, 0], min=st - offset)
        right = torch.clamp(segs[:, 1], max=ed + offset)
        inter = (right - left).clamp(min=0)
        keep = inter / (segs[:, 1] - segs[:, 0]).abs() >= cfg.trunc_thresh
        if n == 0 or keep.any():
            break
    return _Clip(clip.video_id, clip.feats[:, st:ed].clone(),
                 torch.stack([left[keep], right[keep]], dim=1) - st, clip.labels[keep].clone())


# ---------------------------------------------------------------- targets and losses

def make_points(cfg: LocalizerConfig, length: int) -> torch.Tensor:
    """(P, 4) points of all levels for a padded input of `length` steps: (t, reg_min, reg_max, stride)."""
    rows = []
    for stride, (lo, hi) in zip(cfg.fpn_strides, cfg.regression_range):
        t = torch.arange(0, length, stride, dtype=torch.float32)[:, None]
        rows.append(torch.cat([t, torch.tensor([[lo, hi, stride]], dtype=torch.float32).expand(len(t), 3)], dim=1))
    return torch.cat(rows)


def assign_targets(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   cfg: TrainConfig):
    """Per point: one-hot class targets (P, C) and offsets to the action's ends in strides (P, 2).

    A point is positive for an action when it lies inside the action (and, with centre sampling,
    within radius * stride of its centre) and the farther end lies in its level's range; among
    several, the shortest action wins (ties within 1e-3 share the point).
    """
    P, N = points.shape[0], segments.shape[0]
    if N == 0:
        return points.new_zeros((P, num_classes)), points.new_zeros((P, 2))
    t, stride = points[:, 0, None], points[:, 3, None]  # (P, 1)
    lens = (segments[:, 1] - segments[:, 0])[None, :].repeat(P, 1)  # (P, N)
    left = t - segments[None, :, 0]
    right = segments[None, :, 1] - t
    reg = torch.stack([left, right], dim=-1)  # (P, N, 2)
    if cfg.center_sample == "radius":
        centre = 0.5 * (segments[None, :, 0] + segments[None, :, 1])
        lo = torch.maximum(centre - stride * cfg.center_sample_radius, segments[None, :, 0])
        hi = torch.minimum(centre + stride * cfg.center_sample_radius, segments[None, :, 1])
        inside = torch.minimum(t - lo, hi - t) > 0
    else:
        inside = reg.min(-1).values > 0
    far = reg.max(-1).values
    in_range = (far >= points[:, 1, None]) & (far <= points[:, 2, None])
    lens = lens.masked_fill(~(inside & in_range), float("inf"))
    min_len, min_idx = lens.min(dim=1)
    chosen = ((lens <= min_len[:, None] + 1e-3) & torch.isfinite(lens)).to(reg.dtype)  # (P, N)
    cls = (chosen @ F.one_hot(labels, num_classes).to(reg.dtype)).clamp(0, 1)
    offsets = reg[torch.arange(P), min_idx] / stride
    return cls, offsets


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return ((alpha * targets + (1 - alpha) * (1 - targets)) * loss).sum()


def diou_loss_1d(pred, target, eps=1e-8):
    """Distance-IoU loss of (N, 2) start/end offsets around the same point, summed."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)  # distance between the two centres
    return (1.0 - iou + (rho / enclosing.clamp(min=eps)) ** 2).sum()


class _Losses:
    """Focal + DIoU, normalised by a running (momentum 0.9) count of positive points."""

    def __init__(self, cfg: TrainConfig, num_classes: int):
        self.cfg, self.num_classes = cfg, num_classes
        self.normalizer = cfg.init_loss_norm

    def __call__(self, logits, offsets, masks, gt_cls, gt_off):
        valid = torch.cat(masks, dim=1)  # (B, P)
        pos = (gt_cls.sum(-1) > 0) & valid
        num_pos = int(pos.sum().item())
        self.normalizer = 0.9 * self.normalizer + 0.1 * max(num_pos, 1)
        target = gt_cls[valid] * (1 - self.cfg.label_smoothing) + self.cfg.label_smoothing / (self.num_classes + 1)
        cls_loss = sigmoid_focal_loss(torch.cat(logits, dim=1)[valid], target) / self.normalizer
        pred_off = torch.cat(offsets, dim=1)[pos]
        reg_loss = diou_loss_1d(pred_off, gt_off[pos]) / self.normalizer if num_pos else 0 * pred_off.sum()
        return cls_loss + self.cfg.loss_weight * reg_loss, cls_loss.detach(), reg_loss.detach()


# ---------------------------------------------------------------- optimisation

def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on convolution weights only (not biases, norms, scales)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (decay if isinstance(module, torch.nn.Conv1d) and name == "weight" else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate,
                             fused=True)


def lr_factor(step: int, warmup_steps: int, total_steps: int, base_lr: float, eta_min: float = 1e-8) -> float:
    """Linear warm-up from 0 to the peak, then cosine down to eta_min (per iteration)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps - 1)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (eta_min + 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * min(1.0, progress)))) / base_lr


class ModelEma:
    """Exponential moving average of a model's state dict."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        # One fused lerp over all floating tensors: a Python loop over ~450 tensors cost a
        # quarter of a full-size training step on the CPU.
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        floats = [(e, m) for e, m in pairs if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [m for _, m in floats], 1.0 - self.decay)
        for e, m in pairs:
            if not e.is_floating_point():
                e.copy_(m)


def windows_per_epoch(clips: list[_Clip], max_seq_len: int) -> list[int]:
    """Index of each clip, repeated once per `max_seq_len` steps it holds (at least once)."""
    return [i for i, c in enumerate(clips) for _ in range(max(1, math.ceil(c.feats.shape[1] / max_seq_len)))]


def _batch(clips: list[_Clip], max_seq_len: int):
    B, D = len(clips), clips[0].feats.shape[0]
    x = torch.zeros(B, D, max_seq_len)
    mask = torch.zeros(B, 1, max_seq_len, dtype=torch.bool)
    for i, c in enumerate(clips):
        x[i, :, : c.feats.shape[1]] = c.feats
        mask[i, :, : c.feats.shape[1]] = True
    return x, mask


@dataclass
class TrainResult:
    model: RaSeformer  # the EMA model, in eval mode, on the CPU
    setup: Setup
    epochs_run: int
    seconds: float
    seconds_per_epoch: float
    final_loss: float


def fit(videos: dict[str, VideoAnnotation], features: dict[str, np.ndarray], setup: Setup,
        device: str = "auto", progress: bool = True, max_epochs: Optional[int] = None,
        init_state: Optional[dict] = None) -> TrainResult:
    """Train on the given videos (all of them) and return the EMA model.

    `max_epochs` stops early (for timing a schedule without running it all). `init_state` (a
    state dict of the same network) is where training starts instead of a random initialisation."""
    cfg, lcfg = setup.train, setup.localizer
    dev = torch.device(resolve_device(device or "auto"))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    clips = _make_clips(videos, features, setup.grid)
    model = RaSeformer(lcfg)
    if init_state is not None:
        from ..checkpoint import load_state

        load_state(model, init_state, "the initial weights")
    model = model.to(dev).train()
    ema = ModelEma(model, cfg.ema_decay)  # starts from the initial weights too
    optimizer = make_optimizer(model, cfg)
    draws = windows_per_epoch(clips, lcfg.max_seq_len) if cfg.cover_long_videos else list(range(len(clips)))
    per_epoch = max(1, len(draws) // cfg.batch_size)  # the release drops the last partial batch
    total_steps = cfg.total_epochs * per_epoch
    warmup = cfg.warmup_epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total_steps, cfg.learning_rate))
    losses = _Losses(cfg, lcfg.num_classes)
    points = make_points(lcfg, lcfg.max_seq_len)
    epochs = cfg.total_epochs if max_epochs is None else min(max_epochs, cfg.total_epochs)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]train[/] epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]
    started = time.perf_counter()
    loss_value = float("nan")
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=epochs * per_epoch, epoch=f"1/{epochs}", loss=float("nan"))
        for epoch in range(epochs):
            order = list(draws)
            rng.shuffle(order)
            for b in range(per_epoch):
                batch = [random_crop(clips[i], lcfg.max_seq_len, cfg, setup.grid, rng)
                         for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                if len(batch) < cfg.batch_size and len(draws) >= cfg.batch_size:
                    continue
                x, mask = _batch(batch, lcfg.max_seq_len)
                targets = [assign_targets(points, c.segments, c.labels, lcfg.num_classes, cfg) for c in batch]
                gt_cls = torch.stack([t[0] for t in targets]).to(dev)
                gt_off = torch.stack([t[1] for t in targets]).to(dev)
                logits, offsets = model(x.to(dev), mask.to(dev))
                masks = [mask[:, 0, :: s].to(dev) for s in lcfg.fpn_strides]
                loss, _, _ = losses(logits, offsets, masks, gt_cls, gt_off)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_l2norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_l2norm)
                optimizer.step()
                scheduler.step()
                ema.update(model)
                loss_value = float(loss.item())
                bar.update(task, advance=1, loss=loss_value, epoch=f"{epoch + 1}/{epochs}")
    seconds = time.perf_counter() - started
    final = ema.module.cpu().eval()
    return TrainResult(final, setup, epochs, seconds, seconds / max(1, epochs), loss_value)


def with_total_epochs(setup: Setup, epochs: Optional[int]) -> Setup:
    """The setup with `epochs` in all (None: as it is), split between warm-up and cosine decay in
    the config's proportion."""
    if epochs is None:
        return setup
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    t = setup.train
    warm = int(round(epochs * t.warmup_epochs / max(1, t.total_epochs)))
    return replace(setup, train=replace(t, epochs=epochs - warm, warmup_epochs=warm))


def training_split(annotations: str | Path, features_dir: str | Path, setup: Setup, subset: str = "training"):
    videos = split(read_annotations(annotations), subset)
    features = load_features(features_dir, videos, setup.localizer.input_dim)
    return videos, features


def train_localizer(annotations: str | Path, features_dir: str | Path, output_dir: str | Path,
                    config: str | Path | Setup | None = None, epochs: Optional[int] = None,
                    device: str = "auto", progress: bool = True, evaluate_split: Optional[str] = "testing",
                    name: Optional[str] = None) -> Path:
    """Train the localizer on the 'training' videos and write a model directory; returns it.

    `epochs` sets the total number of epochs, split between warm-up and cosine decay in the
    config's proportion. When the annotations have an `evaluate_split` whose features are all
    present, the model is benchmarked on it and the figures go into the manifest.
    """
    from .export import write_model_dir

    setup = with_total_epochs(config if isinstance(config, Setup) else read_config(config), epochs)
    all_videos = read_annotations(annotations)
    videos = split(all_videos, "training")
    features = load_features(features_dir, videos, setup.localizer.input_dim)
    result = fit(videos, features, setup, device=device, progress=progress)
    trained_on = (f"{Path(annotations).name}: {len(videos)} training videos, features {Path(features_dir).name}/ "
                  f"({setup.localizer.input_dim}-d); {result.epochs_run} epochs, seed {setup.train.seed}")
    out = write_model_dir(result.model, setup, output_dir, features=features, trained_on=trained_on,
                          name=name or Path(output_dir).name)
    report = {"train_seconds": round(result.seconds, 1), "seconds_per_epoch": round(result.seconds_per_epoch, 2),
              "device": resolve_device(device or "auto")}
    if evaluate_split and any(v.subset == evaluate_split for v in all_videos.values()):
        from ..benchmark import benchmark_model

        test = [v for v in all_videos.values() if v.subset == evaluate_split]
        if all((Path(features_dir) / f"{v.video_id}.npy").is_file() for v in test):
            rep = benchmark_model(out, annotations, features_dir, subset=evaluate_split, progress=False)
            report[evaluate_split] = rep["mAP"] | {"average": rep["average_mAP"]}
    from ..model import read_manifest, update_model

    update_model(out, {"benchmark": {**read_manifest(out).get("benchmark", {}), **report}})
    return out

