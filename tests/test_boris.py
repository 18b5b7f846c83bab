"""BORIS projects and exports: what ratscore writes BORIS opens, and what a lab's BORIS writes
ratscore reads. The fixtures are written here in BORIS 8's formats: its project JSON, its tabular
events export (one row per START / STOP / POINT) and its aggregated events export (one row per
event), as CSV, TSV and XLSX."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from boris_exports import AGGREGATED_HEADER, EXPECTED, LAB_EVENTS, TABULAR_HEADER
from boris_exports import aggregated_rows as _aggregated_rows, tabular_rows as _tabular_rows
from boris_exports import write_table as _write_table
from ratscore import boris
from ratscore.errors import InputError
from ratscore.labels import LABELS

FPS = 30.0


def _events():
    return [
        (1.0, 2.5, "head nodding", 0.81),
        (2.0, 3.2, "head nodding", 0.93),  # overlaps the first: one state
        (3.2, 4.0, "head nodding", 0.40),  # touches it: the same state
        (5.0, 5.0 + 1 / 3, 13, 0.77),  # by id; a time that is not on BORIS's millisecond grid
        (6.0, 8.0, "wet dog shakes", None),
        (7.0, 9.5, "staring", 0.66),  # overlaps another action unit: kept apart
    ]


def _observation(tmp_path, name="rat1", events=None, duration=60.0):
    media = tmp_path / f"{name}.mp4"
    media.write_bytes(b"")
    return {"id": name, "media_path": str(media), "fps": FPS, "duration_s": duration,
            "events": _events() if events is None else events}


# --- writing -----------------------------------------------------------------------------------

def test_project_has_the_action_units_and_one_observation_per_video(tmp_path):
    pj = boris.project_json([_observation(tmp_path), _observation(tmp_path, "rat2", events=[])],
                            date="2024-05-01T10:00:00.000")
    assert pj["project_format_version"] == "7.0"
    assert pj["subjects_conf"] == {}
    ethogram = pj["behaviors_conf"]
    assert list(ethogram) == [str(i) for i in range(14)]
    assert [ethogram[str(i)]["code"] for i in range(14)] == list(LABELS) == list(boris.ACTION_UNITS)
    assert {b["type"] for b in ethogram.values()} == {"State event"}
    assert len({b["key"] for b in ethogram.values()}) == 14
    for b in ethogram.values():
        assert {"key", "code", "description", "category", "modifiers", "excluded", "coding map"} <= set(b)

    obs = pj["observations"]["rat1"]
    media = str((tmp_path / "rat1.mp4").absolute())
    assert obs["type"] == "MEDIA" and obs["time offset"] == 0.0
    assert obs["file"]["1"] == [media] and all(obs["file"][str(p)] == [] for p in range(2, 9))
    assert obs["media_info"]["length"] == {media: 60.0}
    assert obs["media_info"]["fps"] == {media: FPS}
    assert obs["media_info"]["hasVideo"] == {media: True}
    assert pj["observations"]["rat2"]["events"] == []

    events = obs["events"]
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert all(len(e) == 6 and e[1] == "" and e[3] == "" for e in events)
    nodding = [e for e in events if e[2] == "head nodding"]
    assert nodding == [[1.0, "", "head nodding", "", "scores 0.93, 0.81, 0.40", 30],
                       [4.0, "", "head nodding", "", "", 120]]
    tonic = [e for e in events if e[2] == "tonic extension"]
    assert [e[0] for e in tonic] == [5.0, 5.333] and tonic[0][4] == "score 0.77"
    assert [e[4] for e in events if e[2] == "wet dog shakes"] == ["", ""]  # no score, no comment


def test_round_trip_within_one_frame(tmp_path):
    path = boris.write_project(tmp_path / "out" / "rat1.boris", [_observation(tmp_path)])
    [back] = boris.read_annotation_file(path)
    assert back["video"] == "rat1" and back["observation"] == "rat1"
    assert back["duration_s"] == 60.0 and back["fps"] == FPS and back["unmapped"] == {}
    expected = [(1.0, 4.0, "head nodding"), (5.0, 5.0 + 1 / 3, "tonic extension"),
                (6.0, 8.0, "wet dog shakes"), (7.0, 9.5, "staring")]
    got = back["segments"]
    assert [s[2] for s in got] == [e[2] for e in expected]
    for (a, b, _), (x, y, _) in zip(got, expected):
        assert abs(a - x) < 1 / FPS and abs(b - y) < 1 / FPS


def test_writing_refuses_what_boris_cannot_hold(tmp_path):
    one = _observation(tmp_path)
    with pytest.raises(InputError, match="two observations have the id 'rat1'"):
        boris.project_json([one, dict(one)])
    with pytest.raises(InputError, match="unknown action unit 'grooming'"):
        boris.project_json([_observation(tmp_path, events=[(1.0, 2.0, "grooming", 0.5)])])
    with pytest.raises(InputError, match="ends .* before it starts"):
        boris.project_json([_observation(tmp_path, events=[(3.0, 2.0, "staring", 0.5)])])
    with pytest.raises(InputError, match="missing duration_s"):
        boris.project_json([{"id": "x", "media_path": "x.mp4", "events": []}])


# --- a lab's project -----------------------------------------------------------------------------

def _lab_ethogram():
    def behaviour(code, kind):
        return {"type": kind, "key": code[0].lower(), "code": code, "description": "", "color": "",
                "category": "", "modifiers": {}, "excluded": "", "coding map": ""}

    codes = [("HN", "State event"), ("FLC", "State event"), ("WDS", "Point event"), ("groom", "State event")]
    return {str(i): behaviour(c, k) for i, (c, k) in enumerate(codes)}


def _lab_observation(files, lengths, events, offset=0.0, fps=25.0, kind="MEDIA"):
    return {
        "file": {"1": files, "2": []},
        "type": kind,
        "date": "2024-03-01T09:00:00.000",
        "description": "",
        "time offset": offset,
        "events": events,
        "independent_variables": {},
        "close_behaviors_between_videos": False,
        "media_info": {"length": dict(zip(files, lengths)), "fps": {f: fps for f in files},
                       "hasVideo": {f: True for f in files}, "hasAudio": {f: False for f in files},
                       "offset": {"1": 0.0, "2": 0.0}},
    }


def _lab_project(observations):
    return {"time_format": "hh:mm:ss", "project_name": "kindling", "project_date": "2024-03-01T09:00:00",
            "project_description": "", "project_format_version": "7.0",
            "subjects_conf": {"0": {"key": "1", "name": "rat A", "description": ""}},
            "behaviors_conf": _lab_ethogram(), "observations": observations, "behavioral_categories": [],
            "independent_variables": {}, "coding_map": {}, "behaviors_coding_map": [], "converters": {}}


CODE_MAP = {"HN": "head nodding", "FLC": "unilateral forelimb clonus", "WDS": "wet dog shakes"}


def _write_json(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_reads_a_lab_project(tmp_path):
    day1 = _lab_observation(
        ["C:\\videos\\rat A day1.mp4"], [600.0],
        [[10.0, "rat A", "HN", "", "", 250], [12.5, "rat A", "HN", "", "", 312],
         [20.0, "rat A", "FLC", "left", ""], [21.0, "rat A", "FLC", "right", ""],  # paired per modifier
         [24.0, "rat A", "FLC", "left", ""], [26.0, "rat A", "FLC", "right", ""],
         [30.0, "rat A", "WDS", "", ""],
         [40.0, "rat A", "groom", "", ""], [45.0, "rat A", "groom", "", ""],
         [50.0, "rat A", "sniff", "", ""]],  # coded, though not in the ethogram
    )
    # two files played one after the other (times run on), an offset of 100 s, a state across the join
    split = _lab_observation(["/data/rat B part1.avi", "/data/rat B part2.avi"], [300.0, 200.0],
                             [[110.0, "", "HN", "", ""], [115.5, "", "HN", "", ""],
                              [390.0, "", "HN", "", ""], [420.0, "", "HN", "", ""]], offset=100.0)
    empty = _lab_observation(["rat C.mp4"], [120.0], [])
    path = _write_json(tmp_path / "kindling.boris",
                       _lab_project({"rat A day 1": day1, "rat B": split, "rat C": empty}))

    entries = boris.read_annotation_file(path, CODE_MAP, point_length_s=1.0)
    assert [(e["video"], e["observation"]) for e in entries] == [
        ("rat A day1", "rat A day 1"), ("rat B part1", "rat B"), ("rat B part2", "rat B"), ("rat C", "rat C")]
    a, b1, b2, c = entries
    assert a["segments"] == [(10.0, 12.5, "head nodding"), (20.0, 24.0, "unilateral forelimb clonus"),
                             (21.0, 26.0, "unilateral forelimb clonus"), (30.0, 31.0, "wet dog shakes")]
    assert a["unmapped"] == {"groom": 1, "sniff": 1}
    assert a["duration_s"] == 600.0 and a["fps"] == 25.0 and a["media_file"] == "C:\\videos\\rat A day1.mp4"
    assert b1["segments"] == [(10.0, 15.5, "head nodding"), (290.0, 300.0, "head nodding")]
    assert b2["segments"] == [(0.0, 20.0, "head nodding")]
    assert b2["duration_s"] == 200.0
    assert c["segments"] == [] and c["unmapped"] == {}


def test_project_with_media_creation_dates_as_offset(tmp_path):
    # BORIS then adds each file's creation time (epoch seconds) to the times of its events
    start_a, start_b = 1_700_000_000.0, 1_700_003_600.0
    obs = _lab_observation(["a.mp4", "b.mp4"], [3000.0, 3600.0],  # a gap of 600 s between them
                           [[start_a + 10, "", "HN", "", ""], [start_a + 20, "", "HN", "", ""],
                            [start_b + 100, "", "HN", "", ""], [start_b + 110.5, "", "HN", "", ""]])
    obs["media_creation_date_as_offset"] = True
    obs["media_info"]["media_creation_time"] = {"a.mp4": start_a, "b.mp4": start_b}
    entries = boris.read_annotation_file(_write_json(tmp_path / "p.boris", _lab_project({"day": obs})), CODE_MAP)
    assert [(e["video"], e["segments"]) for e in entries] == [("a", [(10.0, 20.0, "head nodding")]),
                                                              ("b", [(100.0, 110.5, "head nodding")])]
    obs["events"] = [[start_b - 10, "", "HN", "", ""], [start_b + 5, "", "HN", "", ""]]  # between the files
    with pytest.raises(InputError, match="'HN' lies \\(partly\\) outside the observation's media files"):
        boris.read_annotation_file(_write_json(tmp_path / "p.boris", _lab_project({"day": obs})), CODE_MAP)


def test_project_codes_already_named_as_action_units(tmp_path):
    ethogram = {"0": {"type": "State event", "key": "h", "code": "Head Nodding", "description": "",
                      "category": "", "modifiers": {}, "excluded": "", "coding map": ""},
                "1": {"type": "State event", "key": "g", "code": "grooming", "description": "",
                      "category": "", "modifiers": {}, "excluded": "", "coding map": ""}}
    doc = _lab_project({"v1": _lab_observation(["v1.mp4"], [30.0], [
        [1.0, "", "Head Nodding", "", ""], [2.0, "", "grooming", "", ""],
        [3.0, "", "Head Nodding", "", ""], [4.0, "", "grooming", "", ""]])})
    doc["behaviors_conf"] = ethogram
    [entry] = boris.read_annotation_file(_write_json(tmp_path / "p.boris", doc))
    assert entry["segments"] == [(1.0, 3.0, "head nodding")]
    assert entry["unmapped"] == {"grooming": 1}


# --- a lab's exports -----------------------------------------------------------------------------

def _by_video(entries):
    return {e["video"]: e for e in entries}


@pytest.mark.parametrize("kind", ["tabular", "aggregated"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx"])
def test_reads_every_export_format(tmp_path, kind, suffix):
    rows = (_tabular_rows if kind == "tabular" else _aggregated_rows)(LAB_EVENTS)
    path = _write_table(tmp_path / f"events{suffix}", rows)
    assert boris.annotation_format(path) == kind
    entries = boris.read_annotation_file(path, CODE_MAP, point_length_s=0.5)
    videos = _by_video(entries)
    assert list(videos) == ["rat1", "rat2_a", "rat2_b"]  # several observations, one of two files
    assert {v: e["segments"] for v, e in videos.items()} == EXPECTED
    assert videos["rat1"]["observation"] == "rat1 kindling" and videos["rat2_b"]["observation"] == "rat2 kindling"
    assert videos["rat1"]["unmapped"] == {"groom": 1}
    assert videos["rat1"]["duration_s"] == 600.0 and videos["rat1"]["fps"] == 25.0
    assert videos["rat2_b"]["duration_s"] == 100.0


def test_numbers_as_numbers_in_a_workbook(tmp_path):
    rows = _aggregated_rows(LAB_EVENTS[:1])
    typed = [rows[0]] + [[float(c) if c.replace(".", "", 1).isdigit() else c for c in r] for r in rows[1:]]
    path = _write_table(tmp_path / "typed.xlsx", typed)
    [entry] = boris.read_annotation_file(path, CODE_MAP, point_length_s=0.5)
    assert entry["segments"] == EXPECTED["rat1"]


def test_semicolon_csv_with_decimal_commas(tmp_path):
    rows = [[c.replace(".", ",") if c[:1].isdigit() else c for c in r] for r in _aggregated_rows(LAB_EVENTS[:1])]
    path = tmp_path / "excel.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, delimiter=";").writerows(rows)
    [entry] = boris.read_annotation_file(path, CODE_MAP, point_length_s=0.5)
    assert entry["segments"] == EXPECTED["rat1"]


def test_reads_a_boris7_tabular_export(tmp_path):
    # BORIS 7 put the observation's details above the table and called the START/STOP column "Status"
    rows = [["Observation id", "obs 7"], [], ["Media file(s)"], [], ["Player #1", "old.mp4"], [],
            ["Time offset (s)", "0.0"], [],
            ["Time", "Media file path", "Total length", "FPS", "Subject", "Behavior", "Behavioral category",
             "Comment", "Status"],
            ["3.300", "old.mp4", "359.960", "25.0", "", "HN", "", "", "START"],
            ["7.750", "old.mp4", "359.960", "25.0", "", "HN", "", "", "STOP"]]
    path = _write_table(tmp_path / "old.tsv", rows)
    assert boris.annotation_format(path) == "tabular"
    [entry] = boris.read_annotation_file(path, CODE_MAP)
    assert (entry["video"], entry["observation"], entry["fps"]) == ("old", "obs 7", 25.0)
    assert entry["segments"] == [(3.3, 7.75, "head nodding")]


# --- the code map --------------------------------------------------------------------------------

def test_code_map_file(tmp_path):
    path = tmp_path / "MAP.yaml"
    path.write_text('HN: Head Nodding\n"FLC": unilateral_forelimb_clonus\nTE: 13\n"1": staring\n')
    assert boris.read_code_map(path) == {"HN": "head nodding", "FLC": "unilateral forelimb clonus",
                                         "TE": "tonic extension", "1": "staring"}


@pytest.mark.parametrize("text, message", [
    ("HN: grooming\n", "code 'HN' maps to unknown action unit 'grooming'"),
    ("HN: 14\n", "code 'HN' maps to unknown action unit 14"),
    ("HN:\n", "code 'HN' maps to None"),
    ("yes: staring\n", "put it in quotes"),
    ("", "the code map is empty"),
    ("- HN\n", "must be a mapping"),
])
def test_code_map_file_refuses_bad_entries(tmp_path, text, message):
    path = tmp_path / "MAP.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        boris.read_code_map(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_unmapped_codes_are_reported_not_dropped(tmp_path):
    path = _write_table(tmp_path / "e.tsv", _tabular_rows(LAB_EVENTS[:1]))
    [entry] = boris.read_annotation_file(path, {"HN": "head nodding"}, point_length_s=0.5)
    assert entry["segments"] == [(10.0, 12.5, "head nodding")]
    assert entry["unmapped"] == {"WDS": 1, "FLC": 1, "groom": 1}
    [entry] = boris.read_annotation_file(path, None, point_length_s=0.5)  # no map: codes are not AU names
    assert entry["segments"] == [] and entry["unmapped"] == {"HN": 1, "WDS": 1, "FLC": 1, "groom": 1}


def test_a_code_mapped_to_an_unknown_action_unit_is_refused(tmp_path):
    path = _write_table(tmp_path / "e.tsv", _tabular_rows(LAB_EVENTS[:1]))
    with pytest.raises(InputError, match=r"observation 'rat1 kindling' at 10\.000 s: code 'HN' is mapped to "
                                         r"unknown action unit 'nodding'"):
        boris.read_annotation_file(path, {"HN": "nodding"}, point_length_s=0.5)


# --- point events --------------------------------------------------------------------------------

def test_point_events_need_a_length(tmp_path):
    path = _write_table(tmp_path / "e.csv", _aggregated_rows(LAB_EVENTS[:1]))
    with pytest.raises(InputError, match=r"e\.csv: observation 'rat1 kindling' at 15\.000 s: 'WDS' is a "
                                         r"point event; give a point length \(--point-length S\)"):
        boris.read_annotation_file(path, CODE_MAP)
    [entry] = boris.read_annotation_file(path, CODE_MAP, point_length_s=2.0)
    assert (15.0, 17.0, "wet dog shakes") in entry["segments"]
    with pytest.raises(InputError, match="point length must be positive"):
        boris.read_annotation_file(path, CODE_MAP, point_length_s=0.0)


def test_point_events_of_unmapped_codes_need_no_length(tmp_path):
    path = _write_table(tmp_path / "e.csv", _aggregated_rows(LAB_EVENTS[:1]))
    [entry] = boris.read_annotation_file(path, {"HN": "head nodding"})
    assert entry["unmapped"]["WDS"] == 1


def test_a_point_segment_ends_with_its_video(tmp_path):
    doc = _lab_project({"v": _lab_observation(["v.mp4"], [30.0], [[29.5, "", "WDS", "", ""]])})
    [entry] = boris.read_annotation_file(_write_json(tmp_path / "p.boris", doc), CODE_MAP, point_length_s=2.0)
    assert entry["segments"] == [(29.5, 30.0, "wet dog shakes")]


# --- errors: one line naming the file, the observation and the time ---------------------------------

def _one_line(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def _tabular(tmp_path, lines):
    rows = [TABULAR_HEADER]
    for obs, code, kind, t in lines:
        rows.append([obs, "", "", "", "Media file(s)", "player #1:v.mp4", "0.0", "60.000", "25.000", "", code, "",
                     "", kind, f"{t:.3f}", "v.mp4", "NA", "NA", ""])
    return _write_table(tmp_path / "e.tsv", rows)


@pytest.mark.parametrize("lines, message", [
    ([("o1", "HN", "START", 1.0), ("o1", "HN", "STOP", 2.0), ("o2", "HN", "START", 3.0)],
     "observation 'o2' at 3.000 s: 'HN' is started but never stopped (unpaired START)"),
    ([("o1", "HN", "START", 1.0), ("o1", "HN", "START", 2.0), ("o1", "HN", "STOP", 3.0)],
     "observation 'o1' at 2.000 s: 'HN' is started again while started at 1.000 s (unpaired START)"),
    ([("o1", "HN", "STOP", 2.0), ("o1", "HN", "START", 3.0), ("o1", "HN", "STOP", 4.0)],
     "observation 'o1' at 2.000 s: STOP of 'HN' without a START (unpaired STOP)"),
    ([("o1", "HN", "START", 5.0), ("o1", "HN", "STOP", 4.0)],
     "observation 'o1' at 4.000 s: STOP of 'HN' comes before its START at 5.000 s"),
    ([("o1", "HN", "PAUSE", 5.0)], "observation 'o1' at 5.000 s: 'HN' has behaviour type 'PAUSE'"),
])
def test_tabular_errors(tmp_path, lines, message):
    path = _tabular(tmp_path, lines)
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(path, CODE_MAP)
    _one_line(e, str(path), message)


def test_aggregated_stop_before_start(tmp_path):
    rows = _aggregated_rows(LAB_EVENTS[:1])
    stop = AGGREGATED_HEADER.index("Stop (s)")
    rows[1][stop] = "9.000"  # HN 10.000 .. 9.000
    path = _write_table(tmp_path / "e.csv", rows)
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(path, CODE_MAP, point_length_s=0.5)
    _one_line(e, str(path), "observation 'rat1 kindling' at 10.000 s: STOP of 'HN' at 9.000 s comes before its START")
    rows[1][stop] = "NA"
    path = _write_table(tmp_path / "e.csv", rows)
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(path, CODE_MAP, point_length_s=0.5)
    _one_line(e, "observation 'rat1 kindling' at 10.000 s: state 'HN' has no stop (unpaired START)")


def test_project_unpaired_state(tmp_path):
    doc = _lab_project({"o1": _lab_observation(["v.mp4"], [60.0], [
        [1.0, "rat A", "HN", "", ""], [2.0, "rat A", "HN", "", ""], [7.25, "rat A", "HN", "", ""]])})
    path = _write_json(tmp_path / "p.boris", doc)
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(path, CODE_MAP)
    _one_line(e, str(path), "observation 'o1' at 7.250 s: state event 'HN' (subject 'rat A') is started but "
                            "never stopped (unpaired START)")


def test_project_mapped_code_missing_from_its_ethogram(tmp_path):
    doc = _lab_project({"o1": _lab_observation(["v.mp4"], [60.0], [[4.0, "", "TE", "", ""]])})
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(_write_json(tmp_path / "p.boris", doc), {"TE": "tonic extension"})
    _one_line(e, "observation 'o1' at 4.000 s: behaviour 'TE' is coded but not defined in the project's ethogram")


@pytest.mark.parametrize("name, content, message", [
    ("events.csv", "video,event,start_s,end_s\nrat1,1,0.5,1.0\n", "not a BORIS events export"),
    ("events.tsv", "", "not a BORIS events export"),
    ("notes.txt", "HN 1.0 2.0\n", "not a BORIS file"),
    ("p.boris", "{not json", "not a BORIS project (not JSON"),
    ("p.boris", '{"database": {}}', "not a BORIS project (no 'observations'"),
])
def test_files_of_another_format_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as e:
        boris.read_annotation_file(path, CODE_MAP)
    _one_line(e, str(path), message)
    if name.endswith((".csv", ".tsv", ".txt")):
        assert boris.annotation_format(path) is None


def test_missing_file(tmp_path):
    for name in ("gone.boris", "gone.csv", "gone.xlsx"):
        with pytest.raises(InputError, match="no such file"):
            boris.read_annotation_file(tmp_path / name)


# --- BORIS itself --------------------------------------------------------------------------------

# Runs in a separate interpreter: BORIS is a Qt application, and its import loads libmpv.
# RATSCORE_BORIS_PYTHON names an interpreter that has BORIS (default: this one).
_BORIS_CHECK = textwrap.dedent('''
    import sys
    try:
        import tablib
        from boris import config as cfg, export_observation, project_functions
    except Exception as e:  # an ImportError, or an OSError from a missing libmpv
        print(f"cannot import boris: {e!r}")
        sys.exit(3)
    project, out_dir, aggregated_header = sys.argv[1], sys.argv[2], sys.argv[3].split("|")
    name, _, pj, _ = project_functions.open_project_json(project)
    if "error" in pj:
        print(pj["error"])
        sys.exit(1)
    problems = project_functions.check_project_integrity(pj, cfg.HHMMSS, name, media_file_available=True)
    if problems.replace("<br>", "").strip():
        print(problems)
        sys.exit(1)
    # and BORIS's own exports of it, for ratscore to read back
    parameters = {"time": cfg.TIME_FULL_OBS, cfg.SELECTED_SUBJECTS: [cfg.NO_FOCAL_SUBJECT],
                  cfg.SELECTED_BEHAVIORS: [b["code"] for b in pj[cfg.ETHOGRAM].values()]}
    aggregated = tablib.Dataset(headers=aggregated_header)
    for obs_id, observation in pj[cfg.OBSERVATIONS].items():
        ok, msg = export_observation.export_tabular_events(
            pj, parameters, obs_id, observation, pj[cfg.ETHOGRAM], f"{out_dir}/{obs_id}.tabular.tsv", "tsv")
        if not ok:
            print(msg)
            sys.exit(1)
        rows, _ = export_observation.export_aggregated_events(pj, parameters, obs_id)
        aggregated.extend(rows)
    aggregated.title = "Aggregated events"
    ok, msg = export_observation.dataset_write(aggregated, f"{out_dir}/aggregated.xlsx", "xlsx")
    if not ok:
        print(msg)
        sys.exit(1)
    print("ok")
''')


def test_boris_accepts_the_written_project(tmp_path):
    python = os.environ.get("RATSCORE_BORIS_PYTHON", sys.executable)
    videos = [_observation(tmp_path), _observation(tmp_path, "rat2", events=[(0.5, 1.5, "falling", 0.9)])]
    project = boris.write_project(tmp_path / "study.boris", videos)
    header = "|".join(h for h in AGGREGATED_HEADER if h != "Modifier #1")  # no modifiers in ratscore's project
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([python, "-c", _BORIS_CHECK, str(project), str(tmp_path), header],
                          capture_output=True, text=True, env=env, timeout=300)
    if done.returncode == 3:
        if os.environ.get("CI") == "true":
            pytest.fail(f"BORIS must be installed in CI: {done.stdout.strip()}")
        pytest.skip(f"BORIS is not installed ({done.stdout.strip()})")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]

    written = {e["video"]: e["segments"] for e in boris.read_annotation_file(project)}
    tabular = {e["video"]: e["segments"] for e in boris.read_annotation_file(tmp_path / "rat1.tabular.tsv")}
    assert tabular["rat1"] == written["rat1"]
    aggregated = {e["video"]: e["segments"] for e in boris.read_annotation_file(tmp_path / "aggregated.xlsx")}
    assert aggregated == written
