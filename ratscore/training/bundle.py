"""The bundled model's recipe: synthetic data -> ROI detector -> small I3D -> features -> RaSeformer.

`ratscore train --bundle WORK_DIR -o MODEL_DIR` runs every stage in order. Each stage leaves a
marker in WORK_DIR when it is done and the I3D classifier checkpoints every epoch, so a run that
is interrupted picks up where it stopped: run the same command again. Each marker, checkpoint and
feature file records the recipe fields it was made from (`stage_inputs`): a stage whose fields
changed since is done again, and so is every stage after it that depends on it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..labels import NUM_CLASSES


@dataclass(frozen=True)
class BundleRecipe:
    train_clips: int = 100  # synthetic 10 s clips for training (the 65:35 split inside is all used)
    train_seed: int = 1000  # seed of the training clips
    train_long_recordings: int = 12  # long synthetic recordings (mostly normal behaviour) for the localizer only
    train_long_minutes: float = 2.0  # length of each (one seizure episode in each)
    train_long_seed: int = 3000  # their seed (analyze's episode benchmark uses 4242 and up)
    localizer_clips: int = 200  # more 10 s clips for the localizer only (not the detector or the I3D)
    localizer_clips_seed: int = 2000  # their seed
    validation_clips: int = 40  # unseen clips that choose the event threshold and check the detector
    validation_seed: int = 9000  # a seed the training never sees
    test_clips: int = 120  # unseen clips for the benchmark: enough segments of each class for its own AP
    test_seed: int = 9100  # another seed the training never sees
    front_end: str = ""  # a model folder whose detector and I3D to use instead of training them ("": train)
    detector_epochs: int = 24  # YOLO epochs over the training frames
    detector_imgsz: int = 320  # YOLO input side, pixels: 320x240 video keeps its own resolution
    detector_frame_step: int = 30  # train the detector on every n-th frame of each clip
    detector_localizer_clips: bool = True  # the detector also trains on the localizer clips: 3x the scenes, same frames
    detector_every_k: int = 10  # at analysis, the detector runs on every k-th frame (boxes interpolated between)
    i3d_width: float = 0.125  # channel multiplier of the small I3D (128-d features)
    i3d_input_size: int = 80  # crop side given to the I3D, pixels
    i3d_subtract_temporal_mean: bool = True  # the I3D sees motion only (see I3DConfig)
    i3d_still_share: float = 0.5  # ... but for this share of the still picture: postures that do not move (see I3DConfig)
    crop_margin: float = 0.25  # margin around the rat's box, as a share of its longer side
    classifier_epochs: int = 12  # epochs of 14-class clip classification
    classifier_stride: int = 12  # frames between training windows
    classifier_batch: int = 16
    classifier_lr: float = 2e-3
    localizer_epochs: int = 41  # RaSeformer epochs (warm-up included): as many steps as 80 were without localizer_clips
    localizer_dim: int = 128  # RaSeformer embedding, neck and head width (the release: 512)
    localizer_lr: float = 5e-4  # AdamW peak learning rate (the release: 1e-4, for 1024-d I3D features)
    seed: int = 0  # torch seed for every training stage
    ablation: bool = True  # also train keep ratio 1.0 (plain local attention) on the same features

    @classmethod
    def from_yaml(cls, path: Optional[Path]) -> "BundleRecipe":
        if path is None:
            return cls()
        from ..config import read_yaml_mapping

        doc = read_yaml_mapping(path, "recipe")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InputError(f"{path}: unknown recipe key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        share = doc.get("i3d_still_share", cls.i3d_still_share)
        if not (isinstance(share, (int, float)) and 0 <= share < 1):
            # 1 keeps the whole mean (the temporal-mean step then does nothing); above 1 adds it back
            raise InputError(f"{path}: i3d_still_share must be a number from 0 up to (not including) 1, not {share!r}")
        return cls(**doc)


# The recipe fields each stage's output depends on, its own and those of the stages it builds on.
_RENDER_FIELDS = {
    "synth_train": ("train_clips", "train_seed"),
    "synth_validation": ("validation_clips", "validation_seed"),
    "synth_test": ("test_clips", "test_seed"),
    "synth_long": ("train_long_recordings", "train_long_minutes", "train_long_seed"),
    "synth_localizer": ("localizer_clips", "localizer_clips_seed"),
}
_DETECTOR_FIELDS = ("detector_epochs", "detector_imgsz", "detector_frame_step", "detector_localizer_clips", "seed")
_CLASSIFIER_FIELDS = ("i3d_width", "i3d_input_size", "i3d_subtract_temporal_mean", "i3d_still_share", "crop_margin", "classifier_epochs",
                      "classifier_stride", "classifier_batch", "classifier_lr", "seed")
_STAGE_FIELDS = {
    **_RENDER_FIELDS,
    "detector": _RENDER_FIELDS["synth_train"] + _RENDER_FIELDS["synth_localizer"] + _DETECTOR_FIELDS,
    "i3d_classifier": _RENDER_FIELDS["synth_train"] + _CLASSIFIER_FIELDS,
}
_STAGE_FIELDS["front_end"] = (_STAGE_FIELDS["detector"] + _STAGE_FIELDS["i3d_classifier"]
                               + ("detector_every_k", "front_end"))
# the detector measured on the validation clips: other clips measure it again, without retraining it
_STAGE_FIELDS["detector_heldout"] = _STAGE_FIELDS["front_end"] + _RENDER_FIELDS["synth_validation"]
_STAGE_FIELDS["features"] = _STAGE_FIELDS["front_end"] + sum(_RENDER_FIELDS.values(), ())
_STAGE_FIELDS["localizer_topk"] = _STAGE_FIELDS["localizer_plain"] = (
    _STAGE_FIELDS["features"] + ("localizer_epochs", "localizer_dim", "localizer_lr"))

# the stages that read the localizer clips themselves (the others only through the detector)
_READ_LOCALIZER_CLIPS = {"synth_localizer", "features", "localizer_topk", "localizer_plain"}


def stage_inputs(recipe: BundleRecipe, stage: str) -> dict:
    """The recipe fields a stage's output was made from, as stored in its marker. A front end taken
    from a model folder is also recorded by its files' digest: the same path with other weights
    in it is another front end."""
    fields = set(_STAGE_FIELDS[stage])
    if not recipe.detector_localizer_clips and stage not in _READ_LOCALIZER_CLIPS:
        # the detector then never saw those clips: a change to them redoes only what reads them
        fields -= set(_RENDER_FIELDS["synth_localizer"])
    inputs = {name: getattr(recipe, name) for name in sorted(fields)}
    if recipe.front_end and "front_end" in inputs:
        inputs["front_end_sha256"] = _front_end_digest(Path(recipe.front_end))
    return inputs


def _front_end_digest(model_dir: Path) -> str:
    import hashlib

    from ..model import model_file

    front = _front_end_of(model_dir)["front_end"]
    digest = hashlib.sha256(json.dumps(front, sort_keys=True).encode())
    for name in _front_end_files(front):
        digest.update(model_file(model_dir, name).read_bytes())
    return digest.hexdigest()


def _stage_done(work: Path, stage: str, inputs: dict) -> Optional[dict]:
    """The stage's marker if it is done from these recipe fields. A marker written before markers
    recorded their fields is taken as it is."""
    marker = work / f"{stage}.done.json"
    if not marker.exists():
        return None
    done = json.loads(marker.read_text())
    return done if done.get("inputs", inputs) == inputs else None


def _mark_done(work: Path, stage: str, info: dict) -> None:
    from ..files import atomic_write_text

    atomic_write_text(work / f"{stage}.done.json", json.dumps(info, indent=2) + "\n")


def _window_label(segments, centre_s: float) -> Optional[int]:
    for seg in segments:
        if seg.start_s <= centre_s < seg.end_s:
            return seg.au_id
    return None


def load_rat_crops(video: Path, boxes_of_frame, size: int, margin: float) -> np.ndarray:
    """Every frame of a synthetic clip cropped around its true rat box: (N, size, size, 3) uint8."""
    from ..roi import square_around
    from ..video import crop_square, read_frames

    crops, last = [], None
    for frame in read_frames(video):
        h, w = frame.image.shape[:2]
        box = boxes_of_frame(frame.index, w, h)
        last = box if box is not None else last
        if last is None:
            square = np.array([0, 0, w, h], dtype=np.float32)
        else:
            square = square_around(np.asarray(last, dtype=np.float32), margin, 32, w, h)
        crops.append(crop_square(frame.image, square, size))
    return np.stack(crops)


def augment_clip(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 16-frame crop (16, S, S, 3) uint8 -> float32 in [-1, 1], changed the same way in every
    frame: a random zoom and shift (as a detector's box would vary), a mirror, the colour channels
    permuted or turned grey, gain, contrast and offset, and sensor noise.

    Why so much: 100 synthetic clips differ most in their look (bedding, background, light), and
    without this the classifier learns each clip's look instead of the rat's motion (75% window
    accuracy on its training clips, chance level on unseen ones)."""
    import cv2

    size = clip.shape[1]
    side = int(round(size * rng.uniform(0.8, 1.0)))
    x0, y0 = (int(rng.integers(0, size - side + 1)) for _ in range(2))
    if side != size:
        clip = np.stack([cv2.resize(f[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_LINEAR)
                         for f in clip])
    x = clip.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    x = x[..., rng.permutation(3)]
    if rng.random() < 0.25:
        x = np.repeat(x.mean(axis=3, keepdims=True), 3, axis=3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean
    x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32) + np.float32(rng.uniform(-0.1, 0.1))
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.03), x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0) * 2.0 - 1.0


def train_i3d_classifier(videos: list[tuple[Path, list, callable]], out: Path, recipe: BundleRecipe,
                         device: str = "cpu", log=print) -> dict:
    """Train the small I3D as a 14-class classifier of 16-frame crops; checkpoints each epoch.

    `videos`: (mp4, segments, boxes_of_frame) for the training clips. Returns the final metrics.
    """
    import torch
    import torch.nn.functional as F

    from ..i3d import I3DConfig, InceptionI3d

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    crops, samples = [], []  # samples: (video index, first frame, label)
    for vi, (path, segments, boxes) in enumerate(videos):
        clip = load_rat_crops(path, boxes, recipe.i3d_input_size, recipe.crop_margin)
        crops.append(clip)
        for start in range(0, len(clip) - 16 + 1, recipe.classifier_stride):
            label = _window_label(segments, (start + 8) / 30.0)
            if label is not None:
                samples.append((vi, start, label))
    if not samples:
        raise InputError("no training windows: the clips are shorter than 16 frames")
    labels = np.array([s[2] for s in samples])
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    class_weight = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / NUM_CLASSES, 0.0),
                                dtype=torch.float32, device=device)

    config = I3DConfig(width=recipe.i3d_width, input_size=recipe.i3d_input_size, num_classes=NUM_CLASSES,
                       subtract_temporal_mean=recipe.i3d_subtract_temporal_mean, still_share=recipe.i3d_still_share)
    model = InceptionI3d(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.classifier_lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(samples) / recipe.classifier_batch)
    total = steps_per_epoch * recipe.classifier_epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.classifier_lr, total_steps=total,
                                                    pct_start=0.1)
    ckpt_path = out / "i3d_classifier.pt"
    inputs = stage_inputs(recipe, "i3d_classifier")
    start_epoch = 0
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=True) if ckpt_path.exists() else None
    if ckpt is not None and ckpt.get("inputs", inputs) != inputs:
        log("i3d classifier: the recipe changed since its checkpoint, training from the start")
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt["epoch"]
        rng = np.random.default_rng(recipe.seed + start_epoch)
        log(f"i3d classifier: resuming after epoch {start_epoch}")

    def augmented_batch(idx):
        xs, ys = [], []
        half = recipe.classifier_stride // 2
        for i in idx:
            vi, start, label = samples[i]
            # a window shifted by up to half the stride: every epoch sees new windows
            shifted = int(np.clip(start + rng.integers(-half, half + 1), 0, len(crops[vi]) - 16))
            shifted_label = _window_label(videos[vi][1], (shifted + 8) / 30.0)
            if shifted_label is not None:
                start, label = shifted, shifted_label
            ys.append(label)
            x = augment_clip(crops[vi][start:start + 16], rng)  # (16, S, S, 3) in [-1, 1]
            xs.append(x.transpose(3, 0, 1, 2))  # (3, 16, S, S)
        x = torch.from_numpy(np.ascontiguousarray(np.stack(xs))).to(device)
        return x, torch.tensor(ys, dtype=torch.long, device=device)

    metrics = {}
    for epoch in range(start_epoch, recipe.classifier_epochs):
        model.train()
        order = rng.permutation(len(samples))
        t0, loss_sum, correct = time.time(), 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * recipe.classifier_batch:(b + 1) * recipe.classifier_batch]
            x, y = augmented_batch(idx)
            logits = model.classify(x)  # (B, 14)
            loss = F.cross_entropy(logits, y, weight=class_weight, label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        metrics = {"epoch": epoch + 1, "loss": loss_sum / len(samples), "train_accuracy": correct / len(samples),
                   "seconds": round(time.time() - t0, 1), "windows": len(samples)}
        log(f"i3d classifier epoch {epoch + 1}/{recipe.classifier_epochs}: loss {metrics['loss']:.3f}, "
            f"train accuracy {metrics['train_accuracy']:.3f} ({metrics['seconds']} s)")
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"config": config.to_dict(), "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "metrics": metrics, "inputs": inputs}, tmp)
        tmp.replace(ckpt_path)
    return metrics


def rat_boxes(synth_dir: Path, video_id: str):
    """boxes_of_frame(frame, width, height) -> the true rat box (x0, y0, x1, y1) in pixels, or None."""
    import pandas as pd

    table = pd.read_csv(Path(synth_dir) / "boxes" / f"{video_id}.csv")
    rat = table[table["cls"] == 0].set_index("frame")

    def boxes_of_frame(frame: int, width: int, height: int):
        if frame not in rat.index:
            return None
        r = rat.loc[frame]
        if isinstance(r, pd.DataFrame):
            r = r.iloc[0]
        cx, cy, w, h = r.cx * width, r.cy * height, r.w * width, r.h * height
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    return boxes_of_frame


def _combined_annotations(folders: list[tuple[Path, str]], out: Path) -> Path:
    """One annotation file: every video of each (folder, subset) under that subset ('training',
    'validation', 'testing'), whatever subset synth gave it inside its folder."""
    from ..annotations import VideoAnnotation, read_annotations, write_annotations

    videos = []
    for folder, subset in folders:
        for v in read_annotations(folder / "annotations.json").values():
            videos.append(VideoAnnotation(v.video_id, subset, v.duration, v.segments, v.fps))
    return write_annotations(out, videos)


def build_bundle(work_dir: Path, model_out: Path, recipe: BundleRecipe = BundleRecipe(), device: str = "auto",
                 log=print) -> dict:
    """Run (or resume) every stage of the recipe; write the finished model folder to model_out.

    Returns the timings and measured figures, which also go into the manifest.
    """
    import torch

    from ..features import extract_features, load_front_end
    from ..model import read_manifest, update_model
    from ..runtime import cpu_cores, resolve_device, worker_processes
    from ..synth import synthesize
    from .detector import add_detector_to_model_dir, evaluate_detector, train_detector
    from .export import add_i3d_to_model_dir

    torch_device = resolve_device(device)  # a GPU asked for but absent stops here, before anything is written
    if recipe.front_end:
        _front_end_of(Path(recipe.front_end))  # so does a front_end folder without a detector and an I3D
    work, model_out = Path(work_dir), Path(model_out)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}

    def stage(name, run, started=None):
        inputs = stage_inputs(recipe, name)
        done = _stage_done(work, name, inputs)
        if done is not None:
            log(f"[{name}] done before ({done.get('seconds')} s), skipped")
            timings[name] = {k: v for k, v in done.items() if k != "inputs"}
            return timings[name]  # the same shape as a stage just run
        redo = (work / f"{name}.done.json").exists()
        log(f"[{name}] ..." + (" (the recipe changed since it ran)" if redo else ""))
        t0 = started or time.time()  # a stage run in a process of its own counts from that process's start
        info = run() or {}
        info["seconds"] = round(time.time() - t0, 1)
        _mark_done(work, name, {**info, "inputs": inputs})
        timings[name] = info
        log(f"[{name}] done in {info['seconds']} s")
        return info

    train_dir, test_dir, long_dir = work / "synth_train", work / "synth_test", work / "synth_long"
    extra_dir, validation_dir = work / "synth_localizer", work / "synth_validation"
    renders = [("synth_train", train_dir, dict(clips=recipe.train_clips, seed=recipe.train_seed)),
               ("synth_validation", validation_dir, dict(clips=recipe.validation_clips, seed=recipe.validation_seed)),
               ("synth_test", test_dir, dict(clips=recipe.test_clips, seed=recipe.test_seed))]
    if recipe.train_long_recordings:
        # The clips hold an action almost all the time; without hours of ordinary behaviour the
        # localizer learns that something always happens, and a real recording is scored as one
        # long seizure. These recordings train the localizer only (not the detector or the I3D).
        renders.append(("synth_long", long_dir, dict(clips=0, seed=recipe.train_long_seed,
                                                     long_minutes=recipe.train_long_minutes,
                                                     long_count=recipe.train_long_recordings)))
    if recipe.localizer_clips:
        # More segments of every action for the localizer, whose features are cheap next to the
        # detector's and the classifier's training on more frames.
        renders.append(("synth_localizer", extra_dir, dict(clips=recipe.localizer_clips, seed=recipe.localizer_clips_seed)))
    for name, folder, how in renders:
        def make(folder=folder, how=how):
            if folder.exists():
                shutil.rmtree(folder)  # a half-rendered folder from an interrupted run
            synthesize(folder, **how, jobs=cpu_cores())  # the same files whatever the number of jobs
            return dict(how)
        stage(name, make)

    front_dir = work / "front_end"

    reused = Path(recipe.front_end) if recipe.front_end else None  # a front end taken as it is, not trained

    def detector():
        # More scenes rather than more frames of each: with the localizer clips pooled in, the
        # detector misses the rat in fewer held-out frames (docs/RESULTS.md)
        pooled = [train_dir] + ([extra_dir] if recipe.detector_localizer_clips and recipe.localizer_clips else [])
        trained = train_detector(pooled, work / "detector", epochs=recipe.detector_epochs,
                                 imgsz=recipe.detector_imgsz, seed=recipe.seed, frame_step=recipe.detector_frame_step)
        return {"onnx": str(trained.onnx), "train_frames": trained.n_train_frames}

    def classifier():
        from ..annotations import read_annotations

        ann = read_annotations(train_dir / "annotations.json")
        videos = [(train_dir / f"{vid}.mp4", v.segments, rat_boxes(train_dir, vid)) for vid, v in ann.items()]
        return train_i3d_classifier(videos, work, recipe, torch_device, log)

    if reused is None:
        det = stage("detector", detector)
        stage("i3d_classifier", classifier)

    def front_end():
        if front_dir.exists():
            shutil.rmtree(front_dir)
        if reused is not None:
            _copy_front_end(reused, front_dir)
            return {"from": str(reused)}
        ckpt = torch.load(work / "i3d_classifier.pt", map_location="cpu", weights_only=True)
        add_i3d_to_model_dir(front_dir, ckpt, input_size=recipe.i3d_input_size)  # its config comes along
        add_detector_to_model_dir(front_dir, Path(det["onnx"]), recipe.detector_imgsz, every_k=recipe.detector_every_k,
                                  margin=recipe.crop_margin)
        return {}
    stage("front_end", front_end)

    def detector_heldout():
        spec = read_manifest(front_dir)["front_end"]["detector"]
        quality = evaluate_detector(front_dir / spec["onnx"], validation_dir, spec["imgsz"], frame_step=5, max_videos=20)
        return {"heldout": {k: v for k, v in quality.items() if isinstance(v, (int, float))}}
    heldout = stage("detector_heldout", detector_heldout)

    features_dir = work / "features"

    def features():
        from ..files import atomic_write, atomic_write_text

        # Resumable: each video's features are written whole or not at all, and kept only while
        # the front end and the video's render are those of this recipe (stamps.json).
        stamps_path = features_dir / "stamps.json"
        stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
        front = load_front_end(front_dir, device=device)
        done = 0
        for render, folder, _ in renders:  # those of this recipe: a folder left by an earlier recipe is not used
            stamp = {**stage_inputs(recipe, "front_end"), **stage_inputs(recipe, render)}
            for video in sorted(folder.glob("*.mp4")):
                target = features_dir / f"{video.stem}.npy"
                if not (target.exists() and stamps.get(video.stem) == stamp):
                    result = extract_features(video, front, device, progress=False)
                    atomic_write(target, lambda f: np.save(f, result.features))
                    stamps[video.stem] = stamp
                    atomic_write_text(stamps_path, json.dumps(stamps, indent=1) + "\n")
                done += 1
        return {"videos": done}
    stage("features", features)

    subset_of = {validation_dir: "validation", test_dir: "testing"}
    annotations = _combined_annotations([(folder, subset_of.get(folder, "training")) for _, folder, _ in renders],
                                        work / "annotations.json")

    # The finished model: the Top-K localizer with the front end beside it. It is written as soon as
    # that localizer is done, so an interrupted ablation never costs the model.
    scored: dict = {}  # the model's threshold and test-split figures, filled by the first finish

    def finish(topk: dict, extra_benchmark: dict) -> dict:
        if model_out.exists():
            shutil.rmtree(model_out)
        shutil.copytree(topk["model_dir"], model_out)
        front = read_manifest(front_dir)["front_end"]
        for name in _front_end_files(front):  # i3d.pt: the I3D in torch on a GPU
            shutil.copy2(front_dir / name, model_out / name)
        manifest = {"front_end": front, "trained_on": _trained_on(recipe), "recipe": asdict(recipe)}
        manifest["benchmark"] = {"machine": _machine(),
                                 "timings_s": {k: v.get("seconds") for k, v in timings.items()},
                                 "detector_heldout": heldout.get("heldout"),
                                 "i3d_classifier": timings.get("i3d_classifier", reused_classifier),
                                 "localizer_topk_0.5": topk.get("benchmark"), **extra_benchmark}
        if not scored:  # the same Top-K localizer each time finish runs: measure it once
            scored.update(_threshold_and_test_figures(model_out, annotations, features_dir, device))
        manifest["threshold"] = scored["threshold"]
        manifest["benchmark"].update(scored["figures"])
        update_model(model_out, manifest)
        return manifest["benchmark"]

    # A reused front end brings its classifier's figures along.
    reused_classifier = (read_manifest(reused).get("benchmark") or {}).get("i3d_classifier") if reused else None

    # The two localizers train at once, one process and one thread each: at batch 2 a second
    # thread makes a step slower, not faster, and two processes take 2 cores for the price of one.
    keep_ratios = {"localizer_topk": 0.5, **({"localizer_plain": 1.0} if recipe.ablation else {})}
    to_train = {name: k for name, k in keep_ratios.items() if _stage_done(work, name, stage_inputs(recipe, name)) is None}
    pool = worker_processes(len(to_train))
    try:
        started = time.time()
        training = {name: pool.submit(train_recipe_localizer, annotations, features_dir, work / f"localizer_k{k}",
                                      recipe, k, device) for name, k in to_train.items()}
        if len(training) > 1:
            log(f"[{', '.join(training)}] training at once, one process each")

        def trained(name):
            return training[name].result if name in training else None  # a stage found done never asks

        topk = stage("localizer_topk", trained("localizer_topk"), started)
        figures = finish(topk, {})
        if recipe.ablation:
            plain = stage("localizer_plain", trained("localizer_plain"), started)
            figures = finish(topk, {"localizer_plain_1.0": plain.get("benchmark")})
    except BaseException:
        # not waiting for the other localizer: its process ends with this one (see worker_processes)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return figures


def train_recipe_localizer(annotations: Path, features_dir: Path, out_dir: Path, recipe: BundleRecipe,
                           keep_ratio: float, device: str) -> dict:
    """One RaSeformer of the recipe (in a process of its own): returns its model folder and benchmark."""
    from dataclasses import replace

    import torch

    from ..model import read_manifest
    from ..runtime import resolve_device
    from .localizer import read_config, train_localizer

    if resolve_device(device) == "cpu":
        torch.set_num_threads(1)  # see build_bundle: faster at this batch size, and the other core is the other's
    setup = read_config(None)
    dim = int(np.load(next(Path(features_dir).glob("*.npy"))).shape[1])
    d = recipe.localizer_dim
    setup = replace(setup, localizer=replace(setup.localizer, input_dim=dim, embd_dim=d, fpn_dim=d, head_dim=d,
                                             attn_keep_ratio=keep_ratio),
                    train=replace(setup.train, learning_rate=recipe.localizer_lr, seed=recipe.seed,
                                  cover_long_videos=True))
    out = train_localizer(annotations, features_dir, out_dir, config=setup, epochs=recipe.localizer_epochs,
                          device=device, progress=False, name="ratscore-synthetic")
    return {"model_dir": str(out), "benchmark": read_manifest(out).get("benchmark", {})}


def _trained_on(recipe: BundleRecipe) -> str:
    localizer_only = ""
    if recipe.train_long_recordings:
        localizer_only += (f", plus {recipe.train_long_recordings} recordings of {recipe.train_long_minutes:g} min "
                           f"(seed {recipe.train_long_seed}) for the localizer")
    if recipe.localizer_clips:
        also_detector = recipe.detector_localizer_clips and not recipe.front_end
        localizer_only += (f", plus {recipe.localizer_clips} clips of 10 s (seed {recipe.localizer_clips_seed}) "
                           f"for the localizer{' and the detector' if also_detector else ''}")
    trained = (f"the localizer{localizer_only}, with the front end (detector and I3D) of {recipe.front_end}"
               if recipe.front_end else f"the detector, the I3D classifier and the localizer{localizer_only}")
    return (f"synthetic videos only (ratscore synth): {recipe.train_clips} clips of 10 s, seed {recipe.train_seed}, "
            f"for {trained}; event threshold chosen on {recipe.validation_clips} clips of the unseen seed "
            f"{recipe.validation_seed}; benchmarked on {recipe.test_clips} clips of the unseen seed {recipe.test_seed}. "
            "Never trained on a real rat.")


def _threshold_and_test_figures(model_dir: Path, annotations: Path, features_dir: Path, device: str) -> dict:
    """The event threshold, chosen on the validation clips, and the model's figures on the test clips."""
    from ..annotations import read_annotations, split
    from ..benchmark import benchmark_model, ground_truth_of, predict

    videos = read_annotations(annotations)
    events = {}
    for subset in ("validation", "testing"):
        chosen = split(videos, subset)
        dets = [d for d in predict(model_dir, chosen, features_dir, device, progress=False) if d.au_id != 0]
        events[subset] = ([g for g in ground_truth_of(chosen) if g.au_id != 0], dets)  # seizure action units only
    threshold, f1_validation = best_event_threshold(*events["validation"])
    report = benchmark_model(model_dir, annotations, features_dir, speed=True, device=device, progress=False)
    return {"threshold": threshold,
            "figures": {"event_f1_at_threshold": {"validation": round(f1_validation, 4),
                                                  "testing": round(event_f1(*events["testing"], threshold), 4)},
                        "ap_per_class_at_0.5": {c: ap["0.5"] for c, ap in report["ap_per_class"].items()},
                        "neighbour_confusion": report["neighbour_confusion"], "localizer_speed": report["speed"]}}


def best_event_threshold(ground_truth, detections, candidates=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
                         tiou: float = 0.5) -> tuple[float, float]:
    """The score threshold whose reported events best match the truth (F1 at tIoU >= 0.5, same AU,
    each true segment matched once), and that F1: the default `--threshold` of the model."""
    best = (0.3, -1.0)
    for threshold in candidates:
        f1 = event_f1(ground_truth, detections, threshold, tiou)
        if f1 > best[1]:
            best = (threshold, f1)
    return best


def event_f1(ground_truth, detections, threshold: float, tiou: float = 0.5) -> float:
    """F1 of the events scoring at least `threshold` against the truth (tIoU >= tiou, same AU, each
    true segment matched once, best-scoring events first)."""
    from ..metrics import segment_iou

    kept = sorted((d for d in detections if d.score >= threshold), key=lambda d: -d.score)
    used, hits = set(), 0
    for d in kept:
        for i, g in enumerate(ground_truth):
            if i in used or g.video != d.video or g.au_id != d.au_id:
                continue
            if segment_iou(np.array([g.start_s, g.end_s]), np.array([[d.start_s, d.end_s]]))[0] >= tiou:
                used.add(i)
                hits += 1
                break
    return 2 * hits / max(1, len(kept) + len(ground_truth))


def _front_end_files(front: dict) -> list[str]:
    """The files a manifest's front_end section names (ONNX models, and the I3D's torch weights)."""
    return [name for part in (front.get("detector") or {}, front.get("i3d") or {})
            for name in (part.get("onnx"), part.get("weights")) if name]


def _front_end_of(model_dir: Path) -> dict:
    """The manifest of the model folder a recipe's `front_end` names; it must have a detector and an I3D."""
    from ..model import read_manifest

    manifest = read_manifest(model_dir)
    front = manifest.get("front_end") or {}
    if not (front.get("detector") and front.get("i3d")):
        raise InputError(f"{model_dir}: the recipe's front_end must be a model folder with a detector and an I3D")
    return manifest


def _copy_front_end(source: Path, front_dir: Path) -> None:
    """A model folder's front end (detector, I3D, clip layout) as a front-end folder of its own."""
    from ..model import model_file, update_model

    manifest = _front_end_of(source)
    front = manifest["front_end"]
    files = {name: model_file(source, name).read_bytes() for name in _front_end_files(front)}
    update_model(front_dir, {"name": "front_end", **{k: manifest[k] for k in ("fps", "clip_frames", "clip_stride",
                                                                              "feature_dim")}},
                 files, front_end=front)


def _machine() -> str:
    import os
    import platform

    from importlib.metadata import PackageNotFoundError, version

    def installed(package):
        try:
            return version(package)
        except PackageNotFoundError:
            return "absent"

    # a rebuild is a model of the same kind, not the same weights, when these differ (ultralytics above all)
    versions = ", ".join(f"{p} {installed(p)}" for p in ("torch", "ultralytics", "onnxruntime-gpu"))
    return (f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}, "
            f"python {platform.python_version()}, {versions}")
