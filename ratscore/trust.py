"""How far a video's features lie from the training set's: a cheap "can I trust this?" check.

Training writes per-dimension mean and standard deviation of its features, plus the distance of
every training video to them, to `feature_stats.npz`. The distance of a video is the mean over
its time steps of the root-mean-square z-score across dimensions: about 1 for features like the
training ones, growing as a video's features drift (another camera, lighting, species, feature
extractor). A caller compares a new video's distance with the training distribution, e.g. with
`training_percentile`.
"""

from __future__ import annotations

import io
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from .errors import InputError
from .roi import RECOGNISED_SCORE
from .timeline import episode_events

MIN_STD = 1e-6  # dimensions that never vary in training must not divide by zero
UNFAMILIAR_FLAG = "[UNFAMILIAR FOOTAGE: check by hand]"  # on a video's line in analyze's and batch's output


def is_unfamiliar(summary: dict) -> bool:
    """Whether a summary.json's trust check said no (a summary without one is not flagged)."""
    return (summary.get("trust") or {}).get("familiar", True) is False


def feature_stats(features: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics of a set of (T, D) feature arrays (one per video)."""
    features = list(features)
    if not features:
        raise InputError("no features to compute statistics from")
    total = sum(f.shape[0] for f in features)
    mean = sum(f.astype(np.float64).sum(axis=0) for f in features) / total
    var = sum(((f.astype(np.float64) - mean) ** 2).sum(axis=0) for f in features) / total
    std = np.maximum(np.sqrt(var), MIN_STD)
    stats = {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "num_steps": np.int64(total)}
    stats["video_distances"] = np.sort([feature_distance(f, stats) for f in features]).astype(np.float32)
    return stats


def feature_distance(features: np.ndarray, stats) -> float:
    """Mean over time of the RMS z-score of a video's (T, D) features against training statistics."""
    features = np.asarray(features, np.float32)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if features.ndim != 2 or features.shape[1] != mean.shape[0]:
        raise InputError(f"features of shape {features.shape} do not match the statistics' dimension {mean.shape[0]}")
    z = (features - mean) / std
    return float(np.sqrt((z * z).mean(axis=1)).mean())


def training_percentile(distance: float, stats) -> float:
    """Share (0..100) of training videos whose distance is at most `distance`."""
    d = np.asarray(stats["video_distances"])
    return float(100.0 * np.searchsorted(d, distance, side="right") / max(1, len(d)))


def track_stats(track, jump_sides: float = 1.5, confident_score: float = 0.5) -> dict:
    """Figures of a `roi.Track` for the trust check, from the frames where the detector saw the
    animal: how many (`sightings`), how many with a score of at least `confident_score`
    (`confident`), how far the box's centre strays from its median position (the
    95th percentile, as a share of the frame's diagonal: `spread`), and of the pairs of consecutive
    sightings at most the track's max_gap_s apart (`pairs`) how many move the centre by more than
    `jump_sides` times the longer side of the larger box (`jumps`)."""
    from .roi import SEEN_DETECTOR

    at = np.flatnonzero(track.seen == SEEN_DETECTOR)
    if not len(at):
        return {"sightings": 0, "confident": 0, "spread": None, "pairs": 0, "jumps": 0}
    boxes = track.rows[at, :4].astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    diagonal = max(1.0, float(np.hypot(track.width, track.height)))
    spread = float(np.percentile(np.linalg.norm(centres - np.median(centres, axis=0), axis=1), 95)) / diagonal
    close = np.diff(at) <= track.max_gap_s * track.fps + 1e-6
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    larger = np.maximum(sides[:-1], sides[1:])
    jumps = int((close & (step > jump_sides * larger)).sum())
    confident = int((track.score[at] >= confident_score).sum())
    return {"sightings": int(len(at)), "confident": confident, "spread": round(spread, 4), "pairs": int(close.sum()), "jumps": jumps}


def unclimbed_peak(scoring, min_stage: int = 3, max_step: int = 3) -> list[dict]:
    """The episodes behind a recording's highest stage, when none of them climbs to it.

    A seizure climbs the Racine scale: forelimb clonus comes with the facial signs and head
    nodding before it, falling with rearing and clonus, tonic extension after wild running or a
    generalised convulsion; every seizure the model learned from does (synth.planning). An episode
    climbs to its highest stage S when it also holds an action unit of stage S - max_step to S - 1
    (and of stage 1 or more: a lone action unit climbs to nothing). The step is wide because the
    model misses some of a seizure's action units (on held-out synthetic recordings, the clonus
    and rearing between head nodding and falling).

    Where the recording's highest stage is min_stage or more and no episode that reaches it climbs,
    that stage rests on events with nothing leading up to them, such as a lone "tonic extension":
    what a model trained on drawn rats reports when it reads a real animal's ordinary movements as
    a seizure. Returns those episodes as dicts (onset_s, offset_s, stage, aus: the action units at
    the peak, below: the highest lower stage in the episode, 0 for none); [] when the peak climbs,
    or is under min_stage."""
    peaks = []
    for episode, inside in episode_events(scoring):
        staged = inside.dropna(subset=["racine_stage"])
        stages = sorted({int(s) for s in staged.racine_stage})
        if not stages:
            continue
        top = stages[-1]
        below = stages[-2] if len(stages) > 1 else 0
        aus = sorted(set(staged.au[staged.racine_stage == top]))
        peaks.append({"onset_s": float(episode.onset_s), "offset_s": float(episode.offset_s), "stage": top,
                      "aus": aus, "below": below})
    highest = max((p["stage"] for p in peaks), default=0)
    at_peak = [p for p in peaks if p["stage"] == highest]
    if highest < min_stage or any(p["below"] >= max(1, highest - max_step) for p in at_peak):
        return []
    return at_peak


def feature_stats_bytes(stats: dict) -> bytes:
    """feature_stats.npz's content (plain arrays: read back without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **stats)
    return buf.getvalue()


def read_feature_stats(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable feature statistics ({e})") from None


@dataclass(frozen=True)
class TrustCheck:
    """How far to trust a video's scoring: was the rat found, and do its features look familiar?

    A video is flagged unfamiliar when the detector found the rat in under `min_rat_found` of its
    frames, or when its feature distance to the training set is beyond `distance_limit`: the
    largest distance of any training video, times a margin (a video like the training ones lies
    well inside it; another camera, lighting or species lies outside).

    Inside the box, three things that say the detector may be following something other than the
    animal (from the track, `roi.Track`, and the motion model's count, `FeatureResult.motion`): the
    box sits still for a whole recording of `min_still_s` or more (its centre within `still_share`
    of the frame's diagonal in almost every sighting); it jumps between objects (of the pairs of
    consecutive sightings at most 1 s apart, at least `min_jumps` and `jump_rate` of them move the
    centre by more than `jump_sides` times the box's longer side); or it disagrees with the motion
    model (of `min_motion_moments` or more moments where something moved, the detector's box
    overlaps the moving blob in under `min_agreement` of them). And one that says the model does not
    know the animal: of `min_looks` or more frames the detector looked at, it recognised the animal
    itself, with a score of at least `recognised_score`, in under `min_recognised` of them (the
    motion model may have kept it "found"). On drawn rats the detectors score over 0.5 in at least
    86% of the frames they look at; on real rodents they find boxes scored 0.25 to 0.5, which hold
    the animal less often (benchmarks/README.md).

    And one that says the motion model cannot vouch for the box: in `max_unsteady` or more of its
    samples the scene itself changed (motion.scene_change: the camera moved, a light changed part
    of the picture or flickered, or the file joins short clips of other scenes), so its background,
    and with it the veto, the fallback and the agreement count, do not hold. The lights switched
    or faded over the whole picture are not one: the motion model gives each stretch between such
    cuts its own background.

    Two things the feature distance does not see are flagged from the frames' shape: frames too
    small to show a rat (a side under `min_frame_side` pixels: the crop the I3D sees is blown up from
    a few pixels, and the detector still "finds" something), and portrait frames (taller than wide):
    the models learn from landscape recordings, and a rat turned on its side (a camera on its side,
    or a stray rotation tag on an upright recording, which players and ratscore alike obey) is
    scored as no seizure at all while its features look ordinary.

    And one from what the model claims, given the scoring (`timeline.Scoring`): in a recording of
    `min_claims_s` or more, a highest stage of `min_peak_stage` or more that no episode climbs to
    (`unclimbed_peak`, with `max_stage_step`). The feature distance does not tell a real animal
    from a drawn one (docs/RESULTS.md), so on real footage whose animal is boxed well this is the
    check that can see the behaviour model inventing a seizure. Shorter recordings are not judged:
    the training clips (10 s) hold action units in any order, and a short recording has no room
    for a build-up.

    And one from the model's own making (`synthetic_scores_on_rig`): where its detector was adapted
    to a lab's recordings (`train detector --videos`) while its scoring learned from synthetic videos
    only, any stage of `min_peak_stage` or more, climbing or not, at any length. Such a model is run
    on real footage, where it boxes the animal well and reads its ordinary movements (rearing in a
    cylinder, walking) as climbing seizures: a mouse doing nothing came out at stage 6, familiar,
    on a recording nobody tuned on (benchmarks/README.md).
    """

    stats: Optional[dict] = None  # the model's feature_stats.npz, None when it has none
    distance_limit: Optional[float] = None  # distances above this are unfamiliar
    min_rat_found: float = 0.8  # share of frames in which the rat must be found
    min_frame_side: int = 64  # pixels: frames with a shorter side are too small to score
    min_still_s: float = 60.0  # a recording at least this long whose box never moves is flagged
    still_share: float = 0.02  # "never moves": 95% of sightings within this share of the diagonal of the median centre
    jump_sides: float = 1.5  # a jump: the centre moves more than this many times the box's longer side
    min_jumps: int = 5  # flagged from this many jumps ...
    jump_rate: float = 0.05  # ... when they are also at least this share of the consecutive sightings
    min_motion_moments: int = 20  # the motion model's verdict counts from this many moments with motion
    min_agreement: float = 0.5  # the detector's box must overlap the moving blob in this share of them
    min_looks: int = 20  # the detector's own hit rate counts from this many frames it looked at
    min_recognised: float = 0.5  # ... and it must see the animal itself in this share of them ...
    recognised_score: float = RECOGNISED_SCORE  # ... with at least this score (the detector's own threshold, 0.25, finds any blob)
    max_unsteady: float = 0.1  # the motion model's samples whose scene changed: from this share the recording is flagged
    min_claims_s: float = 30.0  # recordings at least this long have their highest stage checked ...
    min_peak_stage: int = 3  # ... when it is this or more: some episode must climb to it
    max_stage_step: int = 3  # climbing: an action unit at most this many stages below the peak
    synthetic_scores_on_rig: bool = False  # the detector was adapted to a lab's real videos, the scoring learned from drawn rats

    DISTANCE_MARGIN = 1.25  # how far past the farthest training video still counts as familiar

    @classmethod
    def from_model(cls, model) -> "TrustCheck":
        """The check of a `model.Model`, with its training feature statistics when it has them."""
        on_rig = model.detector_adapted_to is not None and model.scores_learned_from == "synthetic"
        if not model.feature_stats:
            return cls(synthetic_scores_on_rig=on_rig)
        stats = read_feature_stats(model.file(model.feature_stats))
        limit = float(np.max(stats["video_distances"])) * cls.DISTANCE_MARGIN if len(stats["video_distances"]) else None
        return cls(stats, limit, synthetic_scores_on_rig=on_rig)

    def assess(self, result, scoring=None) -> dict:
        """The trust block of summary.json for a features.FeatureResult, and its scoring when given."""
        reasons = []
        found = result.rat_found_fraction
        if found is not None and found < self.min_rat_found:
            reasons.append(f"the rat was found in only {100 * found:.0f}% of frames")
        width, height = getattr(result, "width", 0), getattr(result, "height", 0)
        if width and height and min(width, height) < self.min_frame_side:
            reasons.append(f"its frames are only {width}x{height} pixels, too small for the model to see the rat "
                           f"(it needs at least {self.min_frame_side} on each side)")
        if width and height and height > width:
            rotation = getattr(result, "rotation", 0)
            tag = f" after the file's {rotation}-degree rotation tag" if rotation in (90, 270) else ""
            check = ("; if the rat lies on its side in the report's stills, the tag is wrong" if tag
                     else "; a camera on its side shows the rat sideways")
            reasons.append(f"its frames are portrait ({width}x{height}{tag}): the model knows landscape "
                           f"recordings{check}")
        track_figures = {}
        track = getattr(result, "track", None)
        if track is not None and found is not None:  # with a detector: look inside the box
            track_figures = track_stats(track, self.jump_sides, self.recognised_score)
            reasons += self._track_reasons(track_figures, getattr(result, "duration_s", 0.0))
            reasons += self._recognition_reasons(track_figures, getattr(result, "detector_looks", 0))
        motion = getattr(result, "motion", None)
        if motion and motion.get("unsteady_share", 0.0) >= self.max_unsteady:
            reasons.append(f"the picture changed beyond the animal in {100 * motion['unsteady_share']:.0f}% of the "
                           f"motion model's samples (the camera moved, a light changed part of the picture or "
                           f"flickered, or short clips of other scenes are joined): the background it checks the "
                           f"detector's box with does not hold")
        if motion:
            moments, agreeing = motion.get("moments_with_motion", 0), motion.get("agreeing", 0)
            if moments >= self.min_motion_moments and agreeing < self.min_agreement * moments:
                reasons.append(f"the detector's box overlapped the moving animal in only {agreeing} of {moments} "
                               f"moments with motion ({100 * agreeing / moments:.0f}%): it may be following "
                               f"something else")
        if scoring is not None:
            reasons += self._claim_reasons(scoring)
        distance = None
        if self.stats is not None:
            distance = feature_distance(result.features, self.stats)
            if self.distance_limit is not None and distance > self.distance_limit:
                reasons.append(f"its features lie far from the training set's (distance {distance:.2f}, "
                               f"training videos up to {self.distance_limit / self.DISTANCE_MARGIN:.2f})")
        else:
            reasons.append("the model has no training feature statistics to compare with")
        return {"rat_found_fraction": None if found is None else round(float(found), 4),
                "gaps_s": [[round(a, 2), round(b, 2)] for a, b in result.gaps],
                "feature_distance": None if distance is None else round(distance, 4),
                "feature_distance_limit": None if self.distance_limit is None else round(self.distance_limit, 4),
                "track": track_figures or None, "motion": motion or None,
                "familiar": not reasons, "reasons": reasons}

    def _claim_reasons(self, scoring) -> list[str]:
        top = int(scoring.summary.get("max_stage") or 0)
        if self.synthetic_scores_on_rig and top >= self.min_peak_stage:
            # a model whose detector learned the lab's rig is run on real footage; the scoring, which
            # never saw a real animal, reads ordinary movement as seizures there, climbing or not
            return [f"its highest stage, {top}, comes from action units learned from synthetic videos only (its "
                    f"detector was adapted to your rig, its scoring was not): on real animals it reads ordinary "
                    f"movement as seizures; train it on your scored videos (ratscore train)"]
        if scoring.duration_s < self.min_claims_s:
            return []
        peaks = unclimbed_peak(scoring, self.min_peak_stage, self.max_stage_step)
        if not peaks:
            return []
        stage = peaks[0]["stage"]
        where = "; ".join(f"{' and '.join(p['aus'])} at {p['onset_s']:.1f}-{p['offset_s']:.1f} s" for p in peaks[:3])
        more = f" and {len(peaks) - 3} more" if len(peaks) > 3 else ""
        lowest = max(1, stage - self.max_stage_step)
        lower = f"{lowest}-{stage - 1}" if lowest < stage - 1 else f"{stage - 1}"
        return [f"its highest stage, {stage}, has nothing leading up to it ({where}{more}: no action unit of "
                f"stage {lower} in the same episode, where a seizure climbs the scale): the model may be "
                f"reading ordinary movement as a seizure"]

    def _recognition_reasons(self, figures: dict, looks: int) -> list[str]:
        # The motion model's stand-in keeps the rat "found" where the detector does not know the
        # animal (a dark mouse, a rig unlike any it learned): the I3D then sees an animal unlike its
        # training ones, which the feature distance has not been seen to catch.
        confident = figures.get("confident", 0)
        if looks < self.min_looks or confident >= self.min_recognised * looks:
            return []
        return [f"the detector recognised the animal itself (score {self.recognised_score:g} or more) in only "
                f"{confident} of the {looks} frames it looked at ({100 * confident / looks:.0f}%): the model may not "
                f"know animals or rigs like this one (ratscore train detector --videos adapts it to a rig)"]

    def _track_reasons(self, figures: dict, duration_s: float) -> list[str]:
        reasons = []
        sightings = figures.get("sightings", 0)
        if duration_s >= self.min_still_s and sightings >= 10 and figures["spread"] <= self.still_share:
            reasons.append(f"the animal's box did not move in the whole {duration_s / 60:.1f} minutes (its centre "
                           f"stayed within {100 * figures['spread']:.1f}% of the frame): the detector may be "
                           f"boxing something still, or the animal never moved")
        jumps, pairs = figures.get("jumps", 0), figures.get("pairs", 0)
        if jumps >= self.min_jumps and jumps >= self.jump_rate * pairs:
            reasons.append(f"the animal's box jumped {jumps} times between consecutive sightings "
                           f"({100 * jumps / max(1, pairs):.0f}% of them): the detector may be switching between "
                           f"objects")
        return reasons
