"""BORIS, the tool labs score seizures with by hand: its project format and its event exports.

Writing: `project_json` / `write_project` make a BORIS project (the JSON BORIS 8 and 9 save,
`project_format_version` "7.0") in which the 14 action units are state behaviours and each video
is one media observation whose events are paired START/STOP rows, the detection score in the
START row's comment.

Reading: `read_annotation_file` takes what a lab has: a project (`.boris`, `.boris.gz`), a
tabular events export (one row per START, STOP or POINT, column "Time") or an aggregated events
export (one row per event, columns "Start (s)" / "Stop (s)"), as .csv, .tsv or .xlsx; which export
it is comes from its columns, not its name. It gives, per media file, the coded action units as
(start_s, end_s, label) in seconds of that file.

What BORIS stores and we undo on reading:
- event times include the observation's "time offset" (BORIS adds it when an event is coded);
- an observation may play several media files one after another on player #1: its event times
  run on from one file to the next, so a time is placed in its file by the files' lengths (a
  state that spans two files gives one segment in each);
- with "media creation date as offset" each file's creation time (epoch seconds) is added too;
- a state is paired per subject, behaviour and modifiers: START and STOP alternate.
Events of every subject of an observation are read (one rat per video is the usual case).
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Optional, Sequence

from .errors import InputError
from .files import atomic_write_text
from .labels import LABEL_IDS, LABELS, label_id

ACTION_UNITS: tuple[str, ...] = LABELS  # the behaviours of a ratscore project: codes = label texts

PROJECT_FORMAT_VERSION = "7.0"  # what BORIS 8.x and 9.x write (boris/config.py project_format_version)
STATE_EVENT = "State event"
POINT_EVENT = "Point event"
_N_PLAYERS = 8  # BORIS keeps a (possibly empty) media list for each of its 8 players
_KEYS = "0123456789abcd"  # one keyboard key per action unit, in id order
_TIME_RESOLUTION_S = 0.001  # BORIS stores times in milliseconds
_NOT_AVAILABLE = {"", "na", "nan", "none", "not found"}

PROJECT_SUFFIXES = (".boris", ".boris.gz")
TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx")


# --- writing -------------------------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="milliseconds")


def _ethogram() -> dict:
    return {
        str(i): {
            "type": STATE_EVENT,
            "key": _KEYS[i],
            "code": name,
            "description": f"RatSeizure action unit {i}",
            "color": "",
            "category": "",
            "modifiers": {},
            "excluded": "",
            "coding map": "",
        }
        for i, name in enumerate(ACTION_UNITS)
    }


def _finite(value, what: str, where: str, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def _ms(t: float) -> float:
    return round(t, 3)


def _merged_states(events: Iterable, duration: float, where: str) -> list[tuple[float, float, int, list[float]]]:
    """Events as BORIS can hold them: per action unit, overlapping or touching events become one
    state (two states of one behaviour may not overlap, nor share a time, in a BORIS observation).
    Times are rounded to BORIS's milliseconds first, and a state lasts at least one."""
    by_au: dict[int, list[tuple[float, float, Optional[float]]]] = {}
    for k, ev in enumerate(events):
        try:
            start, end, label, score = ev
        except (TypeError, ValueError):
            raise InputError(f"{where}: event {k} must be (start_s, end_s, label, score), got {ev!r}") from None
        start = _finite(start, "event start", where)
        end = _finite(end, "event end", where)
        if end < start:
            raise InputError(f"{where}: event {k} ends ({end}) before it starts ({start})")
        score = _finite(score, "event score", where, allow_none=True)
        au = label_id(label)
        start = _ms(min(max(start, 0.0), duration))
        end = _ms(min(max(end, 0.0), duration))
        end = max(end, _ms(start + _TIME_RESOLUTION_S))
        by_au.setdefault(au, []).append((start, end, score))
    states = []
    for au, items in by_au.items():
        items.sort(key=lambda x: (x[0], x[1]))
        cur_start, cur_end, scores = items[0][0], items[0][1], [items[0][2]]
        for start, end, score in items[1:]:
            if start <= cur_end:
                cur_end = max(cur_end, end)
                scores.append(score)
            else:
                states.append((cur_start, cur_end, au, scores))
                cur_start, cur_end, scores = start, end, [score]
        states.append((cur_start, cur_end, au, scores))
    return states


def _comment(scores: list[Optional[float]]) -> str:
    known = sorted((s for s in scores if s is not None), reverse=True)
    if not known:
        return ""
    if len(scores) == 1:
        return f"score {known[0]:.2f}"
    return "scores " + ", ".join(f"{s:.2f}" for s in known)


def _frame(t: float, fps: Optional[float]):
    return int(round(t * fps)) if fps else "NA"


def _observation(obs: Mapping, date: str) -> tuple[str, dict]:
    if not isinstance(obs, Mapping):
        raise InputError(f"an observation must be a mapping, got {type(obs).__name__}")
    missing = [k for k in ("id", "media_path", "duration_s", "events") if k not in obs]
    if missing:
        raise InputError(f"observation {obs.get('id', '?')!r}: missing {', '.join(missing)}")
    obs_id = str(obs["id"]).strip()  # BORIS flags ids with leading or trailing spaces
    if not obs_id:
        raise InputError("an observation id is empty")
    where = f"observation {obs_id!r}"
    media = os.path.abspath(os.fspath(obs["media_path"]))
    duration = _finite(obs["duration_s"], "duration_s", where)
    if duration <= 0:
        raise InputError(f"{where}: duration_s must be positive, got {duration}")
    fps = _finite(obs.get("fps"), "fps", where, allow_none=True)
    if fps is not None and fps <= 0:
        raise InputError(f"{where}: fps must be positive, got {fps}")

    rows = []
    for start, end, au, scores in _merged_states(obs["events"], duration, where):
        code = ACTION_UNITS[au]
        rows.append([start, "", code, "", _comment(scores), _frame(start, fps)])
        rows.append([end, "", code, "", "", _frame(end, fps)])
    rows.sort(key=lambda r: (r[0], r[1], r[2]))  # BORIS keeps an observation's events in time order

    files = {str(p): [] for p in range(1, _N_PLAYERS + 1)}
    files["1"] = [media]
    entry = {
        "file": files,
        "type": "MEDIA",
        "date": str(obs.get("date") or date),
        "description": str(obs.get("description", "")),
        "time offset": 0.0,
        "events": rows,
        "observation time interval": [0, 0],
        "independent_variables": {},
        "visualize_spectrogram": False,
        "visualize_waveform": False,
        "media_creation_date_as_offset": False,
        "media_scan_sampling_duration": 0,
        "image_display_duration": 1,
        "close_behaviors_between_videos": False,
        "media_info": {
            "length": {media: _ms(duration)},
            "fps": {media: fps if fps is not None else 0},  # BORIS itself writes 0 when unknown
            "hasVideo": {media: True},
            "hasAudio": {media: bool(obs.get("has_audio", False))},
            "offset": {"1": 0.0},
        },
    }
    return obs_id, entry


def project_json(observations: Sequence[Mapping], project_name: str = "ratscore",
                 date: Optional[str] = None) -> dict:
    """A BORIS project holding one media observation per video.

    Each observation: {"id", "media_path", "fps" (None if unknown), "duration_s",
    "events": [(start_s, end_s, label, score), ...]} and optionally "date", "description",
    "has_audio". `label` is an action unit's name or id; `score` may be None. Overlapping or
    touching events of one action unit become one state whose comment lists their scores, highest
    first. `date` (ISO 8601) stamps the project and observations; now when None."""
    date = date or _now()
    observations_out: dict = {}
    for obs in observations:
        obs_id, entry = _observation(obs, date)
        if obs_id in observations_out:
            raise InputError(f"two observations have the id {obs_id!r} (one observation per video stem)")
        observations_out[obs_id] = entry
    return {
        "time_format": "hh:mm:ss",
        "project_date": date,
        "project_name": project_name,
        "project_description": ("Seizure action units scored by ratscore; "
                                "a state's comment holds its detection score(s)."),
        "project_format_version": PROJECT_FORMAT_VERSION,
        "subjects_conf": {},
        "behaviors_conf": _ethogram(),
        "observations": observations_out,
        "behavioral_categories": [],
        "behavioral_categories_config": {},
        "independent_variables": {},
        "coding_map": {},
        "behaviors_coding_map": [],
        "converters": {},
    }


def write_project(path: str | Path, observations: Sequence[Mapping], **kwargs) -> Path:
    """`project_json(observations, **kwargs)` written (whole or not at all) to `path`."""
    return atomic_write_text(Path(path), json.dumps(project_json(observations, **kwargs)))


# --- the code map ----------------------------------------------------------------------------------

def _fold(text: str) -> str:
    return " ".join(str(text).replace("_", " ").split()).casefold()


_AU_BY_FOLDED = {_fold(name): name for name in ACTION_UNITS}


def read_code_map(path: str | Path) -> dict[str, str]:
    """A lab's MAP.yaml: `behaviour code: action unit name`, one line each, e.g.

        HN: head nodding
        "FL clonus": unilateral forelimb clonus

    Values are checked against the 14 action units (case-insensitive; a label id works too) and
    returned as their exact names."""
    from .config import read_yaml_mapping

    doc = read_yaml_mapping(path, "code map")
    if not doc:
        raise InputError(f"{path}: the code map is empty (expected lines of `code: action unit`)")
    out: dict[str, str] = {}
    for code, target in doc.items():
        if isinstance(code, bool) or code is None:
            raise InputError(f"{path}: code {code!r} is read by YAML as {code!r}; put it in quotes")
        if not isinstance(target, (str, int)) or isinstance(target, bool):
            raise InputError(f"{path}: code {str(code)!r} maps to {target!r}, not to an action unit name "
                             "(see `ratscore labels`)")
        try:
            out[str(code)] = ACTION_UNITS[label_id(target)]
        except InputError:
            raise InputError(f"{path}: code {str(code)!r} maps to unknown action unit {target!r} "
                             "(see `ratscore labels`)") from None
    return out


class _Codes:
    """Behaviour code -> action unit name, or None for a code the map does not name."""

    def __init__(self, code_map: Optional[Mapping]):
        self.exact: Optional[dict] = None if code_map is None else {str(k): v for k, v in code_map.items()}
        self.folded = None if code_map is None else {_fold(k): v for k, v in code_map.items()}

    def target(self, code: str) -> Optional[object]:
        if self.exact is None:
            return _AU_BY_FOLDED.get(_fold(code))
        if code in self.exact:
            return self.exact[code]
        return self.folded.get(_fold(code))

    def resolve(self, code: str, where: str) -> Optional[str]:
        target = self.target(code)
        if target is None:
            return None
        if isinstance(target, str) and target in LABEL_IDS:
            return target
        try:
            folded = ACTION_UNITS[label_id(target)] if isinstance(target, (str, int)) else None
        except InputError:
            folded = None
        if folded is None:
            raise InputError(f"{where}: code {code!r} is mapped to unknown action unit {target!r} "
                             "(see `ratscore labels`)")
        return folded


# --- reading: one shape for every format -----------------------------------------------------------

@dataclass
class _Media:
    path: str
    length: Optional[float] = None
    fps: Optional[float] = None
    start: Optional[float] = None  # where it begins on its observation's time line


@dataclass
class _Occurrence:
    code: str
    start: float  # on the observation's time line (offset removed)
    end: Optional[float]  # None: a point event
    raw_time: float  # as the file shows it, for messages
    media: Optional[int] = None  # the file it is pinned to (exports without the player list)
    defined: bool = True  # False: the code is not in the project's ethogram


@dataclass
class _Observation:
    id: str
    media: list[_Media] = field(default_factory=list)
    occurrences: list[_Occurrence] = field(default_factory=list)
    pinned: bool = False  # each event names its media file, whose own time it gives


def _stem(media_path: str) -> str:
    name = re.split(r"[\\/]", media_path.strip())[-1]  # a Windows path read on any system
    return PurePosixPath(name).stem or name


def _where(path: Path, obs_id: str, t: Optional[float] = None) -> str:
    at = f" at {t:.3f} s" if t is not None and math.isfinite(t) else ""
    return f"{path}: observation {obs_id!r}{at}"


def _place_times(path: Path, obs: _Observation) -> None:
    """Give every media file its start on the time line: one after the other by their lengths."""
    if obs.pinned or len(obs.media) <= 1 or all(m.start is not None for m in obs.media):
        for m in obs.media:
            m.start = 0.0 if m.start is None else m.start
        return
    if any(m.length is None for m in obs.media):
        raise InputError(f"{path}: observation {obs.id!r} plays {len(obs.media)} media files but not all their "
                         "lengths are known, so its times cannot be placed in them")
    t = 0.0
    for m in obs.media:
        m.start = t
        t += m.length


def _pieces(obs: _Observation, occ: _Occurrence, end: float) -> list[tuple[int, float, float]]:
    """(media index, start, end) in that file's seconds: a state spanning files is cut at their joins."""
    if occ.media is not None:
        base = obs.media[occ.media].start
        return [(occ.media, occ.start - base, end - base)]
    n = len(obs.media)
    spans = []
    for i, m in enumerate(obs.media):
        lo = -math.inf if i == 0 else m.start
        hi = math.inf if i == n - 1 else (obs.media[i + 1].start if m.length is None else m.start + m.length)
        spans.append((lo, hi))
    if end == occ.start:
        for i, (lo, hi) in enumerate(spans):
            if lo <= occ.start < hi:
                return [(i, occ.start - obs.media[i].start, end - obs.media[i].start)]
        return []
    out = []
    for i, (lo, hi) in enumerate(spans):
        a, b = max(occ.start, lo), min(end, hi)
        if b > a:
            out.append((i, a - obs.media[i].start, b - obs.media[i].start))
    return out


def _clean(t: float) -> float:
    return round(t, 6)  # differences of millisecond times, without float dust


def _resolve(path: Path, obs: _Observation, codes: _Codes, point_length_s: Optional[float]) -> list[dict]:
    _place_times(path, obs)
    media = obs.media or [_Media(path="")]
    entries = [{
        "video": _stem(m.path) if m.path else obs.id,
        "observation": obs.id,
        "media_file": m.path or None,
        "duration_s": m.length,
        "fps": m.fps,
        "segments": [],
        "unmapped": {},
    } for m in media]
    if not obs.media:
        obs.media = media
        media[0].start = 0.0
    for occ in obs.occurrences:
        where = _where(path, obs.id, occ.raw_time)
        label = codes.resolve(occ.code, where)
        if label is None:
            pieces = _pieces(obs, occ, occ.start)
            unmapped = entries[pieces[0][0] if pieces else 0]["unmapped"]
            unmapped[occ.code] = unmapped.get(occ.code, 0) + 1
            continue
        if not occ.defined:
            raise InputError(f"{where}: behaviour {occ.code!r} is coded but not defined in the project's ethogram")
        end = occ.end
        is_point = end is None
        if is_point:
            if point_length_s is None:
                raise InputError(f"{where}: {occ.code!r} is a point event; give a point length "
                                 "(--point-length S) to read point events as segments of S seconds")
            end = occ.start + point_length_s
        pieces = _pieces(obs, occ, end)
        if not pieces or sum(b - a for _, a, b in pieces) < end - occ.start - 1e-6:
            raise InputError(f"{where}: {occ.code!r} lies (partly) outside the observation's media files")
        for i, a, b in pieces:
            a, b = _clean(a), _clean(b)
            length = entries[i]["duration_s"]
            if is_point and length is not None and a < length < b:
                b = length
            entries[i]["segments"].append((a, b, label))
    for e in entries:
        e["segments"].sort(key=lambda s: (s[0], s[1], LABEL_IDS[s[2]]))
    return entries


# --- reading: projects ---------------------------------------------------------------------------

def _load_json(path: Path) -> object:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise InputError(f"{path}: unreadable BORIS project ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not a BORIS project (not JSON: line {e.lineno})") from None


def _num(value) -> Optional[float]:
    """A number from a cell or a JSON value ("3.300", 3.3, "3,300"); None for NA, empty or text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    if text.casefold() in _NOT_AVAILABLE:
        return None
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _positive(value) -> Optional[float]:
    number = _num(value)
    return number if number is not None and number > 0 else None


def _read_project(path: Path) -> list[_Observation]:
    doc = _load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("observations"), dict) \
            or not isinstance(doc.get("behaviors_conf"), dict):
        raise InputError(f"{path}: not a BORIS project (no 'observations' and 'behaviors_conf')")
    kinds: dict[str, bool] = {}  # code -> is a state event
    for behaviour in doc["behaviors_conf"].values():
        if isinstance(behaviour, dict) and "code" in behaviour:
            kinds[str(behaviour["code"])] = "state" in str(behaviour.get("type", "")).casefold()

    out = []
    for obs_id, raw in doc["observations"].items():
        if not isinstance(raw, dict):
            raise InputError(f"{path}: observation {obs_id!r} is not an object")
        obs_type = str(raw.get("type", "MEDIA")).upper()
        if obs_type == "IMAGES":
            raise InputError(f"{path}: observation {obs_id!r} codes a folder of pictures, not a video "
                             "(ratscore reads media observations)")
        obs = _Observation(id=str(obs_id))
        files = raw.get("file") or {}
        paths = files.get("1", []) if isinstance(files, dict) else list(files[:1])
        info = raw.get("media_info") or {}
        lengths, rates = info.get("length") or {}, info.get("fps") or {}
        created = (info.get("media_creation_time") or {}) if raw.get("media_creation_date_as_offset") else None
        for p in paths if obs_type == "MEDIA" else []:
            p = str(p)
            start = _num(created.get(p)) if created is not None else None
            if created is not None and start is None:
                raise InputError(f"{path}: observation {obs_id!r} uses media creation dates as offset, "
                                 f"but {p!r} has none")
            obs.media.append(_Media(path=p, length=_positive(lengths.get(p)), fps=_positive(rates.get(p)),
                                    start=start))
        offset = _num(raw.get("time offset")) or 0.0

        events = []
        for k, ev in enumerate(raw.get("events") or []):
            if not isinstance(ev, (list, tuple)) or len(ev) < 3:
                raise InputError(f"{path}: observation {obs_id!r}: event {k} is not [time, subject, code, ...]")
            t = _num(ev[0])
            if t is None:
                raise InputError(f"{path}: observation {obs_id!r}: event {k} ({ev[2]!r}) has no time")
            modifier = str(ev[3]) if len(ev) > 3 and ev[3] is not None else ""
            events.append((t, str(ev[1] or ""), str(ev[2]), modifier))
        events.sort(key=lambda e: e[0])  # BORIS keeps them sorted; pairing relies on the order

        started: dict[tuple, float] = {}
        for t, subject, code, modifier in events:
            local = t - offset
            if code not in kinds:
                obs.occurrences.append(_Occurrence(code, local, local, t, defined=False))
            elif not kinds[code]:
                obs.occurrences.append(_Occurrence(code, local, None, t))
            else:
                key = (subject, code, modifier)
                if key in started:  # START and STOP alternate
                    t0 = started.pop(key)
                    obs.occurrences.append(_Occurrence(code, t0 - offset, local, t0))
                else:
                    started[key] = t
        for (subject, code, _), t0 in started.items():
            who = f" (subject {subject!r})" if subject else ""
            raise InputError(f"{_where(path, obs.id, t0)}: state event {code!r}{who} is started but "
                             "never stopped (unpaired START)")
        obs.occurrences.sort(key=lambda o: (o.start, o.code))
        out.append(obs)
    return out


# --- reading: tabular and aggregated exports -------------------------------------------------------

_AGGREGATED = "aggregated"
_TABULAR = "tabular"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value).strip()


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # a file saved again by Excel on Windows


def _sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    """(sheet name, rows of cell texts) of a .csv, .tsv or .xlsx file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if suffix == ".xlsx":
        import pandas as pd

        try:
            frames = pd.read_excel(path, sheet_name=None, header=None, dtype=object, engine="openpyxl")
        except Exception as e:  # noqa: BLE001 - a corrupt workbook raises many kinds
            raise InputError(f"{path}: unreadable .xlsx workbook ({type(e).__name__}: {e})") from None
        return [(str(name), [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)])
                for name, frame in frames.items()]
    try:
        text = _decode(path)
    except OSError as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    delimiters = ["\t", ",", ";"] if suffix == ".tsv" else [",", ";", "\t"]
    for delimiter in delimiters:
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
        if _find_header(rows) is not None:
            return [(path.stem, rows)]
    return [(path.stem, [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), delimiter=delimiters[0])])]


def _find_header(rows: list[list[str]], limit: int = 60) -> Optional[tuple[int, str]]:
    """(row index, kind) of a BORIS export's header row, searched among the first `limit` rows
    (exports of BORIS 7 put the observation's details above it)."""
    for i, row in enumerate(rows[:limit]):
        names = set(row)
        if "Behavior" not in names:
            continue
        if {"Start (s)", "Stop (s)"} <= names:
            return i, _AGGREGATED
        if "Time" in names and ({"Behavior type", "Status"} & names):
            return i, _TABULAR
    return None


class _Row:
    def __init__(self, header: list[str], cells: list[str]):
        self.header = header
        self.cells = cells + [""] * (len(header) - len(cells))

    def get(self, *names: str) -> str:
        for name in names:
            if name in self.header:
                return self.cells[self.header.index(name)]
        return ""

    def modifiers(self) -> str:
        return "|".join(c for h, c in zip(self.header, self.cells) if h.startswith("Modifier"))


def _player1(text: str) -> Optional[list[str]]:
    """Player #1's part of a "player #1:a.mp4;b.mp4|player #2:c.mp4" cell (paths), or None."""
    for part in text.split("|"):
        m = re.match(r"\s*player\s*#\s*1\s*:(.*)$", part, flags=re.IGNORECASE)
        if m:
            return [p for p in m.group(1).split(";") if p.strip()]
    return None


def _first_part(text: str, n: int) -> list[Optional[float]]:
    """Player #1's `n` values of a "25.000;25.000|30.000" cell (durations or frame rates)."""
    parts = text.split("|")[0].split(";") if text else []
    return [_positive(v) for v in parts] if len(parts) == n else [None] * n


def _table_observation(obs_id: str, rows: list[_Row], preamble: dict):
    """The observation (its media files, no events yet), its time offset, and a function giving
    a row's media file where events are pinned to files (exports without the player list)."""
    obs = _Observation(id=obs_id)
    first = rows[0]
    offset = _num(first.get("Time offset (s)") or preamble.get("Time offset (s)")) or 0.0
    source = _player1(first.get("Source"))
    pinned = obs.pinned = source is None
    if source:
        lengths = _first_part(first.get("Media duration (s)"), len(source))
        rates = _first_part(first.get("FPS", "FPS (frame/s)"), len(source))
        obs.media = [_Media(p.strip(), lengths[i], rates[i]) for i, p in enumerate(source)]
    elif pinned and preamble.get("Player #1"):
        obs.media = [_Media(preamble["Player #1"])]
    index: dict[str, int] = {m.path: i for i, m in enumerate(obs.media)}

    def media_of(row: _Row) -> Optional[int]:
        if not pinned:
            return None
        name = row.get("Media file name", "Media file", "Media file path")
        if name.casefold() in _NOT_AVAILABLE:
            return 0 if obs.media else None
        if name not in index:
            index[name] = len(obs.media)
            obs.media.append(_Media(name))
        media = obs.media[index[name]]
        media.fps = media.fps or _positive(row.get("FPS", "FPS (frame/s)"))
        return index[name]

    return obs, offset, media_of


def _read_tabular_rows(path: Path, obs: _Observation, rows: list[_Row], offset: float, media_of) -> None:
    started: dict[tuple, tuple[float, Optional[int]]] = {}
    for row in rows:
        code = row.get("Behavior")
        status = row.get("Behavior type", "Status").upper()
        t = _num(row.get("Time"))
        if t is None:
            raise InputError(f"{_where(path, obs.id)}: {code!r} {status} has no time ({row.get('Time')!r})")
        where = _where(path, obs.id, t)
        key = (row.get("Subject"), code, row.modifiers())
        if status == "POINT":
            obs.occurrences.append(_Occurrence(code, t - offset, None, t, media_of(row)))
        elif status == "START":
            if key in started:
                raise InputError(f"{where}: {code!r} is started again while started at {started[key][0]:.3f} s "
                                 "(unpaired START)")
            started[key] = (t, media_of(row))
        elif status == "STOP":
            if key not in started:
                raise InputError(f"{where}: STOP of {code!r} without a START (unpaired STOP)")
            t0, media = started.pop(key)
            if t < t0:
                raise InputError(f"{where}: STOP of {code!r} comes before its START at {t0:.3f} s")
            obs.occurrences.append(_Occurrence(code, t0 - offset, t - offset, t0, media))
        else:
            raise InputError(f"{where}: {code!r} has behaviour type {status!r} (expected START, STOP or POINT)")
    for (_, code, _), (t0, _) in started.items():
        raise InputError(f"{_where(path, obs.id, t0)}: {code!r} is started but never stopped (unpaired START)")


def _read_aggregated_rows(path: Path, obs: _Observation, rows: list[_Row], offset: float, media_of) -> None:
    for row in rows:
        code = row.get("Behavior")
        kind = row.get("Behavior type").upper() or "STATE"
        start, stop = _num(row.get("Start (s)")), _num(row.get("Stop (s)"))
        if start is None:
            raise InputError(f"{_where(path, obs.id)}: {code!r} has no start ({row.get('Start (s)')!r})")
        where = _where(path, obs.id, start)
        if kind == "POINT":
            obs.occurrences.append(_Occurrence(code, start - offset, None, start, media_of(row)))
        elif kind == "STATE":
            if stop is None:
                raise InputError(f"{where}: state {code!r} has no stop (unpaired START)")
            if stop < start:
                raise InputError(f"{where}: STOP of {code!r} at {stop:.3f} s comes before its START")
            obs.occurrences.append(_Occurrence(code, start - offset, stop - offset, start, media_of(row)))
        else:
            raise InputError(f"{where}: {code!r} has behaviour type {kind!r} (expected STATE or POINT)")


def _read_table(path: Path) -> list[_Observation]:
    found = []
    for sheet, rows in _sheets(path):
        head = _find_header(rows)
        if head is not None:
            found.append((sheet, rows, head))
    if not found:
        raise InputError(f"{path}: not a BORIS events export (no header row with 'Behavior' and 'Time' "
                         "(tabular export) or 'Start (s)' and 'Stop (s)' (aggregated export))")
    groups: dict[str, list[_Row]] = {}
    kinds: dict[str, str] = {}
    preambles: dict[str, dict] = {}
    for sheet, rows, (i, kind) in found:
        header = rows[i]
        preamble = {r[0]: r[1] for r in rows[:i] if len(r) >= 2 and r[0]}
        default_id = preamble.get("Observation id") or (sheet if len(found) > 1 else path.stem)
        for cells in rows[i + 1:]:
            if not any(cells):
                continue
            row = _Row(header, cells)
            if not row.get("Behavior"):
                continue
            obs_id = row.get("Observation id") or default_id
            if obs_id in kinds and kinds[obs_id] != kind:
                raise InputError(f"{path}: observation {obs_id!r} is both in a tabular and an aggregated export")
            kinds[obs_id] = kind
            preambles.setdefault(obs_id, preamble)
            groups.setdefault(obs_id, []).append(row)
    out = []
    for obs_id, rows in groups.items():
        obs, offset, media_of = _table_observation(obs_id, rows, preambles[obs_id])
        if kinds[obs_id] == _TABULAR:
            _read_tabular_rows(path, obs, rows, offset, media_of)
        else:
            _read_aggregated_rows(path, obs, rows, offset, media_of)
        obs.occurrences.sort(key=lambda o: (o.start, o.code))
        out.append(obs)
    return out


# --- reading: the entry points -------------------------------------------------------------------

def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in PROJECT_SUFFIXES + TABLE_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix.lower()


def annotation_format(path: str | Path) -> Optional[str]:
    """"project", "tabular" or "aggregated" for a BORIS file, None for any other file (a
    ratscore events.csv, say). Reads the header of a table; InputError if it cannot be read."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix in PROJECT_SUFFIXES:
        return "project"
    if suffix not in TABLE_SUFFIXES:
        return None
    for _, rows in _sheets(path):
        head = _find_header(rows)
        if head is not None:
            return head[1]
    return None


def read_annotation_file(path: str | Path, code_map: Optional[Mapping] = None,
                         point_length_s: Optional[float] = None) -> list[dict]:
    """The action units coded in a BORIS project or export, per media file:

        {"video": media file stem (the observation id where there is no media file),
         "observation": observation id, "media_file": the path as BORIS has it (or None),
         "duration_s": float or None, "fps": float or None,
         "segments": [(start_s, end_s, label), ...] in seconds of that file, sorted,
         "unmapped": {code: occurrences} of codes the map does not name}

    `code_map` maps the lab's behaviour codes to action-unit names; None means the codes are
    action-unit names already (case-insensitive). Point events become segments of
    `point_length_s` seconds (refused when None). A file may hold several observations; an
    observation without events still gives its media file(s), with no segments."""
    path = Path(path)
    if point_length_s is not None:
        point_length_s = _finite(point_length_s, "point length", str(path))
        if point_length_s <= 0:
            raise InputError(f"{path}: the point length must be positive, got {point_length_s}")
    suffix = _suffix(path)
    if suffix in PROJECT_SUFFIXES:
        observations = _read_project(path)
    elif suffix in TABLE_SUFFIXES:
        observations = _read_table(path)
    else:
        raise InputError(f"{path}: not a BORIS file (a project .boris, or an events export .csv, .tsv or .xlsx)")
    codes = _Codes(code_map)
    entries = []
    for obs in observations:
        entries.extend(_resolve(path, obs, codes, point_length_s))
    return entries
