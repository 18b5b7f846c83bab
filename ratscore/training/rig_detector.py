"""The ROI detector fine-tuned on a lab's own recordings, with boxes from the motion model.

`ratscore train detector --videos DIR -o MODEL [--model BASE]`: nobody draws a box. The motion
model (motion.py) reads each recording at low resolution (every frame where its keyframes are too
few for the labels wanted) and gives the moving blob's box at the samples where one blob stands
out alone; those frames, decoded at full size, become YOLO images
labelled "rat" (class 0). The detector trains on them (with `ratscore synth` frames pooled in when
asked, so it keeps the other rigs), starting from BASE's detector.pt, or where it has none from its
detector.onnx built again as a checkpoint (detector.checkpoint_from_onnx), and MODEL is
BASE's whole chain (I3D, localizer) with the new detector: `analyze --model MODEL` takes it as it is.

Before training, MODEL/detector_labels.png shows the boxes it trains on, for a person to check.

Resumable: the work lives in MODEL/.detector_training/. A video whose frames are written (a record
in videos/<stem>.json, written last) is not labelled again while the file is the same; a training
interrupted resumes from ultralytics' last.pt; a finished one is not redone. A change of the
settings or of the videos starts the training over (the labels stay).

What the motion labels cannot do: an animal that never moves gives none; with something else moving
(a hand, a cable, a flickering light) that frame gives none, or the wrong box; a box is the blob's
at low resolution, so it is loose by a few pixels and takes in a shadow that moves with the animal;
it leaves out the blob's thin parts (a tail, a cable; also a limb stretched far from the body).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import InputError
from ..files import atomic_write, atomic_write_text
from .detector import (CLASSES, DETECTOR_ONNX_NAME, DETECTOR_PT_NAME, PICO, _keeps_torch_threads,
                       _offline_ultralytics, build_dataset, check_training_options, checkpoint_from_onnx, detector_spec,
                       export_detector, finished_run, fit_detector, map50, run_result)

WORK_NAME = ".detector_training"  # inside MODEL: labels, frames and the ultralytics run
CONTACT_SHEET_NAME = "detector_labels.png"  # inside MODEL: the boxes trained on
DEFAULT_IMGSZ = 192  # when the base model has no detector to take the size from
RAT = CLASSES.index("rat")


@dataclass(frozen=True)
class RigOptions:
    epochs: int = 15  # YOLO epochs over the frames
    imgsz: Optional[int] = None  # YOLO input side, pixels (None: the base detector's, else DEFAULT_IMGSZ)
    max_frames_per_video: int = 120  # at most this many labelled frames of one video (spread over it)
    min_frames: int = 30  # fewer labelled frames than this in all: refused (too little to train on)
    val_share: float = 0.2  # share of the videos kept for validation; with one video, its last share of time
    synth_frame_step: int = 30  # with synth folders pooled in: every n-th frame of each synthetic clip
    batch: int = 16
    lr0: float = 0.002
    seed: int = 0


@dataclass
class RigTraining:
    model_dir: Path
    contact_sheet: Path
    videos: dict = field(default_factory=dict)  # stem -> labelled frames (0: none)
    n_train_frames: int = 0
    n_val_frames: int = 0
    started_from: str = ""  # words: the checkpoint fine-tuned, or "scratch"
    metrics: dict = field(default_factory=dict)


@dataclass
class _VideoLabels:
    stem: str
    frames: int  # frames written
    why: Optional[str]  # why none, in words


def _check_output(output: Path, base_dir: Path) -> None:
    """-o: not the base model nor the bundled one; new, empty (hidden entries aside), a model folder
    (replaced), or what an earlier run of this command left (its work folder is there)."""
    from ..model import BUNDLED_MODEL_DIR, check_model_output

    for other, what in ((BUNDLED_MODEL_DIR, "the bundled model"), (base_dir, "the base model (--model)")):
        if output.resolve() == Path(other).resolve():
            raise InputError(f"{output}: is {what}; give -o a new folder (the base model is copied into it)")
    check_model_output(output, also_resumable=WORK_NAME)


def _why_none(model) -> str:
    """Why a recording's motion model gave no labels, in words."""
    o = model.options
    if model.n_samples < o.min_samples:
        return f"too few samples of the motion model ({model.n_samples}, needs {o.min_samples}): too short?"
    if not model.informative:
        return "nothing animal-sized moved (the animal never moved, or the picture is too dark?)"
    if not np.isfinite(model.boxes).all(axis=1).any():
        return "no moving blob stood apart from the background"
    return "no sample where one moving blob stood out alone (something else moving: a hand, a cable, the light?)"


def _frames_at(video: Path, times: list[float], mode: str) -> Iterator[tuple[float, np.ndarray]]:
    """(t, upright RGB frame shown at t) for sorted `times`, as the motion model's samples saw them:
    keyframe samples by seeking to each (crop_at), frame samples in one decoding pass."""
    from ..video import _source_frames, crop_at

    if mode == "keyframes":
        for t in times:
            yield t, crop_at(video, t)
        return
    eps = 1e-4
    pending = list(times)
    previous = None
    for t_frame, image in _source_frames(video, []):
        while pending and t_frame > pending[0] + eps and previous is not None:
            yield pending.pop(0), previous
        if not pending:
            return
        previous = image
    for t in pending:
        if previous is not None:
            yield t, previous


def _yolo_line(box, width: int, height: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    return (f"{RAT} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")


def _label_video(video: Path, stem: str, work: Path, imgsz: int, max_frames: int, fingerprint: str) -> _VideoLabels:
    """The motion model's boxes of one video as YOLO images and labels under work/frames; the
    record (work/videos/<stem>.json) last, so a video is whole or labelled again."""
    import cv2

    from ..motion import MotionOptions, build_motion_model

    images, labels = work / "frames" / "images" / stem, work / "frames" / "labels" / stem
    for folder in (images, labels):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    # analyze's first pass samples keyframes, at most one a second: where they are too few to give
    # max_frames labels (a short recording, keyframes seconds apart), every frame is read instead
    motion = build_motion_model(video, MotionOptions(min_keyframe_samples=max(max_frames,
                                                                             MotionOptions().min_keyframe_samples)))
    found = motion.labels()
    if len(found) > max_frames:  # spread over the recording
        found = [found[int(i)] for i in np.linspace(0, len(found) - 1, max_frames).round()]
    by_time = {round(t, 6): box for t, box in found}
    written = []
    for t, image in _frames_at(video, sorted(by_time), motion.mode):
        box = by_time[round(t, 6)]
        h, w = image.shape[:2]
        scale = imgsz / max(h, w)
        small = cv2.resize(image, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
        name = f"{stem}_{int(round(t * 1000)):09d}ms"
        cv2.imwrite(str(images / f"{name}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        atomic_write_text(labels / f"{name}.txt", _yolo_line(box, w, h) + "\n")
        written.append({"t": t, "box": [float(v) for v in box[:4]], "image": name})
    why = None if written else _why_none(motion)
    record = {"video": video.name, "fingerprint": fingerprint, "imgsz": imgsz, "max_frames": max_frames,
              "mode": motion.mode, "frames": written, "why": why}
    atomic_write_text(work / "videos" / f"{stem}.json", json.dumps(record, indent=1) + "\n")
    return _VideoLabels(stem, len(written), why)


def _read_record(work: Path, stem: str, fingerprint: str, imgsz: int, max_frames: int) -> Optional[dict]:
    """A video's record from an earlier run, when it holds for this file and these settings."""
    path = work / "videos" / f"{stem}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = (record.get("fingerprint"), record.get("imgsz"), record.get("max_frames")) == (fingerprint, imgsz, max_frames)
    images = work / "frames" / "images" / stem
    whole = all((images / f"{f['image']}.jpg").is_file() for f in record.get("frames", []))
    return record if same and whole else None


def contact_sheet(work: Path, stems: list[str], path: Path, max_tiles: int = 48, tile: int = 160,
                  columns: int = 8) -> int:
    """A PNG of labelled frames (drawn as trained on: resized, with their box), taken in turn from
    each video and spread over it, captioned with the video and the time. Returns the tiles drawn."""
    import cv2

    per_video = []
    for stem in stems:
        record = json.loads((work / "videos" / f"{stem}.json").read_text())
        per_video.append([(stem, f) for f in record["frames"]])
    picks: list = []
    share = max(1, -(-max_tiles // max(1, len([v for v in per_video if v]))))
    for frames in per_video:
        if frames:
            picks += [frames[int(i)] for i in np.unique(np.linspace(0, len(frames) - 1, min(share, len(frames))).round())]
    picks = picks[:max_tiles]
    tiles = []
    for stem, frame in picks:
        image = cv2.imread(str(work / "frames" / "images" / stem / f"{frame['image']}.jpg"))
        if image is None:
            continue
        h, w = image.shape[:2]
        label = (work / "frames" / "labels" / stem / f"{frame['image']}.txt").read_text().split()
        cx, cy, bw, bh = (float(v) for v in label[1:5])
        scale = tile / max(h, w)
        small = cv2.resize(image, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))))
        sh, sw = small.shape[:2]
        canvas = np.full((sh + 14, tile, 3), 255, np.uint8)
        canvas[:sh, :sw] = small
        p0 = (int((cx - bw / 2) * sw), int((cy - bh / 2) * sh))
        p1 = (int((cx + bw / 2) * sw), int((cy + bh / 2) * sh))
        cv2.rectangle(canvas, p0, p1, (0, 220, 0), 1)
        cv2.putText(canvas, f"{stem[:16]} {frame['t']:.1f}s", (2, sh + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32,
                    (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(canvas)
    if not tiles:
        tiles = [np.full((tile, tile, 3), 255, np.uint8)]
    rows, height = -(-len(tiles) // columns), max(t.shape[0] for t in tiles) + 2
    sheet = np.full((rows * height, min(columns, len(tiles)) * (tile + 2), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * height:r * height + t.shape[0], c * (tile + 2):c * (tile + 2) + t.shape[1]] = t
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise InputError(f"{path}: could not encode the contact sheet")
    atomic_write(path, lambda f: f.write(png.tobytes()))
    return len(picks)


def _split(stems: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, val) videos: with 2 or more, a share of whole videos validates (at least one); with
    one, it is both (`_split_in_time` then splits its frames)."""
    if len(stems) < 2:
        return stems, stems
    n_val = min(len(stems) - 1, max(1, int(round(share * len(stems)))))
    order = np.random.default_rng(seed).permutation(len(stems))
    val = {stems[i] for i in order[:n_val]}
    return [s for s in stems if s not in val], [s for s in stems if s in val]


def _split_in_time(work: Path, stem: str, share: float) -> tuple[str, str, int, int]:
    """One video's labelled frames split in time: the last `share` of them validates, the rest
    trains (neighbouring frames are near copies, so validating on frames picked at random among the
    training ones would measure little more than the training). Writes YOLO image lists; returns
    (train list, val list, n_train, n_val)."""
    frames = sorted(json.loads((work / "videos" / f"{stem}.json").read_text())["frames"], key=lambda f: f["t"])
    n_val = min(len(frames) - 1, max(1, int(round(share * len(frames)))))
    images = [str((work / "frames" / "images" / stem / f"{f['image']}.jpg").resolve()) for f in frames]
    lists = []
    for name, part in (("train", images[:-n_val]), ("val", images[-n_val:])):
        path = work / f"{name}_{stem}.txt"
        atomic_write_text(path, "".join(f"{image}\n" for image in part))
        lists.append(str(path))
    return lists[0], lists[1], len(frames) - n_val, n_val


def _calibration_frames(train_dirs: list[str], limit: int = 64) -> list[np.ndarray]:
    """Up to `limit` training images (RGB), evenly spread: what a detector rebuilt from ONNX
    measures its batch norms' inputs on (checkpoint_from_onnx). `train_dirs`: YOLO image folders
    or image list files."""
    import cv2

    images = []
    for entry in map(Path, train_dirs):
        images += sorted(entry.glob("*.jpg")) if entry.is_dir() else [Path(line) for line in entry.read_text().splitlines()]
    picked = images[:: max(1, len(images) // limit)][:limit]
    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in picked]


def _count(work: Path, stems: list[str]) -> int:
    return sum(len(list((work / "frames" / "images" / s).glob("*.jpg"))) for s in stems)


def _synth_dataset(synth_dirs, work: Path, imgsz: int, frame_step: int, seed: int, say) -> tuple[list[str], list[str]]:
    """Synthetic frames pooled in (build_dataset's layout, built once per settings): their
    (train, val) image folders."""
    folders = [Path(synth_dirs)] if isinstance(synth_dirs, (str, Path)) else [Path(d) for d in synth_dirs]
    key = {"synth": [str(f.resolve()) for f in folders], "imgsz": imgsz, "frame_step": frame_step, "seed": seed}
    dataset = work / "synth"
    done = dataset / "built.json"
    try:
        same = json.loads(done.read_text()) == key
    except (OSError, ValueError):
        same = False
    if not same:
        if dataset.exists():
            shutil.rmtree(dataset)
        _, n_train, n_val = build_dataset(folders, dataset, imgsz, frame_step, 0.15, seed)
        atomic_write_text(done, json.dumps(key) + "\n")
        say(f"[synth] {n_train} training and {n_val} validation frames from {', '.join(map(str, folders))}")
    else:
        say("[synth] frames made before: reused")
    return [str(dataset / "images" / "train")], [str(dataset / "images" / "val")]


@_keeps_torch_threads
def train_rig_detector(videos, output, *, model=None, synth=None, options: RigOptions = RigOptions(),
                       device: str = "auto", log: Optional[Callable[[str], None]] = None) -> RigTraining:
    """Fine-tune the detector on the recordings in `videos` (a folder) with motion-model boxes and
    write the model folder `output`: `model`'s (default the bundled) whole chain with the new
    detector. `synth`: `ratscore synth` folders pooled in. `log` gets a line per video and epoch."""
    from ..features import scan_folder
    from ..model import BUNDLED_MODEL_DIR, building_folder, load_model, manifest_files, replace_model, update_model
    from ..pipeline import content_sha256, video_fingerprint

    say = log or (lambda line: None)
    output = Path(output)
    base_dir = Path(model) if model is not None else BUNDLED_MODEL_DIR
    # ---- every check a user can fail, before anything heavy runs
    base = load_model(base_dir)
    if base.i3d is None or base.localizer is None:
        missing = "an I3D" if base.i3d is None else "a localizer"
        raise InputError(f"{base_dir}: the base model has no {missing}; give --model a whole model (detector, I3D "
                         "and localizer) to copy")
    _check_output(output, base_dir)
    imgsz = options.imgsz or (base.detector.imgsz if base.detector is not None else DEFAULT_IMGSZ)
    check_training_options(PICO, options.epochs, imgsz)
    scan = scan_folder(Path(videos))
    scan.check_names(Path(videos))
    if not scan.videos:
        raise InputError(f"{videos}: no video files to label")
    if synth is not None:
        from .detector import _synth_dirs

        _synth_dirs(synth)
    start = None
    if base.detector is not None and base.detector.weights:
        start = base_dir / base.detector.weights
        if not start.is_file():
            say(f"[detector] {base_dir} names {base.detector.weights}, which is missing: training from scratch")
            start = None
    # without a checkpoint the base's ONNX detector is built again as one (checkpoint_from_onnx)
    start_onnx = base_dir / base.detector.onnx if start is None and base.detector is not None else None
    work = (output / WORK_NAME).resolve()  # absolute: ultralytics reads data.yaml's folders from elsewhere
    work.mkdir(parents=True, exist_ok=True)
    _offline_ultralytics(work / "ultralytics_settings")  # before anything imports ultralytics
    for path, why in scan.unusable:
        say(f"[label] {path}: skipped ({why})")

    # ---- labels: the motion model's boxes, one video at a time (a video labelled before is skipped)
    results: list[_VideoLabels] = []
    fingerprints = {}
    for rel in scan.videos:
        video, stem = Path(videos) / rel, rel.stem
        fingerprints[stem] = fingerprint = video_fingerprint(video)
        record = _read_record(work, stem, fingerprint, imgsz, options.max_frames_per_video)
        if record is not None:
            labelled = _VideoLabels(stem, len(record["frames"]), record.get("why"))
            say(f"[label] {rel}: labelled before ({labelled.frames} frames), skipped")
        else:
            labelled = _label_video(video, stem, work, imgsz, options.max_frames_per_video, fingerprint)
            say(f"[label] {rel}: {labelled.frames} frames with a clear moving animal"
                + (f" (none: {labelled.why})" if labelled.why else ""))
        results.append(labelled)
    total = sum(r.frames for r in results)
    if total < options.min_frames:
        none = "; ".join(f"{r.stem}: {r.why}" for r in results if not r.frames)
        raise InputError(f"{videos}: the motion model gave {total} labelled frames in all, too few to train on "
                         f"(needs {options.min_frames})" + (f"; none from {none}" if none else ""))
    stems = [r.stem for r in results if r.frames]
    sheet = output / CONTACT_SHEET_NAME
    tiles = contact_sheet(work, stems, sheet)
    say(f"[label] {total} frames from {len(stems)} video(s); check their boxes: {sheet} ({tiles} shown)")

    # ---- the dataset: each video wholly in train or val
    train_stems, val_stems = _split(stems, options.val_share, options.seed)
    if len(stems) == 1:  # one video: its early frames train, its last ones validate
        train_list, val_list, n_train, n_val = _split_in_time(work, stems[0], options.val_share)
        train_dirs, val_dirs = [train_list], [val_list]
    else:
        train_dirs = [str(work / "frames" / "images" / s) for s in train_stems]
        val_dirs = [str(work / "frames" / "images" / s) for s in val_stems]
        n_train, n_val = _count(work, train_stems), _count(work, val_stems)
    if synth is not None:
        synth_train, synth_val = _synth_dataset(synth, work, imgsz, options.synth_frame_step, options.seed, say)
        train_dirs, val_dirs = train_dirs + synth_train, val_dirs + synth_val
        n_train += sum(len(list(Path(d).glob("*.jpg"))) for d in synth_train)
        n_val += sum(len(list(Path(d).glob("*.jpg"))) for d in synth_val)
    data = work / "data.yaml"
    atomic_write_text(data, json.dumps({"path": str(work.resolve()), "train": train_dirs, "val": val_dirs,
                                        "names": dict(enumerate(CLASSES))}) + "\n")

    # ---- training: resumed when interrupted, skipped when finished with the same settings
    if start_onnx is not None:
        start = checkpoint_from_onnx(start_onnx, _calibration_frames(train_dirs), work / "base_detector.pt", work)
        if start is None:
            say(f"[detector] {start_onnx} is not a YOLOv8 graph trained here: its weights cannot be fine-tuned")
    # where the weights came from: "detector.pt", "detector.onnx" (rebuilt), or None (from scratch)
    origin = None if start is None else (start_onnx.name if start_onnx is not None else DETECTOR_PT_NAME)
    if origin is None:
        start_words, start_key = f"from scratch (the base model has no {DETECTOR_PT_NAME})", "scratch"
    elif start_onnx is not None:
        start_words = f"fine-tuning {start} (the weights of {start_onnx}: the base model has no {DETECTOR_PT_NAME})"
        start_key = "onnx " + content_sha256(start_onnx)  # the rebuilt checkpoint follows from it and the frames
    else:
        start_words, start_key = f"fine-tuning {start}", content_sha256(start)
    key = {"videos": {s: fingerprints[s] for s in stems}, "train": train_stems, "val": val_stems,
           "split": "in time" if len(stems) == 1 else "by video", "val_share": options.val_share,
           "synth": None if synth is None else json.loads((work / "synth" / "built.json").read_text()),
           "epochs": options.epochs, "imgsz": imgsz, "batch": options.batch, "lr0": options.lr0, "seed": options.seed,
           "start": start_key}
    key_path, run = work / "run_key.json", work / "run"
    last, done = run / "weights" / "last.pt", work / "run_done.json"
    try:
        same = json.loads(key_path.read_text()) == key
    except (OSError, ValueError):
        same = False

    def epoch_line(epoch: int, epochs: int, metrics: dict) -> None:
        m50 = map50(metrics)
        say(f"[detector] epoch {epoch}/{epochs}" + (f": validation mAP50 {m50:.3f}" if m50 is not None else ""))

    onnx = work / DETECTOR_ONNX_NAME
    if same and done.is_file() and onnx.is_file():
        say(f"[detector] trained before with these settings ({options.epochs} epochs): not redone")
        best, metrics = run_result(run)
    else:
        if not same:
            for stale in (run, done):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
            atomic_write_text(key_path, json.dumps(key) + "\n")
        common = dict(epochs=options.epochs, imgsz=imgsz, seed=options.seed, batch=options.batch, lr0=options.lr0,
                      device=device, on_epoch=epoch_line)
        if same and last.is_file() and finished_run(last):
            say("[detector] the training had finished before: not redone")
            best, metrics = run_result(run)
        elif same and last.is_file():
            say(f"[detector] resuming the interrupted training ({run / 'weights' / 'last.pt'}), {start_words}")
            best, metrics = fit_detector(data, work, resume_from=last, **common)
        else:
            say(f"[detector] {n_train} training / {n_val} validation frames, {options.epochs} epoch(s) at "
                f"{imgsz} px, {start_words}")
            best, metrics = fit_detector(data, work, init_from=start, **common)
        export_detector(best, imgsz, onnx)
        atomic_write_text(done, json.dumps(metrics) + "\n")

    # ---- the model folder: the base's files and the new detector, written whole, then moved into place
    manifest = base.manifest
    files = {name: base_dir / name for name in manifest_files(manifest)
             if name not in manifest_files({"front_end": {"detector": manifest["front_end"].get("detector")}})}
    files[DETECTOR_ONNX_NAME], files[DETECTOR_PT_NAME] = Path(onnx), Path(best)
    d = base.detector
    spec = detector_spec(imgsz, **({"every_k": d.every_k, "conf": d.conf, "margin": d.margin} if d else {}))
    words = (f"{base.name}'s I3D and localizer ({manifest.get('trained_on') or 'not stated'}); its detector "
             f"{'trained from scratch' if origin is None else 'fine-tuned from its ' + origin} on {total} frames of "
             f"{len(stems)} of the lab's own videos ({Path(videos).name}/) boxed by the motion model"
             + (" with synthetic frames pooled in" if synth is not None else ""))
    skip = ("format_version", "classes", "front_end", "name", "benchmark", "recipe", "trained_on")
    fields = {k: v for k, v in manifest.items() if k not in skip}
    fields.update({"name": output.name, "trained_on": words, "scores_learned_from": base.scores_learned_from,
                   "detector_adapted_to": f"{len(stems)} of the lab's own videos ({Path(videos).name}/)",
                   "benchmark": {"detector_fine_tune": {"videos": len(stems), "train_frames": n_train,
                                                        "val_frames": n_val, "epochs": options.epochs,
                                                        "imgsz": imgsz, **metrics}}})
    building = building_folder(output)
    update_model(building, fields, files, front_end={**manifest["front_end"], "detector": spec})
    replace_model(output, building)
    return RigTraining(output, sheet, {r.stem: r.frames for r in results}, n_train, n_val,
                       str(start) if start is not None else "scratch", metrics)
