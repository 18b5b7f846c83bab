"""Read and write annotations in the RatSeizure / ActionFormer JSON format.

    {"database": {"<video_id>": {"subset": "training"|"testing", "duration": 10.0, "fps": 30.0,
      "annotations": [{"segment": [start_s, end_s], "label": "head nodding", "label_id": 4}, ...]}}}

`fps` is optional (the RatSeizure release leaves it out). Every problem is reported as one
line naming the file, the video id and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

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


def check_video_id(video_id, where: str) -> str:
    """A video id names files (<id>.npy features, <id>.mp4 videos) inside one folder, so it is a
    file stem: not empty, not "." or "..", no path separator or NUL. InputError otherwise, before
    anything is read or written under the id."""
    if not isinstance(video_id, str) or not video_id:
        raise InputError(f"{where}: a video id must be a non-empty file name")
    if video_id in (".", "..") or any(c in video_id for c in ("/", "\\", "\0")):
        raise InputError(f"{where}: a video id must be a file name without folders "
                         "(no '/' or '\\', not '.' or '..'), since it names files inside one folder")
    return video_id


def parse_annotations(doc, source: str = "annotations") -> dict[str, VideoAnnotation]:
    """Validate a parsed JSON document and return video_id -> VideoAnnotation, in file order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("database"), dict):
        raise InputError(f"{source}: expected an object with a 'database' object of videos")
    videos: dict[str, VideoAnnotation] = {}
    for video_id, entry in doc["database"].items():
        where = f"{source}: video {video_id!r}"
        check_video_id(video_id, where)
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


# --- from BORIS: a lab's own scoring as annotations --------------------------------------------

TEST_SHARE = 0.25  # import-annotations: about this share of the videos goes to "testing"
_FRAME_S = 1 / 30.0  # a segment may end this far past a video's stated length (then it is cut there)


@dataclass
class BorisVideo:
    """One video's coding in a BORIS file: segments in seconds of the video."""

    video_id: str  # the media file's stem (the observation id where there is none)
    duration: float
    fps: Optional[float]
    segments: list[Segment]
    file: Path  # the BORIS file it came from
    observation: str
    media_file: Optional[str]  # the path as BORIS has it


@dataclass
class BorisImport:
    videos: dict[str, VideoAnnotation]  # video id -> annotation, in file order
    unmapped: dict[str, int]  # behaviour code -> occurrences left out: the map does not name it
    warnings: list[str]  # one line each, for the user (the unmapped codes' line first)


def unmapped_warning(unmapped: dict[str, int], map_given: bool) -> Optional[str]:
    """The one line that lists the codes left out, with their counts; None when there are none."""
    if not unmapped:
        return None
    codes = ", ".join(f"{code!r} ({n})" for code, n in sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0])))
    if map_given:
        return f"codes not in the map, left out: {codes}; add them to the map to keep them"
    return (f"codes that are not action-unit names, left out: {codes}; "
            "give --map MAP.yaml to map them (see `ratscore labels`)")


def read_boris_videos(files: Iterable[str | Path], code_map=None, point_length_s: Optional[float] = None,
                      duration_s: Optional[float] = None,
                      probe_duration: Optional[Callable[[str], Optional[float]]] = None,
                      ) -> tuple[list[BorisVideo], dict[str, int], list[str]]:
    """The videos coded in BORIS projects or exports (boris.read_annotation_file), one per media
    file stem, with the codes left out and the warnings (lines) of the reading.

    A video's duration is `duration_s` when given, else BORIS's length of the file, else
    `probe_duration(video_id)`, else the end of its last segment (with a warning). A segment that
    ends within a frame past the duration is cut there; further is an error. A stem coded in two
    observations (or two files) is refused: ratscore does not guess whether they are one coding
    in two parts or two codings of one video. `code_map`: a dict, or a MAP.yaml path."""
    from .boris import read_annotation_file, read_code_map

    files = [Path(f) for f in files]
    if not files:
        raise InputError("no BORIS file given")
    if code_map is not None and not isinstance(code_map, dict):
        code_map = read_code_map(code_map)
    unmapped: dict[str, int] = {}
    seen: dict[str, str] = {}
    videos: list[BorisVideo] = []
    no_length: list[str] = []
    zero_length = 0
    for path in files:
        entries = read_annotation_file(path, code_map, point_length_s)
        if not entries:
            raise InputError(f"{path}: no observation with a media file in this BORIS file")
        for e in entries:
            vid = e["video"]
            here = f"{path}: observation {e['observation']!r}"
            check_video_id(vid, f"{here}: video {vid!r}")
            if vid in seen:
                raise InputError(f"video {vid!r} is coded twice ({seen[vid]} and {here}); give one coding "
                                 "per video (remove one, or join them in BORIS)")
            seen[vid] = here
            for code, n in e["unmapped"].items():
                unmapped[code] = unmapped.get(code, 0) + n
            raw = [(float(a), float(b), LABEL_IDS[label]) for a, b, label in e["segments"]]
            zero_length += sum(1 for a, b, _ in raw if not b > a)
            raw = [s for s in raw if s[1] > s[0]]
            duration = duration_s if duration_s is not None else e["duration_s"]
            if duration is None and probe_duration is not None:
                duration = probe_duration(vid)
            if duration is None:
                if not raw:
                    raise InputError(f"{here}: BORIS gives no length for video {vid!r} and it has no events; "
                                     "give its duration")
                duration = max(b for _, b, _ in raw)
                no_length.append(vid)
            duration = _number(duration, "the video's duration", f"{here}: video {vid!r}")
            if not duration > 0:
                raise InputError(f"{here}: video {vid!r} has a duration of {duration} s")
            tolerance = 1.0 / e["fps"] if e["fps"] else _FRAME_S
            segments = []
            for a, b, au in raw:
                if a >= duration or b > duration + tolerance:
                    raise InputError(f"{here}: {LABELS[au]!r} at [{a:g}, {b:g}] s lies past the end of video "
                                     f"{vid!r} ({duration:g} s)")
                segments.append(Segment(max(0.0, a), min(b, duration), au))
            videos.append(BorisVideo(vid, duration, e["fps"], segments, path, e["observation"], e["media_file"]))
    if code_map is None and unmapped and not any(v.segments for v in videos):
        codes = sorted(unmapped)
        shown = ", ".join(repr(c) for c in codes[:5]) + (", ..." if len(codes) > 5 else "")
        raise InputError(f"no code of {', '.join(str(f) for f in files)} is an action-unit name ({shown}); "
                         "give --map MAP.yaml (see `ratscore labels`)")
    warnings = [w for w in [unmapped_warning(unmapped, code_map is not None)] if w]
    if zero_length:
        warnings.append(f"{zero_length} state(s) that stop when they start (no length) left out")
    if no_length:
        shown = ", ".join(no_length[:5]) + (", ..." if len(no_length) > 5 else "")
        warnings.append(f"BORIS gives no length for {len(no_length)} video(s) ({shown}): each one's duration is "
                        "taken as the end of its last event")
    return videos, unmapped, warnings


def _draw(seed: int, video_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the video id alone."""
    digest = hashlib.sha256(f"{seed}\0{video_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def draw_subsets(video_ids: Iterable[str], test_share: float, seed: int) -> dict[str, str]:
    """video id -> "training" or "testing": each video is drawn on its own from the seed and its
    id, so a video keeps its subset when videos are added to or taken from the set (no video that
    was tested on is trained on later); about `test_share` of them are "testing". With a share
    strictly between 0 and 1 and two videos or more, each subset gets at least one video."""
    if isinstance(test_share, bool) or not isinstance(test_share, (int, float)) or not 0 <= test_share <= 1:
        raise InputError(f"--test-share must lie in [0, 1], got {test_share!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"--seed must be an integer, got {seed!r}")
    u = {vid: _draw(seed, vid) for vid in video_ids}
    subsets = {vid: "testing" if x < test_share else "training" for vid, x in u.items()}
    if 0 < test_share < 1 and len(u) >= 2:
        if "testing" not in subsets.values():
            subsets[min(u, key=u.get)] = "testing"
        elif "training" not in subsets.values():
            subsets[max(u, key=u.get)] = "training"
    return subsets


def from_boris(files: Iterable[str | Path], code_map=None, point_length_s: Optional[float] = None,
               test_share: float = TEST_SHARE, seed: int = 0, subset: Optional[str] = None,
               probe_duration: Optional[Callable[[str], Optional[float]]] = None) -> BorisImport:
    """Annotations of the videos a lab coded in BORIS (projects, tabular or aggregated exports;
    read_boris_videos): video id = media file stem. Subsets are drawn per video (draw_subsets)
    with `test_share` and `seed`, or every video goes to `subset` when it is given."""
    if subset is None:
        draw_subsets([], test_share, seed)  # the options are judged before any file is read
    videos, unmapped, warnings = read_boris_videos(files, code_map, point_length_s, probe_duration=probe_duration)
    subsets = (draw_subsets([v.video_id for v in videos], test_share, seed) if subset is None
               else {v.video_id: subset for v in videos})
    out = {v.video_id: VideoAnnotation(v.video_id, subsets[v.video_id], v.duration, v.segments, v.fps)
           for v in videos}
    return BorisImport(out, unmapped, warnings)
