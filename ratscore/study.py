"""A study sheet (STUDY.csv): which animal, group and treatment each video of a batch shows, and
when the animal was injected; the batch summary by those columns, and study.xlsx.

    video,animal,group,treatment,injection_s
    rat1.mp4,R1,kainate,vehicle,600
    cohortB/rat3.mp4,R3,kainate,drug A,

`video` is the video's path under the batch folder, exactly as batch_summary.csv's `video` column
names it; `animal` is required, `group` and `treatment` may be empty. The injection is given as
`injection_s` (seconds into the video), or as `injection_time` with `video_start_time` (ISO 8601
date-times, both with a time zone or both without); `video_start_time` alone dates the episodes.
The sheet must name every video of the batch and no other; anything wrong with it is one
InputError, before any model loads (load_study).

Study.add_columns adds the study columns and the latencies from the injection to the summary
table; Study.write_workbook writes OUT/study.xlsx from the summary and each video's published
outputs (its episodes.csv and events.csv, read only when its output set is whole).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional

import pandas as pd

from .errors import InputError, RunError

REQUIRED = ("video", "animal", "group", "treatment")
OPTIONAL = ("injection_s", "injection_time", "video_start_time")
LATENCY_STAGES = (3, 5)  # as batch_summary.csv's latency_stage3_s and latency_stage5_s
STUDY_COLUMNS = (["animal", "group", "treatment", "video_start_time", "injection_time", "injection_s"]
                 + [f"latency_from_injection_stage{k}_s" for k in LATENCY_STAGES])
WORKBOOK_NAME = "study.xlsx"
DAY_UNKNOWN = "day unknown"
CONVULSIVE_STAGE = 3  # an episode reaching this stage (forelimb clonus) or higher is convulsive
SHEETS = ("summary", "episodes", "events", "animals")
EXCEL_MAX_ROWS = 1_048_576  # one row of them is the header
_DATE_ONLY = re.compile(r"\s*\d{4}-?\d{2}-?\d{2}\s*")


@dataclass(frozen=True)
class StudyRow:
    video: str  # path under the batch folder, with '/'
    animal: str
    group: str
    treatment: str
    video_start_time: Optional[datetime] = None  # wall-clock time of the video's first frame
    injection_time: Optional[datetime] = None
    injection_s: Optional[float] = None  # seconds into the video (from injection_time when that is given)


def _shown(names: Iterable[str], most: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(repr(n) for n in names[:most]) + more


class Study:
    """A checked study sheet: one StudyRow per video."""

    def __init__(self, path: Path, rows: dict[str, StudyRow]):
        self.path, self.rows = Path(path), rows

    # ---- the sheet against the batch -------------------------------------------------------------

    def check_videos(self, allowed: Iterable[str], required: Iterable[str], where: str) -> None:
        """InputError when the sheet names a video not in `allowed`, or misses one of `required`."""
        allowed, required = set(allowed), set(required)
        unknown = set(self.rows) - allowed
        if unknown:
            plural = "s that are" if len(unknown) > 1 else ", which is"
            raise InputError(f"{self.path}: names {len(unknown)} video{plural} not in {where}: {_shown(unknown)} "
                             "(give each video's path under the batch folder, with '/', as batch_summary.csv's "
                             "video column names it)")
        missing = required - set(self.rows)
        if missing:
            raise InputError(f"{self.path}: does not name {len(missing)} video(s) of {where}: {_shown(missing)}; "
                             "every video of the batch needs a row")

    def check_table(self, summary: pd.DataFrame) -> None:
        """The sheet against a batch summary table: it may name any of its videos and must name
        each one scored (a failed video may lack a row)."""
        self.check_videos(summary.video.astype(str), summary.video[summary.status == "ok"].astype(str),
                          "the batch summary")

    # ---- batch_summary.csv ----------------------------------------------------------------------

    def add_columns(self, summary: pd.DataFrame) -> pd.DataFrame:
        """The summary table with STUDY_COLUMNS after its own (empty for a video the sheet lacks)."""
        out = summary.copy()
        rows = [self.rows.get(str(v)) for v in out.video]
        out["animal"] = [r.animal if r else None for r in rows]
        out["group"] = [r.group if r else None for r in rows]
        out["treatment"] = [r.treatment if r else None for r in rows]
        out["video_start_time"] = [_iso(r.video_start_time) if r else None for r in rows]
        out["injection_time"] = [_iso(r.injection_time) if r else None for r in rows]
        out["injection_s"] = pd.array([r.injection_s if r else None for r in rows], dtype="Float64")
        for k in LATENCY_STAGES:
            latency = pd.to_numeric(out[f"latency_stage{k}_s"], errors="coerce").astype("Float64")
            out[f"latency_from_injection_stage{k}_s"] = (latency - out["injection_s"]).round(3)
        return out

    # ---- study.xlsx ------------------------------------------------------------------------------

    def write_workbook(self, out_dir: Path, summary: pd.DataFrame) -> Path:
        """OUT/study.xlsx from the summary table (with the study columns) and each scored video's
        outputs under OUT; RunError when a scored video's output set is not whole any more."""
        from .files import atomic_write

        out_dir = Path(out_dir)
        episodes, events = self._per_video_tables(out_dir, summary)
        sheets = {"summary": summary, "episodes": episodes, "events": events,
                  "animals": self._animals(summary, episodes)}
        buffer = io.BytesIO()
        with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
            for name, table in sheets.items():
                if len(table) >= EXCEL_MAX_ROWS:
                    table = pd.DataFrame({"note": [f"{len(table)} rows: more than one Excel sheet holds; "
                                                   f"each video's {name}.csv has them"]})
                table.to_excel(writer, sheet_name=name, index=False)
                _tidy(writer.sheets[name], table)
        return atomic_write(out_dir / WORKBOOK_NAME, lambda f: f.write(buffer.getvalue()))

    def _study_cells(self, video: str) -> dict:
        r = self.rows.get(video)
        return {"animal": r.animal if r else None, "group": r.group if r else None,
                "treatment": r.treatment if r else None}

    def _per_video_tables(self, out_dir: Path, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        from .timeline import EPISODE_COLUMNS, EVENT_COLUMNS
        from .writers import read_whole_set

        episodes, events = [], []
        for video in sorted(summary.video[summary.status == "ok"].astype(str)):
            rel = PurePosixPath(video)
            folder, stem = out_dir / rel.parent, rel.stem
            if read_whole_set(folder, stem) is None:
                raise RunError(f"{folder / stem}.*: the outputs of {video} are not a whole set any more; "
                               "run the batch again to redo them")
            row = self.rows.get(video)
            for kind, columns, time_column, into in (("episodes", EPISODE_COLUMNS, "onset_s", episodes),
                                                     ("events", EVENT_COLUMNS, "start_s", events)):
                path = folder / f"{stem}.{kind}.csv"
                try:
                    table = pd.read_csv(path, dtype={"aus": str, "au": str})
                except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
                    raise RunError(f"{path}: cannot read ({e})") from None
                table = table.reindex(columns=columns)
                prefix = "onset" if kind == "episodes" else "start"
                cells = {"video": video, **self._study_cells(video)}
                table = table.drop(columns="video").assign(**cells)
                table = table[[*cells, *[c for c in columns if c != "video"]]]
                if kind == "episodes":
                    table["convulsive"] = table.max_stage >= CONVULSIVE_STAGE
                injection = row.injection_s if row and row.injection_s is not None else float("nan")
                table[f"{prefix}_from_injection_s"] = (table[time_column] - injection).round(3)
                start = row.video_start_time if row else None
                when = [start + timedelta(seconds=float(t)) if start else None for t in table[time_column]]
                table[f"{prefix}_time"] = [_iso(t) for t in when]
                table["day"] = [t.date().isoformat() if t else DAY_UNKNOWN for t in when]
                into.append(table)
        front = ["video", "animal", "group", "treatment"]
        return (_concat(episodes, front + EPISODE_COLUMNS[1:] + ["convulsive", "onset_from_injection_s", "onset_time",
                                                                 "day"]),
                _concat(events, front + EVENT_COLUMNS[1:] + ["start_from_injection_s", "start_time", "day"]))

    def _animals(self, summary: pd.DataFrame, episodes: pd.DataFrame) -> pd.DataFrame:
        """Episodes per animal and calendar day of recording: convulsive (max stage >= 3) against
        non-convulsive. A video without a start time is its own row ("day unknown"); a day a
        video covers without an episode counts 0; a failed video is listed, not counted."""
        groups: dict[tuple, dict] = {}

        def entry(key, row: StudyRow, day: str) -> dict:
            return groups.setdefault(key, {"animal": row.animal, "group": row.group, "treatment": row.treatment,
                                           "day": day, "videos": [], "recorded_s": 0.0, "episodes": 0,
                                           "convulsive_episodes": 0, "non_convulsive_episodes": 0,
                                           "max_stage": 0, "note": ""})

        for rec in summary.to_dict("records"):
            video = str(rec["video"])
            row = self.rows.get(video)
            if row is None:
                continue
            start = row.video_start_time
            if rec["status"] != "ok":
                day = start.date().isoformat() if start else DAY_UNKNOWN
                e = entry((row.animal, row.group, row.treatment, day, "failed", video), row, day)
                e.update(videos=[video], recorded_s=None, episodes=None, convulsive_episodes=None,
                         non_convulsive_episodes=None, max_stage=None, note="scoring failed: not counted")
                continue
            duration = float(rec["duration_s"])
            mine = episodes[episodes.video == video]
            if start is None:
                key = (row.animal, row.group, row.treatment, DAY_UNKNOWN, "video", video)
                entry(key, row, DAY_UNKNOWN)["recorded_s"] += duration
                entry(key, row, DAY_UNKNOWN)["videos"].append(video)
                days = {DAY_UNKNOWN: key}
            else:
                days = {}
                for day, seconds in _days_covered(start, duration):
                    key = (row.animal, row.group, row.treatment, day, "", "")
                    e = entry(key, row, day)
                    e["recorded_s"] += seconds
                    if video not in e["videos"]:
                        e["videos"].append(video)
                    days[day] = key
            for ep in mine.to_dict("records"):
                day = ep["day"]
                if day not in days:  # an episode starting at the very end of a day the video barely covers
                    days[day] = (row.animal, row.group, row.treatment, day, "", "")
                e = entry(days[day], row, day)
                if video not in e["videos"]:
                    e["videos"].append(video)
                e["episodes"] += 1
                convulsive = ep["max_stage"] >= CONVULSIVE_STAGE
                e["convulsive_episodes" if convulsive else "non_convulsive_episodes"] += 1
                e["max_stage"] = max(e["max_stage"], int(ep["max_stage"]))
        ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3] == DAY_UNKNOWN, kv[0][3], kv[0][4],
                                                           kv[0][5]))
        table = pd.DataFrame([{**e, "videos": "; ".join(e["videos"]),
                               "recorded_s": None if e["recorded_s"] is None else round(e["recorded_s"], 3)}
                              for _, e in ordered],
                             columns=["animal", "group", "treatment", "day", "videos", "recorded_s", "episodes",
                                      "convulsive_episodes", "non_convulsive_episodes", "max_stage", "note"])
        return table.astype({c: "Int64" for c in ("episodes", "convulsive_episodes", "non_convulsive_episodes",
                                                   "max_stage")})


def _concat(tables: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    tables = [t for t in tables if len(t)]  # a video without episodes adds nothing (and no dtype guesses)
    return pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)


def _days_covered(start: datetime, duration_s: float) -> list[tuple[str, float]]:
    """(calendar day, seconds of the recording in it) for each day [start, start + duration) touches."""
    end = start + timedelta(seconds=duration_s)
    out, day = [], start.date()
    while True:
        day_start = datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo)
        day_end = day_start + timedelta(days=1)
        seconds = (min(end, day_end) - max(start, day_start)).total_seconds()
        if seconds > 0 or not out:
            out.append((day.isoformat(), max(0.0, seconds)))
        if end <= day_end:
            return out
        day += timedelta(days=1)


def _iso(t: Optional[datetime]) -> Optional[str]:
    return None if t is None else t.isoformat()


def _tidy(sheet, table: pd.DataFrame) -> None:
    """Header row frozen, columns wide enough to read."""
    sheet.freeze_panes = "A2"
    for i, column in enumerate(table.columns, start=1):
        width = max([len(str(column))] + [len(str(v)) for v in table[column].head(200)])
        sheet.column_dimensions[sheet.cell(row=1, column=i).column_letter].width = min(60, width + 2)


# ---- reading the sheet ------------------------------------------------------------------------

def _parse_time(text: str, where: str, column: str) -> datetime:
    value = text.strip()
    if _DATE_ONLY.fullmatch(value):
        raise InputError(f"{where}: {column} {text!r} has no time of day (give e.g. {value}T09:30:00)")
    if value[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat takes no Z
        value = value[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{where}: {column} {text!r} is not an ISO 8601 date-time "
                         "(e.g. 2024-03-01T09:30:00 or 2024-03-01 09:30:00+01:00)") from None


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such study sheet") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a study sheet (CSV)") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the sheet as 'CSV UTF-8'") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    # a spreadsheet in a locale with a decimal comma saves CSV with ';'
    delimiter = max((",", ";", "\t"), key=first.count)
    try:
        records = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True),
                                                    start=1) if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from None
    if not records:
        raise InputError(f"{path}: empty; expected the columns {', '.join(REQUIRED)}")
    header = [cell.strip().lower() for cell in records[0][1]]
    return header, records[1:]


def read_study(path: str | Path) -> Study:
    """Read and check a study sheet on its own (its columns, values and times); InputError, one
    line naming the file and line, for anything wrong."""
    path = Path(path)
    header, records = _read_rows(path)
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise InputError(f"{path}: column {doubled[0]!r} appears twice")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)}; "
                         f"optional {', '.join(OPTIONAL)})")
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise InputError(f"{path}: unknown column(s) {', '.join(repr(c) for c in unknown)} (columns: "
                         f"{', '.join(REQUIRED)}, and optionally {', '.join(OPTIONAL)})")
    if "injection_time" in header and "video_start_time" not in header:
        raise InputError(f"{path}: injection_time needs a video_start_time column (the injection's time into the "
                         "video is their difference); or give injection_s")
    rows: dict[str, StudyRow] = {}
    for line, cells in records:
        where = f"{path}: line {line}"
        if len(cells) != len(header):
            raise InputError(f"{where}: {len(cells)} fields, but the header has {len(header)}")
        cell = {name: value.strip() for name, value in zip(header, cells)}
        video = cell["video"]
        if not video:
            raise InputError(f"{where}: no video")
        if not cell["animal"]:
            raise InputError(f"{where}: no animal for {video!r}")
        if video in rows:
            raise InputError(f"{where}: video {video!r} has a row already")
        start = _parse_time(cell["video_start_time"], where, "video_start_time") if cell.get("video_start_time") \
            else None
        injected = _parse_time(cell["injection_time"], where, "injection_time") if cell.get("injection_time") else None
        injection_s = None
        if cell.get("injection_s"):
            if injected is not None:
                raise InputError(f"{where}: give injection_s or injection_time, not both")
            try:
                injection_s = float(cell["injection_s"])
            except ValueError:
                injection_s = math.nan
            if not math.isfinite(injection_s):
                raise InputError(f"{where}: injection_s {cell['injection_s']!r} is not a number of seconds")
        if injected is not None:
            if start is None:
                raise InputError(f"{where}: injection_time needs the video_start_time of {video!r}")
            if (injected.tzinfo is None) != (start.tzinfo is None):
                raise InputError(f"{where}: injection_time and video_start_time must both have a time zone "
                                 "or both have none")
            injection_s = round((injected - start).total_seconds(), 3)
        rows[video] = StudyRow(video, cell["animal"], cell["group"], cell["treatment"], start, injected, injection_s)
    if not rows:
        raise InputError(f"{path}: no videos (a header only)")
    return Study(path, rows)


def load_study(path: str | Path, folder: Path, recursive: bool = False, pattern: Optional[str] = None) -> Study:
    """read_study, then the sheet against the batch folder (as `batch` with these options sees it,
    every shard's videos alike): it must name each video there and nothing else (an entry named
    like a video that cannot be read may have a row or not)."""
    from .features import scan_folder

    study = read_study(path)
    scan = scan_folder(Path(folder), recursive, pattern)
    videos = [p.as_posix() for p in scan.videos]
    study.check_videos(videos + [p.as_posix() for p, _ in scan.unusable], videos, f"the batch folder {folder}")
    return study
