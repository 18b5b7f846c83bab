"""From the localizer's raw outputs to detections in seconds, in numpy (no compiled extension).

The steps are those of the RatSeizure/ActionFormer release: per pyramid level, sigmoid scores
above `pre_nms_thresh` (the top `pre_nms_topk`), offsets decoded into segments on the feature
grid, segments shorter than `duration_thresh` dropped; then Gaussian soft-NMS per class
(score *= exp(-iou^2 / sigma), dropped below `min_score`), the best `max_seg_num`; finally grid
to seconds with `(i * stride + 0.5 * num_frames) / fps`, clamped to [0, duration].

A long recording runs as overlapping chunks of the feature sequence. Every grid point is
owned by exactly one chunk, the one whose centre part (the chunk less half the overlap at each
side) holds it, and that chunk's candidates for it are pooled; one soft-NMS over the pool then
treats the recording as a single pass would. A chunk sees half the overlap of context beyond
its centre part, so an event crossing a seam is still seen whole by the points that predict it,
and soft-NMS leaves one detection of it on top.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable, Sequence

import numpy as np

from .grid import FeatureGrid


@dataclass(frozen=True)
class PostprocessConfig:
    pre_nms_thresh: float = 0.001  # per-level candidates need a score above this
    pre_nms_topk: int = 2000  # at most this many candidates per level (and chunk)
    duration_thresh: float = 0.05  # segments shorter than this (grid steps) are dropped
    nms_sigma: float = 0.5  # Gaussian soft-NMS: score *= exp(-iou^2 / sigma)
    min_score: float = 0.001  # soft-NMS drops segments whose decayed score falls below this
    max_seg_num: int = 200  # detections kept per video (per chunk for chunked recordings)
    chunk_len: int = 288  # feature steps per chunk of a long recording (3 x max_seq_len)
    chunk_overlap: int = 192  # steps shared by neighbouring chunks; half of it is context on each side

    def __post_init__(self):
        if self.chunk_overlap >= self.chunk_len or self.chunk_overlap < 0:
            raise ValueError("chunk_overlap must be >= 0 and smaller than chunk_len")
        if self.nms_sigma <= 0:
            raise ValueError("nms_sigma must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PostprocessConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown postprocess key(s): {', '.join(unknown)}")
        return cls(**d)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def decode_candidates(logits: Sequence[np.ndarray], offsets: Sequence[np.ndarray], valid_len: int,
                      strides: Sequence[int], config: PostprocessConfig, grid_offset: int = 0,
                      own: tuple[float, float] = (-math.inf, math.inf)):
    """Candidate segments of one sequence (or chunk): (segments (N, 2) on the grid, scores (N,), labels (N,)).

    logits[l]: (T_l, C); offsets[l]: (T_l, 2), in units of the level's stride. Point j of level l
    sits at grid position grid_offset + j * stride_l; only points with a position in [own[0], own[1])
    and inside the valid length count.
    """
    segs_all, scores_all, labels_all = [], [], []
    for cls_l, off_l, stride in zip(logits, offsets, strides):
        T_l, C = cls_l.shape
        local = np.arange(T_l) * stride  # grid position within the sequence
        position = local + grid_offset
        point_ok = (local < valid_len) & (position >= own[0]) & (position < own[1])
        prob = (sigmoid(cls_l) * point_ok[:, None]).reshape(-1)
        keep = np.flatnonzero(prob > config.pre_nms_thresh)
        prob = prob[keep]
        order = np.argsort(-prob, kind="stable")[: config.pre_nms_topk]
        prob, keep = prob[order], keep[order]
        points, labels = keep // C, keep % C
        pos = position[points].astype(np.float32)
        left = pos - off_l[points, 0].astype(np.float32) * stride
        right = pos + off_l[points, 1].astype(np.float32) * stride
        long_enough = (right - left) > config.duration_thresh
        segs_all.append(np.stack([left, right], axis=1)[long_enough])
        scores_all.append(prob[long_enough])
        labels_all.append(labels[long_enough])
    return (np.concatenate(segs_all).astype(np.float32).reshape(-1, 2),
            np.concatenate(scores_all).astype(np.float32), np.concatenate(labels_all).astype(np.int64))


def _overlap_groups(segs: np.ndarray) -> list[np.ndarray]:
    """Indices of chains of overlapping segments; soft-NMS never couples two chains (iou 0 -> weight 1)."""
    order = np.argsort(segs[:, 0], kind="stable")
    starts, ends = segs[order, 0], segs[order, 1]
    reach = np.maximum.accumulate(ends)
    breaks = np.flatnonzero(starts[1:] >= reach[:-1]) + 1
    return np.split(order, breaks)


def soft_nms(segs: np.ndarray, scores: np.ndarray, sigma: float, min_score: float):
    """Gaussian soft-NMS of one class: (indices picked, their scores when picked), best first."""
    picked, picked_scores = [], []
    if len(segs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    for group in _overlap_groups(segs):
        idx = group.copy()
        x1, x2 = segs[idx, 0].astype(np.float32), segs[idx, 1].astype(np.float32)
        sc = scores[idx].astype(np.float32).copy()
        area = (x2 - x1 + np.float32(1e-6)).astype(np.float32)
        while len(idx):
            best = int(np.argmax(sc))
            picked.append(idx[best])
            picked_scores.append(sc[best])
            rest = np.ones(len(idx), bool)
            rest[best] = False
            inter = np.maximum(np.float32(0), np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
            iou = inter / (area[best] + area[rest] - inter)
            new_sc = sc[rest] * np.exp(-(iou * iou) / np.float32(sigma)).astype(np.float32)
            alive = new_sc >= min_score
            idx, x1, x2, area = idx[rest][alive], x1[rest][alive], x2[rest][alive], area[rest][alive]
            sc = new_sc[alive]
    picked = np.asarray(picked, np.int64)
    picked_scores = np.asarray(picked_scores, np.float32)
    order = np.argsort(-picked_scores, kind="stable")
    return picked[order], picked_scores[order]


def batched_soft_nms(segs, scores, labels, config: PostprocessConfig, max_seg_num: int | None = None):
    """Soft-NMS per class; the best `max_seg_num` over all classes, best first."""
    max_seg_num = config.max_seg_num if max_seg_num is None else max_seg_num
    out_segs, out_scores, out_labels = [], [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        idx, sc = soft_nms(segs[members], scores[members], config.nms_sigma, config.min_score)
        idx, sc = idx[:max_seg_num], sc[:max_seg_num]
        out_segs.append(segs[members][idx])
        out_scores.append(sc)
        out_labels.append(np.full(len(idx), c, np.int64))
    if not out_segs:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    segs, scores, labels = np.concatenate(out_segs), np.concatenate(out_scores), np.concatenate(out_labels)
    order = np.argsort(-scores, kind="stable")[:max_seg_num]
    return segs[order], scores[order], labels[order]


def chunk_starts(length: int, config: PostprocessConfig, align: int) -> list[int]:
    """Start steps of the chunks covering `length` steps (one chunk when it fits)."""
    if length <= config.chunk_len:
        return [0]
    step = config.chunk_len - config.chunk_overlap
    if step % align or config.chunk_len % align:
        raise ValueError(f"chunk_len and chunk_len - chunk_overlap must be multiples of {align}")
    starts = [0]
    while starts[-1] + config.chunk_len < length:
        starts.append(starts[-1] + step)
    return starts


# (features (1, D, L) float32, mask (1, 1, L) bool) -> per level logits (T_l, C), offsets (T_l, 2)
NetworkFn = Callable[[np.ndarray, np.ndarray], tuple[Sequence[np.ndarray], Sequence[np.ndarray]]]


class ChunkedDetection:
    """One recording's detections, its chunks scored as its features arrive.

    `feed` takes each new run of feature steps (n, D) while a video is still being decoded and
    scores every chunk that is already known not to be the recording's last (a chunk is the last
    when it reaches the end); `finish` takes the whole (T, D) features, scores what is left and
    pools. The result is exactly that of scoring the whole recording at the end
    (`detect_segments`): the same chunks, padded the same way, own the same grid points. Only the
    steps a later chunk still needs are kept.
    """

    def __init__(self, network: NetworkFn, strides: Sequence[int], padded_length: Callable[[int], int],
                 config: PostprocessConfig, grid: FeatureGrid, align: int):
        self.network, self.strides, self.padded_length = network, strides, padded_length
        self.config, self.grid, self.align = config, grid, align
        self.step = config.chunk_len - config.chunk_overlap
        self.pooled: list = []  # (segments, scores, labels) of each chunk scored, in order
        self.kept: np.ndarray | None = None  # the steps from the next chunk's start on
        self.fed = 0  # steps fed so far

    def feed(self, features: np.ndarray) -> None:
        """The next (n, D) feature steps of the recording."""
        self.fed += features.shape[0]
        self.kept = features if self.kept is None else np.concatenate([self.kept, features])
        while True:
            start = len(self.pooled) * self.step  # where `kept` begins
            if start + self.config.chunk_len >= self.fed:  # may still be the last chunk
                return
            if len(self.pooled) == 0:
                chunk_starts(self.fed, self.config, self.align)  # checks the chunk sizes once
            self._score(len(self.pooled), start, self.kept, last=False, alone=False)
            self.kept = self.kept[self.step:]

    def finish(self, features: np.ndarray, duration: float, at_least: float = 0.0):
        """Features (T, D) of the whole recording (its first steps those fed) -> (segments in seconds
        (N, 2), scores (N,), labels (N,)).

        `at_least` > 0 returns only the detections scoring at least that, and exactly those that
        scoring everything returns: soft-NMS lowers a candidate's score only by the candidates
        picked before it, which scored at least as much, so the candidates scoring under
        `at_least` from the start can be left out before it (on an hour of recording, almost all
        of them: nearly all of soft-NMS's time).
        """
        T = features.shape[0]
        if self.fed and self.fed != T:
            raise ValueError(f"{self.fed} feature steps were fed, the recording has {T}")
        starts = chunk_starts(T, self.config, self.align)
        for k in range(len(self.pooled), len(starts)):
            self._score(k, starts[k], features[starts[k]:], last=k == len(starts) - 1, alone=len(starts) == 1)
        def scoring_at_least(segs, scores, labels):
            strong = scores.astype(np.float64) >= at_least  # as the scoring compares: in float64
            return segs[strong], scores[strong], labels[strong]

        pool = tuple(np.concatenate([p[i] for p in self.pooled]) for i in range(3))
        if at_least > 0:
            pool = scoring_at_least(*pool)
        segs, scores, labels = batched_soft_nms(*pool, self.config, self.config.max_seg_num * len(starts))
        if at_least > 0:  # and those soft-NMS lowered under it
            segs, scores, labels = scoring_at_least(segs, scores, labels)
        return self.grid.to_seconds(segs, duration), scores, labels

    def _score(self, k: int, start: int, rest: np.ndarray, last: bool, alone: bool) -> None:
        """Chunk k, which starts at step `start` (`rest`: the steps from there on)."""
        chunk = rest[:self.config.chunk_len]
        valid = chunk.shape[0]
        L = self.padded_length(valid) if alone else self.config.chunk_len
        x = np.zeros((1, chunk.shape[1], L), np.float32)
        x[0, :, :valid] = chunk.T
        mask = (np.arange(L) < valid)[None, None]
        logits, offsets = self.network(x, mask)
        half = self.config.chunk_overlap / 2
        own = (-math.inf if k == 0 else start + half, math.inf if last else start + self.config.chunk_len - half)
        self.pooled.append(decode_candidates(logits, offsets, valid, self.strides, self.config, grid_offset=start,
                                             own=own))


def detect_segments(features: np.ndarray, duration: float, network: NetworkFn, strides: Sequence[int],
                    padded_length: Callable[[int], int], config: PostprocessConfig, grid: FeatureGrid,
                    align: int):
    """Features (T, D) of one recording -> (segments in seconds (N, 2), scores (N,), labels (N,)).

    Sequences up to `config.chunk_len` run in one pass, padded as the release pads them; longer
    ones run as overlapping chunks (see the module docstring).
    """
    return ChunkedDetection(network, strides, padded_length, config, grid, align).finish(features, duration)
