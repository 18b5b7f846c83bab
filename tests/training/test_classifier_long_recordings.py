"""The recipe's classifier_long_recordings: the I3D classifier also learns from the long training
recordings, cut to their seizure and a few seconds either side; a recipe without it keeps its
stages' markers."""

import json

import pytest

from ratscore.annotations import Segment
from ratscore.errors import InputError
from ratscore.training.bundle import (CLASSIFIER_CONTEXT_S, BundleRecipe, BundleRun, _train_classifier, _trained_on,
                                      bundle_stages, near_seizure, stage_inputs)


def test_near_seizure_cuts_a_recording_to_its_seizure_and_the_context():
    segments = [Segment(0.0, 36.3, 0), Segment(36.3, 42.4, 1), Segment(42.4, 49.4, 4), Segment(49.4, 120.0, 0)]
    cut = near_seizure(segments, 5.0)
    assert [(round(s.start_s, 6), round(s.end_s, 6), s.au_id) for s in cut] == [
        (31.3, 36.3, 0), (36.3, 42.4, 1), (42.4, 49.4, 4), (49.4, 54.4, 0)]
    assert near_seizure(segments, 40.0)[0] == Segment(0.0, 36.3, 0)  # never before the recording's start
    assert near_seizure([Segment(0.0, 120.0, 0)], 5.0) == []  # ordinary behaviour only: nothing


def test_the_field_is_an_input_of_the_classifier_and_what_it_feeds_only_when_set():
    plain, along = BundleRecipe(), BundleRecipe(classifier_long_recordings=True)
    for stage in [s.name for s in bundle_stages(plain)]:  # the markers of a work folder made before it still match
        assert "classifier_long_recordings" not in stage_inputs(plain, stage)
    for stage in ("i3d_classifier", "front_end", "features", "localizer_topk"):
        inputs = stage_inputs(along, stage)
        assert inputs["classifier_long_recordings"] is True and inputs["train_long_seed"] == 3000
    assert "classifier_long_recordings" not in stage_inputs(along, "detector")
    assert "train_long_recordings" not in stage_inputs(along, "detector")
    # and the model's manifest says who learned from the recordings
    assert "(seed 3000) for the I3D classifier (near their seizures) and the localizer" in _trained_on(along)
    assert "(seed 3000) for the localizer," in _trained_on(plain)


def test_the_field_is_refused_where_it_would_do_nothing():
    with pytest.raises(InputError, match="front_end or i3d_from brings one"):
        BundleRecipe(classifier_long_recordings=True, i3d_from="models")
    with pytest.raises(InputError, match="front_end or i3d_from brings one"):
        BundleRecipe(classifier_long_recordings=True, front_end="models")
    with pytest.raises(InputError, match="train_long_recordings above 0"):
        BundleRecipe(classifier_long_recordings=True, train_long_recordings=0)
    with pytest.raises(InputError, match="true or false"):
        BundleRecipe(classifier_long_recordings="yes")


def test_the_classifier_trains_on_the_recordings_windows_near_their_seizure(tmp_path):
    from ratscore.synth import synthesize

    work = tmp_path / "work"
    synthesize(work / "synth_train", clips=1, seed=1000)
    synthesize(work / "synth_long", clips=0, seed=3000, long_minutes=0.25, long_count=1)  # 15 s, seizure 1.8-6.8 s
    toy = dict(train_clips=1, train_long_recordings=1, train_long_minutes=0.25, i3d_input_size=64, classifier_epochs=1,
               classifier_stride=24, classifier_batch=4)

    def windows(**fields) -> tuple[int, int]:
        (work / "i3d_classifier.pt").unlink(missing_ok=True)
        run = BundleRun(work, tmp_path / "model", BundleRecipe(**toy, **fields), "cpu", "cpu", log=lambda _: None)
        record = _train_classifier(run)
        return record["videos"], record["windows"]

    clip_only, with_recording = windows(), windows(classifier_long_recordings=True)
    assert clip_only[0] == 1 and with_recording[0] == 2
    # 16-frame windows every 24 frames of the 450: 19, of which those centred before 6.8 + 5 s: 15
    seizure_end = json.loads((work / "synth_long" / "annotations.json").read_text())[
        "database"]["long_3000_0"]["annotations"][-2]["segment"][1]
    assert seizure_end == 6.8 and CLASSIFIER_CONTEXT_S == 5.0
    assert with_recording[1] - clip_only[1] == 15
