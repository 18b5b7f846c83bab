"""Output writers, one small class per file kind behind `get_writer(fmt)`.

Every file is written atomically (files.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Callable, Mapping, Optional

from .errors import InputError
from .files import publish_set, read_user_csv, whole_set


class Writer:
    """Writes one file kind for one video: `<out_dir>/<stem><suffix>`."""

    suffix = ""

    def path(self, out_dir: Path, stem: str) -> Path:
        return Path(out_dir) / f"{stem}{self.suffix}"

    def write(self, scoring, f: IO[bytes]) -> None:
        raise NotImplementedError


class _CsvWriter(Writer):
    table = ""

    def write(self, scoring, f):
        getattr(scoring, self.table).to_csv(f, index=False, lineterminator="\n")


class EventsWriter(_CsvWriter):
    suffix, table = ".events.csv", "events"


class RacineWriter(_CsvWriter):
    suffix, table = ".racine.csv", "racine"


class EpisodesWriter(_CsvWriter):
    suffix, table = ".episodes.csv", "episodes"


class SummaryWriter(Writer):
    suffix = ".summary.json"

    def write(self, scoring, f):
        f.write((json.dumps(scoring.summary, indent=2) + "\n").encode("utf-8"))


class TimelinePlotWriter(Writer):
    suffix = ".timeline.png"

    def write(self, scoring, f):
        f.write(scoring.timeline_png)


class ReportWriter(Writer):
    suffix = ".report.html"

    def write(self, scoring, f):
        from .report import render_report

        f.write(render_report(scoring, getattr(scoring, "stills", ())).encode("utf-8"))


TRACK_COLUMNS = ["frame", "time_s", "found", "x1", "y1", "x2", "y2", "score"]
TRACK_CHUNK = 1 << 16  # rows formatted at a time: a day's track never sits in memory as text


def write_track_csv(track, f: IO[bytes]) -> None:
    """track.csv of a `roi.Track`: one row per frame of the model's time grid (frame, time_s from
    the video's start, found 0/1, the animal's box x1, y1, x2, y2 in upright source pixels, the
    detector's score or empty). No track (a scoring made from an events file): the header alone."""
    import numpy as np
    import pandas as pd

    f.write((",".join(TRACK_COLUMNS) + "\n").encode("utf-8"))
    if track is None or not len(track):
        return
    found, boxes, score = track.found(), track.boxes, track.score
    for start in range(0, len(track), TRACK_CHUNK):
        end = min(start + TRACK_CHUNK, len(track))
        frame = np.arange(start, end)
        chunk = pd.DataFrame({"frame": frame, "time_s": np.round(frame / track.fps, 4),
                              "found": found[start:end].astype(np.int8)})
        for i, name in enumerate(("x1", "y1", "x2", "y2")):
            chunk[name] = np.round(boxes[start:end, i].astype(np.float64), 1)
        chunk["score"] = np.round(score[start:end].astype(np.float64), 4)
        f.write(chunk.to_csv(index=False, header=False, lineterminator="\n", na_rep="").encode("utf-8"))


class TrackWriter(Writer):
    """track.csv: the animal's box at every frame (`scoring.track`, a roi.Track)."""

    suffix = ".track.csv"

    def write(self, scoring, f):
        write_track_csv(getattr(scoring, "track", None), f)


class BorisWriter(Writer):
    """A BORIS project of the video (boris.py): its events as states to review and correct in BORIS.
    The observation is the video's stem, its media the video's path as the summary gives it."""

    suffix = ".boris"

    def write(self, scoring, f):
        from .boris import project_json

        source = scoring.summary.get("source") or {}
        fps = source.get("fps") or scoring.fps
        events = [(float(e.start_s), float(e.end_s), int(e.au_id), float(e.score))
                  for e in scoring.events.itertuples(index=False)]
        observation = {"id": scoring.video, "media_path": source.get("path") or f"{scoring.video}",
                       "fps": float(fps) if fps else None,
                       "duration_s": float(scoring.summary.get("duration_s") or scoring.duration_s),
                       "events": events}
        f.write(json.dumps(project_json([observation])).encode("utf-8"))


WRITERS: dict[str, type[Writer]] = {
    "events": EventsWriter,
    "racine": RacineWriter,
    "episodes": EpisodesWriter,
    "summary": SummaryWriter,
    "timeline": TimelinePlotWriter,
    "report": ReportWriter,
    "track": TrackWriter,
    "boris": BorisWriter,
}

ALL_FORMATS = ("events", "racine", "episodes", "timeline", "report", "summary", "track", "boris")


def get_writer(fmt: str) -> Writer:
    try:
        return WRITERS[fmt]()
    except KeyError:
        raise InputError(f"unknown output format {fmt!r} (one of: {', '.join(WRITERS)})") from None


def write_scoring(scoring, out_dir: Path, stem: str, formats=ALL_FORMATS,
                  extra: Optional[Mapping[str, Callable[[IO[bytes]], None]]] = None, removes=()) -> list[Path]:
    """Write the given formats for one video, plus `extra` files (file name -> writer), as one set
    (files.publish_set): a reader sees all of them from one run or none; `removes` names optional
    files of an earlier set to delete when this one lacks them. Returns the paths."""
    writers = {f"{stem}{get_writer(fmt).suffix}": (lambda f, w=get_writer(fmt): w.write(scoring, f))
               for fmt in formats}
    return publish_set(out_dir, stem, {**writers, **(extra or {})}, removes)


def read_whole_set(out_dir: Path, stem: str) -> Optional[dict]:
    """The summary.json of a video's output set when the set is whole (every file of one run,
    unchanged since), else None."""
    files = whole_set(out_dir, stem)
    summary = files and files.get(f"{stem}{SummaryWriter.suffix}")
    if summary is None:
        return None
    try:
        doc = json.loads(summary.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_events_csv(path: Path):
    """Read an events table (the columns of events.csv) back, e.g. after correcting it by hand.

    Needs start_s, end_s and au or au_id; score defaults to 1 and video to the file's stem.
    Returns (video, [Event, ...]).
    """
    import pandas as pd

    from .labels import LABELS, label_id
    from .timeline import MAX_DURATION_S, Event

    path = Path(path)
    table = read_user_csv(path, "events", "the columns of events.csv")
    missing = [c for c in ("start_s", "end_s") if c not in table.columns]
    if missing or ("au" not in table.columns and "au_id" not in table.columns):
        need = ", ".join(missing + ([] if "au" in table.columns or "au_id" in table.columns else ["au or au_id"]))
        raise InputError(f"{path}: missing column(s) {need}")
    stem = path.name[: -len(".events.csv")] if path.name.endswith(".events.csv") else path.stem
    videos = table["video"].dropna().astype(str).unique() if "video" in table.columns else []
    if len(videos) > 1:
        raise InputError(f"{path}: holds events of {len(videos)} videos; give one video's events file")
    video = videos[0] if len(videos) else stem
    events = []
    for row_no, row in enumerate(table.to_dict("records"), start=2):
        where = f"{path}: line {row_no}"
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            score = float(row.get("score", 1.0)) if not pd.isna(row.get("score", 1.0)) else 1.0
        except (TypeError, ValueError):
            raise InputError(f"{where}: start_s, end_s and score must be numbers") from None
        if "au" in row and not pd.isna(row["au"]):
            try:
                au = label_id(str(row["au"]))
            except InputError as e:
                raise InputError(f"{where}: {e}") from None
            if "au_id" in row and not pd.isna(row["au_id"]) and label_id(int(row["au_id"])) != au:
                raise InputError(f"{where}: au {LABELS[au]!r} has id {au}, but au_id says {int(row['au_id'])}")
        elif "au_id" in row and not pd.isna(row["au_id"]):
            try:
                au = label_id(int(row["au_id"]))
            except InputError as e:
                raise InputError(f"{where}: {e}") from None
        else:
            raise InputError(f"{where}: no action unit given")
        if not (end > start >= 0):
            raise InputError(f"{where}: event [{start}, {end}] must start at 0 or later and end after it starts")
        if not end <= MAX_DURATION_S:  # also infinity: no recording is that long
            raise InputError(f"{where}: event [{start}, {end}] ends after {MAX_DURATION_S / 86400:g} days, "
                             "longer than any recording ratscore scores")
        if not 0.0 <= score <= 1.0:
            raise InputError(f"{where}: score {score} outside [0, 1]")
        events.append(Event(start, end, au, score))
    return video, events
