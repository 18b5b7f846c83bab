"""The model directory: its manifest and where each stage's files live.

A model is a folder with `manifest.json` and the files it names (ONNX graphs, weights):

    {
      "format_version": 1,
      "name": "...",                      # shown in every summary.json
      "classes": ["others", ...],         # the 14 action units, in id order
      "fps": 30.0, "clip_frames": 16, "clip_stride": 4,
      "feature_dim": 1024,
      "racine_map": {"others": 0, ...},
      "trained_on": "...",                # plain words: what data, which seeds
      "benchmark": {...},                 # measured figures (mAP, speed) with the machine
      "front_end": {                      # absent in a localizer-only model (features in, events out)
        "detector": {"onnx": "detector.onnx", ...} | null,   # null: no ROI detector, whole frame
        "i3d": {"onnx": "i3d.onnx", "input_size": 224, "width": 1.0, "normalisation": "rgb_minus1_1",
                "subtract_temporal_mean": false,   # true: the network sees motion only (in its ONNX graph)
                "still_share": 0.0}               # ... but for this share of the still picture
      },
      "localizer": {"onnx": "localizer.onnx", "checkpoint": "localizer.pt", "config": {...},
                    "postprocess": {...}},
      "feature_stats": "feature_stats.npz" # training-set feature statistics, for the trust check
    }

`format_version` changes when a manifest can no longer be read by older code.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError
from .labels import LABELS
from .writers import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

# The bundled model is the folder models/ at the top of the repository (an editable install).
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"


def read_manifest(model_dir: str | Path) -> dict:
    """The manifest of a model folder; InputError naming the problem when it is unusable."""
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


def write_manifest(model_dir: str | Path, manifest: dict) -> Path:
    manifest = {"format_version": FORMAT_VERSION, "classes": list(LABELS), **manifest}
    return atomic_write_text(Path(model_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
