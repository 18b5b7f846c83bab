"""The model folder: its one reader (`load_model`) and its one writer (`update_model`; a new model
written whole beside the old one replaces it with `replace_model`).

A model is a folder with `manifest.json` and the files it names (ONNX graphs, weights):

    {
      "format_version": 1,
      "classes": ["others", ...],         # the 14 action units, in id order
      "name": "...",                      # shown in every summary.json
      "fps": 30.0, "clip_frames": 16, "clip_stride": 4,   # the time grid (grid.py)
      "feature_dim": 1024,                # what the I3D gives and the localizer takes
      "racine_map": {"others": 0, ...},   # AU -> Racine stage (null: not staged)
      "threshold": 0.4,                   # analyze's default event threshold
      "front_end": {                      # absent in a localizer-only model (features in, events out)
        "detector": {"onnx", "weights" (detector.pt, optional), "imgsz", "classes", "rat_class",
                     "every_k", "conf", "margin"} | null,
        "i3d": {"onnx", "weights" (i3d.pt, optional), "input_size", "feature_dim", "normalisation",
                "width", "subtract_temporal_mean", "still_share"}      # the last three describe it
      },
      "localizer": {"onnx": "localizer.onnx", "checkpoint": "localizer.pt",
                    "config": {"localizer": {...}, "train": {...}, "grid": {...}},
                    "postprocess": {...}},
      "feature_stats": "feature_stats.npz",   # training-set feature statistics, for the trust check
      "scores_learned_from": "synthetic",     # what the I3D and localizer learned from, where known
      "detector_adapted_to": "...",           # set by `train detector --videos`: the lab's videos
      "trained_on": "...", "benchmark": {...}, "recipe": {...}   # describe it: read by the model card
    }

Fields that configure inference are parsed here into `Model` and used from it; the fields that
describe the model are left to the model card (training/model_card.py). `format_version`
changes when a manifest can no longer be read by older code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Union

from .errors import InputError
from .files import atomic_write, atomic_write_text
from .grid import FeatureGrid
from .labels import LABELS, RacineMap

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
NORMALISATION = "rgb_minus1_1"  # RGB uint8 -> x / 127.5 - 1, as the TF/pytorch-i3d Kinetics weights expect
DEFAULT_THRESHOLD = 0.3  # analyze's event threshold for a model that does not state its own


def _bundled_model_dir() -> Path:
    # a checkout (or an editable install) has models/ beside the package; `pip install .` puts a
    # copy inside the package as ratscore/bundled_model (pyproject's package-dir)
    here = Path(__file__).resolve().parent
    checkout = here.parent / "models"
    return checkout if (checkout / MANIFEST_NAME).is_file() else here / "bundled_model"


BUNDLED_MODEL_DIR = _bundled_model_dir()


@dataclass(frozen=True)
class DetectorSpec:
    onnx: str  # the YOLO graph
    imgsz: int  # its square input size
    classes: tuple[str, ...]  # its class names
    rat_class: int  # the class that is the animal (others, e.g. a mirror reflection, are not)
    every_k: int  # detect every k-th frame; the track is interpolated between
    conf: float  # detections below this confidence are ignored
    margin: float  # the crop square extends the box by this share of its size
    weights: Optional[str] = None  # its ultralytics checkpoint (detector.pt): what fine-tuning starts from


@dataclass(frozen=True)
class I3DSpec:
    onnx: Optional[str]  # the feature network as ONNX
    weights: Optional[str]  # the same network's PyTorch weights (runs it on a GPU)
    input_size: int  # square crop side the network takes
    feature_dim: int  # length of one feature vector


@dataclass(frozen=True)
class LocalizerSpec:
    onnx: Optional[str]  # localizer.onnx (ONNX Runtime)
    checkpoint: Optional[str]  # localizer.pt (eager PyTorch)
    config: object  # LocalizerConfig: rebuilds the network
    postprocess: object  # PostprocessConfig: decoding and soft-NMS thresholds


@dataclass(frozen=True)
class Model:
    """A model folder as inference uses it."""

    path: Path
    manifest: dict  # the whole manifest as read (its hash names the model in outputs)
    name: str
    grid: FeatureGrid  # fps, clip length and stride of its features
    feature_dim: Optional[int]
    racine: RacineMap  # its AU -> Racine stage map (the default when it states none)
    threshold: float  # its default event threshold
    detector: Optional[DetectorSpec]  # None: no ROI detector (whole frames only)
    i3d: Optional[I3DSpec]  # None: no video front end (scores features only)
    localizer: Optional[LocalizerSpec]  # None: a front end only
    feature_stats: Optional[str]  # training feature statistics, for the trust check
    scores_learned_from: Optional[str] = None  # "synthetic": the I3D and localizer never saw a real animal; None: not known
    detector_adapted_to: Optional[str] = None  # the lab's videos its detector was fine-tuned on (train detector --videos)

    @property
    def has_front_end(self) -> bool:
        return self.i3d is not None

    @property
    def identity(self) -> str:
        """The model's name and a short hash of its manifest: outputs made by another model differ."""
        digest = hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.name}@{digest}"

    def file(self, name: str) -> Path:
        """A file named by the manifest, which must exist."""
        return model_file(self.path, name)


def read_manifest(model_dir: str | Path) -> dict:
    """The manifest of a model folder as plain data; InputError naming the problem when it is unusable."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: no such model folder")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{model_dir}: not a model folder (no {MANIFEST_NAME})") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: the manifest must be a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: manifest format_version {version!r} is not supported "
                         f"(this ratscore reads version {FORMAT_VERSION})")
    classes = manifest.get("classes")
    if classes != list(LABELS):
        raise InputError(f"{path}: the model's classes are not the 14 RatSeizure action units in id order")
    return manifest


def model_file(model_dir: str | Path, name: str) -> Path:
    """A file named by the manifest, which must exist."""
    path = Path(model_dir) / name
    if not path.is_file():
        raise InputError(f"{model_dir}: the manifest names {name}, which is missing")
    return path


def manifest_files(manifest: dict) -> list[str]:
    """The files a manifest names: the localizer's, the feature statistics, the front end's."""
    front = manifest.get("front_end") or {}
    parts = [manifest.get("localizer") or {}, front.get("detector") or {}, front.get("i3d") or {}]
    names = [part.get(key) for part in parts for key in ("onnx", "checkpoint", "weights")]
    return [n for n in names + [manifest.get("feature_stats")] if isinstance(n, str) and n]


def load_model(model_dir: str | Path) -> Model:
    """The model folder parsed and checked: every field inference uses, in one place."""
    from .postprocess import PostprocessConfig

    model_dir = Path(model_dir)
    m = read_manifest(model_dir)
    where = model_dir / MANIFEST_NAME
    try:
        grid = FeatureGrid(float(m.get("fps", FeatureGrid.fps)), int(m.get("clip_stride", FeatureGrid.feat_stride)),
                           int(m.get("clip_frames", FeatureGrid.num_frames)))
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: unusable time grid ({e})") from None
    racine = RacineMap()
    if m.get("racine_map") is not None:
        if not isinstance(m["racine_map"], dict):
            raise InputError(f"{where}: racine_map must map action units to stages")
        try:
            racine = RacineMap.from_mapping(m["racine_map"])
        except InputError as e:
            raise InputError(f"{where}: racine_map: {e}") from None
    threshold = m.get("threshold", DEFAULT_THRESHOLD)
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise InputError(f"{where}: threshold must be a number in [0, 1], got {threshold!r}")
    feature_dim = m.get("feature_dim")
    front = m.get("front_end") or {}
    detector = i3d = localizer = None
    try:
        if front.get("detector"):
            from .roi import RoiOptions

            d, default = front["detector"], RoiOptions()
            detector = DetectorSpec(str(d["onnx"]), int(d["imgsz"]), tuple(d.get("classes", ("rat", "reflection"))),
                                    int(d.get("rat_class", default.rat_class)), int(d.get("every_k", default.every_k)),
                                    float(d.get("conf", default.conf)), float(d.get("margin", default.margin)),
                                    str(d["weights"]) if d.get("weights") else None)
        if front.get("i3d"):
            s = front["i3d"]
            if s.get("normalisation", NORMALISATION) != NORMALISATION:
                raise InputError(f"{model_dir}: I3D normalisation {s.get('normalisation')!r} is not supported "
                                 f"(only {NORMALISATION})")
            if s.get("clip_frames", grid.num_frames) != grid.num_frames:
                raise InputError(f"{where}: the I3D's clip_frames ({s['clip_frames']}) differs from the model's "
                                 f"({grid.num_frames})")
            if not (s.get("onnx") or s.get("weights")):
                raise InputError(f"{where}: the I3D names neither an ONNX graph nor weights")
            i3d = I3DSpec(s.get("onnx"), s.get("weights"), int(s["input_size"]), int(s["feature_dim"]))
        if m.get("localizer"):
            from .localizer import LocalizerConfig

            section = m["localizer"]
            cfg = section["config"]
            localizer = LocalizerSpec(section.get("onnx"), section.get("checkpoint"),
                                      LocalizerConfig.from_dict(cfg["localizer"]),
                                      PostprocessConfig.from_dict(section["postprocess"]))
            own_grid = FeatureGrid(**cfg["grid"]) if cfg.get("grid") else grid
            if own_grid != grid:
                raise InputError(f"{where}: the localizer was trained on another time grid ({own_grid}) than the "
                                 f"model states ({grid})")
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{where}: unusable manifest ({type(e).__name__}: {e})") from None
    dims = {d for d in (feature_dim, i3d and i3d.feature_dim, localizer and localizer.config.input_dim) if d}
    if len(dims) > 1:
        raise InputError(f"{where}: the feature dimensions disagree (model {feature_dim}, I3D "
                         f"{i3d and i3d.feature_dim}, localizer {localizer and localizer.config.input_dim})")
    # a recipe build (train bundle) learns from `ratscore synth` videos alone, also where the
    # manifest predates scores_learned_from
    learned_from = m.get("scores_learned_from") or ("synthetic" if m.get("recipe") else None)
    return Model(model_dir, m, str(m.get("name") or model_dir.name), grid, feature_dim, racine, float(threshold),
                 detector, i3d, localizer, m.get("feature_stats"), learned_from, m.get("detector_adapted_to"))


FileContent = Union[bytes, Path, Callable[[IO[bytes]], None]]  # the bytes, a file to copy, or a writer


def update_model(model_dir: str | Path, fields: Mapping, files: Optional[Mapping[str, FileContent]] = None,
                 front_end: Optional[Mapping] = None) -> Path:
    """Write files (name -> the bytes, a file to copy, or a writer) into a model folder and merge
    `fields` (top-level manifest fields) and `front_end` (its parts, e.g. {"detector": {...}}) into
    its manifest, creating the folder and manifest when there are none. The files are written
    first, each whole or not at all, then the manifest, so a manifest never names a file that is
    not yet whole. Returns the manifest's path."""
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise InputError(f"{model_dir}: exists and is not a folder")
    manifest = read_manifest(model_dir) if (model_dir / MANIFEST_NAME).is_file() else {"name": model_dir.name}
    for name, content in (files or {}).items():
        atomic_write(model_dir / name, _writer(content))
    manifest.update(fields)
    if front_end is not None:
        manifest["front_end"] = {"detector": None, **(manifest.get("front_end") or {}), **front_end}
    manifest = {"format_version": FORMAT_VERSION, "classes": list(LABELS),
                **{k: v for k, v in manifest.items() if k not in ("format_version", "classes")}}
    path = atomic_write_text(model_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    load_model(model_dir)  # what was written must read back
    return path


def _writer(content: FileContent) -> Callable[[IO[bytes]], None]:
    if callable(content):
        return content
    if isinstance(content, Path):
        def copy(f, source=content):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        return copy
    return lambda f: f.write(content)


BUILDING_NAME = ".building"  # inside a model folder: a new model written whole here, then moved into place


def check_model_output(output: str | Path, also_resumable: Optional[str] = None) -> Path:
    """A folder a training command may write a model into: new, empty (hidden entries aside: a
    feature cache, a work folder), or a model folder (to be replaced); `also_resumable`: a hidden
    entry whose presence marks the folder as an earlier run's, to go on with. Anything else is an
    InputError at once, before any work."""
    from .files import check_output_folder

    output = check_output_folder(output)
    if output.is_dir() and not (output / MANIFEST_NAME).is_file() \
            and not (also_resumable and (output / also_resumable).is_dir()):
        visible = sorted(p.name for p in output.iterdir() if not p.name.startswith("."))
        if visible:
            raise InputError(f"{output}: the folder holds other files ({visible[0]}) and no model; "
                             "give -o a new or empty folder, or a model folder to replace")
    return output


def building_folder(output: str | Path) -> Path:
    """An empty folder inside `output` to write a new model into (whole) before `replace_model`."""
    building = Path(output) / BUILDING_NAME
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    return building


def replace_model(output: str | Path, building: str | Path) -> Path:
    """The model written whole in `building` (see building_folder) in place of `output`'s. The old
    manifest goes first, so the folder never names files of two models, then the files it named;
    the new manifest comes last. Files the old manifest did not name and hidden entries (a feature
    cache, a work folder) stay."""
    output, building = Path(output), Path(building)
    old = output / MANIFEST_NAME
    if old.is_file():
        try:
            named = manifest_files(json.loads(old.read_text()))
        except (OSError, ValueError):  # an unreadable old manifest names nothing to remove
            named = []
        old.unlink()
        for name in named:
            path = output / name
            if path.is_file() and path.parent == output:
                path.unlink()
    for path in building.iterdir():
        if path.name != MANIFEST_NAME:
            os.replace(path, output / path.name)
    os.replace(building / MANIFEST_NAME, old)
    building.rmdir()
    return output
