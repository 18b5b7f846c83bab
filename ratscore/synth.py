"""Synthetic RatSeizure-style recordings with exact ground truth: `ratscore synth`.

A video is first *planned* (its segments of action units and its subset; cheap, no pixels),
then *rendered* frame by frame (synth_rat.py) and streamed into an H.264 mp4. Both steps are
seeded per video, so the same seed and options give the same annotations and the same frames.

Output folder layout (DIR):

    DIR/<video_id>.mp4               clip_<seed>_<i:04d> (10 s) and long_<seed>_<i> recordings, 30 fps
    DIR/annotations.json             RatSeizure format, fps 30.0, every frame covered by a segment
    DIR/labels/<video_id>/<frame:06d>.txt   YOLO boxes of frame <frame> (0-based decode order):
                                     "0 cx cy w h" the rat, "1 cx cy w h" its reflection (when visible);
                                     a box bounds the body (head to rump, paws, implant), not the
                                     tail (drawn 1-2 px wide, often unseen) or the cable
    DIR/boxes/<video_id>.csv         the same boxes in one table: frame,cls,cx,cy,w,h (normalised)
    DIR/synth_manifest.json          per video: file, width, height, fps, frames, grayscale, subset
    DIR/contact_sheet.png            one labelled frame per action unit
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from .annotations import Segment, VideoAnnotation, read_annotations, write_annotations
from .config import read_yaml_mapping
from .errors import InputError, RunError
from .labels import LABELS, NORMAL_ID, NUM_CLASSES
from .writers import atomic_write, atomic_write_text

SEIZURE_IDS = tuple(range(1, NUM_CLASSES))
# The order in which seizures escalate (Racine); a clip's second seizure class is a neighbour.
ESCALATION = (1, 2, 3, 4, 5, 6, 8, 7, 9, 10, 11, 12, 13)  # wet dog shakes: unstaged, kept near the onset
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
GRID_S = 0.1  # segment boundaries lie on this grid (3 frames at 30 fps)


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


# ---------------------------------------------------------------------------------------------
# Rendering and writing.

def render_clip_frames(plan: VideoPlan, config: SynthConfig = SynthConfig(), with_masks: bool = False) -> Iterator:
    """Yield SynthFrame(image (H, W, 3) uint8 RGB, rat_box, reflection_box, label_id, rat_mask) per frame.

    Boxes are (x0, y0, x1, y1) in pixels; reflection_box is None while no reflection shows.
    """
    from .synth_rat import render_frames

    rng, scene, timeline, spans = _scene_and_timeline(plan, config)
    n_frames = int(round(plan.duration * config.fps))
    return render_frames(scene, timeline, spans, config.fps, n_frames, rng, with_masks)


def _scene_and_timeline(plan: VideoPlan, config: SynthConfig):
    """The generator, scene, pose timeline and (start, end, au) spans a plan renders with."""
    from .synth_rat import build_timeline, make_scene

    rng = np.random.default_rng(plan.render_seed)
    scene = make_scene(rng, config)
    spans = [(s.start_s, s.end_s, s.au_id) for s in plan.segments]
    return rng, scene, build_timeline(spans, rng, config.transition_seconds), spans


def planned_motions(synth_dir: str | Path) -> dict[str, Callable[[float], str]]:
    """For each video of a `ratscore synth` folder: time in seconds -> the motion drawn then.

    The name is the motion's class: an action unit's (WetDogShakes, HeadNodding, ...) or, under
    normal behaviour, the everyday motion (Walk, Explore, Groom, Sit, ExploreRear, TurnInPlace).
    Rebuilt from the folder's manifest and annotations without rendering a frame, to see what a
    model's false alarms fall on.
    """
    synth_dir = Path(synth_dir)
    annotations = read_annotations(synth_dir / "annotations.json")
    try:
        manifest = json.loads((synth_dir / "synth_manifest.json").read_text())
        config = make_config(manifest["config"], f"{synth_dir}/synth_manifest.json")
        seed = int(manifest["seed"])
        plans = []
        for video_id, entry in manifest["videos"].items():
            a = annotations[video_id]
            index = int(video_id.rsplit("_", 1)[1])  # the index plan_clips / plan_long put in the id
            plans.append(VideoPlan(video_id, a.subset, a.duration, tuple(a.segments),
                                   _render_seed(seed, entry["kind"], index), entry["kind"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{synth_dir}: not a `ratscore synth` folder with a readable synth_manifest.json ({e})") from None
    motions = {}
    for plan in plans:
        timeline = _scene_and_timeline(plan, config)[2]
        motions[plan.video_id] = lambda t, timeline=timeline: type(timeline.motion_at(t)).__name__
    return motions


def _yolo_line(cls: int, box, w: int, h: int) -> str:
    x0, y0, x1, y1 = box
    return f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"


def write_video(plan: VideoPlan, out_dir: Path, config: SynthConfig = SynthConfig()) -> dict:
    """Render one video into out_dir/<id>.mp4 (+ its boxes); returns its manifest entry."""
    import av
    import cv2

    out_dir = Path(out_dir)
    frames = render_clip_frames(plan, config)
    first = next(frames)
    h, w = first.image.shape[:2]
    info = {"file": f"{plan.video_id}.mp4", "width": w, "height": h, "fps": config.fps, "frames": 0,
            "grayscale": bool((first.image[..., 0] == first.image[..., 1]).all() and (first.image[..., 1] == first.image[..., 2]).all()),
            "subset": plan.subset, "kind": plan.kind}
    label_tmp = csv = None
    if config.boxes:
        (out_dir / "labels").mkdir(parents=True, exist_ok=True)
        label_tmp = Path(tempfile.mkdtemp(prefix=f".{plan.video_id}.", dir=out_dir / "labels"))
        csv = io.StringIO()
        csv.write("frame,cls,cx,cy,w,h\n")

    def encode(f):
        with av.open(f, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(config.fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(config.crf), "preset": config.preset,
                              # x264's macroblock tree gave different bytes run to run within one
                              # process (float state); without it the same frames give the same file
                              "x264-params": "mbtree=0"}
            for n, item in enumerate(_chain(first, frames)):
                # our own RGB -> YUV 4:2:0 (BT.601, limited range, as swscale's default): swscale's
                # result varies with the input buffer's memory alignment, which breaks determinism
                yuv = cv2.cvtColor(item.image, cv2.COLOR_RGB2YUV_I420)  # (H * 3 / 2, W)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
                info["frames"] = n + 1
                if label_tmp is not None:
                    lines = [_yolo_line(0, item.rat_box, w, h)]
                    if item.reflection_box is not None:
                        lines.append(_yolo_line(1, item.reflection_box, w, h))
                    (label_tmp / f"{n:06d}.txt").write_text("\n".join(lines) + "\n")
                    for line in lines:
                        csv.write(f"{n},{line.replace(' ', ',')}\n")
            container.mux(stream.encode(None))

    try:
        atomic_write(out_dir / info["file"], encode)
        if label_tmp is not None:
            final = out_dir / "labels" / plan.video_id
            if final.exists():
                shutil.rmtree(final)
            os.replace(label_tmp, final)
            atomic_write_text(out_dir / "boxes" / f"{plan.video_id}.csv", csv.getvalue())
    finally:
        if label_tmp is not None and label_tmp.exists():
            shutil.rmtree(label_tmp, ignore_errors=True)
    return info


def _render_all(plans: list[VideoPlan], out_dir: Path, config: SynthConfig, jobs: int):
    """(plan, manifest entry) of each video as it is written, in plan order."""
    if jobs == 1 or len(plans) < 2:
        for plan in plans:
            yield plan, write_video(plan, out_dir, config)
        return
    from .runtime import worker_processes

    pool = worker_processes(min(jobs, len(plans)))
    try:
        yield from zip(plans, pool.map(write_video, plans, [out_dir] * len(plans), [config] * len(plans)))
    finally:  # after a failure (a full disk, say) the videos not yet started are not rendered in vain
        pool.shutdown(cancel_futures=True)


def _chain(first, rest):
    yield first
    yield from rest


def render_contact_sheet(path: Path, seed: int, config: SynthConfig = SynthConfig()) -> Path:
    """One frame per action unit, each from its own scene, boxes drawn, labelled; a 4 x 4 grid."""
    import cv2

    cell_w, cell_h = 320, 240
    sheet = np.full((4 * (cell_h + 24), 4 * cell_w, 3), 255, np.uint8)
    for au in range(NUM_CLASSES):
        seconds = 1.6
        plan = VideoPlan(f"sheet_{au}", "sheet", seconds, (Segment(0.0, seconds, au),), _render_seed(seed, "sheet", au), "sheet")
        frames = list(render_clip_frames(plan, config))
        # jumping: the frame with the rat highest in the air; everything else: the last one
        pick = min(frames, key=lambda f: f.rat_box[3]) if LABELS[au] == "jumping" else frames[-1]
        img = pick.image.copy()
        sx, sy = cell_w / img.shape[1], cell_h / img.shape[0]
        img = cv2.resize(img, (cell_w, cell_h), interpolation=cv2.INTER_AREA)
        for box, colour in ((pick.rat_box, (0, 200, 0)), (pick.reflection_box, (230, 40, 40))):
            if box is not None:
                cv2.rectangle(img, (int(box[0] * sx), int(box[1] * sy)), (int(box[2] * sx), int(box[3] * sy)), colour, 1)
        r, c = divmod(au, 4)
        y, x = r * (cell_h + 24), c * cell_w
        sheet[y + 24:y + 24 + cell_h, x:x + cell_w] = img
        cv2.putText(sheet, f"{au} {LABELS[au]}", (x + 4, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(sheet, "green: rat box (class 0)", (3 * cell_w + 8, 3 * (cell_h + 24) + 60), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 150, 0), 1, cv2.LINE_AA)
    cv2.putText(sheet, "red: reflection (class 1)", (3 * cell_w + 8, 3 * (cell_h + 24) + 90), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 30, 30), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RunError(f"{path}: could not encode the contact sheet")
    return atomic_write(Path(path), lambda f: f.write(png.tobytes()))


def _check_output(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe.")
        probe.close()
    except OSError:
        raise InputError(f"{out_dir}: output folder is not writable") from None


def synthesize(out_dir: str | Path, clips: Optional[int] = None, seed: int = 0, config: Optional[SynthConfig] = None,
               long_minutes: float = 0.0, long_count: int = 1,
               progress: Optional[Callable[[VideoPlan, dict], None]] = None, jobs: int = 1) -> dict[str, VideoAnnotation]:
    """Render `clips` 10 s clips (default 10, or 0 with long_minutes) and `long_count` recordings of
    `long_minutes` into out_dir, with annotations.json, boxes, manifest and contact sheet.

    `jobs` > 1 renders that many videos at once in worker processes: drawing and encoding a video
    keep one core busy, so on 2 cores two jobs take about half the time. Every video is seeded on
    its own, so the files are the same whatever `jobs` is."""
    config = config or SynthConfig()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed!r}")
    if not _is_number(long_minutes) or long_minutes < 0:
        raise InputError(f"--long-minutes must be a number of minutes >= 0, got {long_minutes}")
    if long_minutes > 24 * 60:
        raise InputError(f"--long-minutes {long_minutes} is more than a day; make several shorter recordings")
    if isinstance(long_count, bool) or not isinstance(long_count, int) or long_count < 1:
        raise InputError(f"--long-count must be at least 1, got {long_count}")
    if clips is None:
        clips = 0 if long_minutes > 0 else 10
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 0:
        raise InputError(f"--clips must be a non-negative integer, got {clips!r}")
    if clips == 0 and long_minutes == 0:
        raise InputError("nothing to make: --clips is 0 and no --long-minutes given")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a positive integer, got {jobs!r}")
    plans = plan_videos(clips, seed, config, long_minutes, long_count)
    out_dir = Path(out_dir)
    _check_output(out_dir)
    manifest = {"seed": seed, "config": _untuple(dataclasses.asdict(config)), "videos": {}}
    for plan, info in _render_all(plans, out_dir, config, jobs):
        manifest["videos"][plan.video_id] = info
        if progress is not None:
            progress(plan, info)
    annotations = {p.video_id: p.annotation(config.fps) for p in plans}
    write_annotations(out_dir / "annotations.json", annotations.values())
    atomic_write_text(out_dir / "synth_manifest.json", json.dumps(manifest, indent=1) + "\n")
    render_contact_sheet(out_dir / "contact_sheet.png", seed, config)
    return annotations
