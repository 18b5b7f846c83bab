"""The trust check looks inside the box: a track that sits still for a whole recording, one that
jumps between objects, one that disagrees with the motion model; it looks at the model's claims (a
highest stage with nothing leading up to it); and the sample clips, scored by the bundled model,
stay familiar."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from ratscore.roi import SEEN_DETECTOR, SEEN_NONE, Track
from ratscore.labels import LABEL_IDS, RacineMap
from ratscore.timeline import Event, score_events
from ratscore.trust import TrustCheck, track_stats, unclimbed_peak

W, H = 640, 480
SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


@dataclass
class Result:
    """What TrustCheck.assess reads of a features.FeatureResult."""

    track: Optional[Track]
    duration_s: float
    motion: Optional[dict] = None
    rat_found_fraction: Optional[float] = 1.0
    gaps: list = field(default_factory=list)
    width: int = W
    height: int = H
    features: np.ndarray = field(default_factory=lambda: np.zeros((4, 8), np.float32))
    detector_looks: int = 0  # 0: not counted (the recognition check stays out of the other tests)


# training statistics the zero features above sit in the middle of: only the new checks can object
CHECK = TrustCheck({"mean": np.zeros(8, np.float32), "std": np.ones(8, np.float32),
                    "video_distances": np.array([1.0], np.float32)}, distance_limit=1.25)


def track_of(centres, size=(80, 50), every_k: int = 10, fps: float = 30.0) -> Track:
    """A track sighted by the detector every k-th frame at the given box centres (one per sighting)."""
    n = len(centres) * every_k
    rows = np.full((n, 6), np.nan, np.float32)
    rows[:, 5] = SEEN_NONE
    for i, (cx, cy) in enumerate(centres):
        rows[i * every_k] = [cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2, 0.8, SEEN_DETECTOR]
    return Track(fps, W, H, rows)


def wander(n: int, seed: int = 0) -> np.ndarray:
    """Centres of an animal walking about the arena: small steps between sightings."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 8, (n, 2))
    return np.clip(np.cumsum(steps, axis=0) + (W / 2, H / 2), 60, (W - 60, H - 60))


def reasons(result) -> list[str]:
    return CHECK.assess(result)["reasons"]


def test_a_walking_animal_is_familiar():
    result = Result(track_of(wander(1800)), 600.0, motion={"moments_with_motion": 400, "agreeing": 380})
    trust = CHECK.assess(result)
    assert trust["familiar"] and trust["reasons"] == []
    assert trust["track"]["sightings"] == 1800 and trust["track"]["jumps"] == 0 and trust["track"]["spread"] > 0.05


def test_a_still_track_over_a_whole_recording_is_unfamiliar():
    jitter = np.random.default_rng(1).normal(0, 1.5, (1800, 2)) + (200, 300)  # a few pixels of detector jitter
    [reason] = reasons(Result(track_of(jitter), 600.0))
    assert "did not move in the whole 10.0 minutes" in reason
    # a short clip of a still animal is nothing unusual
    assert reasons(Result(track_of(jitter[:90]), 30.0)) == []


def test_a_track_jumping_between_objects_is_unfamiliar():
    centres = wander(600)
    centres[::20] = (560, 80)  # every 20th sighting the detector boxes something in a corner
    figures = track_stats(track_of(centres))
    assert figures["jumps"] >= 50 and figures["pairs"] == 599
    [reason] = reasons(Result(track_of(centres), 200.0))
    assert "jumped" in reason and "switching between objects" in reason
    # a jump across a gap longer than 1 s is the animal found again, not a switch
    gappy = track_of(centres, every_k=40)
    assert track_stats(gappy)["pairs"] == 0 and reasons(Result(gappy, 800.0)) == []


def test_a_track_that_disagrees_with_the_motion_model_is_unfamiliar():
    track = track_of(wander(300))
    [reason] = reasons(Result(track, 100.0, motion={"moments_with_motion": 60, "agreeing": 9}))
    assert "overlapped the moving animal in only 9 of 60 moments" in reason
    assert reasons(Result(track, 100.0, motion={"moments_with_motion": 60, "agreeing": 45})) == []
    assert reasons(Result(track, 100.0, motion={"moments_with_motion": 10, "agreeing": 0})) == []  # too few to say


def test_a_detector_that_rarely_recognises_the_animal_is_unfamiliar():
    # the detector saw the animal at 39 of 466 looks; the motion model kept it "found" in between
    track = track_of(wander(39), every_k=60)
    [reason] = reasons(Result(track, 78.0, detector_looks=466))
    assert "recognised the animal itself (score 0.5 or more) in only 39 of the 466 frames it looked at (8%)" in reason
    assert reasons(Result(track, 78.0, detector_looks=70)) == []  # more than half: nothing to say
    assert reasons(Result(track_of(wander(3)), 1.0, detector_looks=15)) == []  # too few looks to say


def test_boxes_the_detector_is_unsure_of_do_not_count_as_recognised():
    # a real rodent: boxes found at every look, but scored 0.25 to 0.5, as on real footage
    track = track_of(wander(300))
    track.rows[np.flatnonzero(track.seen == SEEN_DETECTOR)[::3], 4] = 0.45  # a third unsure: still recognised
    assert track_stats(track)["confident"] == 200 and reasons(Result(track, 100.0, detector_looks=300)) == []
    track.rows[np.flatnonzero(track.seen == SEEN_DETECTOR), 4] = 0.8
    track.rows[np.flatnonzero(track.seen == SEEN_DETECTOR)[:180], 4] = 0.4  # most unsure: not recognised
    [reason] = reasons(Result(track, 100.0, detector_looks=300))
    assert "(score 0.5 or more) in only 120 of the 300 frames" in reason


def test_a_scene_that_changes_is_unfamiliar():
    track = track_of(wander(300))
    [reason] = reasons(Result(track, 100.0, motion={"moments_with_motion": 60, "agreeing": 60, "unsteady_share": 0.2}))
    assert "changed beyond the animal in 20% of the motion model's samples" in reason
    assert reasons(Result(track, 100.0, motion={"moments_with_motion": 60, "agreeing": 60,
                                                "unsteady_share": 0.05})) == []


def scored(events, duration_s: float = 120.0, racine: RacineMap = RacineMap()):
    """A scoring of (start, end, action unit name) events."""
    return score_events([Event(a, b, LABEL_IDS[au], 0.8) for a, b, au in events], "v", duration_s, 30.0, "m", racine)


def claim_reasons(events, duration_s: float = 120.0, racine: RacineMap = RacineMap()) -> list[str]:
    result = Result(track_of(wander(300)), duration_s)
    return CHECK.assess(result, scored(events, duration_s, racine))["reasons"]


def test_a_peak_with_nothing_leading_up_to_it_is_unfamiliar():
    # a lone tonic extension on a normal recording: the model reading ordinary movement as a seizure
    [reason] = claim_reasons([(40.0, 46.0, "staring"), (89.4, 95.0, "tonic extension")])
    assert "highest stage, 7, has nothing leading up to it (tonic extension at 89.4-95.0 s" in reason
    assert "no action unit of stage 4-6 in the same episode" in reason
    # the same with staring joined to it (4 s apart: one episode) still skips from 1 to 7
    [reason] = claim_reasons([(80.0, 85.0, "staring"), (89.0, 95.0, "tonic extension")])
    assert "staring" not in reason and "tonic extension at 80.0-95.0 s" in reason
    # lone forelimb clonus twice: both are listed
    [reason] = claim_reasons([(30.0, 40.0, "alternating forelimb clonus"), (80.0, 84.0, "unilateral forelimb clonus")])
    assert "alternating forelimb clonus at 30.0-40.0 s; unilateral forelimb clonus at 80.0-84.0 s" in reason
    assert unclimbed_peak(scored([(30.0, 40.0, "rearing")]))[0] == {
        "onset_s": 30.0, "offset_s": 40.0, "stage": 4, "aus": ["rearing"], "below": 0}


def test_a_seizure_that_climbs_the_scale_is_familiar():
    climbing = [(20.0, 26.0, "mouth clonus"), (26.0, 34.0, "head nodding"), (34.0, 40.0, "unilateral forelimb clonus"),
                (40.0, 45.0, "rearing"), (45.0, 48.0, "falling"), (48.0, 52.0, "wild running"),
                (52.0, 60.0, "tonic extension")]
    assert claim_reasons(climbing) == [] and unclimbed_peak(scored(climbing)) == []
    # steps of up to three stages are climbing too: the model misses some of a seizure's action units
    assert claim_reasons([(40.0, 45.0, "falling"), (45.0, 50.0, "tonic extension")]) == []
    assert claim_reasons([(191.8, 208.1, "head nodding"), (210.0, 221.7, "head nodding"), (231.1, 233.6, "falling")]) == []
    # four are not: staring, then falling
    [reason] = claim_reasons([(40.0, 45.0, "staring"), (45.0, 50.0, "falling")])
    assert "highest stage, 5" in reason and "no action unit of stage 2-4" in reason
    # one climbing episode at the peak is enough: a lone false alarm at the same stage beside it is left be
    assert claim_reasons(climbing + [(100.0, 104.0, "tonic extension")]) == []
    # a lone event below the recording's peak does not count; nor does a peak under stage 3
    assert claim_reasons(climbing + [(100.0, 104.0, "bilateral forelimb clonus")]) == []
    assert claim_reasons([(30.0, 36.0, "head nodding")]) == []
    assert claim_reasons([]) == []


def test_short_recordings_and_the_labs_own_stages():
    # a 10 s clip holds action units in any order (the training clips do): not judged
    assert claim_reasons([(2.0, 8.0, "tonic extension")], duration_s=10.0) == []
    # stages follow the lab's map: with rearing at stage 2, a lone rearing is no claim of 3 or more
    lab = RacineMap.from_mapping({"rearing": 2})
    assert claim_reasons([(30.0, 40.0, "rearing")], racine=lab) == []
    # scoring that is not given (a caller with features only) is not judged
    assert CHECK.assess(Result(track_of(wander(300)), 120.0))["reasons"] == []


def test_whole_frames_are_not_judged_by_their_track():
    still = track_of([(320, 240)] * 1800)
    assert reasons(Result(still, 600.0, rat_found_fraction=None)) == []  # --no-roi: nothing was tracked


@pytest.mark.slow
def test_the_sample_clips_stay_familiar_with_the_bundled_model():
    from ratscore.features import extract_features
    from ratscore.pipeline import AnalyzeOptions, Analyzer

    analyzer = Analyzer(AnalyzeOptions(device="cpu"))  # the bundled model, as analyze loads it
    front, check = analyzer.front, analyzer.trust
    assert front.motion is not None and front.detector is not None
    judged = 0
    for video in sorted(SAMPLES.glob("*.mp4")):
        result = extract_features(video, front, "cpu", progress=False)
        events = analyzer.localizer.detect(result.features, result.duration_s)
        scoring = score_events(events, video.stem, result.duration_s, result.source_fps, "m", analyzer.racine)
        judged += scoring.duration_s >= check.min_claims_s and scoring.summary["max_stage"] >= check.min_peak_stage
        trust = check.assess(result, scoring)
        assert trust["familiar"], (video.name, trust["reasons"])
        assert trust["motion"]["informative"] and trust["motion"]["vetoed_boxes"] == 0
        assert trust["track"]["jumps"] == 0 and trust["rat_found_fraction"] == 1.0
        assert trust["track"]["confident"] >= 0.9 * result.detector_looks > 0  # the detector knows these animals
        assert trust["motion"]["unsteady_share"] == 0.0  # a camera that stays put
    assert judged == 1  # the long sample's seizures were checked for their climb (and they climb)


def test_a_detector_adapted_to_a_rig_with_synthetic_scoring_flags_any_stage_of_3_or_more(tmp_path):
    from dataclasses import replace

    from ratscore.model import BUNDLED_MODEL_DIR, load_model, update_model

    climbing = [(20.0, 26.0, "mouth clonus"), (26.0, 34.0, "head nodding"), (34.0, 40.0, "rearing")]
    on_rig = replace(CHECK, synthetic_scores_on_rig=True)
    result = Result(track_of(wander(300)), 120.0)
    [reason] = on_rig.assess(result, scored(climbing))["reasons"]  # climbing, yet flagged
    assert "highest stage, 4, comes from action units learned from synthetic videos only" in reason
    assert "ratscore train" in reason
    # short recordings too; stages under 3 say nothing
    assert on_rig.assess(Result(track_of(wander(30)), 10.0), scored([(2.0, 8.0, "falling")], 10.0))["reasons"]
    assert on_rig.assess(result, scored([(30.0, 36.0, "head nodding")]))["reasons"] == []
    assert CHECK.assess(result, scored(climbing))["reasons"] == []  # the same claim from another model is left be

    # from the model folder: the bundled model (a recipe build) learned from synthetic videos, and
    # is not adapted; `train detector --videos` writes what its detector was adapted to
    bundled = load_model(BUNDLED_MODEL_DIR)
    assert bundled.scores_learned_from == "synthetic" and bundled.detector_adapted_to is None
    assert not TrustCheck.from_model(bundled).synthetic_scores_on_rig
    folder = tmp_path / "m"
    folder.mkdir()
    for path in BUNDLED_MODEL_DIR.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    update_model(folder, {"detector_adapted_to": "2 of the lab's own videos (rig/)"})
    assert TrustCheck.from_model(load_model(folder)).synthetic_scores_on_rig
    update_model(folder, {"scores_learned_from": "real"})  # a scoring trained on the lab's videos
    assert not TrustCheck.from_model(load_model(folder)).synthetic_scores_on_rig
