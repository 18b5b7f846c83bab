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
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from .errors import InputError

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


def feature_stats_bytes(stats: dict) -> bytes:
    """feature_stats.npz's content (plain arrays: read back without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **stats)
    return buf.getvalue()


def read_feature_stats(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable feature statistics ({e})") from None


@dataclass(frozen=True)
class TrustCheck:
    """How far to trust a video's scoring: was the rat found, and do its features look familiar?

    A video is flagged unfamiliar when the detector found the rat in under `min_rat_found` of its
    frames, or when its feature distance to the training set is beyond `distance_limit`: the
    largest distance of any training video, times a margin (a video like the training ones lies
    well inside it; another camera, lighting or species lies outside).

    Two things the feature distance does not see are flagged from the frames' shape: frames too
    small to show a rat (a side under `min_frame_side` pixels: the crop the I3D sees is blown up from
    a few pixels, and the detector still "finds" something), and portrait frames (taller than wide):
    the models learn from landscape recordings, and a rat turned on its side (a camera on its side,
    or a stray rotation tag on an upright recording, which players and ratscore alike obey) is
    scored as no seizure at all while its features look ordinary.
    """

    stats: Optional[dict] = None  # the model's feature_stats.npz, None when it has none
    distance_limit: Optional[float] = None  # distances above this are unfamiliar
    min_rat_found: float = 0.8  # share of frames in which the rat must be found
    min_frame_side: int = 64  # pixels: frames with a shorter side are too small to score

    DISTANCE_MARGIN = 1.25  # how far past the farthest training video still counts as familiar

    @classmethod
    def from_model(cls, model) -> "TrustCheck":
        """The check of a `model.Model`, with its training feature statistics when it has them."""
        if not model.feature_stats:
            return cls()
        stats = read_feature_stats(model.file(model.feature_stats))
        limit = float(np.max(stats["video_distances"])) * cls.DISTANCE_MARGIN if len(stats["video_distances"]) else None
        return cls(stats, limit)

    def assess(self, result) -> dict:
        reasons = []
        found = result.rat_found_fraction
        if found is not None and found < self.min_rat_found:
            reasons.append(f"the rat was found in only {100 * found:.0f}% of frames")
        width, height = getattr(result, "width", 0), getattr(result, "height", 0)
        if width and height and min(width, height) < self.min_frame_side:
            reasons.append(f"its frames are only {width}x{height} pixels, too small for the model to see the rat "
                           f"(it needs at least {self.min_frame_side} on each side)")
        if width and height and height > width:
            rotation = getattr(result, "rotation", 0)
            tag = f" after the file's {rotation}-degree rotation tag" if rotation in (90, 270) else ""
            check = ("; if the rat lies on its side in the report's stills, the tag is wrong" if tag
                     else "; a camera on its side shows the rat sideways")
            reasons.append(f"its frames are portrait ({width}x{height}{tag}): the model knows landscape "
                           f"recordings{check}")
        distance = None
        if self.stats is not None:
            distance = feature_distance(result.features, self.stats)
            if self.distance_limit is not None and distance > self.distance_limit:
                reasons.append(f"its features lie far from the training set's (distance {distance:.2f}, "
                               f"training videos up to {self.distance_limit / self.DISTANCE_MARGIN:.2f})")
        else:
            reasons.append("the model has no training feature statistics to compare with")
        return {"rat_found_fraction": None if found is None else round(float(found), 4),
                "gaps_s": [[round(a, 2), round(b, 2)] for a, b in result.gaps],
                "feature_distance": None if distance is None else round(distance, 4),
                "feature_distance_limit": None if self.distance_limit is None else round(self.distance_limit, 4),
                "familiar": not reasons, "reasons": reasons}
