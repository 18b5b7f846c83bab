"""Read and write annotations in the RatSeizure / ActionFormer JSON format.

    {"database": {"<video_id>": {"subset": "training"|"testing", "duration": 10.0, "fps": 30.0,
      "annotations": [{"segment": [start_s, end_s], "label": "head nodding", "label_id": 4}, ...]}}}

`fps` is optional (the RatSeizure release leaves it out). Every problem is reported as one
line naming the file, the video id and what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .errors import InputError
from .labels import LABEL_IDS, LABELS, NUM_CLASSES
from .files import atomic_write_text

# Segments may end a hair past the clip's end through float rounding of frame times.
DURATION_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    au_id: int

    @property
    def label(self) -> str:
        return LABELS[self.au_id]


@dataclass
class VideoAnnotation:
    video_id: str
    subset: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    fps: Optional[float] = None


def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def _parse_segment(raw, duration: float, where: str) -> Segment:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: an annotation must be an object, got {type(raw).__name__}")
    seg = raw.get("segment")
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise InputError(f"{where}: 'segment' must be [start_s, end_s], got {seg!r}")
    start = _number(seg[0], "segment start", where)
    end = _number(seg[1], "segment end", where)
    if end <= start:
        raise InputError(f"{where}: segment [{start}, {end}] does not end after it starts")
    if start < -DURATION_TOLERANCE_S or end > duration + DURATION_TOLERANCE_S:
        raise InputError(f"{where}: segment [{start}, {end}] lies outside the clip (duration {duration} s)")

    if "label" not in raw and "label_id" not in raw:
        raise InputError(f"{where}: annotation has neither 'label' nor 'label_id'")
    name_id = None
    if "label" in raw:
        name = raw["label"]
        if not isinstance(name, str) or name not in LABEL_IDS:
            raise InputError(f"{where}: unknown label {name!r} (see `ratscore labels`)")
        name_id = LABEL_IDS[name]
    num_id = None
    if "label_id" in raw:
        num_id = raw["label_id"]
        if isinstance(num_id, bool) or not isinstance(num_id, int) or not 0 <= num_id < NUM_CLASSES:
            raise InputError(f"{where}: unknown label_id {num_id!r} (ids are 0..{NUM_CLASSES - 1})")
    if name_id is not None and num_id is not None and name_id != num_id:
        raise InputError(f"{where}: label {raw['label']!r} has id {name_id}, but label_id says {num_id}")
    au_id = name_id if name_id is not None else num_id
    return Segment(max(0.0, start), min(duration, end), au_id)


def parse_annotations(doc, source: str = "annotations") -> dict[str, VideoAnnotation]:
    """Validate a parsed JSON document and return video_id -> VideoAnnotation, in file order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("database"), dict):
        raise InputError(f"{source}: expected an object with a 'database' object of videos")
    videos: dict[str, VideoAnnotation] = {}
    for video_id, entry in doc["database"].items():
        where = f"{source}: video {video_id!r}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: entry must be an object")
        subset = entry.get("subset")
        if not isinstance(subset, str) or not subset:
            raise InputError(f"{where}: 'subset' must be a name such as 'training' or 'testing'")
        if "duration" not in entry:
            raise InputError(f"{where}: missing 'duration'")
        duration = _number(entry["duration"], "duration", where)
        if duration <= 0:
            raise InputError(f"{where}: duration must be positive, got {duration}")
        fps = entry.get("fps")
        if fps is not None:
            fps = _number(fps, "fps", where)
            if fps <= 0:
                raise InputError(f"{where}: fps must be positive, got {fps}")
        raw_segments = entry.get("annotations", [])
        if not isinstance(raw_segments, list):
            raise InputError(f"{where}: 'annotations' must be a list")
        segments = [_parse_segment(raw, duration, where) for raw in raw_segments]
        videos[str(video_id)] = VideoAnnotation(str(video_id), subset, duration, segments, fps)
    return videos


def read_annotations(path: str | Path) -> dict[str, VideoAnnotation]:
    """Read a RatSeizure/ActionFormer annotation file; InputError with one line on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such annotation file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read annotation file ({e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return parse_annotations(doc, str(path))


def annotations_to_json(videos: Iterable[VideoAnnotation]) -> dict:
    database = {}
    for v in videos:
        entry: dict = {"subset": v.subset, "duration": v.duration}
        if v.fps is not None:
            entry["fps"] = v.fps
        entry["annotations"] = [
            {"segment": [s.start_s, s.end_s], "label": s.label, "label_id": s.au_id} for s in v.segments
        ]
        database[v.video_id] = entry
    return {"database": database}


def write_annotations(path: str | Path, videos: Iterable[VideoAnnotation]) -> Path:
    """Write the annotation file atomically (a reader never sees half of it)."""
    return atomic_write_text(Path(path), json.dumps(annotations_to_json(videos), indent=1) + "\n")


def split(videos: dict[str, VideoAnnotation], subset: str) -> dict[str, VideoAnnotation]:
    """The videos of one subset ('training', 'testing'); InputError when there are none."""
    chosen = {k: v for k, v in videos.items() if v.subset == subset}
    if not chosen:
        subsets = sorted({v.subset for v in videos.values()})
        raise InputError(f"no videos in subset {subset!r} (the file has: {', '.join(subsets) or 'none'})")
    return chosen
