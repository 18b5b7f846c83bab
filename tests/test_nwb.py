"""`--nwb`: `<stem>.nwb` in a video's output set (events and episodes as NWB time intervals).

pynwb is optional (ratscore[nwb]); without it these tests skip, except in CI (CI=true), where a
missing pynwb fails them.
"""

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from ratscore.cli import app
from ratscore.files import whole_set
from ratscore.nwb import EPISODES_TABLE, EVENTS_TABLE, EPOCH, NOT_STAGED

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "sample_videos" / "clip_7_0001.mp4"
runner = CliRunner()


@pytest.fixture
def pynwb():
    if os.environ.get("CI") == "true":
        import pynwb  # in CI a missing pynwb is a failure, not a skip

        return pynwb
    return pytest.importorskip("pynwb")


def _model_args(model):
    return ["--model", str(model), "--no-roi", "--device", "cpu", "--threshold", "0"]


def _read(pynwb, path):
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        return (nwb, nwb.intervals[EVENTS_TABLE].to_dataframe(), nwb.intervals[EPISODES_TABLE].to_dataframe())


def test_analyze_nwb_holds_the_events_and_episodes(tmp_path, tiny_model, pynwb):
    out = tmp_path / "out"
    result = runner.invoke(app, ["analyze", str(CLIP), "-o", str(out), "--nwb", *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    nwb_path = out / "clip_7_0001.nwb"
    assert "clip_7_0001.nwb" in whole_set(out, "clip_7_0001")  # one of the video's output set
    nwb, events, episodes = _read(pynwb, nwb_path)
    expected = pd.read_csv(out / "clip_7_0001.events.csv")
    assert len(events) == len(expected) > 0
    assert list(events.columns) == ["start_time", "stop_time", "au", "au_id", "racine_stage", "score"]
    assert events.start_time.tolist() == expected.start_s.tolist()
    assert events.stop_time.tolist() == expected.end_s.tolist()
    assert events.au.tolist() == expected.au.tolist() and events.au_id.tolist() == expected.au_id.tolist()
    assert events.racine_stage.tolist() == expected.racine_stage.fillna(NOT_STAGED).astype(int).tolist()
    assert events.score.tolist() == pytest.approx(expected.score.tolist())
    expected = pd.read_csv(out / "clip_7_0001.episodes.csv", dtype={"aus": str})
    assert list(episodes.columns) == ["start_time", "stop_time", "episode", "max_stage", "aus", "n_events"]
    assert episodes.start_time.tolist() == expected.onset_s.tolist()
    assert episodes.max_stage.tolist() == expected.max_stage.tolist()
    assert episodes.aus.tolist() == expected.aus.fillna("").tolist()
    assert nwb.session_start_time == EPOCH  # no start time known for the video
    assert "ratscore" in nwb.session_description and "tiny-test-model@" in nwb.session_description

    # batch --nwb: the same video, model and options give the same bytes (the identifier comes from
    # the video's fingerprint); a rerun with --nwb is resumed; one without it redoes the video and
    # removes the stale .nwb
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(CLIP, folder / CLIP.name)
    batch = ["batch", str(folder), "-o", str(tmp_path / "b"), *_model_args(tiny_model)]
    result = runner.invoke(app, [*batch, "--nwb"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "clip_7_0001.nwb").read_bytes() == nwb_path.read_bytes()
    result = runner.invoke(app, [*batch, "--nwb"])
    assert result.exit_code == 0 and "1 already done" in result.stdout
    result = runner.invoke(app, batch)
    assert result.exit_code == 0 and "1 analysed" in result.stdout
    assert not (tmp_path / "b" / "clip_7_0001.nwb").exists()
    assert "clip_7_0001.nwb" not in whole_set(tmp_path / "b", "clip_7_0001")


def test_nwb_of_a_video_without_events(tmp_path, pynwb):
    from ratscore.labels import RacineMap
    from ratscore.nwb import write_nwb
    from ratscore.timeline import score_events

    scoring = score_events([], "quiet", 60.0, 30.0, "m@1", RacineMap())
    scoring.summary["source"] = {"fingerprint": "1:ab"}
    with open(tmp_path / "quiet.nwb", "wb") as f:
        write_nwb(scoring, f)
    nwb, events, episodes = _read(pynwb, tmp_path / "quiet.nwb")
    assert len(events) == 0 and len(episodes) == 0 and "au" in events.columns


def test_nwb_without_pynwb_is_one_line_before_the_model_loads(tmp_path, monkeypatch):
    import ratscore.model

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setitem(sys.modules, "pynwb", None)  # as if it were not installed
    monkeypatch.setattr(ratscore.model, "load_model", no_model)
    result = runner.invoke(app, ["analyze", str(CLIP), "-o", str(tmp_path), "--nwb", "--no-roi"])
    assert "pip install 'ratscore[nwb]'" in one_line_error(result, 2)
