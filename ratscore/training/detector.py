"""Training the ROI detector (YOLO, through ultralytics) on synthetic frames, and measuring it.

No pretrained weights exist here and nothing may be downloaded, so the detector is built from a
YAML model definition (`yolov8n.yaml`, or the default "pico": YOLOv8 at width 0.125, ~4x cheaper
than nano, plenty for one animal on a plain floor) and trained from scratch on frames of
`ratscore synth` videos with their YOLO labels (class 0 the rat, class 1 its reflection). The
best checkpoint is exported to ONNX, which `roi.Detector` runs with ONNX Runtime, and kept beside
it as `detector.pt` (front_end.detector.weights in a model folder): `train detector --videos`
(rig_detector.py) fine-tunes from it on a lab's own recordings.

ultralytics keeps its settings in a per-user folder and reaches for the network (fonts for its
plots, pip for missing packages, analytics): here its settings live in the output folder, plots
are off, autoinstall and analytics are off and it is told it is offline, so training never
downloads anything and works without a network.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError, RunError
from ..files import atomic_write, atomic_write_text

CLASSES = ("rat", "reflection")
DETECTOR_ONNX_NAME = "detector.onnx"
DETECTOR_PT_NAME = "detector.pt"  # its ultralytics checkpoint, kept in the model folder for fine-tuning
PICO = "pico"  # the built-in tiny YOLOv8 definition (see _pico_yaml)


@dataclass
class DetectorTraining:
    onnx: Path  # the exported detector
    checkpoint: Path  # ultralytics' best.pt
    imgsz: int  # square input side, pixels
    n_train_frames: int  # frames trained on
    n_val_frames: int  # frames validated on
    metrics: dict  # ultralytics' last validation metrics (mAP50, mAP50-95, ...)


def _offline_ultralytics(settings_dir: Path) -> None:
    """Settings inside our folder; no downloads, installs or analytics. Must run before the first
    `import ultralytics` in this process (it reads these at import); later calls are harmless."""
    settings_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from ultralytics.utils import SETTINGS

    try:
        SETTINGS.update({"sync": False})
    except Exception:  # noqa: BLE001 - a read-only settings file only means analytics stay as they were
        pass


def _pico_yaml(path: Path, nc: int) -> Path:
    """YOLOv8's own definition, scaled to width 0.125 (nano is 0.25)."""
    import yaml
    from ultralytics.utils import ROOT

    spec = yaml.safe_load((ROOT / "cfg" / "models" / "v8" / "yolov8.yaml").read_text())
    spec["nc"] = nc
    spec["scales"] = {"p": [0.33, 0.125, 1024]}
    spec["scale"] = "p"
    atomic_write_text(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def _synth_videos(synth_dir: Path) -> list[Path]:
    videos = sorted(synth_dir.glob("*.mp4"))
    labelled = [v for v in videos if (synth_dir / "labels" / v.stem).is_dir()]
    if not labelled:
        raise InputError(f"{synth_dir}: no synthetic videos with labels/<video_id>/ boxes (run `ratscore synth -o {synth_dir}`)")
    return labelled


def _decoded_frames(video: Path):
    """(frame number in decode order, RGB image): the numbering of synth's label files."""
    import av

    with av.open(str(video)) as container:
        for n, frame in enumerate(container.decode(container.streams.video[0])):
            yield n, frame.to_ndarray(format="rgb24")


def read_yolo_labels(path: Path, width: int, height: int) -> np.ndarray:
    """A YOLO label file -> (M, 5) rows of class, x0, y0, x1, y1 in pixels."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                c, cx, cy, w, h = int(parts[0]), *map(float, parts[1:])
                rows.append((c, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return np.asarray(rows, np.float32).reshape(-1, 5)


def _synth_dirs(synth_dirs) -> list[Path]:
    """One folder of synthetic videos, or several (a str or Path, or a list of them)."""
    folders = [Path(synth_dirs)] if isinstance(synth_dirs, (str, Path)) else [Path(d) for d in synth_dirs]
    if not folders:
        raise InputError("no folder of synthetic videos to train the detector on")
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder of synthetic videos")
    return folders


def build_dataset(synth_dirs, dataset_dir: Path, imgsz: int, frame_step: int, val_fraction: float,
                  seed: int) -> tuple[Path, int, int]:
    """Frames (every frame_step-th, longer side resized to imgsz) and labels in ultralytics'
    layout, split by video; returns (data.yaml, n_train, n_val). Several folders are pooled (each
    seed names its clips alike, so their frames are told apart by the folder's place in the list)."""
    import cv2

    folders = _synth_dirs(synth_dirs)
    videos = [(i, video) for i, folder in enumerate(folders) for video in _synth_videos(folder)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(videos))
    n_val = max(1, int(round(len(videos) * val_fraction))) if len(videos) > 1 else 0
    val_videos = {videos[i] for i in order[:n_val]}
    counts = {"train": 0, "val": 0}
    pooled = len(folders) > 1  # one folder: the frame names it always had
    for folder_index, video in videos:
        split = "val" if (folder_index, video) in val_videos else "train"
        images, labels = dataset_dir / "images" / split, dataset_dir / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for n, image in _decoded_frames(video):
            if n % frame_step:
                continue
            label = video.parent / "labels" / video.stem / f"{n:06d}.txt"
            if not label.is_file():
                continue
            h, w = image.shape[:2]
            scale = imgsz / max(h, w)
            small = cv2.resize(image, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
            name = f"{folder_index}_{video.stem}_{n:06d}" if pooled else f"{video.stem}_{n:06d}"
            cv2.imwrite(str(images / f"{name}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            shutil.copyfile(label, labels / f"{name}.txt")  # normalised coordinates survive the resize
            counts[split] += 1
    if counts["train"] == 0:
        raise InputError(f"{', '.join(map(str, folders))}: no labelled frames to train on")
    if counts["val"] == 0:  # a single video: validate on its own frames rather than not at all
        shutil.copytree(dataset_dir / "images" / "train", dataset_dir / "images" / "val", dirs_exist_ok=True)
        shutil.copytree(dataset_dir / "labels" / "train", dataset_dir / "labels" / "val", dirs_exist_ok=True)
        counts["val"] = counts["train"]
    data = dataset_dir / "data.yaml"
    atomic_write_text(data, json.dumps({"path": str(dataset_dir.resolve()), "train": "images/train",
                                        "val": "images/val", "names": dict(enumerate(CLASSES))}) + "\n")
    return data, counts["train"], counts["val"]


def _keeps_torch_threads(function):
    """ultralytics sets torch's thread count to one fewer than the cores for the rest of the process:
    on 2 cores the I3D classifier trained after the detector would run on one thread, much slower
    (docs/RESULTS.md). The count is put back when the decorated function returns or fails."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import torch

        threads = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


@_keeps_torch_threads
def train_detector(synth_dirs, out_dir, epochs: int = 15, imgsz: int = 192, seed: int = 0,
                   model_yaml: str = PICO, frame_step: int = 4, batch: int = 16, val_fraction: float = 0.15,
                   workers: int = 0, init_from=None, mosaic: float = 0.0, lr0: float = 0.002,
                   device: str = "auto") -> DetectorTraining:
    """Train a YOLO detector from scratch on synthetic frames; export `detector.onnx` into out_dir,
    with its PyTorch checkpoint beside it (`detector.pt`: a later fine-tuning starts from it).

    `synth_dirs`: a folder of `ratscore synth` videos with their labels, or a list of folders
    whose frames are pooled (more scenes for the same number of frames, with a larger frame_step).

    `model_yaml`: "pico" (default), an ultralytics model name such as "yolov8n.yaml", or a path
    to a model YAML. Never downloads weights: a ".pt" name is refused. `init_from`: a checkpoint
    of an earlier run of this function (its best.pt, or a model folder's detector.pt) to continue
    from, for more epochs. Mosaic augmentation is off by default: synthetic frames already vary
    (scene, light, size, pose), and without it a from-scratch detector converges in far fewer
    epochs, which CPUs need.

    Resumable: a run interrupted with the same folders and settings (`detector_training/run_key.json`)
    goes on from ultralytics' last.pt with the frames it had; other settings start afresh.
    """
    from ..pipeline import content_sha256

    synth_dirs, out_dir = _synth_dirs(synth_dirs), Path(out_dir)
    check_training_options(model_yaml, epochs, imgsz)
    work = out_dir / "detector_training"
    key = {"synth": [str(d.resolve()) for d in synth_dirs], "epochs": epochs, "imgsz": imgsz, "seed": seed,
           "model_yaml": str(model_yaml), "frame_step": frame_step, "batch": batch, "val_fraction": val_fraction,
           "init_from": content_sha256(init_from) if init_from is not None and Path(init_from).is_file() else None,
           "mosaic": mosaic, "lr0": lr0}
    key_path, data, last = work / "run_key.json", work / "dataset" / "data.yaml", work / "run" / "weights" / "last.pt"
    try:
        same = json.loads(key_path.read_text()) == key
    except (OSError, ValueError):
        same = False
    common = dict(epochs=epochs, imgsz=imgsz, seed=seed, model_yaml=model_yaml, batch=batch, workers=workers,
                  mosaic=mosaic, lr0=lr0, device=device)
    if same and data.is_file() and last.is_file():
        _offline_ultralytics(work / "ultralytics_settings")
        n_train, n_val = (len(list((work / "dataset" / "images" / split).glob("*.jpg"))) for split in ("train", "val"))
        best, metrics = (run_result(work / "run") if finished_run(last)
                         else fit_detector(data, work, resume_from=last, **common))
    else:
        if work.exists():
            shutil.rmtree(work)
        _offline_ultralytics(work / "ultralytics_settings")
        data, n_train, n_val = build_dataset(synth_dirs, work / "dataset", imgsz, frame_step, val_fraction, seed)
        atomic_write_text(key_path, json.dumps(key) + "\n")  # after the frames: a key means they are whole
        best, metrics = fit_detector(data, work, init_from=init_from, **common)
    onnx_path = export_detector(best, imgsz, out_dir / DETECTOR_ONNX_NAME)
    weights = out_dir / DETECTOR_PT_NAME
    payload = best.read_bytes()
    atomic_write(weights, lambda f: f.write(payload))
    return DetectorTraining(onnx_path, best, imgsz, n_train, n_val, metrics)


def finished_run(last: Path) -> bool:
    """Whether an ultralytics run's last.pt is of a finished training (its optimizer stripped, or
    its last epoch done): then there is nothing to resume."""
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(last, map_location="cpu")
    epochs = (ckpt.get("train_args") or {}).get("epochs")
    return ckpt.get("optimizer") is None or (epochs is not None and ckpt.get("epoch", -1) + 1 >= epochs)


def check_training_options(model_yaml, epochs: int, imgsz: int) -> None:
    if str(model_yaml).endswith(".pt"):
        raise InputError(f"{model_yaml}: the detector is trained from a model YAML, not pretrained weights")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or isinstance(imgsz, bool) or not isinstance(imgsz, int) \
            or epochs < 1 or imgsz < 32 or imgsz % 32:
        raise InputError(f"epochs must be >= 1 and imgsz a multiple of 32, got {epochs} and {imgsz}")


def fit_detector(data: Path, work: Path, *, epochs: int, imgsz: int, seed: int = 0, model_yaml: str = PICO,
                 batch: int = 16, workers: int = 0, init_from=None, mosaic: float = 0.0, lr0: float = 0.002,
                 device: str = "auto", resume_from=None,
                 on_epoch: Optional[Callable[[int, int, dict], None]] = None) -> tuple[Path, dict]:
    """ultralytics' training on a dataset (its data.yaml), run in `work`/run: from the YAML, or from
    the checkpoint `init_from`, or resuming an interrupted run from its last.pt (`resume_from`: the
    run keeps the settings it started with). `on_epoch(epoch, epochs, metrics)` after each epoch.
    Returns (best.pt, or last.pt where there is none; the last validation metrics)."""
    from ..runtime import resolve_device

    train_device = 0 if resolve_device(device) == "cuda" else "cpu"  # amp stays off: its check downloads weights
    _offline_ultralytics(work / "ultralytics_settings")
    from ultralytics import YOLO

    if resume_from is not None:
        model = YOLO(str(resume_from), task="detect")
    elif init_from is not None:
        if not Path(init_from).is_file():
            raise InputError(f"{init_from}: no such detector checkpoint")
        # the checkpoint's own architecture and weights (whatever YAML it was trained from)
        model = YOLO(str(init_from), task="detect")
    else:
        definition = _pico_yaml(work / "yolov8p.yaml", len(CLASSES)) if model_yaml == PICO else model_yaml
        try:
            model = YOLO(str(definition), task="detect")
        except FileNotFoundError:
            raise InputError(f"{model_yaml}: no such model YAML") from None
    if train_device == "cpu":
        import torch

        from ..runtime import cpu_cores

        # ultralytics trains on one thread fewer than the cores (one, on 2 cores); on all of them
        # the recipe's epochs run faster (docs/RESULTS.md)
        model.add_callback("on_pretrain_routine_start", lambda trainer: torch.set_num_threads(cpu_cores()))
    if on_epoch is not None:
        def epoch_end(trainer):
            if trainer.epoch < trainer.epochs:  # the final validation reports once more, past the last epoch
                on_epoch(trainer.epoch + 1, trainer.epochs, dict(trainer.metrics or {}))
        model.add_callback("on_fit_epoch_end", epoch_end)
    continuing = init_from is not None
    try:
        if resume_from is not None:
            # data named again: without it ultralytics would put its default (a download) in its place
            model.train(resume=True, data=str(data), device=train_device, workers=workers, plots=False, verbose=False)
        else:
            model.train(data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, device=train_device,
                        seed=seed, deterministic=True, plots=False, project=str(work), name="run", exist_ok=True,
                        # pretrained=False would make ultralytics drop the weights of the checkpoint and
                        # start from its YAML again: init_from then silently trained from scratch
                        pretrained=continuing, amp=False, val=True, verbose=False, fliplr=0.5, mosaic=mosaic,
                        cache="disk", close_mosaic=max(1, epochs // 3), patience=max(epochs, 10), optimizer="AdamW",
                        lr0=lr0,
                        # ultralytics warms biases up from 0.1 unless it picks the optimizer itself: with
                        # AdamW that is a large multiple of lr0 on every bias, not for a checkpoint's
                        # trained head. From scratch it is left as the bundled detector was trained (a
                        # run without the bias warm-up was no better: docs/RESULTS.md).
                        warmup_epochs=1 if continuing else 3, warmup_bias_lr=0.0 if continuing else 0.1)
    except (RuntimeError, OSError) as e:
        raise RunError(f"detector training failed: {str(e).splitlines()[0]}") from None
    return run_result(work / "run")


def map50(metrics: dict) -> Optional[float]:
    """The validation mAP at IoU 0.5 among ultralytics' metrics ("metrics/mAP50(B)"); None without it."""
    return next((float(v) for k, v in metrics.items() if "mAP50(" in k), None)


def run_result(run: Path) -> tuple[Path, dict]:
    """A finished ultralytics run's best checkpoint (last.pt where there is no best.pt) and its last
    validation metrics (mAP50, mAP50-95, ...)."""
    best = run / "weights" / "best.pt"
    if not best.is_file():
        best = run / "weights" / "last.pt"
    metrics = {}
    results_csv = run / "results.csv"
    if results_csv.is_file():
        import pandas as pd

        last = pd.read_csv(results_csv).iloc[-1]
        metrics = {str(k).strip(): float(v) for k, v in last.items() if "metrics" in str(k)}
    return best, metrics


def export_detector(checkpoint: Path, imgsz: int, onnx_path: Path) -> Path:
    """A checkpoint as the ONNX graph roi.Detector runs, written whole at `onnx_path`."""
    from ultralytics import YOLO

    trained = YOLO(str(checkpoint), task="detect")
    exported = Path(trained.export(format="onnx", imgsz=imgsz, opset=17, simplify=False, dynamic=False,
                                   device="cpu", verbose=False))
    payload = exported.read_bytes()
    atomic_write(Path(onnx_path), lambda f: f.write(payload))
    return Path(onnx_path)


def detector_spec(imgsz: int, every_k: int = 5, conf: float = 0.25, margin: float = 0.25,
                  weights: Optional[str] = DETECTOR_PT_NAME) -> dict:
    """The manifest's front_end.detector for a detector trained here (see model.py)."""
    spec = {"onnx": DETECTOR_ONNX_NAME, "imgsz": int(imgsz), "classes": list(CLASSES), "rat_class": 0,
            "every_k": int(every_k), "conf": float(conf), "margin": float(margin)}
    if weights:
        spec["weights"] = weights
    return spec


def add_detector_to_model_dir(model_dir, onnx_path, imgsz: int, every_k: int = 5, conf: float = 0.25,
                              margin: float = 0.25, weights=None) -> Path:
    """Record a detector ONNX in a model folder's manifest (front_end.detector), copying it in,
    with its PyTorch checkpoint (`weights`; by default the .pt beside the ONNX, where there is one)
    as detector.pt: what `train detector --videos` fine-tunes from."""
    from ..model import MANIFEST_NAME, update_model

    model_dir, onnx_path = Path(model_dir), Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path}: no such detector ONNX file")
    if weights is None and onnx_path.with_suffix(".pt").is_file():
        weights = onnx_path.with_suffix(".pt")
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"{weights}: no such detector checkpoint")
    files = {}
    for name, source in ((DETECTOR_ONNX_NAME, onnx_path), (DETECTOR_PT_NAME, weights)):
        if source is not None and Path(source).resolve() != (model_dir / name).resolve():
            files[name] = Path(source)
    front = {"detector": detector_spec(imgsz, every_k, conf, margin, DETECTOR_PT_NAME if weights is not None else None)}
    if not (model_dir / MANIFEST_NAME).is_file():
        front["i3d"] = None
    return update_model(model_dir, {}, files, front_end=front)


def evaluate_detector(onnx_path, synth_dir, imgsz: int, frame_step: int = 1, conf: float = 0.25,
                      max_videos: Optional[int] = None) -> dict:
    """How well a detector finds the rat (not its reflection) in labelled synthetic videos.

    Per frame: the box the tracker would pick as the rat (rat class, track continuity) against
    the true rat box. Returns the IoU distribution, the share of frames at IoU >= 0.7, the share
    where the rat was missed, and the share where the pick sat on the reflection instead.
    """
    from ..roi import Detector, RoiOptions, RoiTracker, box_iou

    synth_dir = Path(synth_dir)
    detector = Detector(onnx_path, imgsz, CLASSES, conf=conf)
    ious, missed, on_reflection = [], 0, 0
    videos = _synth_videos(synth_dir)[:max_videos]
    for video in videos:
        tracker = RoiTracker(detector, imgsz, RoiOptions(smoothing=1.0))
        for n, image in _decoded_frames(video):
            if n % frame_step:
                continue
            h, w = image.shape[:2]
            truth = read_yolo_labels(synth_dir / "labels" / video.stem / f"{n:06d}.txt", w, h)
            rat_truth = truth[truth[:, 0] == 0, 1:]
            if not len(rat_truth):
                continue
            pick = tracker.choose_rat(detector(image))
            tracker._update_track(pick)
            if pick is None:
                missed += 1
                ious.append(0.0)
                continue
            iou = float(box_iou(pick, rat_truth[0])[0, 0])
            ious.append(iou)
            reflection = truth[truth[:, 0] == 1, 1:]
            if len(reflection) and float(box_iou(pick, reflection[0])[0, 0]) > iou:
                on_reflection += 1
    ious = np.asarray(ious)
    if not len(ious):
        raise InputError(f"{synth_dir}: no labelled frames to evaluate on")
    return {"videos": len(videos), "frames": int(len(ious)), "iou_mean": float(ious.mean()),
            "iou_median": float(np.median(ious)), "share_iou_ge_0.7": float((ious >= 0.7).mean()),
            "share_missed": missed / len(ious), "share_on_reflection": on_reflection / len(ious)}


def checkpoint_from_onnx(onnx_path, images: list[np.ndarray], out_path, work: Path) -> Optional[Path]:
    """A fine-tunable ultralytics checkpoint for a detector kept only as ONNX (model folders made
    before detector.pt was kept, the bundled model among them), or None where the graph is not one
    of the YOLOv8 definitions trained here.

    The ONNX export folded each convolution's batch norm into its weights and bias. The network is
    built again from its YAML (pico, then yolov8n: whichever the weights' shapes fit), the folded
    weights go into the convolutions, and each batch norm is set to pass its input through plus the
    folded bias: the same function, checked against the ONNX graph on `images` (RGB frames). A
    batch norm in training normalises with the batch's own statistics, so each is also given the
    mean and spread of its input on `images` (frames of the recordings it is about to learn), and a
    scale and shift that undo them: exactly the ONNX graph at inference, and close to it in the
    first steps of training. Written whole at `out_path`."""
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.modules.conv import Conv
    from ultralytics.nn.tasks import DetectionModel

    from ..roi import Detector

    graph = onnx.load(str(onnx_path)).graph
    folded = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    imgsz = int(graph.input[0].type.tensor_type.shape.dim[-1].dim_value)  # (1, 3, S, S)
    detector = Detector(onnx_path, imgsz, CLASSES)
    model = None
    for definition in (_pico_yaml(work / "yolov8p.yaml", len(CLASSES)), "yolov8n.yaml"):
        candidate = DetectionModel(str(definition), nc=len(CLASSES), verbose=False)
        if _load_folded(candidate, folded):
            model = candidate
            break
    if model is None or not images:
        return None
    batch = torch.from_numpy(np.concatenate([detector.letterbox(image)[0] for image in images]))  # (N, 3, S, S)
    model.eval()
    norms = [m.bn for m in model.modules() if isinstance(m, Conv) and isinstance(m.bn, torch.nn.BatchNorm2d)]
    sums = [torch.zeros(3, bn.num_features, dtype=torch.float64) for bn in norms]  # count, sum, sum of squares

    def measure(i: int, inputs: torch.Tensor) -> None:  # (N, C, H, W): the folded convolution's output, no bias
        x = inputs.detach().transpose(0, 1).reshape(inputs.shape[1], -1).double()
        sums[i] += torch.stack([torch.full_like(x[:, 0], x.shape[1]), x.sum(1), (x * x).sum(1)])

    hooks = [bn.register_forward_hook(lambda bn, args, out, i=i: measure(i, args[0])) for i, bn in enumerate(norms)]
    with torch.no_grad():
        ours = torch.cat([_first(model(batch[i:i + 8])) for i in range(0, len(batch), 8)])
    for hook in hooks:
        hook.remove()
    theirs = np.concatenate([detector.session.run(None, {detector.input_name: batch[i:i + 1].numpy()})[0]
                             for i in range(len(batch))])
    if not np.allclose(ours.numpy(), theirs, atol=1e-2, rtol=1e-3):  # boxes in input pixels, scores 0-1
        return None
    with torch.no_grad():
        for (count, total, squares), bn in zip(sums, norms):
            mean = total / count
            var = (squares / count - mean * mean).clamp(min=0)
            bias = bn.bias.clone()  # the folded bias, put there by _load_folded
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean.float() + bias)
    import ultralytics

    checkpoint = {"model": model, "train_args": {"task": "detect", "imgsz": detector.imgsz},
                  "version": ultralytics.__version__}
    atomic_write(Path(out_path), lambda f: torch.save(checkpoint, f))
    return Path(out_path)


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _load_folded(model, folded: dict) -> bool:
    """Put the ONNX graph's folded weights into `model` (a YOLOv8 built from its YAML): a
    convolution with a batch norm gets the folded weight, its batch norm passes its input through
    and adds the folded bias. False (the model left half done) where a name or a shape differs."""
    import torch
    from ultralytics.nn.modules.conv import Conv

    with torch.no_grad():
        used = set()
        for name, module in model.named_modules():
            if isinstance(module, Conv) and isinstance(module.bn, torch.nn.BatchNorm2d):
                weight, bias = folded.get(f"{name}.conv.weight"), folded.get(f"{name}.conv.bias")
                if weight is None or bias is None or weight.shape != module.conv.weight.shape \
                        or bias.shape != module.bn.bias.shape:
                    return False
                module.conv.weight.copy_(weight)
                module.bn.weight.fill_(1.0)
                module.bn.bias.copy_(bias)
                module.bn.running_mean.zero_()
                module.bn.running_var.fill_(1.0 - module.bn.eps)  # (x - 0) / sqrt(1 - eps + eps): x itself
                used.update({f"{name}.conv.weight", f"{name}.conv.bias"})
            elif isinstance(module, torch.nn.Conv2d) and f"{name}.weight" in folded:
                for part in ("weight", "bias"):
                    value, target = folded.get(f"{name}.{part}"), getattr(module, part)
                    if target is None:
                        continue
                    if value is None or value.shape != target.shape:
                        return False
                    target.copy_(value)
                    used.add(f"{name}.{part}")
        wanted = {n for n, _ in model.named_parameters()}
        # every parameter of the model came from the graph (the conv weights and the batch norms' biases)
        covered = {n.replace(".bn.bias", ".conv.bias").replace(".bn.weight", ".conv.weight") for n in wanted}
        return covered <= used
