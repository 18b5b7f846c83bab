"""The one place that chains stages together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError
from .labels import RacineMap, load_racine_map
from .grid import MODEL_FPS
from .model import BUNDLED_MODEL_DIR, load_model
from .timeline import Scoring, ScoringOptions, episode_peaks, score_events
from .files import atomic_write
from .writers import read_events_csv, write_scoring

def _sidecar_summary(events_csv: Path) -> dict:
    """The summary.json written beside an events.csv by `analyze`, if there is one."""
    name = events_csv.name
    if not name.endswith(".events.csv"):
        return {}
    sidecar = events_csv.with_name(name[: -len(".events.csv")] + ".summary.json")
    try:
        doc = json.loads(sidecar.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def rescore_events_file(events_csv: Path, out_dir: Path, options: ScoringOptions = ScoringOptions(),
                        duration_s: Optional[float] = None, racine: RacineMap = RacineMap()) -> Scoring:
    """Rebuild the Racine timeline, episodes, summary and picture from an events file.

    The video's duration comes from `duration_s`, else from the summary.json that `analyze`
    wrote beside the events file, else from the end of the last event.
    """
    events_csv = Path(events_csv)
    video, events = read_events_csv(events_csv)
    sidecar = _sidecar_summary(events_csv)
    if duration_s is None:
        duration_s = sidecar.get("duration_s")
    if duration_s is None:
        if not events:
            raise InputError(f"{events_csv}: no events and no known duration; give --duration")
        duration_s = max(e.end_s for e in events)
    if not duration_s > 0:
        raise InputError(f"--duration must be positive, got {duration_s}")
    late = [e for e in events if e.start_s >= duration_s]
    if late:
        raise InputError(f"{events_csv}: an event starts at {late[0].start_s} s, after the video's end ({duration_s} s)")
    fps = float(sidecar.get("fps") or MODEL_FPS)
    model = str(sidecar.get("model") or f"events file {events_csv.name}")
    scoring = score_events(events, video, duration_s, fps, model, racine, options)
    stem = events_csv.name[: -len(".events.csv")] if events_csv.name.endswith(".events.csv") else events_csv.stem
    write_scoring(scoring, out_dir, stem, formats=("racine", "episodes", "timeline", "summary"))
    return scoring


# ---------------------------------------------------------------------------------------------
# analyze: video -> features -> events -> scoring -> files


@dataclass(frozen=True)
class AnalyzeOptions:
    model_dir: Path = BUNDLED_MODEL_DIR  # a model folder (manifest.json + ONNX files)
    device: str = "auto"  # auto | cpu | cuda: auto takes a GPU when there is one
    scoring: ScoringOptions = ScoringOptions()  # bins, episode gap, score threshold, include "others"
    mask: Optional[Path] = None  # rig profile YAML: arena and mirror-reflection regions
    no_roi: bool = False  # use the whole frame (camera already framed on one animal)
    keep_features: bool = False  # also write <stem>.features.npy
    racine_config: Optional[Path] = None  # YAML overriding the AU -> Racine stage map
    progress: bool = True  # progress bars on the terminal

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"--device must be auto, cpu or cuda, got {self.device!r}")


class Analyzer:
    """Loads a model once and analyses any number of videos with it."""

    def __init__(self, options: AnalyzeOptions):
        from .features import load_front_end
        from .mask import load_rig_profile
        from .runner import OnnxLocalizer
        from .trust import TrustCheck

        self.options = options
        self.model = load_model(options.model_dir)
        if not self.model.has_front_end:
            raise InputError(f"{options.model_dir}: this model has no video front end (it scores features only); "
                             "use `ratscore benchmark --features` or a full model")
        self.model_id = self.model.identity
        self.racine = load_racine_map(options.racine_config, self.model.racine)
        self.localizer = OnnxLocalizer(self.model, device=options.device)
        self.front = load_front_end(self.model, device=options.device, no_roi=options.no_roi)
        if self.front.feature_dim != self.localizer.feature_dim:
            raise InputError(f"{options.model_dir}: the I3D gives {self.front.feature_dim}-d features but the "
                             f"localizer takes {self.localizer.feature_dim}-d")
        self.mask = load_rig_profile(options.mask) if options.mask is not None else None
        self.trust = TrustCheck.from_model(self.model)

    def analyze(self, video: Path, out_dir: Path, stem: Optional[str] = None) -> Scoring:
        from .features import extract_features
        from .video import crop_at

        video = Path(video)
        stem = stem or video.stem
        opts = self.options
        fingerprint = video_fingerprint(video)
        result = extract_features(video, self.front, opts.device, self.mask, opts.no_roi, progress=opts.progress)
        events = self.localizer.detect(result.features, result.duration_s)
        scoring = score_events(events, stem, result.duration_s, result.source_fps, self.model_id,
                               self.racine, opts.scoring)
        scoring.summary["source"] = {"path": str(video), "fingerprint": fingerprint,
                                     "fps": result.source_fps, "decode_warnings": list(result.decode_warnings)}
        scoring.summary["trust"] = self.trust.assess(result)
        for t in episode_peaks(scoring):
            try:
                frame = min(len(result.boxes) - 1, max(0, int(t * result.fps))) if result.boxes is not None else None
                box = None if frame is None else result.boxes[frame]
                scoring.stills.append(crop_at(video, t, box))
            except Exception:  # noqa: BLE001 - a missing still never costs a video its scoring
                scoring.stills.append(None)
        if opts.keep_features:
            atomic_write(Path(out_dir) / f"{stem}.features.npy", lambda f: np.save(f, result.features))
        write_scoring(scoring, out_dir, stem)
        return scoring


def video_fingerprint(video: Path) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the file does."""
    try:
        size = video.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(video, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read(1 << 20))
    except FileNotFoundError:
        raise InputError(f"{video}: no such video file") from None
    except IsADirectoryError:
        raise InputError(f"{video}: is a folder, not a video (use `ratscore batch`)") from None
    except OSError as e:
        raise InputError(f"{video}: cannot read ({e.strerror or e})") from None
    return f"{size}:{h.hexdigest()[:16]}"
