"""The recipe's train_long_severe_recordings: more long training recordings whose episode always
reaches stage 5 or 6-7, for the localizer only; a recipe without them keeps its stages' markers."""

import pytest

from ratscore.errors import InputError
from ratscore.labels import RacineMap
from ratscore.synth import SynthConfig, plan_long
from ratscore.training.bundle import (SEVERE_MAX_STAGE_WEIGHTS, BundleRecipe, _renders, _trained_on, bundle_stages,
                                      stage_inputs)


def test_the_recordings_are_inputs_of_the_features_and_localizers_only_and_only_when_asked_for():
    plain, severe = BundleRecipe(), BundleRecipe(train_long_severe_recordings=12)
    for stage in [s.name for s in bundle_stages(plain)]:  # the markers of a work folder made before it still match
        assert "train_long_severe_recordings" not in stage_inputs(plain, stage)
    assert "synth_long_severe" not in [name for name, _ in _renders(plain)]
    for stage in ("features", "localizer_topk", "localizer_topk_2", "localizer_plain"):
        inputs = stage_inputs(severe, stage)
        assert inputs["train_long_severe_recordings"] == 12 and inputs["train_long_severe_seed"] == 3500
    for stage in ("detector", "i3d_classifier", "front_end", "synth_long"):
        assert "train_long_severe_recordings" not in stage_inputs(severe, stage)
    assert "12 recordings of 2 min whose episode reaches stage 5 or more (seed 3500) for the localizer" in _trained_on(severe)
    assert "stage 5 or more" not in _trained_on(plain)
    with pytest.raises(InputError, match="train_long_severe_recordings must be a whole number of at least 0"):
        BundleRecipe(train_long_severe_recordings=-1)


def test_each_of_their_episodes_reaches_stage_5_or_more():
    (name, how), = [r for r in _renders(BundleRecipe(train_long_severe_recordings=3)) if r[0] == "synth_long_severe"]
    assert how["long_max_stage_weights"] == SEVERE_MAX_STAGE_WEIGHTS and how["seed"] == 3500 and how["long_count"] == 3
    racine = RacineMap()
    config = SynthConfig(long_max_stage_weights=SEVERE_MAX_STAGE_WEIGHTS)
    plain_stages, severe_stages = [], []
    for index in range(12):
        for cfg, stages in ((SynthConfig(), plain_stages), (config, severe_stages)):
            segments = plan_long(how["long_minutes"], how["seed"], index, cfg).annotation(30.0).segments
            stages.append(max(racine.stage(s.au_id) or 0 for s in segments))
    assert min(severe_stages) >= 5 and max(severe_stages) >= 6
    assert min(plain_stages) < 5  # the plain mix has lower episodes: the weights, not the seed, made the difference


def test_their_render_draws_recordings_that_end_high(tmp_path):
    from ratscore.annotations import read_annotations
    from ratscore.training.bundle import BundleRun, _render

    recipe = BundleRecipe(train_long_severe_recordings=1, train_long_minutes=0.25)
    run = BundleRun(tmp_path / "work", tmp_path / "model", recipe, "cpu", "cpu", log=lambda _: None)
    (name, how), = [r for r in _renders(recipe) if r[0] == "synth_long_severe"]
    record = _render(name, how, run)
    assert record["long_max_stage_weights"] == SEVERE_MAX_STAGE_WEIGHTS  # what the marker keeps
    (video,) = read_annotations(tmp_path / "work" / name / "annotations.json").values()
    assert video.video_id == "long_3500_0" and (tmp_path / "work" / name / "long_3500_0.mp4").is_file()
    assert max(RacineMap().stage(s.au_id) or 0 for s in video.segments) >= 5
