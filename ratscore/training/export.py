"""Networks into model folders: the localizer (checkpoint, ONNX graph, feature statistics) and an
I3D (ONNX graph and weights). Every folder is written through `ratscore.model.update_model`.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path
from typing import Optional

import torch

from ..checkpoint import localizer_checkpoint_bytes, read_localizer_checkpoint
from ..errors import InputError
from ..features import build_i3d, load_i3d_weights
from ..grid import FeatureGrid
from ..i3d import InceptionI3d
from ..labels import RacineMap
from ..localizer import AveragedRaSeformer, RaSeformer
from ..model import MANIFEST_NAME, NORMALISATION, read_manifest, update_model
from ..runner import output_names

CHECKPOINT_NAME = "localizer.pt"
ONNX_NAME = "localizer.onnx"
FEATURE_STATS_NAME = "feature_stats.npz"
I3D_ONNX_NAME = "i3d.onnx"
I3D_WEIGHTS_NAME = "i3d.pt"
OPSET = 17


class _Flat(torch.nn.Module):
    """The network with flat outputs (ONNX wants a list of tensors)."""

    def __init__(self, model: RaSeformer | AveragedRaSeformer):
        super().__init__()
        self.model = model

    def forward(self, features, mask):
        logits, offsets = self.model(features, mask)
        return tuple(logits) + tuple(offsets)


def localizer_onnx_bytes(model: RaSeformer | AveragedRaSeformer) -> bytes:
    """ONNX graph of the network: features (B, D, T) float32 + mask (B, 1, T) bool in; per level
    cls_logits_l (B, T_l, C) and offsets_l (B, T_l, 2) out; batch and time axes dynamic (T a
    multiple of the config's max_div_factor)."""
    cfg = model.config
    model = model.eval().cpu()
    T = cfg.padded_length(cfg.max_seq_len)
    x = torch.zeros(1, cfg.input_dim, T)
    mask = torch.ones(1, 1, T, dtype=torch.bool)
    names = output_names(cfg.num_levels)
    dynamic = {"features": {0: "batch", 2: "time"}, "mask": {0: "batch", 2: "time"}}
    dynamic.update({n: {0: "batch", 1: f"time_{n.rsplit('_', 1)[1]}"} for n in names})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Flat(model), (x, mask), buf, input_names=["features", "mask"], output_names=names,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def write_model_dir(model: RaSeformer | AveragedRaSeformer, setup, out_dir: str | Path, features: Optional[dict] = None,
                    trained_on: str = "", name: str = "", benchmark: Optional[dict] = None) -> Path:
    """The localizer into a model folder: localizer.pt, localizer.onnx, feature_stats.npz (when
    features are given) and the manifest's localizer, grid and description fields. `setup` is a
    `training.localizer.Setup` (every config section the network was made and trained with)."""
    from ..trust import feature_stats, feature_stats_bytes

    out = Path(out_dir)
    files = {CHECKPOINT_NAME: localizer_checkpoint_bytes(model, setup.to_dict()),
             ONNX_NAME: localizer_onnx_bytes(model)}
    fields = {
        "name": name or out.name,
        "fps": float(setup.grid.fps), "clip_frames": int(setup.grid.num_frames),
        "clip_stride": int(setup.grid.feat_stride),
        "feature_dim": int(setup.localizer.input_dim),
        "racine_map": RacineMap().as_dict(),
        "trained_on": trained_on,
        "benchmark": benchmark or {},
        "localizer": {"onnx": ONNX_NAME, "checkpoint": CHECKPOINT_NAME,
                      "config": {k: v for k, v in setup.to_dict().items() if k != "postprocess"},
                      "postprocess": setup.postprocess.to_dict()},
    }
    if features:
        files[FEATURE_STATS_NAME] = feature_stats_bytes(feature_stats(features.values()))
        fields["feature_stats"] = FEATURE_STATS_NAME
    update_model(out, fields, files)
    return out


def write_averaged_model_dir(draws: list[Path], out_dir: str | Path, trained_on: str) -> Path:
    """One model folder whose localizer is the average of the draws' (model folders of one localizer
    setup trained on the same features with different seeds; see AveragedRaSeformer): the first
    draw's folder (manifest, feature statistics) with the averaged localizer.pt and localizer.onnx,
    and the number of members in the manifest's localizer section."""
    from ..model import load_model

    members, setup = [], None
    for draw in draws:
        model = load_model(draw)
        if model.localizer is None or not model.localizer.checkpoint:
            raise InputError(f"{draw}: no localizer checkpoint to average")
        network, saved = read_localizer_checkpoint(model.file(model.localizer.checkpoint))
        members += list(network.members) if isinstance(network, AveragedRaSeformer) else [network]
        setup = setup or saved
    try:
        average = AveragedRaSeformer(members)
    except ValueError as e:
        raise InputError(f"{', '.join(map(str, draws))}: {e}") from None
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(draws[0], out)
    section = {**read_manifest(out)["localizer"], "onnx": ONNX_NAME, "checkpoint": CHECKPOINT_NAME, "members": len(members)}
    update_model(out, {"localizer": section, "trained_on": trained_on},
                 {CHECKPOINT_NAME: localizer_checkpoint_bytes(average, setup), ONNX_NAME: localizer_onnx_bytes(average)})
    return out


def i3d_onnx_bytes(model: InceptionI3d, clip_frames: int, opset: int = OPSET) -> bytes:
    """The feature network as ONNX bytes: input `clips` (B, 3, clip_frames, S, S) in [-1, 1],
    output `features` (B, D); batch size is dynamic."""
    size = model.config.input_size
    example = torch.zeros(1, 3, clip_frames, size, size)
    buffer = io.BytesIO()
    with torch.inference_mode(), warnings.catch_warnings():
        # the tracer notes that SAME padding is computed from the (fixed) input size: intended
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, input_names=["clips"], output_names=["features"],
                          dynamic_axes={"clips": {0: "batch"}, "features": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return buffer.getvalue()


def add_i3d_to_model_dir(model_dir, i3d_weights, input_size: int = 224, keep_torch_weights: bool = True) -> Path:
    """Put an I3D (a pytorch-i3d state_dict file or dict) into a model folder: `i3d.onnx` (and
    `i3d.pt`), recorded in the manifest's front_end section, on the folder's time grid (the
    default one for a new folder). Creates the folder and a manifest if there is none. Returns the
    manifest's path."""
    model_dir = Path(model_dir)
    config, state = load_i3d_weights(i3d_weights, input_size)
    model = build_i3d(config, state)
    manifest = read_manifest(model_dir) if (model_dir / MANIFEST_NAME).is_file() else {}
    if manifest.get("localizer") and manifest.get("feature_dim") not in (None, model.feature_dim):
        raise InputError(f"{model_dir}: the localizer takes {manifest['feature_dim']}-d features but this I3D "
                         f"gives {model.feature_dim}-d")
    grid = FeatureGrid(float(manifest.get("fps", FeatureGrid.fps)), int(manifest.get("clip_stride", FeatureGrid.feat_stride)),
                       int(manifest.get("clip_frames", FeatureGrid.num_frames)))
    files = {I3D_ONNX_NAME: i3d_onnx_bytes(model, grid.num_frames)}
    spec = {"onnx": I3D_ONNX_NAME, "input_size": config.input_size, "width": config.width,
            "normalisation": NORMALISATION, "subtract_temporal_mean": config.subtract_temporal_mean,
            "still_share": config.still_share, "feature_dim": model.feature_dim}
    if keep_torch_weights:
        checkpoint = {"config": model.config.to_dict(), "state_dict": state}
        files[I3D_WEIGHTS_NAME] = lambda f: torch.save(checkpoint, f)
        spec["weights"] = I3D_WEIGHTS_NAME
    fields = {"fps": grid.fps, "clip_frames": grid.num_frames, "clip_stride": grid.feat_stride,
              "feature_dim": model.feature_dim}
    return update_model(model_dir, fields, files, front_end={"i3d": spec})
