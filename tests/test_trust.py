"""The trust check looks inside the box: a track that sits still for a whole recording, one that
jumps between objects, one that disagrees with the motion model; and the sample clips, scored by
the bundled model, stay familiar."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from ratscore.roi import SEEN_DETECTOR, SEEN_NONE, Track
from ratscore.trust import TrustCheck, track_stats

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
    assert "recognised the animal itself in only 39 of the 466 frames it looked at (8%)" in reason
    assert reasons(Result(track, 78.0, detector_looks=70)) == []  # more than half: nothing to say
    assert reasons(Result(track_of(wander(3)), 1.0, detector_looks=15)) == []  # too few looks to say


def test_whole_frames_are_not_judged_by_their_track():
    still = track_of([(320, 240)] * 1800)
    assert reasons(Result(still, 600.0, rat_found_fraction=None)) == []  # --no-roi: nothing was tracked


@pytest.mark.slow
def test_the_sample_clips_stay_familiar_with_the_bundled_model():
    from ratscore.features import extract_features, load_front_end
    from ratscore.model import BUNDLED_MODEL_DIR, load_model

    model = load_model(BUNDLED_MODEL_DIR)
    front = load_front_end(model, device="cpu")
    assert front.motion is not None and front.detector is not None
    check = TrustCheck.from_model(model)
    for video in sorted(SAMPLES.glob("*.mp4")):
        result = extract_features(video, front, "cpu", progress=False)
        trust = check.assess(result)
        assert trust["familiar"], (video.name, trust["reasons"])
        assert trust["motion"]["informative"] and trust["motion"]["vetoed_boxes"] == 0
        assert trust["track"]["jumps"] == 0 and trust["rat_found_fraction"] == 1.0
        assert trust["track"]["sightings"] >= 0.9 * result.detector_looks > 0  # the detector knows these animals
