"""Synthetic RatSeizure-style recordings with exact ground truth, written to a folder: `ratscore synth`.

Each video is planned (planning.py), rendered frame by frame (rendering.py) and streamed here
into an H.264 mp4, with its labels. The drawing modules (and cv2) are imported only when a
frame is drawn, so importing the package stays light.

Output folder layout (DIR):

    DIR/<video_id>.mp4               clip_<seed>_<i:04d> (10 s) and long_<seed>_<i> recordings, 30 fps
    DIR/annotations.json             RatSeizure format, fps 30.0, every frame covered by a segment
    DIR/labels/<video_id>/<frame:06d>.txt   YOLO boxes of frame <frame> (0-based decode order):
                                     "0 cx cy w h" the rat, "1 cx cy w h" its reflection (when visible);
                                     a box bounds the body (head to rump, paws, implant), not the
                                     tail (drawn 1-2 px wide, often unseen) or the cable; a frame
                                     where no animal shows (styles other than classic) has an
                                     empty file, and no rows in boxes/<video_id>.csv
    DIR/boxes/<video_id>.csv         the same boxes in one table: frame,cls,cx,cy,w,h (normalised)
    DIR/synth_manifest.json          per video: file, width, height, fps, frames, grayscale, subset
                                     (other styles: what the style drew, and empty_frames)
    DIR/contact_sheet.png            one labelled frame per action unit
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..annotations import Segment, VideoAnnotation, read_annotations, write_annotations
from ..errors import InputError, RunError
from ..files import atomic_write, atomic_write_text
from ..labels import LABELS, NUM_CLASSES
from ..video import write_h264
from .planning import SynthConfig, VideoPlan, _is_number, _render_seed, _untuple, make_config, plan_videos


def planned_motions(synth_dir: str | Path) -> dict[str, Callable[[float], str]]:
    """For each video of a `ratscore synth` folder: time in seconds -> the motion drawn then.

    The name is the motion's class: an action unit's (WetDogShakes, HeadNodding, ...) or, under
    normal behaviour, the everyday motion (Walk, Explore, Groom, Sit, ExploreRear, TurnInPlace).
    Rebuilt from the folder's manifest and annotations without rendering a frame, to see what a
    model's false alarms fall on.
    """
    from .frames import scene_and_timeline

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
        timeline = scene_and_timeline(plan, config)[2]
        motions[plan.video_id] = lambda t, timeline=timeline: type(timeline.motion_at(t)).__name__
    return motions


def _yolo_line(cls: int, box, w: int, h: int) -> str:
    x0, y0, x1, y1 = box
    return f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"


def write_video(plan: VideoPlan, out_dir: Path, config: SynthConfig = SynthConfig()) -> dict:
    """Render one video into out_dir/<id>.mp4 (+ its boxes); returns its manifest entry."""
    from .frames import render_clip_frames

    out_dir = Path(out_dir)
    frames = render_clip_frames(plan, config)
    first = next(frames)
    h, w = first.image.shape[:2]
    info = {"file": f"{plan.video_id}.mp4", "width": w, "height": h, "fps": config.fps, "frames": 0,
            "grayscale": bool((first.image[..., 0] == first.image[..., 1]).all() and (first.image[..., 1] == first.image[..., 2]).all()),
            "subset": plan.subset, "kind": plan.kind}
    if config.style != "classic":  # what the style drew in this video (a classic manifest stays as it was)
        from .frames import scene_and_timeline

        info["style"] = {**getattr(scene_and_timeline(plan, config)[1].look, "summary", {}), "name": config.style}
        info["empty_frames"] = 0
    label_tmp = csv = None
    if config.boxes:
        (out_dir / "labels").mkdir(parents=True, exist_ok=True)
        label_tmp = Path(tempfile.mkdtemp(prefix=f".{plan.video_id}.", dir=out_dir / "labels"))
        csv = io.StringIO()
        csv.write("frame,cls,cx,cy,w,h\n")

    def images():  # each frame's picture, its labels written on the way
        for n, item in enumerate(_chain(first, frames)):
            info["frames"] = n + 1
            if item.rat_box is None:  # no animal in view (styles other than classic): an empty label file
                info["empty_frames"] = info.get("empty_frames", 0) + 1
            if label_tmp is not None:
                lines = [] if item.rat_box is None else [_yolo_line(0, item.rat_box, w, h)]
                if item.reflection_box is not None:
                    lines.append(_yolo_line(1, item.reflection_box, w, h))
                (label_tmp / f"{n:06d}.txt").write_text("".join(line + "\n" for line in lines))
                for line in lines:
                    csv.write(f"{n},{line.replace(' ', ',')}\n")
            yield item.image

    try:
        # x264's macroblock tree gave different bytes run to run within one process (float
        # state); without it the same frames give the same file
        write_h264(out_dir / info["file"], images(), config.fps,
                   {"crf": config.crf, "preset": config.preset, "x264-params": "mbtree=0"})
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


def _render_all(plans: list[VideoPlan], out_dir: Path, config: SynthConfig, pool):
    """(plan, manifest entry) of each video as it is written, in plan order: by `pool`'s worker
    processes, or here without one."""
    if pool is None:
        for plan in plans:
            yield plan, write_video(plan, out_dir, config)
        return
    yield from zip(plans, pool.map(write_video, plans, [out_dir] * len(plans), [config] * len(plans)))


def _chain(first, rest):
    yield first
    yield from rest


CELL_W, CELL_H = 320, 240  # a contact sheet's cell; 24 pixels above each for its caption


def render_contact_sheet(path: Path, seed: int, config: SynthConfig = SynthConfig()) -> Path:
    """contact_sheet_png written to `path`."""
    return _write_png(path, contact_sheet_png(seed, config))


def contact_sheet_png(seed: int, config: SynthConfig = SynthConfig()) -> bytes:
    """One frame per action unit, each from its own scene, boxes drawn, labelled; a 4 x 4 grid, as
    PNG. Other styles than classic: 16 scenes, the frame with the animal's box (or none) drawn."""
    import cv2

    from .frames import render_clip_frames

    if config.style != "classic":
        return _styled_contact_sheet(seed, config)
    sheet = _blank_sheet()
    for au in range(NUM_CLASSES):
        seconds = 1.6
        plan = VideoPlan(f"sheet_{au}", "sheet", seconds, (Segment(0.0, seconds, au),), _render_seed(seed, "sheet", au), "sheet")
        frames = list(render_clip_frames(plan, config))
        # jumping: the frame with the rat highest in the air; everything else: the last one
        pick = min(frames, key=lambda f: f.rat_box[3]) if LABELS[au] == "jumping" else frames[-1]
        _sheet_cell(sheet, au, pick, f"{au} {LABELS[au]}", rat_colour=(0, 200, 0))
    cv2.putText(sheet, "green: rat box (class 0)", (3 * CELL_W + 8, 3 * (CELL_H + 24) + 60), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 150, 0), 1, cv2.LINE_AA)
    cv2.putText(sheet, "red: reflection (class 1)", (3 * CELL_W + 8, 3 * (CELL_H + 24) + 90), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 30, 30), 1, cv2.LINE_AA)
    return _sheet_png(sheet)


def _styled_contact_sheet(seed: int, config: SynthConfig) -> bytes:
    """16 scenes of a style (a frame from the middle of 1.6 s each), the box on the animal only."""
    from .frames import render_clip_frames

    sheet = _blank_sheet()
    for i in range(16):
        au, seconds = i % NUM_CLASSES, 1.6
        plan = VideoPlan(f"sheet_{i}", "sheet", seconds, (Segment(0.0, seconds, au),), _render_seed(seed, "sheet", i), "sheet")
        pick = list(render_clip_frames(plan, config))[24]
        text = f"{au} {LABELS[au]}" if pick.rat_box is not None else "no animal: no box"
        _sheet_cell(sheet, i, pick, text, rat_colour=(0, 230, 0))
    return _sheet_png(sheet)


def _blank_sheet() -> np.ndarray:
    return np.full((4 * (CELL_H + 24), 4 * CELL_W, 3), 255, np.uint8)


def _sheet_cell(sheet: np.ndarray, index: int, frame, caption: str, rat_colour) -> None:
    """A frame (rendering.SynthFrame) into cell `index` of a 4 x 4 sheet, its boxes drawn, captioned."""
    import cv2

    img = frame.image.copy()
    sx, sy = CELL_W / img.shape[1], CELL_H / img.shape[0]
    img = cv2.resize(img, (CELL_W, CELL_H), interpolation=cv2.INTER_AREA)
    for box, colour in ((frame.rat_box, rat_colour), (frame.reflection_box, (230, 40, 40))):
        if box is not None:
            cv2.rectangle(img, (int(box[0] * sx), int(box[1] * sy)), (int(box[2] * sx), int(box[3] * sy)), colour, 1)
    r, c = divmod(index, 4)
    y, x = r * (CELL_H + 24), c * CELL_W
    sheet[y + 24:y + 24 + CELL_H, x:x + CELL_W] = img
    cv2.putText(sheet, caption, (x + 4, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def _sheet_png(sheet: np.ndarray) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RunError("could not encode the contact sheet")
    return png.tobytes()


def _write_png(path: Path, png: bytes) -> Path:
    return atomic_write(Path(path), lambda f: f.write(png))


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
    keep one core busy, so the jobs share the work out over as many cores. Every video is seeded on
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
    settings = _untuple(dataclasses.asdict(config))
    if config.style == "classic":  # a classic folder's manifest stays as it was before styles had names
        del settings["style"]
    manifest = {"seed": seed, "config": settings, "videos": {}}
    pool = None
    if jobs > 1:
        from ..runtime import worker_processes

        pool = worker_processes(min(jobs, len(plans) + 1))
    try:
        # with workers, one of them draws the contact sheet while the others render the videos
        # (14 scenes of 1.6 s: as long as several clips); it is written last, as without them
        sheet = pool.submit(contact_sheet_png, seed, config) if pool is not None else None
        for plan, info in _render_all(plans, out_dir, config, pool):
            manifest["videos"][plan.video_id] = info
            if progress is not None:
                progress(plan, info)
        annotations = {p.video_id: p.annotation(config.fps) for p in plans}
        write_annotations(out_dir / "annotations.json", annotations.values())
        atomic_write_text(out_dir / "synth_manifest.json", json.dumps(manifest, indent=1) + "\n")
        if sheet is None:
            render_contact_sheet(out_dir / "contact_sheet.png", seed, config)
        else:
            _write_png(out_dir / "contact_sheet.png", sheet.result())
    except BaseException:  # a failure (a full disk, say) or an interrupt: no video is rendered in vain
        if pool is not None:
            from ..runtime import stop_workers

            stop_workers(pool)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown()
    return annotations
