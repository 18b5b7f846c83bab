"""ratscore.synth.planning: clip and long-recording plans, and the synth config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ratscore.annotations import read_annotations
from ratscore.errors import InputError
from ratscore.labels import LABEL_IDS, NORMAL_ID, NUM_CLASSES
from ratscore.synth.planning import SynthConfig, load_synth_config, make_config, plan_clips, plan_long

REAL = Path("/tmp/ratseizure.json")


# ---- plans ---------------------------------------------------------------------------------

def _check_partition(video_segments, duration):
    assert video_segments[0].start_s == 0.0
    assert video_segments[-1].end_s == pytest.approx(duration)
    for a, b in zip(video_segments, video_segments[1:]):
        assert a.end_s == pytest.approx(b.start_s)
        assert a.au_id != b.au_id
    for s in video_segments:
        assert s.end_s > s.start_s


def test_clip_plans_look_like_the_ratseizure_release():
    plans = plan_clips(60, seed=4)
    segments = [s for p in plans for s in p.segments]
    for p in plans:
        assert p.duration == 10.0 and 1 <= len(p.segments) <= 5
        _check_partition(p.segments, 10.0)
        for s in p.segments:
            assert 1.0 - 1e-9 <= s.end_s - s.start_s <= 10.0
            assert abs(s.start_s * 10 - round(s.start_s * 10)) < 1e-6  # on the 0.1 s grid
    others = sum(s.au_id == NORMAL_ID for s in segments) / len(segments)
    assert 0.2 <= others <= 0.45
    testing = sum(p.subset == "testing" for p in plans) / len(plans)
    assert 0.25 <= testing <= 0.45
    for subset in ("training", "testing"):
        seen = {s.au_id for p in plans if p.subset == subset for s in p.segments}
        assert seen == set(range(NUM_CLASSES)), f"{subset} lacks {set(range(NUM_CLASSES)) - seen}"
    per_class = Counter(s.au_id for s in segments if s.au_id != NORMAL_ID)
    assert min(per_class.values()) >= 3
    assert len({p.video_id for p in plans}) == 60


@pytest.mark.skipif(not REAL.exists(), reason="RatSeizure annotations not available here")
def test_clip_statistics_match_the_real_release():
    real = read_annotations(REAL)
    plans = plan_clips(794, seed=0)
    real_per_clip = np.mean([len(v.segments) for v in real.values()])
    ours_per_clip = np.mean([len(p.segments) for p in plans])
    assert abs(ours_per_clip - real_per_clip) < 0.25
    real_mean = np.mean([s.end_s - s.start_s for v in real.values() for s in v.segments])
    ours_mean = np.mean([s.end_s - s.start_s for p in plans for s in p.segments])
    assert abs(ours_mean - real_mean) < 1.0


def test_plans_are_deterministic_and_depend_on_the_seed():
    assert plan_clips(20, 7) == plan_clips(20, 7)
    assert plan_clips(20, 7) != plan_clips(20, 8)
    assert plan_long(3.0, 7) == plan_long(3.0, 7)


def test_long_recording_is_mostly_normal_with_escalating_episodes():
    plan = plan_long(20.0, seed=3)
    assert plan.duration == 1200.0 and plan.video_id == "long_3_0"
    _check_partition(plan.segments, 1200.0)
    normal = sum(s.end_s - s.start_s for s in plan.segments if s.au_id == NORMAL_ID)
    assert normal / plan.duration > 0.6
    runs, run = [], []
    for s in plan.segments:
        if s.au_id == NORMAL_ID:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(s.au_id)
    assert len(runs) >= 2
    episodes = [r for r in runs if r != [LABEL_IDS["wet dog shakes"]]]
    assert episodes, "no seizure episode"
    for r in episodes:  # each one starts with staring or mouth clonus
        assert r[0] in (LABEL_IDS["staring"], LABEL_IDS["mouth clonus"])
    assert any(LABEL_IDS["head nodding"] in r for r in episodes)


# ---- config --------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    ({"noise_sigma": [5, 1]}, "noise_sigma"),
    ({"resolutions": [[321, 240]]}, "resolutions"),
    ({"view": "fisheye"}, "view"),
    ({"colour": 1}, "unknown synth setting 'colour'"),
    ({"train_fraction": 1.5}, "train_fraction"),
])
def test_bad_config_values_are_one_line_errors(overrides, words):
    with pytest.raises(InputError, match=words) as e:
        make_config(overrides)
    assert "\n" not in str(e.value)


def test_config_from_yaml(tmp_path):
    path = tmp_path / "synth.yaml"
    path.write_text("resolutions: [[320, 240]]\nview: topdown\nnoise_sigma: [1, 2]\n")
    config = load_synth_config(path)
    assert config.resolutions == ((320, 240),) and config.view == "topdown" and config.noise_sigma == (1, 2)
    assert load_synth_config(None) == SynthConfig()
