"""Batch machinery: discovery, sharding, locking, resume bookkeeping, merging.

The end-to-end batch over real videos with the bundled model is in test_analyze.py; here a small
scorer that reads events from a text file beside each "video" stands in for the model, so the
bookkeeping is tested fast and on its own.
"""

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from ratscore.batch import (OutputLock, SUMMARY_COLUMNS, find_videos, in_shard, merge_shards, parse_shard,
                            run_batch)
from ratscore.errors import InputError
from ratscore.labels import RacineMap
from ratscore.pipeline import AnalyzeOptions, video_fingerprint
from ratscore.timeline import Event, ScoringOptions, score_events
from ratscore.writers import write_scoring


class EventsFileScorer:
    """Scores a 'video' whose text is 'v1;duration;start,end,au;...' (an InputError for anything else);
    'warn' anywhere in it adds two warnings to the summary, as a truncated recording would, and
    'unfamiliar' makes the trust check say no, with two reasons. Shared by the batch, study and
    reliability tests."""

    model_id = "events-file-scorer@1"

    def __init__(self, run_record=None):
        self.options = AnalyzeOptions(scoring=ScoringOptions())
        self.run_record = dict(run_record or {"model_sha256": "0" * 64, "no_roi": False, "keep_features": False,
                                              "racine_config_sha256": None, "mask_sha256": None})
        self.calls = []

    def analyze(self, video, out_dir, stem):
        self.calls.append(Path(video).name)
        text = Path(video).read_text()
        if not text.startswith("v1;"):
            raise InputError(f"{video}: not a video")
        parts = [p for p in text.strip().split(";")[1:] if p not in ("warn", "unfamiliar")]
        events = [Event(float(a), float(b), int(c), 0.9) for a, b, c in (p.split(",") for p in parts[1:])]
        scoring = score_events(events, stem, float(parts[0]), 30.0, self.model_id, RacineMap(), self.options.scoring)
        scoring.summary["source"] = {"path": str(Path(video).absolute()), "fingerprint": video_fingerprint(Path(video))}
        scoring.summary["trust"] = {"rat_found_fraction": 1.0, "feature_distance": 0.5, "familiar": True, "reasons": []}
        if "unfamiliar" in text:
            scoring.summary["trust"] = {"rat_found_fraction": 0.12, "feature_distance": 0.5, "familiar": False,
                                        "reasons": ["the rat was found in only 12% of frames", "portrait frames"]}
        scoring.summary["run"] = self.run_record
        if "warn" in text:
            scoring.summary["warnings"] = ["the file breaks off at 12.0 s", "2 frames undecodable"]
        write_scoring(scoring, out_dir, stem)  # every format: resume trusts only a whole set
        return scoring


def _study(tmp_path):
    study = tmp_path / "study"
    (study / "cohortB").mkdir(parents=True)
    (study / "rat1.mp4").write_text("v1;60;10,20,4;22,30,10")
    (study / "rat2.mp4").write_text("v1;30;1,2,3")
    (study / "broken.mp4").write_text("garbage")
    (study / "notes.txt").write_text("not a video")
    (study / "cohortB" / "rat3.mp4").write_text("v1;45;5,9,13")
    return study


def test_find_videos_and_pattern(tmp_path):
    study = _study(tmp_path)
    assert [p.as_posix() for p in find_videos(study)] == ["broken.mp4", "rat1.mp4", "rat2.mp4"]
    assert [p.as_posix() for p in find_videos(study, recursive=True, pattern="rat*.mp4")] == [
        "cohortB/rat3.mp4", "rat1.mp4", "rat2.mp4"]
    with pytest.raises(InputError, match="no such folder"):
        find_videos(tmp_path / "nope")


def test_shards_partition_the_study():
    videos = [Path(f"c{i % 3}/rat{i}.mp4") for i in range(50)]
    shards = [[v for v in videos if in_shard(v, (i, 4))] for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(videos)  # every video exactly once
    assert all(shards)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0", "-1/3"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_the_summary_table_says_why_a_video_is_unfamiliar(tmp_path):
    study, out = tmp_path / "study", tmp_path / "out"
    study.mkdir()
    (study / "rat1.mp4").write_text("v1;60;10,20,4")
    (study / "rat2.mp4").write_text("v1;60;10,20,4;unfamiliar")
    (study / "rat3.mp4").write_text("v1;60;10,20,4;unfamiliar;warn")
    lines = []
    result = run_batch(study, out, EventsFileScorer(), on_video=lambda name, status: lines.append(f"{name}: {status}"))
    assert lines == ["rat1.mp4: ok", "rat2.mp4: ok [UNFAMILIAR FOOTAGE: check by hand]",
                     "rat3.mp4: ok [UNFAMILIAR FOOTAGE: check by hand] (warning: the file breaks off at 12.0 s; "
                     "2 frames undecodable)"]
    assert result.unfamiliar == 2
    summary = pd.read_csv(out / "batch_summary.csv", keep_default_na=False).set_index("video")
    assert list(summary.familiar) == [True, False, False] and summary.loc["rat1.mp4", "trust_reasons"] == ""
    assert summary.loc["rat2.mp4", "trust_reasons"] == "the rat was found in only 12% of frames; portrait frames"


def test_batch_failures_resume_and_tables(tmp_path):
    study, out = _study(tmp_path), tmp_path / "out"
    scorer = EventsFileScorer()
    result = run_batch(study, out, scorer, recursive=True)
    assert sorted(scorer.calls) == ["broken.mp4", "rat1.mp4", "rat2.mp4", "rat3.mp4"]
    assert (out / "cohortB" / "rat3.summary.json").exists()  # outputs mirror the tree
    summary = pd.read_csv(out / "batch_summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.video) == ["broken.mp4", "cohortB/rat3.mp4", "rat1.mp4", "rat2.mp4"]
    assert list(summary.status) == ["failed", "ok", "ok", "ok"]
    rat1 = summary[summary.video == "rat1.mp4"].iloc[0]
    assert rat1.max_stage == 5 and rat1.latency_stage3_s == 22.0 and rat1.n_episodes == 1
    failures = pd.read_csv(out / "batch_failures.csv")
    assert list(failures.video) == ["broken.mp4"] and "not a video" in failures.error[0]
    first = (out / "batch_summary.csv").read_text()

    # A rerun redoes only what is not complete: the failed video, and a video whose file changed.
    scorer.calls.clear()
    (study / "rat2.mp4").write_text("v1;30;1,2,3;4,6,9")
    result = run_batch(study, out, scorer, recursive=True)
    assert sorted(scorer.calls) == ["broken.mp4", "rat2.mp4"] and result.skipped == 2
    # Losing the summary (a kill before it was written) makes the video count as not done.
    (out / "rat1.summary.json").unlink()
    scorer.calls.clear()
    run_batch(study, out, scorer, recursive=True)
    assert "rat1.mp4" in scorer.calls
    assert (out / "batch_summary.csv").read_text() != first  # rat2 changed
    scorer.calls.clear()
    run_batch(study, out, scorer, recursive=True, resume=False)
    assert len(scorer.calls) == 4


def _hold_lock(out, started, release):
    with OutputLock(Path(out)):
        started.set()
        release.wait(10)


def test_two_batches_on_one_folder_are_refused(tmp_path):
    ctx = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, started, release))
    holder.start()
    try:
        assert started.wait(10)
        with pytest.raises(InputError, match="another ratscore batch is writing here"):
            run_batch(_study(tmp_path), tmp_path, EventsFileScorer())
    finally:
        release.set()
        holder.join(10)
    run_batch(_study(tmp_path / "again"), tmp_path, EventsFileScorer())  # free again once the holder ended


def test_shards_then_merge_equal_one_run(tmp_path):
    study = _study(tmp_path)
    whole = tmp_path / "whole"
    run_batch(study, whole, EventsFileScorer(), recursive=True)
    sharded = tmp_path / "sharded"
    with pytest.raises(InputError, match="no shard summaries"):
        merge_shards(sharded)
    run_batch(study, sharded, EventsFileScorer(), recursive=True, shard=(0, 3))
    with pytest.raises(InputError, match="not finished yet"):
        merge_shards(sharded)
    for i in (1, 2):
        run_batch(study, sharded, EventsFileScorer(), recursive=True, shard=(i, 3))
    path, n, n_failed = merge_shards(sharded)
    assert (n, n_failed) == (4, 1)
    assert path.read_text() == (whole / "batch_summary.csv").read_text()
    assert (sharded / "batch_failures.csv").read_text() == (whole / "batch_failures.csv").read_text()
