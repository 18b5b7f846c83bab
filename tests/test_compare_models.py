"""benchmarks/compare_models.py: two models' figures with a paired bootstrap interval of their
difference, the basis of the RESULTS entry that weighs a rebuild against the bundled model."""

import json
import shutil

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from ratscore.metrics import Detection, GroundTruth, event_f1, event_matches


@pytest.fixture(scope="module")
def compare_models():
    return load_benchmark("compare_models")


def test_identical_units_give_a_zero_interval_and_a_shift_gives_its_size(compare_models):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(40, 1))
    assert compare_models.paired_interval(a, a.copy(), compare_models.total_of_counts, 500, rng) == (0.0, 0.0)
    # B gets every unit A got, plus one more right in each of 10 units: B - A is 10 on all units,
    # and a resample's difference is how many of those 10 it drew
    b = a.copy()
    b[:10] += 1
    low, high = compare_models.paired_interval(a, b, compare_models.total_of_counts, 2000, rng)
    assert 0 < low < 10 < high < 40
    assert compare_models.paired_interval(a[:1], b[:1], compare_models.total_of_counts, 100, rng) is None
    with pytest.raises(ValueError):
        compare_models.paired_interval(a, b[:5], compare_models.total_of_counts, 100, rng)


def test_event_counts_of_separate_videos_add_up_to_event_f1_of_all(compare_models):
    truth = [GroundTruth("v1", 0.0, 2.0, 1), GroundTruth("v1", 5.0, 6.0, 3), GroundTruth("v2", 1.0, 3.0, 1)]
    found = [Detection("v1", 0.1, 2.0, 1, 0.9), Detection("v1", 5.0, 6.0, 4, 0.8),  # a hit, a wrong unit
             Detection("v2", 1.0, 3.0, 1, 0.3), Detection("v2", 7.0, 8.0, 2, 0.6)]  # under 0.5; a false event
    per_video = np.array([event_matches([g for g in truth if g.video == v], [d for d in found if d.video == v], 0.5)
                          for v in ("v1", "v2")])
    assert per_video.tolist() == [[1, 2, 2], [0, 1, 1]]
    assert compare_models.event_f1_of_counts(per_video.sum(axis=0)) == pytest.approx(event_f1(truth, found, 0.5))
    assert event_f1(truth, found, 0.5) == pytest.approx(2 * 1 / (3 + 3))


def test_a_model_against_itself_and_against_a_lower_threshold(compare_models, tmp_path, monkeypatch, capsys):
    """The bundled model against itself: every difference and interval is 0. Against a copy that
    reports from 0.05: each clip reports at least as many events, so no resample can say fewer."""
    from ratscore.model import BUNDLED_MODEL_DIR
    from ratscore.synth.planning import make_config
    from ratscore.synth.writing import synthesize

    small = make_config({"resolutions": [[160, 120]]})
    clips, recordings = tmp_path / "clips", tmp_path / "recordings"
    synthesize(clips, clips=3, seed=11, config=small)
    synthesize(recordings, seed=3, long_minutes=0.25, long_count=2, config=small)
    eager = tmp_path / "eager"
    shutil.copytree(BUNDLED_MODEL_DIR, eager)
    manifest = json.loads((eager / "manifest.json").read_text())
    manifest["threshold"] = 0.05
    (eager / "manifest.json").write_text(json.dumps(manifest))
    work = tmp_path / "work"

    same = compare_models.compare(BUNDLED_MODEL_DIR, BUNDLED_MODEL_DIR, work, clips, [recordings], resamples=200)
    assert [(r["figure"], r["units"]) for r in same] == [
        ("event F1", "3 clips"), ("events reported", "3 clips"),
        ("episodes right", "2 episodes"), ("false alarms", "2 recordings")]
    assert all(r["B - A"] == 0 and r["interval"] == [0.0, 0.0] for r in same)

    report = tmp_path / "report.json"
    monkeypatch.setattr("sys.argv", ["compare_models.py", str(BUNDLED_MODEL_DIR), str(eager), "--work", str(work),
                                     "--clips", str(clips), "--recordings", str(recordings), str(recordings),
                                     "--resamples", "200", "-o", str(report)])
    compare_models.main()
    rows = json.loads(report.read_text())["rows"]
    reported = next(r for r in rows if r["figure"] == "events reported")
    assert reported["B"] >= reported["A"] and reported["interval"][0] >= 0
    pooled = [r for r in rows if r["videos"] == "all recordings"]
    assert [(r["figure"], r["units"]) for r in pooled] == [("episodes right", "4 episodes"),
                                                           ("false alarms", "4 recordings")]
    alarms = [r for r in rows if r["figure"] == "false alarms"]
    assert alarms[-1]["A"] == alarms[0]["A"] + alarms[1]["A"]  # the pooled row is the folders' sum
    assert "event F1" in capsys.readouterr().out


def test_nothing_to_compare_on_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    from benchmark_scripts import BENCHMARKS

    done = subprocess.run([sys.executable, str(BENCHMARKS / "compare_models.py"), "a", "b", "--work", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["compare_models: give --clips, --recordings or both: there is "
                                                "nothing to compare on"]
