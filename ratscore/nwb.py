"""`<stem>.nwb`: one video's scoring as an NWB file, for labs that keep their video-EEG in NWB.

The file holds two time-interval tables (pynwb `TimeIntervals`, under /intervals):

    seizure_events     start_time, stop_time, au, au_id, racine_stage (-1: not staged), score
    seizure_episodes   start_time, stop_time, episode, max_stage, aus (joined with ';'), n_events

Times are seconds from the start of the video. The session start time is the video's start time
when it is given, else a fixed epoch (1970-01-01 00:00 UTC), so a file merged into a lab's own
NWB session is shifted by that start. The identifier is derived from the video's fingerprint, the
model and the scoring options, and every object id from the identifier; the file's creation date
is the session start time. So one video scored the same way gives the same bytes on every run.

pynwb is an optional dependency (`pip install ratscore[nwb]`); `check_available` says so in one
line before any work is done.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timezone
from typing import IO, Optional

import numpy as np

from .errors import InputError

SUFFIX = ".nwb"
EVENTS_TABLE = "seizure_events"
EPISODES_TABLE = "seizure_episodes"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the session start when the video's is not known
NOT_STAGED = -1  # racine_stage of an event without a stage (wet dog shakes): NWB integer columns hold no blanks
_NAMESPACE = uuid.UUID("5d1c3f0e-8a4b-4c1e-9a53-7a2b1f4c6e90")  # ratscore's: identifiers are uuid5 in it


def check_available() -> None:
    """InputError (one line) when pynwb is not installed."""
    import importlib.util

    if importlib.util.find_spec("pynwb") is None:
        raise InputError("--nwb needs pynwb, which is not installed: pip install 'ratscore[nwb]'")


def identifier(summary: dict) -> str:
    """A uuid5 of what makes the outputs: the video's fingerprint, the model, the scoring options."""
    source = summary.get("source") or {}
    key = json.dumps({"fingerprint": source.get("fingerprint"), "video": summary.get("video"),
                      "model": summary.get("model"), "scoring": summary.get("scoring")}, sort_keys=True)
    return str(uuid.uuid5(_NAMESPACE, key))


def _session_start(start_time: Optional[datetime]) -> datetime:
    if start_time is None:
        return EPOCH
    # NWB needs a time zone; a start time written without one is taken as UTC
    return start_time if start_time.tzinfo is not None else start_time.replace(tzinfo=timezone.utc)


def _column(name: str, description: str, values, dtype):
    from hdmf.common import VectorData

    # typed arrays: hdmf cannot infer the type of an empty column (a video without events)
    return VectorData(name=name, description=description, data=np.asarray(values, dtype=dtype))


def _table(name: str, description: str, start, stop, columns):
    from hdmf.common import ElementIdentifiers
    from pynwb.epoch import TimeIntervals

    n = len(start)
    return TimeIntervals(name=name, description=description,
                         id=ElementIdentifiers(name="id", data=np.arange(n, dtype=np.int64)),
                         columns=[_column("start_time", "seconds from the start of the video", start, np.float64),
                                  _column("stop_time", "seconds from the start of the video", stop, np.float64),
                                  *columns])


def _fix_object_ids(container, namespace: uuid.UUID, path: str = "") -> None:
    """Object ids from the file's identifier and each object's place in it, not random ones.
    Best effort: hdmf offers no public setter, and a file with random ids is still a valid file."""
    try:
        container._AbstractContainer__object_id = str(uuid.uuid5(namespace, path or "/"))
    except AttributeError:
        return
    for child in container.children:
        _fix_object_ids(child, namespace, f"{path}/{child.name}")


def build_nwb(scoring, start_time: Optional[datetime] = None):
    """The pynwb NWBFile of one video's scoring (see the module doc)."""
    from pynwb import NWBFile

    from . import __version__

    summary = scoring.summary
    start = _session_start(start_time)
    ident = identifier(summary)
    nwb = NWBFile(session_description=(f"Seizure action units and episodes of video {scoring.video}, scored on the "
                                       f"Racine scale by ratscore {__version__} with model {summary.get('model')}"),
                  identifier=ident, session_start_time=start, file_create_date=start, session_id=str(scoring.video),
                  source_script=f"ratscore {__version__}", source_script_file_name="ratscore")
    ev = scoring.events
    stages = ev.racine_stage.fillna(NOT_STAGED).astype(np.int64)
    nwb.add_time_intervals(_table(
        EVENTS_TABLE, "Seizure action units found by ratscore (RatSeizure labels), one row per event",
        ev.start_s, ev.end_s,
        [_column("au", "action unit name", ev.au.astype(str), str),
         _column("au_id", "action unit id (0-13, RatSeizure)", ev.au_id, np.int64),
         _column("racine_stage", f"Racine stage of the action unit ({NOT_STAGED}: not staged)", stages, np.int64),
         _column("score", "the model's confidence, 0 to 1", ev.score, np.float64)]))
    ep = scoring.episodes
    nwb.add_time_intervals(_table(
        EPISODES_TABLE, "Seizure episodes: staged events closer than the episode gap, one row per episode",
        ep.onset_s, ep.offset_s,
        [_column("episode", "episode number, 1, 2 ... in time order", ep.episode, np.int64),
         _column("max_stage", "highest Racine stage in the episode", ep.max_stage, np.int64),
         _column("aus", "action units seen in the episode, joined with ';'", ep.aus.fillna("").astype(str), str),
         _column("n_events", "events in the episode", ep.n_events, np.int64)]))
    _fix_object_ids(nwb, uuid.UUID(ident))
    return nwb


def write_nwb(scoring, f: IO[bytes], start_time: Optional[datetime] = None) -> None:
    """Write one video's scoring as an NWB (HDF5) file into the open binary file `f`."""
    import h5py
    from pynwb import NWBHDF5IO

    buffer = io.BytesIO()  # HDF5 reads back what it writes; the target may be write-only
    with h5py.File(buffer, "w") as h5:
        with NWBHDF5IO(file=h5, mode="w") as out:
            out.write(build_nwb(scoring, start_time))
    f.write(buffer.getvalue())
