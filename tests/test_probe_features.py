"""benchmarks/probe_features.py: the linear probe behind the RESULTS entries on what the I3D's
features hold (falls against ordinary behaviour), kept reproducible."""

import subprocess
import sys

import numpy as np
import pytest
from benchmark_scripts import BENCHMARKS, load_benchmark

from ratscore.annotations import Segment, VideoAnnotation, write_annotations
from ratscore.grid import DEFAULT_GRID
from ratscore.labels import LABELS

STARING, FALLING = LABELS.index("staring"), LABELS.index("falling")


@pytest.fixture(scope="module")
def probe_features():
    return load_benchmark("probe_features")


def test_auc_is_the_share_of_pairs_ranked_right_with_ties_as_half(probe_features):
    auc = probe_features.auc
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([2.0, 3.0])) == 0.0
    assert auc(np.array([2.0, 3.0]), np.array([1.0, 2.0])) == pytest.approx(7 / 8)  # one tie of four pairs
    assert auc(np.ones(5), np.ones(7)) == 0.5


def test_context_stays_within_each_video(probe_features):
    x = np.arange(6, dtype=np.float32)[:, None]  # two videos of 3 steps: 0 1 2 | 3 4 5
    which = np.array([0, 0, 0, 1, 1, 1])
    out = probe_features.with_context(x, which, 1)
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 5], [4, 5, 5]])
    assert probe_features.with_context(x, which, 0) is x


def _work_folder(root, signal_for_falling: bool):
    """A work folder of 16-d features: staring shows in feature 0; falling in feature 1, or not."""
    rng = np.random.default_rng(0)
    features, videos = root / "features", []
    features.mkdir(parents=True)
    specs = [(f"clip_{i}", "training", 20.0) for i in range(20)] + [(f"long_{i}", "validation", 60.0) for i in range(2)]
    for k, (video_id, subset, duration) in enumerate(specs):
        start = 5.0 + k % 3
        segments = [Segment(0.0, start, 0), Segment(start, start + 4, STARING), Segment(start + 4, start + 7, FALLING),
                    Segment(start + 7, duration, 0)]
        steps = DEFAULT_GRID.num_features(int(duration * DEFAULT_GRID.fps))
        times = DEFAULT_GRID.feature_time(np.arange(steps))
        x = rng.normal(size=(steps, 16)).astype(np.float32)
        x[(times >= start) & (times < start + 4), 0] += 3.0
        if signal_for_falling:
            x[(times >= start + 4) & (times < start + 7), 1] += 3.0
        np.save(features / f"{video_id}.npy", x)
        videos.append(VideoAnnotation(video_id, subset, duration, segments, 30.0))
    write_annotations(root / "annotations.json", videos)
    return root


def test_the_probe_finds_a_class_the_features_hold_and_not_one_they_do_not(probe_features, tmp_path):
    held = probe_features.probe_work_folder(_work_folder(tmp_path / "held", True), context=2)
    assert held["validation_recordings"] == 2 and set(held["classes"]) == {"staring", "falling"}
    assert held["classes"]["staring"]["auc_against_normal"] > 0.95
    assert held["classes"]["falling"]["auc_against_normal"] > 0.95
    hidden = probe_features.probe_work_folder(_work_folder(tmp_path / "hidden", False), context=2)
    assert hidden["classes"]["staring"]["auc_against_normal"] > 0.95
    assert 0.2 < hidden["classes"]["falling"]["auc_against_normal"] < 0.8  # noise: nothing to find


def test_a_folder_without_features_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "probe_features.py"), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a bundle work folder" in result.stderr
