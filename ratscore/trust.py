"""How far a video's features lie from the training set's: a cheap "can I trust this?" check.

Training writes per-dimension mean and standard deviation of its features, plus the distance of
every training video to them, to `feature_stats.npz`. The distance of a video is the mean over
its time steps of the root-mean-square z-score across dimensions: about 1 for features like the
training ones, growing as a video's features drift (another camera, lighting, species, feature
extractor). A caller compares a new video's distance with the training distribution, e.g. with
`training_percentile`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import InputError
from .writers import atomic_write

MIN_STD = 1e-6  # dimensions that never vary in training must not divide by zero


def feature_stats(features: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics of a set of (T, D) feature arrays (one per video)."""
    features = list(features)
    if not features:
        raise InputError("no features to compute statistics from")
    total = sum(f.shape[0] for f in features)
    mean = sum(f.astype(np.float64).sum(axis=0) for f in features) / total
    var = sum(((f.astype(np.float64) - mean) ** 2).sum(axis=0) for f in features) / total
    std = np.maximum(np.sqrt(var), MIN_STD)
    stats = {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "num_steps": np.int64(total)}
    stats["video_distances"] = np.sort([feature_distance(f, stats) for f in features]).astype(np.float32)
    return stats


def feature_distance(features: np.ndarray, stats) -> float:
    """Mean over time of the RMS z-score of a video's (T, D) features against training statistics."""
    features = np.asarray(features, np.float32)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if features.ndim != 2 or features.shape[1] != mean.shape[0]:
        raise InputError(f"features of shape {features.shape} do not match the statistics' dimension {mean.shape[0]}")
    z = (features - mean) / std
    return float(np.sqrt((z * z).mean(axis=1)).mean())


def training_percentile(distance: float, stats) -> float:
    """Share (0..100) of training videos whose distance is at most `distance`."""
    d = np.asarray(stats["video_distances"])
    return float(100.0 * np.searchsorted(d, distance, side="right") / max(1, len(d)))


def write_feature_stats(path: str | Path, stats: dict) -> Path:
    def write(f):
        buf = io.BytesIO()
        np.savez(buf, **stats)
        f.write(buf.getvalue())

    return atomic_write(Path(path), write)


def read_feature_stats(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable feature statistics ({e})") from None
