"""Output writers, one small class per file kind behind `get_writer(fmt)`.

Every file is written atomically (files.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from .errors import InputError
from .files import atomic_write


class Writer:
    """Writes one file kind for one video: `<out_dir>/<stem><suffix>`."""

    suffix = ""

    def path(self, out_dir: Path, stem: str) -> Path:
        return Path(out_dir) / f"{stem}{self.suffix}"

    def __call__(self, scoring, out_dir: Path, stem: str) -> Path:
        return atomic_write(self.path(out_dir, stem), lambda f: self.write(scoring, f))

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
        from .plots import plot_timeline

        plot_timeline(scoring, f)


class ReportWriter(Writer):
    suffix = ".report.html"

    def write(self, scoring, f):
        from .report import render_report

        f.write(render_report(scoring, getattr(scoring, "stills", ())).encode("utf-8"))


WRITERS: dict[str, type[Writer]] = {
    "events": EventsWriter,
    "racine": RacineWriter,
    "episodes": EpisodesWriter,
    "summary": SummaryWriter,
    "timeline": TimelinePlotWriter,
    "report": ReportWriter,
}

# The summary goes last: its presence marks a video's outputs as complete.
ALL_FORMATS = ("events", "racine", "episodes", "timeline", "report", "summary")


def get_writer(fmt: str) -> Writer:
    try:
        return WRITERS[fmt]()
    except KeyError:
        raise InputError(f"unknown output format {fmt!r} (one of: {', '.join(WRITERS)})") from None


def write_scoring(scoring, out_dir: Path, stem: str, formats=ALL_FORMATS) -> list[Path]:
    """Write the given formats for one video; returns the paths written."""
    return [get_writer(fmt)(scoring, Path(out_dir), stem) for fmt in formats]


def read_events_csv(path: Path):
    """Read an events table (the columns of events.csv) back, e.g. after correcting it by hand.

    Needs start_s, end_s and au or au_id; score defaults to 1 and video to the file's stem.
    Returns (video, [Event, ...]).
    """
    import pandas as pd

    from .labels import LABELS, label_id
    from .timeline import Event

    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such events file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file, expected the columns of events.csv") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None
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
        if not 0.0 <= score <= 1.0:
            raise InputError(f"{where}: score {score} outside [0, 1]")
        events.append(Event(start, end, au, score))
    return video, events
