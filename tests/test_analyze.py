"""`ratscore analyze` and `ratscore batch` end to end on the sample videos.

Most tests use `tiny_model` (conftest: untrained, small, whole frames) so that they exercise the
whole chain quickly; `test_bundled_model_on_a_sample` runs the bundled model as README does.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ratscore.batch import SUMMARY_COLUMNS
from conftest import one_line_error
from ratscore.cli import app
from ratscore.model import BUNDLED_MODEL_DIR
from ratscore.timeline import EPISODE_COLUMNS, EVENT_COLUMNS, RACINE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"
CLIP = SAMPLES / "clip_7_0000.mp4"
runner = CliRunner()
OUTPUTS = (".events.csv", ".racine.csv", ".episodes.csv", ".summary.json", ".timeline.png", ".report.html",
           ".track.csv")


def _model_args(model):
    return ["--model", str(model), "--no-roi", "--device", "cpu", "--threshold", "0"]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("analysed")
    result = runner.invoke(app, ["analyze", str(CLIP), "-o", str(out), "--keep-features", *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    return out, result


def test_analyze_writes_every_output(analysed):
    out, result = analysed
    assert "clip_7_0000.mp4:" in result.stdout and "episodes, max stage" in result.stdout
    for suffix in OUTPUTS:
        assert (out / f"clip_7_0000{suffix}").stat().st_size > 0
    events = pd.read_csv(out / "clip_7_0000.events.csv")
    assert list(events.columns) == EVENT_COLUMNS
    assert list(pd.read_csv(out / "clip_7_0000.racine.csv").columns) == RACINE_COLUMNS
    assert list(pd.read_csv(out / "clip_7_0000.episodes.csv").columns) == EPISODE_COLUMNS
    assert len(pd.read_csv(out / "clip_7_0000.racine.csv")) == 10  # 10 s in 1 s bins
    assert len(events) > 0 and (events.au != "others").all()
    assert ((events.start_s >= 0) & (events.end_s <= 10.0) & (events.end_s > events.start_s)).all()
    summary = json.loads((out / "clip_7_0000.summary.json").read_text())
    assert summary["duration_s"] == pytest.approx(10.0, abs=0.05) and summary["fps"] == 30.0
    assert summary["model"].startswith("tiny-test-model@")
    trust = summary["trust"]
    assert trust["rat_found_fraction"] is None  # whole frames: nothing to find
    # Real video features lie far from the tiny model's (random) training statistics: flagged.
    assert trust["feature_distance"] > trust["feature_distance_limit"] and trust["familiar"] is False
    assert "UNFAMILIAR FOOTAGE" in result.stdout
    assert np.load(out / "clip_7_0000.features.npy").shape == (72, 128)  # (300 - 16) // 4 + 1 clips
    html = (out / "clip_7_0000.report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "Unfamiliar footage" in html
    episodes = pd.read_csv(out / "clip_7_0000.episodes.csv")
    assert html.count("class='still'") == len(episodes) > 0  # a still of the rat at each episode's peak
    assert html.count("class='frame'") == 8  # the strip of frames with the box
    track = pd.read_csv(out / "clip_7_0000.track.csv")  # whole frames: the box is the frame, found, no score
    assert len(track) == 300 and (track.found == 1).all() and track.score.isna().all()
    assert (track[["x1", "y1", "x2", "y2"]].to_numpy() == [0, 0, 320, 240]).all()
    assert summary["run"]["motion"] is True


def test_a_peak_with_nothing_leading_up_to_it_reaches_the_summary_and_report(tmp_path, tiny_model, monkeypatch):
    """analyze hands its scoring to the trust check: a lone tonic extension in a 2-minute recording
    is named in summary.json's reasons and in the report (the check itself: test_trust.py)."""
    from ratscore.runner import OnnxLocalizer
    from ratscore.timeline import Event

    monkeypatch.setattr(OnnxLocalizer, "detect",
                        lambda self, features, duration_s, fed=None, at_least=0.0: [Event(40.0, 46.0, 13, 0.9)])
    video = SAMPLES / "long_18_0.mp4"
    result = runner.invoke(app, ["analyze", str(video), "-o", str(tmp_path), *_model_args(tiny_model)])
    assert result.exit_code == 0, result.output
    reasons = json.loads((tmp_path / "long_18_0.summary.json").read_text())["trust"]["reasons"]
    [claim] = [r for r in reasons if "nothing leading up to it" in r]
    assert claim.startswith("its highest stage, 7, has nothing leading up to it (tonic extension at 40.0-46.0 s")
    assert "tonic extension at 40.0-46.0 s" in (tmp_path / "long_18_0.report.html").read_text()


def test_bundled_model_on_a_sample(tmp_path):
    """README's first command: the bundled model, its detector and its threshold, on a sample clip."""
    manifest = json.loads((BUNDLED_MODEL_DIR / "manifest.json").read_text())
    result = runner.invoke(app, ["analyze", str(SAMPLES / "clip_7_0001.mp4"), "-o", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "clip_7_0001.mp4: " in result.stdout and "UNFAMILIAR" not in result.stdout
    for suffix in OUTPUTS:
        assert (tmp_path / f"clip_7_0001{suffix}").stat().st_size > 0
    summary = json.loads((tmp_path / "clip_7_0001.summary.json").read_text())
    assert summary["model"].startswith(manifest["name"] + "@")
    assert summary["trust"]["familiar"] is True and summary["trust"]["rat_found_fraction"] > 0.9
    events = pd.read_csv(tmp_path / "clip_7_0001.events.csv")
    assert len(events) > 0 and (events.score >= manifest["threshold"]).all()
    assert set(events.au) == {"rearing"}  # the clip is 10 s of rearing; README shows these events


def test_analyze_bad_inputs(tmp_path, tiny_model):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    err = one_line_error(runner.invoke(app, ["analyze", str(not_video), "-o", str(tmp_path / "o"),
                                              *_model_args(tiny_model)]))
    assert "notes.mp4" in err
    assert not (tmp_path / "o" / "notes.summary.json").exists()
    one_line_error(runner.invoke(app, ["analyze", str(tmp_path / "missing.mp4"), *_model_args(tiny_model)]))
    # A model without a detector needs --no-roi.
    assert "detector" in one_line_error(runner.invoke(app, ["analyze", str(CLIP), "--model", str(tiny_model)]))
    one_line_error(runner.invoke(app, ["analyze", str(CLIP), "--model", str(tmp_path / "nomodel")]))
    # A model folder from an incompatible version of ratscore.
    model = tmp_path / "old_model"
    shutil.copytree(tiny_model, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["format_version"] = 99
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert "format_version" in one_line_error(runner.invoke(app, ["analyze", str(CLIP), "--model", str(model)]))
    (model / "manifest.json").unlink()
    assert "no manifest.json" in one_line_error(runner.invoke(app, ["analyze", str(CLIP), "--model", str(model)]))
    # Shorter than one 16-frame clip.
    import numpy as np
    from ratscore.video import write_h264

    short = tmp_path / "short.mp4"
    write_h264(short, [np.zeros((48, 64, 3), np.uint8)] * 8, fps=30)
    assert "short.mp4" in one_line_error(runner.invoke(app, ["analyze", str(short), *_model_args(tiny_model)]))
    one_line_error(runner.invoke(app, ["analyze", str(CLIP), "--model", str(tiny_model), "--device", "tpu"]))


def _study(tmp_path):
    study = tmp_path / "study"
    (study / "day2").mkdir(parents=True)
    shutil.copy(SAMPLES / "clip_7_0001.mp4", study / "rat1.mp4")
    shutil.copy(SAMPLES / "clip_7_0003.mp4", study / "day2" / "rat2.mp4")
    (study / "day2" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return study


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in (".csv", ".json") and not p.name.startswith(".")}


def test_batch_resume_after_kill_shards_and_merge(tmp_path, tiny_model):
    study = _study(tmp_path)
    whole = tmp_path / "whole"
    opts = _model_args(tiny_model)
    result = runner.invoke(app, ["batch", str(study), "-o", str(whole), "--recursive", *opts])
    assert result.exit_code == 1, result.output  # one video failed
    # the tiny model's scores are untrustworthy: each line and the last say so, as analyze's line does
    assert "rat1.mp4: ok [UNFAMILIAR FOOTAGE: check by hand]" in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("; 2 unfamiliar: check them by hand (the table's "
                                                           "trust_reasons says why)")
    summary = pd.read_csv(whole / "batch_summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.video) == ["day2/broken.mp4", "day2/rat2.mp4", "rat1.mp4"]
    assert list(summary.status) == ["failed", "ok", "ok"]
    assert (whole / "day2" / "rat2.report.html").exists()
    failures = pd.read_csv(whole / "batch_failures.csv")
    assert list(failures.video) == ["day2/broken.mp4"]

    # A rerun skips the finished videos.
    before = (whole / "rat1.events.csv").stat().st_mtime_ns
    result = runner.invoke(app, ["batch", str(study), "-o", str(whole), "--recursive", *opts])
    assert "2 already done" in result.stdout and (whole / "rat1.events.csv").stat().st_mtime_ns == before

    # Killed with SIGKILL once the first video is done, then run again: the same outputs.
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ratscore.cli", "batch", str(study), "-o", str(killed), "--recursive", *opts]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (killed / "day2" / "rat2.summary.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "batch_summary.csv").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 1
    assert _outputs(killed) == _outputs(whole)

    # Two shards and a merge give the same tables as one run.
    sharded = tmp_path / "sharded"
    for i in range(2):
        runner.invoke(app, ["batch", str(study), "-o", str(sharded), "--recursive", "--shard", f"{i}/2", *opts])
    result = runner.invoke(app, ["batch", "--merge", str(sharded)])
    assert result.exit_code == 1, result.output  # a shard had a failed video
    assert (sharded / "batch_summary.csv").read_bytes() == (whole / "batch_summary.csv").read_bytes()
    assert "--shard" in one_line_error(runner.invoke(app, ["batch", str(study), "-o", str(sharded),
                                                            "--shard", "2/2", *opts]))


@pytest.mark.slow
def test_a_recording_is_scored_while_it_decodes_as_it_would_be_at_the_end(tmp_path, tiny_model):
    """analyze feeds the localizer the features as the I3D makes them: every chunk of a long
    recording but the last is scored before decoding ends. Its events are those of scoring the
    whole recording afterwards that reach the threshold, though soft-NMS only saw the candidates
    that reached it."""
    from ratscore.pipeline import AnalyzeOptions, Analyzer
    from ratscore.postprocess import chunk_starts
    from ratscore.timeline import ScoringOptions

    analyzer = Analyzer(AnalyzeOptions(model_dir=tiny_model, device="cpu", no_roi=True, progress=False,
                                       scoring=ScoringOptions(threshold=0.019)))  # its scores: 0.018-0.020
    localizer, seen = analyzer.localizer, {}
    detect = localizer.detect

    def both(features, duration_s, fed=None, at_least=0.0):
        seen["scored before the end"] = len(fed.pooled)
        seen["chunks"] = len(chunk_starts(len(features), localizer.postprocess, localizer.config.max_div_factor))
        streamed, everything = detect(features, duration_s, fed=fed, at_least=at_least), detect(features, duration_s)
        seen["at least"], seen["events"], seen["all"] = at_least, len(streamed), len(everything)
        seen["same"] = streamed == [e for e in everything if e.score >= at_least]
        return streamed

    localizer.detect = both
    analyzer.analyze(SAMPLES / "long_18_0.mp4", tmp_path)
    assert seen["chunks"] > 2 and seen["scored before the end"] == seen["chunks"] - 1
    assert seen["at least"] == 0.019 and 0 < seen["events"] < seen["all"] and seen["same"]
