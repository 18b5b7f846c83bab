"""The lab's loop through BORIS: `analyze` writes a BORIS project beside its other outputs, a
person corrects it in BORIS, `timeline` rescores the corrected file and `import-annotations`
turns it (or any BORIS export) into annotations to train on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from boris_exports import EXPECTED, LAB_EVENTS, aggregated_rows as _aggregated_rows, tabular_rows as _tabular_rows
from boris_exports import write_table as _write_table
from conftest import one_line_error
from ratscore import boris
from ratscore.annotations import draw_subsets, from_boris, read_annotations
from ratscore.cli import app
from ratscore.files import whole_set
from ratscore.labels import LABEL_IDS

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "sample_videos" / "clip_7_0001.mp4"
STEM = VIDEO.stem
runner = CliRunner()


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("lab_loop")
    result = runner.invoke(app, ["analyze", str(VIDEO), "-o", str(out), "--model", str(tiny_model), "--no-roi",
                                 "--device", "cpu", "--threshold", "0"])
    assert result.exit_code == 0, result.output
    return out


def _merged(events: pd.DataFrame) -> list[tuple[float, float, str]]:
    """events.csv as BORIS holds it: per action unit, overlapping or touching events are one state."""
    out = []
    for au, group in events.groupby("au"):
        spans = sorted(zip(group.start_s, group.end_s))
        cur = list(spans[0])
        for a, b in spans[1:]:
            if a <= cur[1]:
                cur[1] = max(cur[1], b)
            else:
                out.append((cur[0], cur[1], au))
                cur = [a, b]
        out.append((cur[0], cur[1], au))
    return sorted(out, key=lambda s: (s[0], s[1], LABEL_IDS[s[2]]))


def _close(got, expected, tolerance):
    assert len(got) == len(expected) > 0
    for (a, b, label), (x, y, name) in zip(got, expected):
        assert label == name and abs(a - x) <= tolerance and abs(b - y) <= tolerance, (got, expected)


# --- BORIS out ---------------------------------------------------------------------------------

def test_analyze_writes_a_boris_project_in_its_set(analysed):
    project = analysed / f"{STEM}.boris"
    assert project.name in whole_set(analysed, STEM)  # one set with the other outputs
    summary = json.loads((analysed / f"{STEM}.summary.json").read_text())
    assert summary["source"]["path"] == str(VIDEO.absolute())
    [entry] = boris.read_annotation_file(project)
    assert (entry["video"], entry["observation"]) == (STEM, STEM)
    assert entry["media_file"] == str(VIDEO.absolute())
    assert entry["duration_s"] == summary["duration_s"] and entry["fps"] == summary["source"]["fps"]
    assert entry["unmapped"] == {}
    _close(entry["segments"], _merged(pd.read_csv(analysed / f"{STEM}.events.csv")), 0.001)
    states = json.loads(project.read_text())["observations"][STEM]["events"]
    assert all(e[4].startswith("score") for e in states[::2] if e[4])  # the scores, in the comments


_INTEGRITY = """
import sys
try:
    from boris import config as cfg, project_functions
except Exception as e:  # an ImportError, or an OSError from a missing libmpv
    print(f"cannot import boris: {e!r}")
    sys.exit(3)
name, _, pj, _ = project_functions.open_project_json(sys.argv[1])
problems = pj.get("error") or project_functions.check_project_integrity(pj, cfg.HHMMSS, name,
                                                                        media_file_available=True)
print(problems)
sys.exit(1 if problems.replace("<br>", "").strip() else 0)
"""


def test_boris_accepts_the_analyze_project(analysed):
    python = os.environ.get("RATSCORE_BORIS_PYTHON", sys.executable)
    done = subprocess.run([python, "-c", _INTEGRITY, str(analysed / f"{STEM}.boris")], capture_output=True,
                          text=True, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), timeout=300)
    if done.returncode == 3:
        if os.environ.get("CI") == "true":
            pytest.fail(f"BORIS must be installed in CI: {done.stdout.strip()}")
        pytest.skip(f"BORIS is not installed ({done.stdout.strip()})")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_round_trip_within_one_frame(analysed, tmp_path):
    out = tmp_path / "annotations.json"
    result = runner.invoke(app, ["import-annotations", str(analysed / f"{STEM}.boris"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    [video] = read_annotations(out).values()
    summary = json.loads((analysed / f"{STEM}.summary.json").read_text())
    fps = summary["source"]["fps"]
    assert video.video_id == STEM and video.duration == summary["duration_s"] and video.fps == fps
    got = [(s.start_s, s.end_s, s.label) for s in video.segments]
    _close(got, _merged(pd.read_csv(analysed / f"{STEM}.events.csv")), 1 / fps)


def test_batch_redoes_a_set_made_without_a_boris_project(tiny_model, tmp_path):
    from ratscore.files import marker_path

    study, out = tmp_path / "study", tmp_path / "out"
    study.mkdir()
    (study / VIDEO.name).symlink_to(VIDEO)
    args = ["batch", str(study), "-o", str(out), "--model", str(tiny_model), "--no-roi", "--device", "cpu",
            "--threshold", "0"]
    assert runner.invoke(app, args).exit_code == 0
    assert f"{STEM}.boris" in whole_set(out, STEM)
    assert "1 already done" in runner.invoke(app, args).stdout
    # a set as an older ratscore published it: whole, but without the project
    marker = marker_path(out, STEM)
    record = json.loads(marker.read_text())
    del record["files"][f"{STEM}.boris"]
    marker.write_text(json.dumps(record))
    (out / f"{STEM}.boris").unlink()
    assert whole_set(out, STEM) is not None
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "1 analysed" in result.stdout, result.output
    assert f"{STEM}.boris" in whole_set(out, STEM)


def test_rescore_does_not_write_boris(analysed, tmp_path):
    result = runner.invoke(app, ["timeline", str(analysed / f"{STEM}.events.csv"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob("*.boris"))


# --- a lab's BORIS files (fixtures in BORIS 8's formats, as in test_boris.py) ---------------------

CODE_MAP = {"HN": "head nodding", "FLC": "unilateral forelimb clonus", "WDS": "wet dog shakes"}
MAP_YAML = "HN: head nodding\nFLC: unilateral forelimb clonus\nWDS: wet dog shakes\n"

def _behaviour(code, kind="State event"):
    return {"type": kind, "key": code[0].lower(), "code": code, "description": "", "color": "", "category": "",
            "modifiers": {}, "excluded": "", "coding map": ""}


def _lab_project(path, observations, codes=(("HN", "State event"), ("FLC", "State event"),
                                            ("WDS", "Point event"), ("groom", "State event"))):
    """observations: {id: (media files, lengths (None: unknown), [[time, subject, code, modifier, comment]])}"""
    obs = {}
    for obs_id, (files, lengths, events) in observations.items():
        obs[obs_id] = {
            "file": {"1": files, "2": []}, "type": "MEDIA", "date": "2024-03-01T09:00:00.000", "description": "",
            "time offset": 0.0, "events": events, "independent_variables": {},
            "media_info": {"length": {f: x for f, x in zip(files, lengths) if x is not None},
                           "fps": {f: 25.0 for f in files}, "hasVideo": {f: True for f in files},
                           "hasAudio": {f: False for f in files}, "offset": {"1": 0.0, "2": 0.0}},
        }
    doc = {"time_format": "hh:mm:ss", "project_name": "kindling", "project_date": "2024-03-01T09:00:00",
           "project_description": "", "project_format_version": "7.0", "subjects_conf": {},
           "behaviors_conf": {str(i): _behaviour(c, k) for i, (c, k) in enumerate(codes)},
           "observations": obs, "behavioral_categories": [], "independent_variables": {}, "coding_map": {},
           "behaviors_coding_map": [], "converters": {}}
    path.write_text(json.dumps(doc))
    return path


def _lab_project_of(path, lab_events):
    """LAB_EVENTS as a project: the same codings as the exports."""
    observations = {}
    for obs_id, files, lengths, offset, events in lab_events:
        rows = []
        for code, modifier, start, stop in events:
            rows.append([start + offset, "", code, modifier, ""])
            if stop is not None:
                rows.append([stop + offset, "", code, modifier, ""])
        observations[obs_id] = (files, lengths, sorted(rows, key=lambda r: r[0]))
    _lab_project(path, observations)
    doc = json.loads(path.read_text())
    for obs_id, _, _, offset, _ in lab_events:
        doc["observations"][obs_id]["time offset"] = offset
    path.write_text(json.dumps(doc))
    return path


def _map(tmp_path):
    path = tmp_path / "MAP.yaml"
    path.write_text(MAP_YAML)
    return path


def _import(tmp_path, *files, args=()):
    out = tmp_path / "annotations.json"
    result = runner.invoke(app, ["import-annotations", *map(str, files), "--map", str(_map(tmp_path)),
                                 "-o", str(out), *args])
    return result, out


# --- BORIS in ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, suffix", [("project", ".boris")] + [(k, s) for k in ("tabular", "aggregated")
                                                                   for s in (".csv", ".tsv", ".xlsx")])
def test_import_annotations_reads_every_format(tmp_path, kind, suffix):
    if kind == "project":
        path = _lab_project_of(tmp_path / "kindling.boris", LAB_EVENTS)
    else:
        rows = (_tabular_rows if kind == "tabular" else _aggregated_rows)(LAB_EVENTS)
        path = _write_table(tmp_path / f"events{suffix}", rows)
    assert boris.annotation_format(path) == kind
    result, out = _import(tmp_path, path, args=["--point-length", "0.5"])
    assert result.exit_code == 0, result.output
    assert "3 videos" in result.stdout and "-> " in result.stdout
    videos = read_annotations(out)
    assert list(videos) == ["rat1", "rat2_a", "rat2_b"]  # keyed by media file stem
    assert {vid: [(s.start_s, s.end_s, s.label) for s in v.segments] for vid, v in videos.items()} == EXPECTED
    assert {vid: (v.duration, v.fps) for vid, v in videos.items()} == {
        "rat1": (600.0, 25.0), "rat2_a": (100.0, 25.0), "rat2_b": (100.0, 25.0)}
    assert {v.subset for v in videos.values()} <= {"training", "testing"}


def test_import_annotations_of_several_files(tmp_path):
    project = _lab_project_of(tmp_path / "day1.boris", LAB_EVENTS[:1])
    export = _write_table(tmp_path / "day2.tsv", _tabular_rows(LAB_EVENTS[1:]))
    result, out = _import(tmp_path, project, export, args=["--point-length", "0.5"])
    assert result.exit_code == 0, result.output
    assert list(read_annotations(out)) == ["rat1", "rat2_a", "rat2_b"]


def test_unmapped_codes_in_one_warning_line(tmp_path):
    rows = _tabular_rows(LAB_EVENTS[:1] + [("rat3", ["rat3.mp4"], [60.0], 0.0,
                                             [("groom", "", 1.0, 2.0), ("sniff", "", 3.0, 4.0)])])
    result, out = _import(tmp_path, _write_table(tmp_path / "e.csv", rows), args=["--point-length", "0.5"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings == ["ratscore: warning: codes not in the map, left out: 'groom' (2), 'sniff' (1); "
                        "add them to the map to keep them"]
    videos = read_annotations(out)
    assert len(videos["rat1"].segments) == 3 and videos["rat3"].segments == []  # kept, with no events


def test_codes_named_as_action_units_need_no_map(tmp_path):
    path = _lab_project(tmp_path / "p.boris", {"v1": (["v1.mp4"], [30.0], [
        [1.0, "", "Head Nodding", "", ""], [2.0, "", "grooming", "", ""],
        [3.0, "", "Head Nodding", "", ""], [4.0, "", "grooming", "", ""]])},
        codes=(("Head Nodding", "State event"), ("grooming", "State event")))
    out = tmp_path / "a.json"
    result = runner.invoke(app, ["import-annotations", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [(s.start_s, s.end_s, s.label) for s in read_annotations(out)["v1"].segments] == [(1.0, 3.0, "head nodding")]
    assert "ratscore: warning: codes that are not action-unit names, left out: 'grooming' (1)" in result.stderr


def test_a_video_of_unknown_length_ends_with_its_last_event(tmp_path):
    path = _lab_project(tmp_path / "p.boris", {"o": (["rat9.mp4"], [None], [[5.0, "", "HN", "", ""],
                                                                             [8.5, "", "HN", "", ""]])})
    result, out = _import(tmp_path, path)
    assert result.exit_code == 0, result.output
    assert read_annotations(out)["rat9"].duration == 8.5
    assert "ratscore: warning: BORIS gives no length for 1 video(s) (rat9)" in result.stderr


@pytest.mark.parametrize("case, message", [
    ("twice", "video 'rat1' is coded twice"),
    ("two observations", "video 'rat1' is coded twice"),
    ("not boris", "not a BORIS file"),
    ("events.csv", "not a BORIS events export"),
    ("missing", "no such file"),
    ("points", "is a point event; give a point length (--point-length S)"),
    ("share", "--test-share must lie in [0, 1]"),
    ("folder", "is a folder; give -o the annotation file"),
    ("no map", "is an action-unit name"),
    ("no length, no events", "BORIS gives no length for video 'rat9' and it has no events"),
    ("past the end", "lies past the end of video 'rat9' (10 s)"),
])
def test_import_annotations_errors(tmp_path, case, message):
    project = _lab_project_of(tmp_path / "p.boris", LAB_EVENTS[:1])
    out = tmp_path / "a.json"
    args = ["import-annotations", str(project), "--map", str(_map(tmp_path)), "--point-length", "1", "-o", str(out)]
    if case == "twice":
        args[1:2] = [str(project), str(project)]
    elif case == "two observations":
        _lab_project(project, {"a": (["/x/rat1.mp4"], [60.0], []), "b": (["/y/rat1.avi"], [60.0], [])})
    elif case == "not boris":
        (tmp_path / "notes.txt").write_text("HN 1 2\n")
        args[1] = str(tmp_path / "notes.txt")
    elif case == "events.csv":
        (tmp_path / "rat1.events.csv").write_text("video,event,start_s,end_s,au\nrat1,1,0.5,1.0,staring\n")
        args[1] = str(tmp_path / "rat1.events.csv")
    elif case == "missing":
        args[1] = str(tmp_path / "gone.boris")
    elif case == "points":
        args.remove("--point-length")
        args.remove("1")
    elif case == "share":
        args += ["--test-share", "1.5"]
    elif case == "folder":
        args[-1] = str(tmp_path)
    elif case == "no map":
        args[2:4] = []
    elif case == "no length, no events":
        _lab_project(project, {"o": (["rat9.mp4"], [None], [])})
    elif case == "past the end":
        _lab_project(project, {"o": (["rat9.mp4"], [10.0], [[5.0, "", "HN", "", ""], [12.0, "", "HN", "", ""]])})
    err = one_line_error(runner.invoke(app, args))
    assert message in err, err
    assert not out.exists()


def test_subsets_are_drawn_per_video_with_the_seed(tmp_path):
    observations = {f"o{i}": ([f"rat{i:02d}.mp4"], [60.0], []) for i in range(40)}
    path = _lab_project(tmp_path / "p.boris", observations)

    def subsets(*args):
        out = tmp_path / "a.json"
        result = runner.invoke(app, ["import-annotations", str(path), "-o", str(out), *args])
        assert result.exit_code == 0, result.output
        return {vid: v.subset for vid, v in read_annotations(out).items()}

    first = subsets("--seed", "3")
    assert subsets("--seed", "3") == first  # same seed, same split
    assert subsets("--seed", "4") != first
    n_test = sum(s == "testing" for s in first.values())
    assert 4 <= n_test <= 18  # about a quarter of 40 (the default share)
    assert set(subsets("--test-share", "0").values()) == {"training"}
    assert set(subsets("--test-share", "1").values()) == {"testing"}
    # a video keeps its subset when others join it: nothing tested on is trained on later
    fewer = from_boris([_lab_project(tmp_path / "q.boris", dict(list(observations.items())[:25]))], seed=3)
    assert all(first[vid] == v.subset for vid, v in fewer.videos.items())
    # a small set still gets a video in each subset
    assert sorted(draw_subsets(["a", "b"], 0.25, 0).values()) == ["testing", "training"]


# --- correct and rescore -----------------------------------------------------------------------

def test_timeline_on_a_boris_project_with_two_observations(tmp_path):
    path = _lab_project(tmp_path / "corrected.boris", {
        "rat1 day 1": (["/videos/rat1.mp4"], [120.0], [[10.0, "", "HN", "", ""], [14.0, "", "HN", "", ""],
                                                     [20.0, "", "FLC", "", ""], [26.0, "", "FLC", "", ""],
                                                     [50.0, "", "groom", "", ""], [55.0, "", "groom", "", ""]]),
        "rat2 day 1": (["/videos/rat2.mp4"], [60.0], [[30.0, "", "WDS", "", ""]]),
    })
    out = tmp_path / "rescored"
    result = runner.invoke(app, ["timeline", str(path), "--map", str(_map(tmp_path)), "--point-length", "1",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rat1: 2 events, 1 episodes, max stage 3" in result.stdout and "rat2: 1 events" in result.stdout
    assert "'groom' (1)" in result.stderr
    for stem, duration in (("rat1", 120.0), ("rat2", 60.0)):
        files = whole_set(out, stem)
        assert sorted(files) == sorted(f"{stem}{s}" for s in (".racine.csv", ".episodes.csv", ".summary.json",
                                                              ".timeline.png"))
        summary = json.loads((out / f"{stem}.summary.json").read_text())
        assert summary["duration_s"] == duration and summary["fps"] == 25.0
        assert len(pd.read_csv(out / f"{stem}.racine.csv")) == duration
    summary = json.loads((out / "rat1.summary.json").read_text())
    assert summary["per_au"]["head nodding"] == {"count": 1, "total_s": 4.0}
    assert summary["source"]["observation"] == "rat1 day 1"
    assert json.loads((out / "rat2.summary.json").read_text())["wet_dog_shakes"] == 1


def test_timeline_on_a_boris_export_with_a_duration(tmp_path):
    path = _write_table(tmp_path / "aggregated.xlsx", _aggregated_rows(LAB_EVENTS[:1]))
    out = tmp_path / "o"
    result = runner.invoke(app, ["timeline", str(path), "--map", str(_map(tmp_path)), "--point-length", "0.5",
                                 "--duration", "300", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "rat1.summary.json").read_text())
    assert summary["duration_s"] == 300.0 and summary["n_events"] == 3  # scores of 1 pass any threshold


def test_timeline_on_the_analyze_project(analysed, tmp_path):
    result = runner.invoke(app, ["timeline", str(analysed / f"{STEM}.boris"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / f"{STEM}.summary.json").read_text())
    analysed_summary = json.loads((analysed / f"{STEM}.summary.json").read_text())
    assert summary["duration_s"] == analysed_summary["duration_s"]
    assert summary["max_stage"] == analysed_summary["max_stage"]


def test_timeline_refuses_boris_options_for_an_events_file(tmp_path):
    events = tmp_path / "rat1.events.csv"
    events.write_text("video,start_s,end_s,au,score\nrat1,1,2,staring,0.5\n")
    err = one_line_error(runner.invoke(app, ["timeline", str(events), "--map", str(_map(tmp_path)),
                                             "-o", str(tmp_path / "o")]))
    assert "--map read BORIS files" in err
    table = tmp_path / "other.tsv"
    table.write_text("a\tb\n1\t2\n")
    assert "not a BORIS events export" in one_line_error(runner.invoke(app, ["timeline", str(table), "-o",
                                                                              str(tmp_path / "o")]))


# --- the whole loop ----------------------------------------------------------------------------

def test_the_whole_loop_score_review_correct_import_train_analyze(tmp_path, tiny_model):
    """analyze (batch) -> .boris -> a person's corrected BORIS export -> import-annotations ->
    train localizer --videos -> analyze --model: every step a command, every output used by the next."""
    import shutil

    videos = tmp_path / "videos"
    videos.mkdir()
    clips = ["clip_7_0000", "clip_7_0001", "clip_7_0002", "clip_7_0003"]
    for clip in clips:
        shutil.copy(ROOT / "sample_videos" / f"{clip}.mp4", videos)
    model_args = ["--model", str(tiny_model), "--no-roi", "--device", "cpu"]
    scored = tmp_path / "scored"
    result = runner.invoke(app, ["batch", str(videos), "-o", str(scored), *model_args, "--threshold", "0"])
    assert result.exit_code == 0, result.output
    projects = sorted(scored.glob("*.boris"))
    assert [p.stem for p in projects] == clips
    # the review: the person reads ratscore's project in BORIS, throws its events away where they are
    # wrong and codes the truth with the lab's own codes; BORIS exports the aggregated events
    model_events = boris.read_annotation_file(projects[0])
    assert model_events[0]["segments"]  # an untrained model at threshold 0 proposes plenty
    truth = read_annotations(ROOT / "sample_videos" / "annotations.json")
    codes = {"bilateral forelimb clonus": "FLC2", "rearing": "REAR", "staring": "STARE",
             "alternating forelimb clonus": "FLCA", "others": "EXPLORE"}
    lab_events = [(clip, [f"{videos / clip}.mp4"], [10.0], 0.0,
                   [(codes[s.label], "", s.start_s, s.end_s) for s in truth[clip].segments]) for clip in clips]
    export = _write_table(tmp_path / "corrected.tsv", _aggregated_rows(lab_events))
    lab_map = tmp_path / "MAP.yaml"
    lab_map.write_text("".join(f"{code}: {label}\n" for label, code in codes.items() if label != "others"))
    annotations = tmp_path / "annotations.json"
    result = runner.invoke(app, ["import-annotations", str(export), "--map", str(lab_map), "-o", str(annotations),
                                 "--test-share", "0.25", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "EXPLORE" in result.stderr  # the unmapped code is named, not dropped silently
    imported = read_annotations(annotations)
    assert sorted(imported) == clips and {v.subset for v in imported.values()} == {"training", "testing"}
    model = tmp_path / "our_model"
    result = runner.invoke(app, ["train", "localizer", "--videos", str(videos), "--annotations", str(annotations),
                                 *model_args, "--epochs", "1", "-o", str(model)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["analyze", str(videos / "clip_7_0001.mp4"), "-o", str(tmp_path / "again"),
                                 "--model", str(model), "--no-roi", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "again" / "clip_7_0001.summary.json").read_text())
    assert summary["model"].startswith(model.name) and whole_set(tmp_path / "again", "clip_7_0001")
