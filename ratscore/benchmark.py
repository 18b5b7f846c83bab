"""Accuracy (mAP at tIoU 0.3..0.7) and speed of a localizer; scoring of any method's detections;
the label-encoding synthetic features used to check that training works.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .annotations import VideoAnnotation, read_annotations, split
from .errors import InputError
from .labels import LABELS, NUM_CLASSES
from .metrics import TIOU_THRESHOLDS, Detection, GroundTruth, evaluate, segment_iou
from .grid import FeatureGrid
from .files import atomic_write, atomic_write_text, read_user_csv

DETECTION_COLUMNS = ["video", "start_s", "end_s", "au_id", "score"]


def ground_truth_of(videos: dict[str, VideoAnnotation]) -> list[GroundTruth]:
    return [GroundTruth(v.video_id, s.start_s, s.end_s, s.au_id) for v in videos.values() for s in v.segments]


def write_detections(path: str | Path, detections: list[Detection]) -> Path:
    lines = [",".join(DETECTION_COLUMNS)]
    lines += [f"{d.video},{d.start_s:.6f},{d.end_s:.6f},{d.au_id},{d.score:.6f}" for d in detections]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_detections(path: str | Path) -> list[Detection]:
    """A detections file (video, start_s, end_s, au_id, score); InputError naming the line on problems."""
    path = Path(path)
    table = read_user_csv(path, "detections", f"the columns {', '.join(DETECTION_COLUMNS)}", dtype={"video": str})
    missing = [c for c in DETECTION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    out = []
    for line, row in enumerate(table[DETECTION_COLUMNS].itertuples(index=False), start=2):
        try:
            start, end, score = float(row.start_s), float(row.end_s), float(row.score)
            au = int(row.au_id)
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {line}: start_s, end_s, au_id and score must be numbers") from None
        if not all(map(math.isfinite, (start, end, score))) or float(row.au_id) != au or not 0 <= au < NUM_CLASSES:
            raise InputError(f"{path}: line {line}: bad values (au_id must be 0..{NUM_CLASSES - 1}, times and score finite)")
        out.append(Detection(str(row.video), start, end, au, score))
    return out


# Action units that are easy to mistake for each other: the report says how they are confused.
NEIGHBOUR_GROUPS = ((4, 5), (6, 7, 8))  # head nodding vs neck jerk; the three forelimb clonus kinds


def neighbour_confusion(ground_truth: list[GroundTruth], detections: list[Detection], tiou: float = 0.5) -> dict:
    """For each true segment of a neighbour group: the group member that the best-scoring detection
    overlapping it (tIoU >= `tiou`) names, or "missed". {"head nodding": {"head nodding": 3, ...}, ...}"""
    by_video: dict[str, list[Detection]] = {}
    for d in detections:
        by_video.setdefault(d.video, []).append(d)
    out = {}
    for group in NEIGHBOUR_GROUPS:
        for gt in (g for g in ground_truth if g.au_id in group):
            row = out.setdefault(LABELS[gt.au_id], {**{LABELS[a]: 0 for a in group}, "missed": 0})
            best = None
            for d in by_video.get(gt.video, []):
                if d.au_id not in group:
                    continue
                overlap = segment_iou(np.array([gt.start_s, gt.end_s]), np.array([[d.start_s, d.end_s]]))[0]
                if overlap >= tiou and (best is None or d.score > best.score):
                    best = d
            row["missed" if best is None else LABELS[best.au_id]] += 1
    return out


def _report(result, subset: str, extra: dict) -> dict:
    return {"subset": subset, **result.to_dict(), **extra}


def write_report(path: str | Path, report: dict) -> Path:
    return atomic_write_text(Path(path), json.dumps(report, indent=2) + "\n")


def benchmark_detections(annotations: str | Path, detections_csv: str | Path, subset: str = "testing",
                         output: Optional[str | Path] = None) -> dict:
    """mAP of a detections file (any method's) on one subset of the annotations.

    Detections of videos outside the subset are ignored (and counted in the report)."""
    videos = split(read_annotations(annotations), subset)
    dets = read_detections(detections_csv)
    kept = [d for d in dets if d.video in videos]
    result = evaluate(ground_truth_of(videos), kept, TIOU_THRESHOLDS)
    result.num_videos = len(videos)
    report = _report(result, subset, {"detections": str(detections_csv), "ignored_detections": len(dets) - len(kept)})
    if output:
        write_report(output, report)
    return report


def predict(model_dir: str | Path, videos: dict[str, VideoAnnotation], features_dir: str | Path,
            device: str = "auto", progress: bool = True) -> list[Detection]:
    """Detections of every video with the model directory's ONNX localizer."""
    from rich.progress import track

    from .features import load_features
    from .runner import OnnxLocalizer

    localizer = OnnxLocalizer(model_dir, device)
    features = load_features(features_dir, videos, localizer.feature_dim)
    out: list[Detection] = []
    for vid in track(list(videos), description="detect", disable=not progress, transient=True):
        segs, scores, labels = localizer.detect_arrays(features[vid], videos[vid].duration, f"{features_dir}/{vid}.npy")
        out += [Detection(vid, float(s), float(e), int(c), float(p)) for (s, e), p, c in zip(segs, scores, labels)]
    return out


def benchmark_model(model_dir: str | Path, annotations: str | Path | dict[str, VideoAnnotation],
                    features_dir: str | Path, subset: str = "testing", output: Optional[str | Path] = None,
                    predictions: Optional[str | Path] = None, speed: bool = False, device: str = "auto",
                    progress: bool = True) -> dict:
    """mAP of a model on one subset (and optionally its speed); writes the report / detections if asked.
    `annotations` is an annotation file or its videos as read (read_ground_truth)."""
    from .model import load_model

    videos = split(annotations if isinstance(annotations, dict) else read_annotations(annotations), subset)
    model = load_model(model_dir)
    dets = predict(model_dir, videos, features_dir, device, progress)
    if predictions:
        write_detections(predictions, dets)
    result = evaluate(ground_truth_of(videos), dets, TIOU_THRESHOLDS)
    result.num_videos = len(videos)
    extra = {"model": model.name, "features": str(features_dir),
             "neighbour_confusion": neighbour_confusion(ground_truth_of(videos), dets)}
    if speed:
        extra["speed"] = speed_benchmark(model_dir, videos, features_dir)
    report = _report(result, subset, extra)
    if output:
        write_report(output, report)
    return report


def default_cache_dir(output: Optional[str | Path] = None) -> Path:
    """Where `benchmark --videos` keeps the features it extracts when not told: `.ratscore-features`
    beside the report (-o), else `ratscore-features-<user id>` in the system's temporary folder."""
    import os
    import tempfile

    if output is not None:
        return Path(output).parent / ".ratscore-features"
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"ratscore-features{user}"


def benchmark_videos(model_dir: str | Path, annotations: str | Path | dict[str, VideoAnnotation],
                     videos_dir: str | Path, subset: str = "testing", output: Optional[str | Path] = None,
                     predictions: Optional[str | Path] = None, cache_dir: Optional[str | Path] = None,
                     device: str = "auto", no_roi: bool = False, mask_profile=None, speed: bool = False,
                     log=None, progress: bool = True) -> dict:
    """benchmark_model on the videos of one subset, found in `videos_dir` by their ids: their
    features are extracted with the model's own front end and cached (features.cached_features,
    in `cache_dir` or default_cache_dir(output)), so a second run only scores them again."""
    from .features import cached_features, find_annotated_videos, front_end_key, load_front_end
    from .model import load_model
    from .pipeline import video_fingerprint

    model = load_model(model_dir)
    if not model.has_front_end:
        raise InputError(f"{model_dir}: the model has no video front end (it scores features only); "
                         f"give --features DIR instead of --videos")
    videos = split(annotations if isinstance(annotations, dict) else read_annotations(annotations), subset)
    files = find_annotated_videos(videos_dir, videos)
    front = load_front_end(model, None, device, no_roi)  # a model without a detector needs no_roi: said here
    key = front_end_key(model_dir, None, no_roi, mask_profile)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(output)
    cached = cached_features(files, cache, front, key, video_fingerprint, device, mask_profile, log,
                             progress=progress)
    return benchmark_model(model_dir, videos, cached.folder, subset, output, predictions, speed=speed,
                           device=device, progress=progress)


def read_ground_truth(path: str | Path, code_map=None, point_length_s: Optional[float] = None,
                      videos_dir: Optional[str | Path] = None, subset: str = "training",
                      log=None) -> dict[str, VideoAnnotation]:
    """Scored videos from a RatSeizure/ActionFormer JSON file, or from a BORIS project (.boris) or
    events export (.csv, .tsv, .xlsx) read with `code_map` (behaviour code -> action unit, see
    boris.read_code_map) and `point_length_s` (annotations.from_boris): a BORIS file's videos are
    its media files (by file name without extension), all in `subset` (BORIS has no split), and a
    video whose length BORIS does not give is probed in `videos_dir`. `log` gets the warnings."""
    from .annotations import from_boris
    from .boris import TABLE_SUFFIXES, annotation_format

    path = Path(path)
    kind = None if path.suffix.lower() == ".json" else annotation_format(path)
    if kind is None:
        if path.suffix.lower() in TABLE_SUFFIXES:
            raise InputError(f"{path}: not a BORIS events export (no 'Time' or 'Start (s)' column found)")
        if code_map is not None:
            raise InputError(f"{path}: --map is for BORIS files; this one is read as RatSeizure/ActionFormer JSON")
        return read_annotations(path)

    def probe(video_id: str) -> Optional[float]:
        from .features import find_annotated_videos
        from .video import probe_video

        if videos_dir is None:
            return None
        try:
            video = find_annotated_videos(videos_dir, [video_id])[video_id]
        except InputError:
            return None  # a missing video is reported with the others, where the videos are looked for
        return probe_video(video).duration_s

    imported = from_boris([path], code_map, point_length_s, subset=subset, probe_duration=probe)
    for warning in imported.warnings:
        if log is not None:
            log(f"[annotations] {path.name}: warning: {warning}")
    return imported.videos


def speed_benchmark(model_dir: str | Path, videos: dict[str, VideoAnnotation], features_dir: str | Path,
                    repeats: int = 1) -> dict:
    """Seconds for the network over every video: ONNX Runtime vs eager PyTorch, both on the CPU,
    same padded inputs (post-processing excluded, it is shared)."""
    import platform
    import os

    import torch

    from .features import load_features
    from .runner import OnnxLocalizer, TorchLocalizer

    onnx_loc, torch_loc = OnnxLocalizer(model_dir, "cpu"), TorchLocalizer(model_dir, "cpu")
    features = load_features(features_dir, videos, onnx_loc.feature_dim)
    inputs = []
    for f in features.values():
        L = onnx_loc.config.padded_length(f.shape[0])
        x = np.zeros((1, f.shape[1], L), np.float32)
        x[0, :, : f.shape[0]] = f.T
        inputs.append((x, (np.arange(L) < f.shape[0])[None, None]))
    timings = {}
    for name, loc in (("onnxruntime", onnx_loc), ("pytorch_eager", torch_loc)):
        loc.raw(*inputs[0])  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            for x, m in inputs:
                loc.raw(x, m)
        timings[name] = (time.perf_counter() - start) / repeats
    return {"videos": len(inputs), "onnxruntime_s": round(timings["onnxruntime"], 3),
            "pytorch_eager_s": round(timings["pytorch_eager"], 3),
            "speedup": round(timings["pytorch_eager"] / max(timings["onnxruntime"], 1e-9), 2),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"}


# ---------------------------------------------------------------- synthetic label-encoding features

def label_matrix(video: VideoAnnotation, grid: FeatureGrid, num_steps: Optional[int] = None) -> np.ndarray:
    """(T, C): share of each feature's clip window [4i, 4i + 16) frames covered by each class."""
    fps = video.fps or grid.fps
    if num_steps is None:
        frames = int(round(video.duration * fps))
        num_steps = max(1, (frames - grid.num_frames) // grid.feat_stride + 1)
    starts = np.arange(num_steps) * grid.feat_stride / fps
    ends = starts + grid.num_frames / fps
    out = np.zeros((num_steps, NUM_CLASSES), np.float32)
    for s in video.segments:
        inter = np.clip(np.minimum(ends, s.end_s) - np.maximum(starts, s.start_s), 0, None)
        out[:, s.au_id] = np.maximum(out[:, s.au_id], inter / (ends - starts))
    return out


def make_label_features(annotations: str | Path, out_dir: str | Path, dim: int = 1024, noise: float = 1.0,
                        seed: int = 0, grid: FeatureGrid = FeatureGrid()) -> Path:
    """Write one <video_id>.npy per annotated video whose features encode its labels under noise.

    feature_i = label_matrix_i @ prototypes + noise, prototypes N(0, 1) per class (C, D), noise
    N(0, noise^2): a feature extractor that sees the action units, blurred by its 16-frame window
    and buried in noise of the same size as the signal per dimension.
    """
    videos = read_annotations(annotations)
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((NUM_CLASSES, dim)).astype(np.float32)
    background = rng.standard_normal(dim).astype(np.float32)
    out = Path(out_dir)
    for vid, video in videos.items():
        labels = label_matrix(video, grid)
        active = labels.sum(axis=1, keepdims=True)
        feats = labels @ prototypes + np.clip(1 - active, 0, 1) * background
        feats += noise * rng.standard_normal(feats.shape).astype(np.float32)
        atomic_write(out / f"{vid}.npy", lambda f, a=feats.astype(np.float32): np.save(f, a))
    return out


def synthetic_annotations(num_train: int, num_test: int, seed: int = 0, duration: float = 10.0,
                          max_events: int = 3) -> list[VideoAnnotation]:
    """Random RatSeizure-like clips: a few non-overlapping events of 1-6 s, random classes."""
    from .annotations import Segment

    rng = np.random.default_rng(seed)
    videos = []
    for i in range(num_train + num_test):
        segs, t = [], float(rng.uniform(0, 1.5))
        for _ in range(int(rng.integers(1, max_events + 1))):
            length = float(rng.uniform(1.0, 6.0))
            if t + length > duration:
                break
            segs.append(Segment(round(t, 3), round(t + length, 3), int(rng.integers(0, NUM_CLASSES))))
            t += length + float(rng.uniform(0.3, 2.0))
        videos.append(VideoAnnotation(f"clip_{i:04d}", "training" if i < num_train else "testing", duration, segs))
    return videos


def format_report(report: dict) -> str:
    """A few lines for the terminal."""
    head = " ".join(f"{t}:{m:6.2f}" for t, m in report["mAP"].items())
    lines = [f"mAP (%) at tIoU {head}  average {report['average_mAP']:.2f}  "
             f"({report['num_videos']} videos, {report['num_detections']} detections)"]
    for name in LABELS:
        if name in report["ap_per_class"]:
            ap = report["ap_per_class"][name]
            lines.append(f"  {name:<28} AP@0.5 {ap['0.5']:6.2f}  mean {sum(ap.values()) / len(ap):6.2f}")
    if "speed" in report:
        s = report["speed"]
        lines.append(f"speed over {s['videos']} videos: ONNX Runtime {s['onnxruntime_s']} s, eager PyTorch "
                     f"{s['pytorch_eager_s']} s -> {s['speedup']}x ({s['machine']})")
    return "\n".join(lines)
