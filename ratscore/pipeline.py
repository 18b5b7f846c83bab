"""The one place that chains stages together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .errors import InputError
from .labels import RacineMap
from .timeline import Scoring, ScoringOptions, score_events
from .writers import read_events_csv, write_scoring

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
