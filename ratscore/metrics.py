"""Detection mAP at temporal IoU thresholds, computed as ActionFormer's `ANETdetection` does.

Per class that has ground truth in the evaluated videos: predictions sorted by descending score
(numpy's default argsort, reversed, as the reference does), each matched greedily to the
unmatched ground-truth segment of its video with the highest tIoU at or above the threshold;
all-point interpolated average precision (VOC 2011) over the precision/recall curve. Ground
truth of one video that repeats a segment of the same class within 1e-3 s (or is shorter than
1e-3 s) counts once. Classes without ground truth are skipped; the mAP is the mean over the
remaining classes, and the average mAP the mean over thresholds.

One deliberate difference: the reference renumbers classes with `DataFrame.replace`, which lets a
prediction of a class absent from the ground truth collide with another class's new number. Here
such predictions are simply ignored; on inputs where every predicted class has ground truth (the
RatSeizure test split) the two agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .labels import LABELS, NORMAL_ID
from .model import DEFAULT_THRESHOLD
from .timeline import Event, ScoringOptions, score_events

TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
DUPLICATE_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Detection:
    video: str
    start_s: float
    end_s: float
    au_id: int
    score: float


@dataclass(frozen=True)
class GroundTruth:
    video: str
    start_s: float
    end_s: float
    au_id: int


@dataclass
class MapReport:
    tiou_thresholds: tuple[float, ...]
    mAP: list[float]  # per threshold, in [0, 1]
    average_mAP: float
    ap_per_class: dict[str, list[float]] = field(default_factory=dict)  # class name -> AP per threshold
    num_ground_truth: dict[str, int] = field(default_factory=dict)
    num_detections: int = 0
    num_videos: int = 0

    def to_dict(self) -> dict:
        pct = lambda v: round(100.0 * float(v), 4)  # noqa: E731 - percent with 4 decimals
        return {
            "tiou_thresholds": list(self.tiou_thresholds),
            "mAP": {f"{t:.1f}": pct(m) for t, m in zip(self.tiou_thresholds, self.mAP)},
            "average_mAP": pct(self.average_mAP),
            "ap_per_class": {c: {f"{t:.1f}": pct(a) for t, a in zip(self.tiou_thresholds, ap)}
                             for c, ap in self.ap_per_class.items()},
            "num_ground_truth": self.num_ground_truth,
            "num_detections": self.num_detections,
            "num_videos": self.num_videos,
        }


def remove_duplicates(segments: list[GroundTruth], tol: float = DUPLICATE_TOLERANCE_S) -> list[GroundTruth]:
    """One video's ground truth without repeats (same class, both ends within tol) or near-empty segments."""
    kept: list[GroundTruth] = []
    for g in segments:
        if g.end_s - g.start_s < tol:
            continue
        if any(abs(g.start_s - k.start_s) <= tol and abs(g.end_s - k.end_s) <= tol and g.au_id == k.au_id for k in kept):
            continue
        kept.append(g)
    return kept


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one segment (2,) with each of candidates (N, 2)."""
    inter = (np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP: area under the precision envelope at each recall change."""
    mprec = np.hstack([[0.0], precision, [0.0]])
    mrec = np.hstack([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(ground_truth: list[GroundTruth], detections: list[Detection],
                      tiou_thresholds=TIOU_THRESHOLDS) -> np.ndarray:
    """AP per threshold of one class's detections against that class's ground truth."""
    thresholds = np.asarray(tiou_thresholds, float)
    ap = np.zeros(len(thresholds))
    if not detections:
        return ap
    gt_by_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, g in enumerate(ground_truth):
        gt_by_video.setdefault(g.video, ([], []))
        gt_by_video[g.video][0].append(i)
        gt_by_video[g.video][1].append((g.start_s, g.end_s))
    gt_by_video = {v: (np.asarray(ids), np.asarray(segs, float)) for v, (ids, segs) in gt_by_video.items()}
    scores = np.asarray([d.score for d in detections], float)
    order = scores.argsort()[::-1]  # the reference's order, ties included
    locked = -np.ones((len(thresholds), len(ground_truth)), int)
    tp = np.zeros((len(thresholds), len(detections)))
    fp = np.zeros((len(thresholds), len(detections)))
    for rank, di in enumerate(order):
        d = detections[di]
        if d.video not in gt_by_video:
            fp[:, rank] = 1
            continue
        ids, segs = gt_by_video[d.video]
        tiou = segment_iou(np.asarray([d.start_s, d.end_s], float), segs)
        by_tiou = tiou.argsort()[::-1]
        for t, thr in enumerate(thresholds):
            for j in by_tiou:
                if tiou[j] < thr:
                    break
                if locked[t, ids[j]] >= 0:
                    continue
                tp[t, rank] = 1
                locked[t, ids[j]] = rank
                break
            if tp[t, rank] == 0:
                fp[t, rank] = 1
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall = tp_c / float(len(ground_truth))
    precision = tp_c / (tp_c + fp_c)
    for t in range(len(thresholds)):
        ap[t] = interpolated_ap(precision[t], recall[t])
    return ap


def evaluate(ground_truth: list[GroundTruth], detections: list[Detection],
             tiou_thresholds=TIOU_THRESHOLDS) -> MapReport:
    """mAP of detections against ground truth (already restricted to the evaluated videos).

    Ground truth must be given per video in file order (duplicates are removed here).
    """
    by_video: dict[str, list[GroundTruth]] = {}
    for g in ground_truth:
        by_video.setdefault(g.video, []).append(g)
    gt = [g for segs in by_video.values() for g in remove_duplicates(segs)]
    classes = sorted({g.au_id for g in gt})
    thresholds = tuple(float(t) for t in tiou_thresholds)
    ap = np.zeros((len(thresholds), len(classes)))
    for k, c in enumerate(classes):
        ap[:, k] = average_precision([g for g in gt if g.au_id == c], [d for d in detections if d.au_id == c], thresholds)
    mAP = ap.mean(axis=1) if classes else np.zeros(len(thresholds))
    return MapReport(
        tiou_thresholds=thresholds, mAP=[float(m) for m in mAP], average_mAP=float(mAP.mean()),
        ap_per_class={LABELS[c]: [float(a) for a in ap[:, k]] for k, c in enumerate(classes)},
        num_ground_truth={LABELS[c]: sum(g.au_id == c for g in gt) for c in classes},
        num_detections=len(detections), num_videos=len(by_video))


# ---- reported events: what a technician sees above the model's threshold ------------------------


def event_f1(ground_truth, detections, threshold: float, tiou: float = 0.5) -> float:
    """F1 of the events scoring at least `threshold` against the truth (tIoU >= tiou, same AU, each
    true segment matched once, best-scoring events first)."""
    return float(f1_of_counts(*event_matches(ground_truth, detections, threshold, tiou)))


def f1_of_counts(matched, reported, true):
    """F1 from counts of matches, reported events and true segments: numbers, or arrays of them
    (a bootstrap's resampled sums: benchmarks/compare_models.py). 0 where there is nothing."""
    return 2 * np.asarray(matched) / np.maximum(1, np.asarray(reported) + np.asarray(true))


def event_matches(ground_truth, detections, threshold: float, tiou: float = 0.5) -> tuple[int, int, int]:
    """(events matched, events reported, true segments) behind event_f1. A match never crosses
    videos, so the counts of separate videos add up to those of all of them together (a bootstrap
    over videos resamples them: benchmarks/compare_models.py)."""
    kept = sorted((d for d in detections if d.score >= threshold), key=lambda d: -d.score)
    used, hits = set(), 0
    for d in kept:
        for i, g in enumerate(ground_truth):
            if i in used or g.video != d.video or g.au_id != d.au_id:
                continue
            if segment_iou(np.array([g.start_s, g.end_s]), np.array([[d.start_s, d.end_s]]))[0] >= tiou:
                used.add(i)
                hits += 1
                break
    return hits, len(kept), len(ground_truth)


# The thresholds a model's default is chosen from. The grid reaches 0.7 because a cautious model's best
# F1 lay at 0.5, the grid's former top (docs/RESULTS.md, twenty-second session): a choice at a grid's
# edge may have a better one beyond it.
EVENT_THRESHOLD_CANDIDATES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def best_event_threshold(ground_truth, detections, candidates=EVENT_THRESHOLD_CANDIDATES,
                         tiou: float = 0.5) -> tuple[float, float]:
    """The score threshold whose reported events best match the truth (F1 at tIoU >= 0.5, same AU,
    each true segment matched once), and that F1: the default `--threshold` of the model. With no
    candidates, the threshold of a model that states none."""
    best = (DEFAULT_THRESHOLD, -1.0)
    for threshold in candidates:
        f1 = event_f1(ground_truth, detections, threshold, tiou)
        if f1 > best[1]:
            best = (threshold, f1)
    return best


# ---- seizure episodes: the scoring sheet's unit, judged as a technician would ---------------------

EPISODE_ONSET_TOLERANCE_S = 2.0


def true_episodes(annotation, racine, episode_gap_s: float = ScoringOptions.episode_gap_s):
    """The episodes table of an annotated video's ground truth, grouped by the same code as analyze."""
    events = [Event(s.start_s, s.end_s, s.au_id, 1.0) for s in annotation.segments]
    return score_events(events, annotation.video_id, annotation.duration, annotation.fps or 30.0, "truth", racine,
                        ScoringOptions(episode_gap_s=episode_gap_s)).episodes


def paired_episodes(truth, found):
    """Each true episode with the detected episode that overlaps it with the nearest onset:
    (true row, found row or None, onset within the tolerance, same max stage), in the truth's order.

    `truth` and `found` are episodes tables (timeline.EPISODE_COLUMNS) of one video."""
    for t in truth.itertuples(index=False):
        overlapping = found[(found.onset_s < t.offset_s) & (found.offset_s > t.onset_s)]
        if overlapping.empty:
            yield t, None, False, False
            continue
        best = min(overlapping.itertuples(index=False), key=lambda f: abs(f.onset_s - t.onset_s))  # first of equals
        yield (t, best, bool(abs(best.onset_s - t.onset_s) <= EPISODE_ONSET_TOLERANCE_S),
               bool(int(best.max_stage) == int(t.max_stage)))


def count_episode_matches(truth, found) -> dict:
    """paired_episodes counted, so that several videos add up (see episode_shares)."""
    counts = {"true_episodes": len(truth), "found_episodes": len(found), "matched": 0,
              "onset_ok": 0, "stage_ok": 0, "both_ok": 0}
    for _, best, onset, stage in paired_episodes(truth, found):
        counts["matched"] += best is not None
        counts["onset_ok"] += onset
        counts["stage_ok"] += stage
        counts["both_ok"] += onset and stage
    return counts


def episode_shares(counts: dict) -> dict:
    """Counts (summed over any number of videos) -> the reported figures: shares of true episodes."""
    n = max(1, counts["true_episodes"])
    return {"true_episodes": counts["true_episodes"], "found_episodes": counts["found_episodes"],
            "matched": counts["matched"], "onset_within_2s": round(counts["onset_ok"] / n, 3),
            "same_max_stage": round(counts["stage_ok"] / n, 3), "onset_and_stage": round(counts["both_ok"] / n, 3)}


def normal_spans(annotation) -> list[tuple[float, float]]:
    """(start, end) in seconds of each stretch of normal behaviour ("others") in the annotation."""
    return [(s.start_s, s.end_s) for s in annotation.segments if s.au_id == NORMAL_ID]


def false_alarms(annotation, events) -> list:
    """The events (anything with start_s and end_s: timeline.Event, rows of an events table) whose
    midpoint lies in the annotation's normal behaviour ("others"): a seizure reported where the
    truth has none. An event across a seizure's edge counts by its middle."""
    normal = normal_spans(annotation)
    return [e for e in events if any(start <= (e.start_s + e.end_s) / 2 < end for start, end in normal)]


def match_episodes(truth, found) -> dict:
    """The episode figures of one video (count_episode_matches, as shares)."""
    return episode_shares(count_episode_matches(truth, found))
