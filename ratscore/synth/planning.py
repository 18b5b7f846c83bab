"""What each synthetic video shows, without a pixel: the synth config and the video plans.

A video is first *planned* here (its segments of action units and its subset; cheap, no pixels),
then *rendered* frame by frame (rendering.py) and streamed into an H.264 mp4 (writing.py). Both
steps are seeded per video, so the same seed and options give the same annotations and the same
frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..annotations import Segment, VideoAnnotation
from ..config import read_yaml_mapping
from ..errors import InputError
from ..labels import NORMAL_ID, NUM_CLASSES

SEIZURE_IDS = tuple(range(1, NUM_CLASSES))
# The order in which seizures escalate (Racine); a clip's second seizure class is a neighbour.
ESCALATION = (1, 2, 3, 4, 5, 6, 8, 7, 9, 10, 11, 12, 13)  # wet dog shakes: unstaged, kept near the onset
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
GRID_S = 0.1  # segment boundaries lie on this grid (3 frames at 30 fps)
# The named drawings (synth/styles.py): "classic" is the RatSeizure-like rig every stage of the
# recipe trains on, frozen; "varied" what labs' footage varies, with things that are not animals,
# for the detector; "unseen" a drawing nothing may train on, to measure what a model learned.
STYLES = ("classic", "varied", "unseen")
TRAINING_STYLES = ("classic", "varied")


@dataclass(frozen=True)
class SynthConfig:
    fps: float = 30.0  # frames per second of every video
    clip_seconds: float = 10.0  # length of a clip
    resolutions: tuple = ((320, 240), (640, 480))  # (width, height) choices, one drawn per video
    grayscale_fraction: float = 0.25  # share of videos rendered monochrome, like infrared night recordings
    view: str = "oblique"  # "oblique" (the RatSeizure rig) or "topdown" (footage unlike the training data)
    animal: str = "rat"  # "rat" (light fur, head cap, cable) or "mouse" (small, dark, no cable: unlike the training data)
    camera_elevation_deg: tuple = (35.0, 65.0)  # camera elevation above the floor plane (90 = straight down)
    chamber_fill: tuple = (0.7, 0.95)  # share of the frame width the chamber spans
    rat_length: tuple = (0.6, 0.9)  # body length (nose to tail base) in chamber radii
    brightness: tuple = (0.65, 1.25)  # overall light level
    noise_sigma: tuple = (0.0, 6.0)  # sensor noise, grey levels
    blur_sigma: tuple = (0.0, 1.2)  # defocus, pixels
    reflection_strength: tuple = (0.25, 0.6)  # opacity of the wall reflection when the rat is at the wall
    flicker: tuple = (0.0, 0.03)  # slow light-level flicker amplitude (independent of behaviour)
    transition_seconds: tuple = (0.25, 0.6)  # cross-fade between behaviours, centred on the labelled boundary
    segment_count_weights: tuple = (0.54, 0.33, 0.106, 0.012, 0.012)  # P(1..5 segments per clip), as in RatSeizure
    min_segment_seconds: float = 1.0  # shortest segment of a clip
    train_fraction: float = 0.65  # share of clips in the "training" subset (the rest "testing")
    long_episode_minutes: tuple = (3.0, 6.0)  # a long recording has one seizure episode per this many minutes
    long_max_stage_weights: tuple = (0.15, 0.2, 0.2, 0.15, 0.15, 0.15)  # P(an episode stops at stage 1..5, goes to 6-7)
    crf: int = 23  # x264 constant rate factor (quality; lower is better)
    preset: str = "veryfast"  # x264 preset
    boxes: bool = True  # write the per-frame YOLO boxes (labels/, boxes/)
    style: str = "classic"  # the drawing: "classic", "varied" or "unseen" (STYLES; docs/TRAINING.md)

    def __post_init__(self):
        _validate(self)


_RANGE_LIMITS = {
    "camera_elevation_deg": (10.0, 90.0), "chamber_fill": (0.3, 1.0), "rat_length": (0.2, 1.0),
    "brightness": (0.2, 2.0), "noise_sigma": (0.0, 40.0), "blur_sigma": (0.0, 5.0),
    "reflection_strength": (0.0, 1.0), "flicker": (0.0, 0.3), "transition_seconds": (0.05, 1.0),
    "long_episode_minutes": (0.5, 600.0),
}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _validate(c: SynthConfig) -> None:
    for name, (lo, hi) in _RANGE_LIMITS.items():
        r = getattr(c, name)
        if not (isinstance(r, tuple) and len(r) == 2 and all(_is_number(x) for x in r) and lo <= r[0] <= r[1] <= hi):
            raise InputError(f"synth setting {name} must be [low, high] with {lo} <= low <= high <= {hi}, got {_show(r)}")
    if not (isinstance(c.resolutions, tuple) and c.resolutions and all(
            isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and 64 <= r[0] <= 4096 and 64 <= r[1] <= 4096 and r[0] % 2 == 0 and r[1] % 2 == 0 for r in c.resolutions)):
        raise InputError(f"synth setting resolutions must be a list of [width, height], even integers 64..4096, got {_show(c.resolutions)}")
    if not (_is_number(c.fps) and 1 <= c.fps <= 240):
        raise InputError(f"synth setting fps must be a number in 1..240, got {_show(c.fps)}")
    if not (_is_number(c.min_segment_seconds) and 0.2 <= c.min_segment_seconds):
        raise InputError(f"synth setting min_segment_seconds must be at least 0.2, got {_show(c.min_segment_seconds)}")
    if not (_is_number(c.clip_seconds) and c.min_segment_seconds <= c.clip_seconds <= 600):
        raise InputError(f"synth setting clip_seconds must lie in [min_segment_seconds, 600], got {_show(c.clip_seconds)}")
    for name in ("grayscale_fraction", "train_fraction"):
        x = getattr(c, name)
        if not (_is_number(x) and 0.0 <= x <= 1.0):
            raise InputError(f"synth setting {name} must be a number in [0, 1], got {_show(x)}")
    for name, n in (("segment_count_weights", 5), ("long_max_stage_weights", 6)):
        ws = getattr(c, name)
        if not (isinstance(ws, tuple) and len(ws) == n and all(_is_number(w) and w >= 0 for w in ws) and sum(ws) > 0):
            raise InputError(f"synth setting {name} must be {n} non-negative weights, not all zero, got {_show(ws)}")
    if c.view not in ("oblique", "topdown"):
        raise InputError(f"synth setting view must be 'oblique' or 'topdown', got {c.view!r}")
    if c.animal not in ("rat", "mouse"):
        raise InputError(f"synth setting animal must be 'rat' or 'mouse', got {c.animal!r}")
    if not (isinstance(c.crf, int) and not isinstance(c.crf, bool) and 0 <= c.crf <= 51):
        raise InputError(f"synth setting crf must be an integer 0..51, got {_show(c.crf)}")
    if c.preset not in X264_PRESETS:
        raise InputError(f"synth setting preset must be one of {', '.join(X264_PRESETS)}, got {c.preset!r}")
    if c.style not in STYLES:
        raise InputError(f"synth setting style must be one of {', '.join(STYLES)}, got {_show(c.style)}")
    if not isinstance(c.boxes, bool):
        raise InputError(f"synth setting boxes must be true or false, got {_show(c.boxes)}")


def _show(x) -> str:
    return json.dumps(x) if not isinstance(x, tuple) else json.dumps(_untuple(x))


def _untuple(x):
    return [_untuple(i) for i in x] if isinstance(x, (tuple, list)) else x


def _tuple(x):
    return tuple(_tuple(i) for i in x) if isinstance(x, list) else x


def make_config(overrides: Mapping, source: str = "synth config") -> SynthConfig:
    """The default config with some settings replaced (YAML lists become tuples)."""
    known = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(str(k) for k in overrides if k not in known)
    if unknown:
        raise InputError(f"{source}: unknown synth setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        return dataclasses.replace(SynthConfig(), **{k: _tuple(v) for k, v in overrides.items()})
    except InputError as e:
        raise InputError(f"{source}: {e}") from None


def load_synth_config(path: str | Path | None) -> SynthConfig:
    """SynthConfig from a YAML mapping of setting: value (None: the defaults)."""
    if path is None:
        return SynthConfig()
    return make_config(read_yaml_mapping(path, "synth config"), str(path))


# ---------------------------------------------------------------------------------------------
# Plans: what happens in each video, without a pixel.

@dataclass(frozen=True)
class VideoPlan:
    video_id: str
    subset: str
    duration: float
    segments: tuple  # (Segment, ...) covering [0, duration] without gaps
    render_seed: int  # seeds the look and the motion of this video
    kind: str = "clip"  # "clip", "long" or "sheet"

    def annotation(self, fps: float) -> VideoAnnotation:
        return VideoAnnotation(self.video_id, self.subset, self.duration, list(self.segments), fps)


_SEED_KINDS = {"clip": 0, "long": 1, "sheet": 2}  # VideoPlan.kind -> its part of the render seed


def _render_seed(seed: int, kind: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, _SEED_KINDS[kind], index]).generate_state(1)[0])


def _grid(x: float) -> float:
    return round(round(x / GRID_S) * GRID_S, 6)


def _clip_labels(rng, primary: int, k: int) -> list[int]:
    if k == 1:
        return [primary]
    labels, seizure_turn, first_seizure = [], rng.random() < 0.5, True
    for _ in range(k):
        if seizure_turn:
            if first_seizure or rng.random() < 0.6:
                labels.append(primary)
            else:
                i = ESCALATION.index(primary) + (1 if rng.random() < 0.5 else -1)
                labels.append(ESCALATION[min(max(i, 0), len(ESCALATION) - 1)])
            first_seizure = False
        else:
            labels.append(NORMAL_ID)
        seizure_turn = not seizure_turn
    return labels


def _split_durations(rng, total: float, k: int, minimum: float) -> list[float]:
    units, min_units = int(round(total / GRID_S)), int(math.ceil(minimum / GRID_S - 1e-9))
    k = max(1, min(k, units // min_units))
    extra = rng.multinomial(units - k * min_units, rng.dirichlet(np.full(k, 1.5)))
    return [(min_units + int(e)) * GRID_S for e in extra]


def _segments(labels: list[int], durations: list[float], total: float) -> tuple:
    out, t = [], 0.0
    for i, (au, d) in enumerate(zip(labels, durations)):
        end = total if i == len(labels) - 1 else _grid(t + d)
        out.append(Segment(_grid(t), end, au))
        t = end
    return tuple(out)


def plan_clips(clips: int, seed: int, config: SynthConfig = SynthConfig()) -> list[VideoPlan]:
    """N clips: 1-5 segments each, about a third 'others', every class in both subsets once N >= 26."""
    rng = np.random.default_rng([seed, 0])
    primaries: list[int] = []
    while len(primaries) < clips:  # balanced: each round uses every seizure class once
        primaries += [int(c) for c in rng.permutation(SEIZURE_IDS)]
    primaries = primaries[:clips]
    subsets = ["training"] * clips
    for c in SEIZURE_IDS:  # stratified split: a class seen twice is in both subsets
        idx = [i for i, p in enumerate(primaries) if p == c]
        rng.shuffle(idx)
        n_test = int(round(len(idx) * (1.0 - config.train_fraction)))
        if len(idx) >= 2 and 0.0 < config.train_fraction < 1.0:
            n_test = min(max(n_test, 1), len(idx) - 1)
        for j, i in enumerate(idx):
            subsets[i] = "testing" if j < n_test else "training"
    # classes seen once cannot be in both subsets; they bring the testing share up to its target
    singles = [i for i, p in enumerate(primaries) if primaries.count(p) == 1]
    rng.shuffle(singles)
    target = int(round(clips * (1.0 - config.train_fraction)))
    for i in singles:
        if subsets.count("testing") >= target:
            break
        subsets[i] = "testing"
    weights = np.array(config.segment_count_weights, float)
    duration = _grid(config.clip_seconds)
    max_k = max(1, int(duration // config.min_segment_seconds))

    def one(i: int, at_least: int = 1) -> VideoPlan:
        clip_rng = np.random.default_rng([seed, 0, i, at_least])
        k = max(at_least, min(int(clip_rng.choice(5, p=weights / weights.sum())) + 1, max_k))
        durations = _split_durations(clip_rng, duration, k, config.min_segment_seconds)
        labels = _clip_labels(clip_rng, primaries[i], len(durations))
        return VideoPlan(f"clip_{seed}_{i:04d}", subsets[i], duration, _segments(labels, durations, duration),
                         _render_seed(seed, "clip", i))

    plans = [one(i) for i in range(clips)]
    if max_k >= 2:  # normal behaviour must be in both subsets too
        for subset in ("training", "testing"):
            members = [i for i in range(clips) if subsets[i] == subset]
            if members and not any(s.au_id == NORMAL_ID for i in members for s in plans[i].segments):
                plans[members[0]] = one(members[0], at_least=2)
    return plans


def plan_long(minutes: float, seed: int, index: int = 0, config: SynthConfig = SynthConfig()) -> VideoPlan:
    """A long recording: normal behaviour with seizure episodes that escalate stage by stage."""
    rng = np.random.default_rng([seed, 1, index])
    duration = _grid(minutes * 60.0)
    if duration < 2 * GRID_S:
        raise InputError(f"--long-minutes {minutes} is too short for a recording (at least {2 * GRID_S / 60:.4f} min)")
    episodes = [_episode(rng, config) for _ in range(max(1, int(round(minutes / rng.uniform(*config.long_episode_minutes)))))]
    # spread the episodes out, normal behaviour before, between and after them
    free = duration - sum(sum(d for _, d in e) for e in episodes)
    if free < 0.2 * duration:  # too short for all of them: keep what fits
        while len(episodes) > 1 and free < 0.2 * duration:
            free += sum(d for _, d in episodes.pop())
        if free < 0.2 * duration:
            episodes[0] = _fit_episode(episodes[0], 0.8 * duration)
            free = duration - sum(d for _, d in episodes[0])
    gaps = rng.dirichlet(np.full(len(episodes) + 1, 3.0)) * free
    labels, durations = [], []
    steps = []
    for gap, episode in zip(gaps, episodes):
        steps += [(NORMAL_ID, gap)] + episode
    steps.append((NORMAL_ID, max(gaps[-1], GRID_S)))
    for au, d in steps:
        if labels and labels[-1] == au:  # post-ictal normal behaviour runs into the next gap
            durations[-1] += d
        elif d > 0:
            labels.append(au)
            durations.append(d)
    segments = _segments(labels, durations, duration)
    segments = tuple(s for s in segments if s.end_s > s.start_s)
    return VideoPlan(f"long_{seed}_{index}", "testing", duration, segments, _render_seed(seed, "long", index), "long")


def _episode(rng, config: SynthConfig) -> list[tuple[int, float]]:
    """One seizure, staring or mouth clonus first, then up the scale to its highest stage."""
    weights = np.array(config.long_max_stage_weights, float)
    top = int(rng.choice(6, p=weights / weights.sum())) + 1  # 1..5, 6 = running/jumping/tonic
    u = rng.uniform
    steps: list[tuple[int, float]] = [(int(rng.choice([1, 2])), u(3, 12))]
    if rng.random() < 0.3:
        steps.append((3 - steps[0][0], u(2, 6)))  # staring and mouth clonus both
    if top >= 2:
        steps.append((4, u(4, 15)))
        if rng.random() < 0.4:
            steps.append((5, u(2, 6)))
    if top >= 3:
        steps.append((6, u(4, 12)))
        if rng.random() < 0.5:
            steps.append((8, u(3, 8)))
    if top >= 4:
        steps += [(7, u(3, 10)), (9, u(3, 8))]
    if top >= 5:
        steps.append((10, u(2, 6)))
    if top >= 6:
        for au in rng.permutation([11, 12])[: rng.integers(1, 3)]:
            steps.append((int(au), u(3, 10) if au == 11 else u(2, 6)))
        if rng.random() < 0.6:
            steps.append((13, u(5, 15)))
    steps.append((NORMAL_ID, u(10, 40)))  # post-ictal: quiet normal behaviour
    if rng.random() < 0.35:
        steps.append((3, u(1, 4)))  # wet dog shakes often follow a seizure
    return [(au, _grid(max(config.min_segment_seconds, d))) for au, d in steps]


def _fit_episode(episode, seconds: float):
    scale = seconds / sum(d for _, d in episode)
    return [(au, max(GRID_S, _grid(d * scale))) for au, d in episode]


def plan_videos(clips: int, seed: int, config: SynthConfig = SynthConfig(), long_minutes: float = 0.0,
                long_count: int = 1) -> list[VideoPlan]:
    plans = plan_clips(clips, seed, config)
    if long_minutes > 0:
        plans += [plan_long(long_minutes, seed, i, config) for i in range(long_count)]
    return plans
