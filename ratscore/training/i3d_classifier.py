"""The small I3D trained as a 14-class classifier of clips cropped around the rat.

The bundle recipe trains it on synthetic clips, whose true rat boxes are known (`rat_boxes`), and
then keeps its trunk as the feature extractor. Its clips are those of the time grid: as many
frames as one feature's clip, labelled by the action at the clip's centre.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError
from ..grid import DEFAULT_GRID
from ..labels import NUM_CLASSES


@dataclass(frozen=True)
class ClassifierOptions:
    # No defaults: the bundle recipe's fields of the same meaning are the one place they are set
    # (BundleRecipe.i3d_*, crop_margin, classifier_*, seed).
    width: float  # channel multiplier of the small I3D
    input_size: int  # crop side given to the I3D, pixels
    subtract_temporal_mean: bool  # the I3D sees motion only (see I3DConfig)
    still_share: float  # ... but for this share of the still picture (see I3DConfig)
    crop_margin: float  # margin around the rat's box, as a share of its longer side
    epochs: int
    stride: int  # frames between training windows
    batch: int
    lr: float  # OneCycle peak learning rate
    seed: int  # torch and numpy seed


def _clip_centre_s(start: int) -> float:
    """Centre time (s) of the grid's clip whose first frame is `start` (any frame, not only a feature's)."""
    return (start + 0.5 * DEFAULT_GRID.num_frames) / DEFAULT_GRID.fps


def _window_label(segments, centre_s: float) -> Optional[int]:
    for seg in segments:
        if seg.start_s <= centre_s < seg.end_s:
            return seg.au_id
    return None


def rat_boxes(synth_dir: Path, video_id: str):
    """boxes_of_frame(frame, width, height) -> the true rat box (x0, y0, x1, y1) in pixels, or None."""
    import pandas as pd

    table = pd.read_csv(Path(synth_dir) / "boxes" / f"{video_id}.csv")
    rat = table[table["cls"] == 0].set_index("frame")

    def boxes_of_frame(frame: int, width: int, height: int):
        if frame not in rat.index:
            return None
        r = rat.loc[frame]
        if isinstance(r, pd.DataFrame):
            r = r.iloc[0]
        cx, cy, w, h = r.cx * width, r.cy * height, r.w * width, r.h * height
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    return boxes_of_frame


def load_rat_crops(video: Path, boxes_of_frame, size: int, margin: float) -> np.ndarray:
    """Every frame of a synthetic clip cropped around its true rat box: (N, size, size, 3) uint8."""
    from ..roi import square_around
    from ..video import crop_square, read_frames

    crops, last = [], None
    for frame in read_frames(video):
        h, w = frame.image.shape[:2]
        box = boxes_of_frame(frame.index, w, h)
        last = box if box is not None else last
        if last is None:
            square = np.array([0, 0, w, h], dtype=np.float32)
        else:
            square = square_around(np.asarray(last, dtype=np.float32), margin, 32, w, h)
        crops.append(crop_square(frame.image, square, size))
    return np.stack(crops)


def augment_clip(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clip of crops (F, S, S, 3) uint8 -> float32 in [-1, 1], changed the same way in every
    frame: a random zoom and shift (as a detector's box would vary), a mirror, the colour channels
    permuted or turned grey, gain, contrast and offset, and sensor noise.

    Why so much: 100 synthetic clips differ most in their look (bedding, background, light), and
    without this the classifier learns each clip's look instead of the rat's motion (it then
    tells its training clips' windows apart and is at chance on unseen ones)."""
    import cv2

    size = clip.shape[1]
    side = int(round(size * rng.uniform(0.8, 1.0)))
    x0, y0 = (int(rng.integers(0, size - side + 1)) for _ in range(2))
    if side != size:
        clip = np.stack([cv2.resize(f[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_LINEAR)
                         for f in clip])
    x = clip.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    x = x[..., rng.permutation(3)]
    if rng.random() < 0.25:
        x = np.repeat(x.mean(axis=3, keepdims=True), 3, axis=3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean
    x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32) + np.float32(rng.uniform(-0.1, 0.1))
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.03), x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0) * 2.0 - 1.0


def train_i3d_classifier(videos: list[tuple[Path, list, Callable]], out: Path, options: ClassifierOptions,
                         inputs: dict, device: str = "cpu", log=print) -> dict:
    """Train the small I3D as a 14-class classifier of the grid's clips; checkpoints each epoch
    to out/i3d_classifier.pt, and resumes from it.

    `videos`: (mp4, segments, boxes_of_frame) for the training clips. `inputs`: what the weights
    are made from (the bundle's stage inputs), stored in the checkpoint: a checkpoint made from
    other inputs is not resumed. Returns the final metrics.
    """
    import torch
    import torch.nn.functional as F

    from ..i3d import I3DConfig, InceptionI3d

    frames = DEFAULT_GRID.num_frames
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    crops, samples = [], []  # samples: (video index, first frame, label)
    for vi, (path, segments, boxes) in enumerate(videos):
        clip = load_rat_crops(path, boxes, options.input_size, options.crop_margin)
        crops.append(clip)
        for start in range(0, len(clip) - frames + 1, options.stride):
            label = _window_label(segments, _clip_centre_s(start))
            if label is not None:
                samples.append((vi, start, label))
    if not samples:
        raise InputError(f"no training windows: the clips are shorter than {frames} frames")
    labels = np.array([s[2] for s in samples])
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    class_weight = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0),
                                dtype=torch.float32, device=device)

    config = I3DConfig(width=options.width, input_size=options.input_size, num_classes=NUM_CLASSES,
                       subtract_temporal_mean=options.subtract_temporal_mean, still_share=options.still_share)
    model = InceptionI3d(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(samples) / options.batch)
    total = steps_per_epoch * options.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=total, pct_start=0.1)
    ckpt_path = Path(out) / "i3d_classifier.pt"
    start_epoch = 0
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=True) if ckpt_path.exists() else None
    if ckpt is not None and ckpt.get("inputs", inputs) != inputs:
        log("i3d classifier: the recipe changed since its checkpoint, training from the start")
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt["epoch"]
        rng = np.random.default_rng(options.seed + start_epoch)
        log(f"i3d classifier: resuming after epoch {start_epoch}")

    def augmented_batch(idx):
        xs, ys = [], []
        half = options.stride // 2
        for i in idx:
            vi, start, label = samples[i]
            # a window shifted by up to half the stride: every epoch sees new windows
            shifted = int(np.clip(start + rng.integers(-half, half + 1), 0, len(crops[vi]) - frames))
            shifted_label = _window_label(videos[vi][1], _clip_centre_s(shifted))
            if shifted_label is not None:
                start, label = shifted, shifted_label
            ys.append(label)
            x = augment_clip(crops[vi][start:start + frames], rng)  # (F, S, S, 3) in [-1, 1]
            xs.append(x.transpose(3, 0, 1, 2))  # (3, F, S, S)
        x = torch.from_numpy(np.ascontiguousarray(np.stack(xs))).to(device)
        return x, torch.tensor(ys, dtype=torch.long, device=device)

    metrics = {}
    for epoch in range(start_epoch, options.epochs):
        model.train()
        order = rng.permutation(len(samples))
        t0, loss_sum, correct = time.time(), 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * options.batch:(b + 1) * options.batch]
            x, y = augmented_batch(idx)
            logits = model.classify(x)  # (B, 14)
            loss = F.cross_entropy(logits, y, weight=class_weight, label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        metrics = {"epoch": epoch + 1, "loss": loss_sum / len(samples), "train_accuracy": correct / len(samples),
                   "seconds": round(time.time() - t0, 1), "windows": len(samples)}
        log(f"i3d classifier epoch {epoch + 1}/{options.epochs}: loss {metrics['loss']:.3f}, "
            f"train accuracy {metrics['train_accuracy']:.3f} ({metrics['seconds']} s)")
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"config": config.to_dict(), "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "metrics": metrics, "inputs": inputs}, tmp)
        tmp.replace(ckpt_path)
    return metrics
