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
from .model import BUNDLED_MODEL_DIR
from .timeline import Scoring, ScoringOptions, score_events
from .writers import atomic_write, read_events_csv, write_scoring

DEFAULT_FPS = 30.0


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
    fps = float(sidecar.get("fps") or DEFAULT_FPS)
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
        from .export import OnnxLocalizer
        from .model import read_manifest
        from .trust import TrustCheck

        self.options = options
        self.manifest = read_manifest(options.model_dir)
        if not self.manifest.get("front_end"):
            raise InputError(f"{options.model_dir}: this model has no video front end (it scores features only); "
                             "use `ratscore benchmark --features` or a full model")
        self.model_id = model_identity(options.model_dir, self.manifest)
        self.racine = load_racine_map(options.racine_config)
        self.localizer = OnnxLocalizer(options.model_dir, device=options.device)
        self.trust = TrustCheck.from_model_dir(options.model_dir, self.manifest)

    def analyze(self, video: Path, out_dir: Path, stem: Optional[str] = None) -> Scoring:
        from .features import crop_at, extract_features
        from .report import episode_peaks

        video = Path(video)
        stem = stem or video.stem
        opts = self.options
        fingerprint = video_fingerprint(video)
        result = extract_features(video, model_dir=opts.model_dir, device=opts.device, mask_profile=opts.mask,
                                  no_roi=opts.no_roi, progress=opts.progress)
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


def model_identity(model_dir: Path, manifest: dict) -> str:
    """The model's name and a short hash of its manifest: outputs made by another model differ."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]
    return f"{manifest.get('name', Path(model_dir).name)}@{digest}"


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
