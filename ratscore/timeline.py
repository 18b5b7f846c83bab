"""Scoring without a model: events -> events table, Racine timeline, seizure episodes, summary.

Pure functions over plain data; the order of the input events never changes a result
(everything is sorted into one canonical order first).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from .errors import InputError
from .labels import LABELS, MAX_STAGE, NORMAL_ID, WET_DOG_SHAKES_ID, RacineMap

EVENT_COLUMNS = ["video", "event", "start_s", "end_s", "duration_s", "start_frame", "end_frame",
                 "au_id", "au", "racine_stage", "score"]
RACINE_COLUMNS = ["video", "t_start_s", "t_end_s", "racine_stage", "au"]
EPISODE_COLUMNS = ["video", "episode", "onset_s", "offset_s", "duration_s", "max_stage", "aus", "n_events"]


# What one scoring holds. A recording longer than MAX_DURATION_S, or a timeline of more than
# MAX_BINS bins, is refused before anything is built (a typo such as --bin 1e-7 would otherwise
# fill memory and disk). A 72-hour recording at 0.1 s bins, and a month at 1 s, fit.
MAX_DURATION_S = 31 * 24 * 3600.0  # a month
MAX_BINS = 10_000_000  # rows of racine.csv
MIN_BIN_S = 0.001  # the tables give times in milliseconds: a finer bin repeats a time


def check_timeline_size(duration_s: float, bin_s: float, where: str) -> int:
    """The number of timeline bins of a `duration_s` recording in `bin_s` bins; InputError naming
    `where` when the duration is not a positive number up to MAX_DURATION_S or the bins exceed
    MAX_BINS."""
    if not (isinstance(duration_s, (int, float)) and duration_s > 0 and math.isfinite(duration_s)):
        raise InputError(f"{where}: the video's duration must be a positive number of seconds, got {duration_s}")
    if duration_s > MAX_DURATION_S:
        raise InputError(f"{where}: a duration of {duration_s:g} s is longer than the {MAX_DURATION_S / 86400:g} days "
                         "ratscore scores at once; split the recording")
    n_bins = max(1, int(math.ceil(duration_s / bin_s - 1e-9)))
    if n_bins > MAX_BINS:
        wider = duration_s / MAX_BINS
        step = 10 ** math.floor(math.log10(wider))
        raise InputError(f"{where}: {duration_s:g} s in {bin_s:g} s bins makes {n_bins:,} timeline bins, more than "
                         f"the {MAX_BINS:,} a timeline holds; give --bin {math.ceil(wider / step) * step:g} or wider")
    return n_bins


@dataclass(frozen=True)
class Event:
    start_s: float
    end_s: float
    au_id: int
    score: float = 1.0


@dataclass(frozen=True)
class ScoringOptions:
    bin_s: float = 1.0  # width of a Racine timeline bin, seconds
    episode_gap_s: float = 10.0  # seizure events closer than this (seconds) form one episode
    threshold: float = 0.0  # events scoring below this are left out of everything
    include_normal: bool = False  # keep "others" (normal behaviour) events in the events table

    def __post_init__(self):
        if not (self.bin_s > 0 and math.isfinite(self.bin_s)):
            raise InputError(f"--bin must be a positive number of seconds, got {self.bin_s}")
        if self.bin_s < MIN_BIN_S:
            raise InputError(f"--bin must be at least {MIN_BIN_S:g} s (the tables give times in milliseconds), "
                             f"got {self.bin_s:g}")
        if not (self.episode_gap_s >= 0 and math.isfinite(self.episode_gap_s)):
            raise InputError(f"--episode-gap must be zero or more seconds, got {self.episode_gap_s}")
        if not (0.0 <= self.threshold <= 1.0):
            raise InputError(f"--threshold must lie in [0, 1], got {self.threshold}")


def _canonical(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.start_s, e.end_s, e.au_id, -e.score))


def events_table(events: Iterable[Event], video: str, fps: float, racine: RacineMap,
                 options: ScoringOptions = ScoringOptions()) -> pd.DataFrame:
    """The events.csv table: events that pass the threshold, in time order, numbered from 1.

    Frames are those of the source video at `fps`: start_frame is the frame shown at start_s,
    end_frame the last frame before end_s (inclusive).
    """
    kept = [e for e in _canonical(events)
            if e.score >= options.threshold and (options.include_normal or e.au_id != NORMAL_ID)]
    for e in kept:
        if not (math.isfinite(e.start_s) and math.isfinite(e.end_s)) or e.end_s <= e.start_s:
            raise InputError(f"{video}: event [{e.start_s}, {e.end_s}] of {LABELS[e.au_id]!r} does not end after it starts")
    rows = []
    for i, e in enumerate(kept, start=1):
        start_frame = int(math.floor(e.start_s * fps + 1e-6))
        end_frame = max(start_frame, int(math.ceil(e.end_s * fps - 1e-6)) - 1)
        stage = racine.stage(e.au_id)
        rows.append([video, i, round(e.start_s, 3), round(e.end_s, 3), round(e.end_s - e.start_s, 3),
                     start_frame, end_frame, e.au_id, LABELS[e.au_id],
                     pd.NA if stage is None else stage, round(float(e.score), 4)])
    table = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return table.astype({"event": "int64", "start_frame": "int64", "end_frame": "int64",
                         "au_id": "int64", "racine_stage": "Int64", "start_s": "float64",
                         "end_s": "float64", "duration_s": "float64", "score": "float64"})


def _events_of(table: pd.DataFrame) -> list[tuple[float, float, int, Optional[int], float]]:
    """(start, end, au_id, stage or None, score) per row of an events table."""
    return [(float(r.start_s), float(r.end_s), int(r.au_id),
             None if pd.isna(r.racine_stage) else int(r.racine_stage), float(r.score))
            for r in table.itertuples(index=False)]


def racine_timeline(table: pd.DataFrame, video: str, duration_s: float,
                    options: ScoringOptions = ScoringOptions()) -> pd.DataFrame:
    """One row per bin: the highest Racine stage among the events overlapping the bin.

    Ties between AUs of the same stage go to the higher score, then the lower id. A bin that no
    staged event overlaps has stage 0 and an empty au (or "others" when a normal-behaviour event
    covers it). InputError when the timeline would exceed MAX_BINS (check_timeline_size).
    """
    n_bins = check_timeline_size(duration_s, options.bin_s, video)
    stage = np.zeros(n_bins, dtype=np.int64)
    au_index = np.full(n_bins, len(LABELS), dtype=np.int64)  # len(LABELS): no AU (an empty name)
    staged = [e for e in _events_of(table) if e[3] is not None]
    # Events in rising (stage, score, -au_id) order, each painting its bins: the last paint of a
    # bin is its highest key. Equal keys are one AU at one stage, so their order does not matter.
    for start, end, au_id, st, score in sorted(staged, key=lambda e: (e[3], e[4], -e[2])):
        first = max(0, int(math.floor(start / options.bin_s)))
        last = min(n_bins - 1, int(math.ceil(end / options.bin_s)) - 1)
        # Overlap must be real: an event ending exactly on a bin edge does not reach the next bin
        # (only the end bins can fail this, through float rounding).
        if first <= last and not start < (first + 1) * options.bin_s:
            first += 1
        if first <= last and not end > last * options.bin_s:
            last -= 1
        if first <= last:
            stage[first:last + 1] = st
            au_index[first:last + 1] = au_id
    names = np.array(list(LABELS) + [""], dtype=object)
    t_start = np.arange(n_bins) * options.bin_s
    t_end = np.minimum(t_start + options.bin_s, max(duration_s, options.bin_s * 1e-9))
    return pd.DataFrame({"video": video, "t_start_s": np.round(t_start, 3), "t_end_s": np.round(t_end, 3),
                         "racine_stage": stage, "au": names[au_index]}, columns=RACINE_COLUMNS)


def seizure_episodes(table: pd.DataFrame, video: str,
                     options: ScoringOptions = ScoringOptions()) -> pd.DataFrame:
    """Seizure events whose gaps are shorter than episode_gap_s form one episode.

    A seizure event is one with a Racine stage of 1 or more. Unstaged events (wet dog shakes,
    by default) are counted in the summary on their own: they neither start, extend nor join an
    episode, so a shake before a seizure does not move its onset. aus lists the AUs seen, by id,
    joined with ';'.
    """
    seizure = sorted((e for e in _events_of(table) if e[3]), key=lambda e: (e[0], e[1], e[2]))
    groups: list[list] = []
    offset = -math.inf
    for e in seizure:
        if groups and (e[0] <= offset or e[0] - offset < options.episode_gap_s):  # touching events join at gap 0 too
            groups[-1].append(e)
            offset = max(offset, e[1])
        else:
            groups.append([e])
            offset = e[1]
    rows = []
    for i, group in enumerate(groups, start=1):
        onset = min(e[0] for e in group)
        off = max(e[1] for e in group)
        aus = ";".join(LABELS[a] for a in sorted({e[2] for e in group}))
        rows.append([video, i, round(onset, 3), round(off, 3), round(off - onset, 3),
                     max(e[3] for e in group), aus, len(group)])
    out = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    return out.astype({"episode": "int64", "max_stage": "Int64", "n_events": "int64",
                       "onset_s": "float64", "offset_s": "float64", "duration_s": "float64"})


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_end is None or s > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def summarize(table: pd.DataFrame, episodes: pd.DataFrame, video: str, duration_s: float, fps: float,
              model: str, racine: RacineMap) -> dict:
    """The summary.json content.

    Time per AU and per stage is the length of the union of their events (overlapping events are
    not counted twice). latency_s[k] is the time from the start of the video to the onset of the
    first event of stage >= k (null when there is none).
    """
    events = _events_of(table)
    per_au = {}
    for au_id, name in enumerate(LABELS):
        mine = [(s, e) for s, e, a, _, _ in events if a == au_id]
        per_au[name] = {"count": len(mine), "total_s": round(_union_length(mine), 3)}
    per_stage = {}
    for k in range(MAX_STAGE + 1):
        mine = [(s, e) for s, e, _, st, _ in events if st == k]
        per_stage[str(k)] = {"count": len(mine), "total_s": round(_union_length(mine), 3)}
    latency = {}
    for k in range(1, MAX_STAGE + 1):
        onsets = [s for s, _, _, st, _ in events if st is not None and st >= k]
        latency[str(k)] = round(min(onsets), 3) if onsets else None
    staged = [st for _, _, _, st, _ in events if st is not None]
    return {
        "video": video,
        "model": model,
        "duration_s": round(float(duration_s), 3),
        "fps": float(fps),
        "n_events": len(events),
        "n_episodes": int(len(episodes)),
        "max_stage": max(staged) if staged else 0,
        "latency_s": latency,
        "wet_dog_shakes": sum(1 for _, _, a, _, _ in events if a == WET_DOG_SHAKES_ID),
        "per_au": per_au,
        "per_stage": per_stage,
        "racine_map": racine.as_dict(),
    }


@dataclass
class Scoring:
    """Everything the writers need for one video."""

    video: str
    duration_s: float
    fps: float
    events: pd.DataFrame
    racine: pd.DataFrame
    episodes: pd.DataFrame
    summary: dict
    stills: list = field(default_factory=list)  # RGB crops of the rat at each episode's peak (report)
    track: Optional[object] = None  # roi.Track: the animal's box at every frame (track.csv, report, picture)
    strip: list = field(default_factory=list)  # (t_s, RGB frame with the box drawn) at evenly spaced moments (report)
    # the timeline picture as last drawn: (what it showed, PNG bytes); see timeline_png
    _picture: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)

    @property
    def timeline_png(self) -> bytes:
        """The timeline picture (plots.py) as PNG. timeline.png and the report show the same picture,
        and drawing it is most of a short video's writing time, so it is drawn once and kept, and
        drawn again only if what it shows has changed since (the pipeline fills in the trust and
        the track after the tables are made)."""
        from .plots import timeline_png

        shown = self._what_the_picture_shows()
        if self._picture is None or self._picture[0] != shown:
            self._picture = (shown, timeline_png(self))
        return self._picture[1]

    def _what_the_picture_shows(self) -> tuple:
        def table(frame: pd.DataFrame) -> tuple:
            return tuple(frame.columns), tuple(pd.util.hash_pandas_object(frame, index=True).tolist())

        lost = tuple(map(tuple, self.track.lost())) if self.track is not None else ()
        return (self.video, self.duration_s, table(self.events), table(self.racine), table(self.episodes),
                json.dumps(self.summary, sort_keys=True, default=str), lost)


def episode_events(scoring) -> list[tuple[object, pd.DataFrame]]:
    """Each episode (a row of scoring.episodes) with the rows of scoring.events that lie inside it."""
    events = scoring.events
    return [(ep, events[(events.start_s >= ep.onset_s) & (events.end_s <= ep.offset_s)])
            for ep in scoring.episodes.itertuples(index=False)]


def episode_peaks(scoring) -> list[float]:
    """For each episode, the time (s) at the middle of its highest-stage event (best score wins ties)."""
    peaks = []
    for ep, inside in episode_events(scoring):
        if inside.empty:
            peaks.append((ep.onset_s + ep.offset_s) / 2)
            continue
        stage = inside.racine_stage.fillna(-1).astype(int)
        best = inside.assign(_stage=stage).sort_values(["_stage", "score"], ascending=False).iloc[0]
        peaks.append(float(best.start_s + best.end_s) / 2)
    return peaks


def score_events(events: Iterable[Event], video: str, duration_s: float, fps: float, model: str,
                 racine: RacineMap, options: ScoringOptions = ScoringOptions()) -> Scoring:
    """events -> the events table, Racine timeline, episodes and summary of one video.
    InputError, before anything is built, when the timeline would not fit (check_timeline_size)."""
    check_timeline_size(duration_s, options.bin_s, video)
    table = events_table(events, video, fps, racine, options)
    timeline = racine_timeline(table, video, duration_s, options)
    episodes = seizure_episodes(table, video, options)
    summary = summarize(table, episodes, video, duration_s, fps, model, racine)
    summary["scoring"] = asdict(options)
    return Scoring(video, duration_s, fps, table, timeline, episodes, summary)
