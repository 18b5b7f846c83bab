"""`batch --study STUDY.csv`: the sheet's checks, the study columns and latencies from injection,
study.xlsx, and `batch --merge OUT --study`.

Most tests score "videos" with test_batch's EventsFileScorer (events written in the file), so the
latencies and day counts are known exactly; one runs the whole chain with `tiny_model`.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from test_batch import EventsFileScorer
from ratscore.batch import SUMMARY_COLUMNS, run_batch
from ratscore.cli import app
from ratscore.cluster import merge_argv
from ratscore.errors import InputError
from ratscore.study import SHEETS, STUDY_COLUMNS, load_study, read_study

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "sample_videos" / "clip_7_0001.mp4"
runner = CliRunner()

HEADER = "video,animal,group,treatment,injection_s,injection_time,video_start_time"
SHEET = "\n".join([
    HEADER,
    # 2 h from 23:30: day 1 holds 1800 s of it, day 2 the other 5400 s; injected 100 s in
    "rat1.mp4,R1,kainate,vehicle,,2024-03-01T23:31:40,2024-03-01T23:30:00",
    "rat2.mp4,R1,kainate,vehicle,5,,",  # no start time: "day unknown"
    "cohortB/rat3.mp4,R2,kainate,drug A,,,2024-03-02T10:00:00",  # no injection, no events
    "broken.mp4,R3,control,none,,,",  # fails to score
]) + "\n"


def _folder(tmp_path):
    study = tmp_path / "study"
    (study / "cohortB").mkdir(parents=True)
    # rat1: head nodding (stage 2) at 100 s; forelimb clonus (3) at 3700 s, falling (5) at 3715 s
    (study / "rat1.mp4").write_text("v1;7200;100,110,4;3700,3710,6;3715,3725,10")
    (study / "rat2.mp4").write_text("v1;60;10,20,13")  # tonic extension (7) at 10 s
    (study / "cohortB" / "rat3.mp4").write_text("v1;45")
    (study / "broken.mp4").write_text("garbage")
    return study


def _sheet(tmp_path, text=SHEET, name="STUDY.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def scored(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    study = load_study(_sheet(tmp_path), folder, recursive=True)
    run_batch(folder, out, EventsFileScorer(), recursive=True, study=study)
    return out


def test_study_columns_and_latencies_from_injection(scored):
    summary = pd.read_csv(scored / "batch_summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS + STUDY_COLUMNS
    rows = summary.set_index("video")
    assert list(rows.animal) == ["R3", "R2", "R1", "R1"]  # sorted by video: broken, cohortB/rat3, rat1, rat2
    rat1, rat2, rat3 = rows.loc["rat1.mp4"], rows.loc["rat2.mp4"], rows.loc["cohortB/rat3.mp4"]
    # injection_time - video_start_time = 100 s
    assert rat1.injection_s == 100.0 and rat1.video_start_time == "2024-03-01T23:30:00"
    assert rat1.latency_from_injection_stage3_s == 3600.0 and rat1.latency_from_injection_stage5_s == 3615.0
    assert rat2.injection_s == 5.0 and rat2.latency_from_injection_stage3_s == 5.0  # stage 7 at 10 s counts for >= 3
    assert rat2.latency_from_injection_stage5_s == 5.0 and pd.isna(rat2.video_start_time)
    assert pd.isna(rat3.injection_s) and pd.isna(rat3.latency_from_injection_stage3_s)  # no injection, no events
    assert rows.loc["broken.mp4"].status == "failed" and rows.loc["broken.mp4"].treatment == "none"


def test_study_workbook(scored):
    book = pd.read_excel(scored / "study.xlsx", sheet_name=None)
    assert list(book) == list(SHEETS)
    summary = pd.read_csv(scored / "batch_summary.csv")
    assert list(book["summary"].columns) == list(summary.columns) and len(book["summary"]) == len(summary)

    episodes = book["episodes"]
    assert list(episodes.video) == ["rat1.mp4", "rat1.mp4", "rat2.mp4"]
    assert list(episodes.animal) == ["R1", "R1", "R1"] and list(episodes.max_stage) == [2, 5, 7]
    assert list(episodes.convulsive) == [False, True, True]
    assert list(episodes.onset_from_injection_s) == [0.0, 3600.0, 5.0]
    assert list(episodes.day) == ["2024-03-01", "2024-03-02", "day unknown"]
    assert episodes.onset_time[1] == "2024-03-02T00:31:40"

    events = book["events"]
    assert list(events.video) == ["rat1.mp4"] * 3 + ["rat2.mp4"]
    assert list(events.au) == ["head nodding", "unilateral forelimb clonus", "falling", "tonic extension"]
    assert list(events.start_from_injection_s) == [0.0, 3600.0, 3615.0, 5.0]
    assert set(events.group) == {"kainate"}

    animals = book["animals"]
    got = animals[["animal", "day", "videos", "recorded_s", "episodes", "convulsive_episodes",
                   "non_convulsive_episodes", "max_stage"]].astype(object).where(animals.notna(), None)
    assert got.values.tolist() == [
        ["R1", "2024-03-01", "rat1.mp4", 1800.0, 1, 0, 1, 2],
        ["R1", "2024-03-02", "rat1.mp4", 5400.0, 1, 1, 0, 5],
        ["R1", "day unknown", "rat2.mp4", 60.0, 1, 1, 0, 7],
        ["R2", "2024-03-02", "cohortB/rat3.mp4", 45.0, 0, 0, 0, 0],  # a recorded day without an episode is a 0
        ["R3", "day unknown", "broken.mp4", None, None, None, None, None],  # failed: listed, not counted
    ]
    assert "failed" in animals.note.iloc[-1]


@pytest.mark.parametrize("text, message", [
    ("video,animal,group\nrat1.mp4,R1,g\n", "missing column(s) treatment"),
    (HEADER.replace("injection_s", "injecton_s") + "\n", "unknown column(s) 'injecton_s'"),
    ("video,animal,group,treatment,video\n", "appears twice"),
    ("video,animal,group,treatment,injection_time\nrat1.mp4,R1,g,t,2024-03-01T10:00:00\n",
     "injection_time needs a video_start_time column"),
    (SHEET.replace("rat2.mp4,R1,kainate,vehicle,5,", "rat2.mp4,R1,kainate,vehicle,five,"),
     "line 3: injection_s 'five'"),
    (SHEET.replace("rat2.mp4,R1,kainate,vehicle,5,", "rat2.mp4,R1,kainate,vehicle,,2024-03-01T10:00:00"),
     "line 3: injection_time needs the video_start_time"),
    (SHEET.replace("2024-03-01T23:31:40", "yesterday"), "line 2: injection_time 'yesterday' is not an ISO 8601"),
    (SHEET.replace("2024-03-02T10:00:00", "2024-03-02"), "line 4: video_start_time '2024-03-02' has no time of day"),
    (SHEET.replace("2024-03-01T23:31:40", "2024-03-01T23:31:40Z"), "both have a time zone or both have none"),
    (SHEET.replace(",vehicle,5,,", ",vehicle,5,2024-03-01T23:31:40,2024-03-01T23:30:00"), "not both"),
    (SHEET.replace("rat2.mp4,R1", "rat1.mp4,R1"), "line 3: video 'rat1.mp4' has a row already"),
    (SHEET.replace("rat2.mp4,R1", "rat2.mp4,"), "line 3: no animal"),
    (SHEET + "rat9.mp4,R9,g,t,,,\n", "names 1 video, which is not in the batch folder"),
    (SHEET.replace("cohortB/rat3.mp4", "rat3.mp4"), "not in the batch folder"),  # paths are under FOLDER
    ("\n".join(SHEET.splitlines()[:-1]) + "\n", "does not name 1 video(s) of the batch folder"),
    ("", "empty"),
])
def test_bad_sheet_is_one_line_before_any_model_loads(tmp_path, monkeypatch, text, message):
    import ratscore.model
    import ratscore.pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the study sheet was checked")

    monkeypatch.setattr(ratscore.pipeline, "Analyzer", no_model)
    monkeypatch.setattr(ratscore.model, "load_model", no_model)
    folder, out = _folder(tmp_path), tmp_path / "out"
    result = runner.invoke(app, ["batch", str(folder), "-o", str(out), "--recursive", "--study",
                                 str(_sheet(tmp_path, text))])
    assert message in one_line_error(result, 2)
    assert not out.exists()
    # the same folder with the good sheet goes on to load the model (the patch above catches it)
    result = runner.invoke(app, ["batch", str(folder), "-o", str(out), "--recursive", "--study",
                                 str(_sheet(tmp_path))])
    assert result.exit_code == 1 and "the model was loaded" in result.output


def test_sheet_formats(tmp_path):
    # a spreadsheet saved in a locale with decimal commas: ';', and a byte-order mark
    study = read_study(_sheet(tmp_path, "\ufeffVideo;Animal;Group;Treatment;injection_s\nrat1.mp4; R1 ;g;t;12.5\n"))
    row = study.rows["rat1.mp4"]
    assert (row.animal, row.injection_s, row.video_start_time) == ("R1", 12.5, None)
    study = read_study(_sheet(tmp_path, "video,animal,group,treatment,injection_time,video_start_time\n"
                                        "a.mp4,R1,,,2024-03-01T10:00:00+01:00,2024-03-01 09:00:00Z\n"))
    assert study.rows["a.mp4"].injection_s == 0.0 and study.rows["a.mp4"].group == ""
    with pytest.raises(InputError, match="no such study sheet"):
        read_study(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="no videos"):
        read_study(_sheet(tmp_path, "video,animal,group,treatment\n"))


def test_merge_with_study_equals_one_run(tmp_path, scored):
    folder, sharded = tmp_path / "study", tmp_path / "sharded"
    for i in range(3):
        run_batch(folder, sharded, EventsFileScorer(), recursive=True, shard=(i, 3))
    assert not (sharded / "study.xlsx").exists()
    bad = _sheet(tmp_path, SHEET + "rat9.mp4,R9,g,t,,,\n", "BAD.csv")
    assert "not in the batch summary" in one_line_error(runner.invoke(app, ["batch", "--merge", str(sharded),
                                                                            "--study", str(bad)]), 2)
    assert not (sharded / "batch_summary.csv").exists()  # refused before writing anything
    result = runner.invoke(app, ["batch", "--merge", str(sharded), "--study", str(_sheet(tmp_path))])
    assert result.exit_code == 1, result.output  # broken.mp4 failed
    assert "study.xlsx" in result.stdout
    assert (sharded / "batch_summary.csv").read_text() == (scored / "batch_summary.csv").read_text()
    whole = pd.read_excel(scored / "study.xlsx", sheet_name=None)
    merged = pd.read_excel(sharded / "study.xlsx", sheet_name=None)
    for name in SHEETS:
        pd.testing.assert_frame_equal(merged[name], whole[name])
    assert merge_argv(sharded, Path("S.csv")) == ["batch", "--merge", str(sharded), "--study", "S.csv"]


def test_study_end_to_end_with_a_model(tmp_path, tiny_model):
    folder, out = tmp_path / "videos", tmp_path / "out"
    folder.mkdir()
    for name in ("ratA.mp4", "ratB.mp4"):
        shutil.copy(CLIP, folder / name)
    sheet = _sheet(tmp_path, "video,animal,group,treatment,injection_s,injection_time,video_start_time\n"
                             "ratA.mp4,A,pilocarpine,vehicle,2.5,,\n"
                             "ratB.mp4,B,pilocarpine,drug,,2024-05-06T08:00:01,2024-05-06T08:00:00\n")
    result = runner.invoke(app, ["batch", str(folder), "-o", str(out), "--study", str(sheet), "--model",
                                 str(tiny_model), "--no-roi", "--device", "cpu", "--threshold", "0"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "batch_summary.csv").set_index("video")
    assert list(summary.injection_s) == [2.5, 1.0]
    for k in (3, 5):
        expected = (summary[f"latency_stage{k}_s"] - summary.injection_s).round(3)
        pd.testing.assert_series_equal(summary[f"latency_from_injection_stage{k}_s"], expected, check_names=False)
    book = pd.read_excel(out / "study.xlsx", sheet_name=None)
    assert len(book["episodes"]) == summary.n_episodes.sum()
    assert len(book["events"]) == summary.n_events.sum() > 0  # --threshold 0: the untrained model finds events
    animals = book["animals"].set_index("animal")
    assert animals.loc["A", "day"] == "day unknown" and animals.loc["B", "day"] == "2024-05-06"
    assert animals.episodes.sum() == summary.n_episodes.sum()
    assert (animals.convulsive_episodes + animals.non_convulsive_episodes == animals.episodes).all()
