"""The localizer as files: checkpoint, ONNX graph, model directory; ONNX Runtime inference;
import of the RatSeizure release's checkpoint.

Checkpoints are read with `torch.load(weights_only=True)`: a file that needs code to unpickle
is refused, never run.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import InputError, RunError
from .labels import RacineMap
from .localizer import LocalizerConfig, RaSeformer
from .model import read_manifest, write_manifest
from .postprocess import FeatureGrid, PostprocessConfig, detect_segments
from .timeline import Event
from .writers import atomic_write

CHECKPOINT_NAME = "localizer.pt"
ONNX_NAME = "localizer.onnx"
FEATURE_STATS_NAME = "feature_stats.npz"
OPSET = 17


def _output_names(num_levels: int) -> list[str]:
    return [f"cls_logits_{l}" for l in range(num_levels)] + [f"offsets_{l}" for l in range(num_levels)]


class _Flat(torch.nn.Module):
    """The network with flat outputs (ONNX wants a list of tensors)."""

    def __init__(self, model: RaSeformer):
        super().__init__()
        self.model = model

    def forward(self, features, mask):
        logits, offsets = self.model(features, mask)
        return tuple(logits) + tuple(offsets)


def export_onnx(model: RaSeformer, path: str | Path) -> Path:
    """ONNX graph of the network: features (B, D, T) float32 + mask (B, 1, T) bool in; per level
    cls_logits_l (B, T_l, C) and offsets_l (B, T_l, 2) out; batch and time axes dynamic (T a
    multiple of the config's max_div_factor)."""
    cfg = model.config
    model = model.eval().cpu()
    T = cfg.padded_length(cfg.max_seq_len)
    x = torch.zeros(1, cfg.input_dim, T)
    mask = torch.ones(1, 1, T, dtype=torch.bool)
    names = _output_names(cfg.num_levels)
    dynamic = {"features": {0: "batch", 2: "time"}, "mask": {0: "batch", 2: "time"}}
    dynamic.update({n: {0: "batch", 1: f"time_{n.rsplit('_', 1)[1]}"} for n in names})
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Flat(model), (x, mask), buf, input_names=["features", "mask"], output_names=names,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def checkpoint_dict(model: RaSeformer, setup) -> dict:
    return {"format": "ratscore-localizer", "setup": setup.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def save_checkpoint(model: RaSeformer, setup, path: str | Path) -> Path:
    buf = io.BytesIO()
    torch.save(checkpoint_dict(model, setup), buf)
    return atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def _safe_load(path: Path) -> dict:
    """torch.load without running code from the file; InputError when it is not a plain-data checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise InputError(f"{path}: refused: the checkpoint needs code to load, not only weights ({first[:160]})") from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: not a checkpoint (expected a dict, got {type(ckpt).__name__})")
    return ckpt


def load_state(model: RaSeformer, state_dict: dict, where: str) -> RaSeformer:
    """Strict load; InputError naming the first mismatch when the weights are another architecture."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise InputError(f"{where}: the state dict must map names to tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise InputError(f"{where}: weights of another architecture: {', '.join(parts)} parameter(s)")
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise InputError(f"{where}: weights of another architecture: {k} has shape "
                             f"{tuple(state_dict[k].shape)}, the config makes {tuple(v.shape)}")
    model.load_state_dict(state_dict, strict=True)
    return model


def load_checkpoint(path: str | Path):
    """(RaSeformer in eval mode, Setup) from a ratscore localizer checkpoint."""
    from .train import Setup

    path = Path(path)
    ckpt = _safe_load(path)
    if ckpt.get("format") != "ratscore-localizer" or "setup" not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path}: not a ratscore localizer checkpoint")
    try:
        setup = Setup.from_dict(ckpt["setup"])
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{path}: unusable config in the checkpoint ({e})") from None
    return load_state(RaSeformer(setup.localizer), ckpt["state_dict"], str(path)).eval(), setup


def write_model_dir(model: RaSeformer, setup, out_dir: str | Path, features: Optional[dict] = None,
                    trained_on: str = "", name: str = "", benchmark: Optional[dict] = None) -> Path:
    """localizer.pt, localizer.onnx, feature_stats.npz (when features are given) and manifest.json."""
    from .trust import feature_stats, write_feature_stats

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    save_checkpoint(model, setup, out / CHECKPOINT_NAME)
    export_onnx(model, out / ONNX_NAME)
    manifest = {
        "name": name or out.name,
        "fps": float(setup.grid.fps), "clip_frames": int(setup.grid.num_frames), "clip_stride": int(setup.grid.feat_stride),
        "feature_dim": int(setup.localizer.input_dim),
        "racine_map": RacineMap().as_dict(),
        "trained_on": trained_on,
        "benchmark": benchmark or {},
        "localizer": {"onnx": ONNX_NAME, "checkpoint": CHECKPOINT_NAME,
                      "config": {k: v for k, v in setup.to_dict().items() if k != "postprocess"},
                      "postprocess": setup.postprocess.to_dict()},
    }
    if features:
        write_feature_stats(out / FEATURE_STATS_NAME, feature_stats(features.values()))
        manifest["feature_stats"] = FEATURE_STATS_NAME
    write_manifest(out, manifest)
    return out


def import_checkpoint(ckpt: str | Path, config_yaml: str | Path | None, out_dir: str | Path) -> Path:
    """A model directory from an ActionFormer/RatSeizure release checkpoint (`state_dict_ema`,
    keys prefixed `module.`) and its YAML config; InputError on anything else."""
    from .train import read_config

    ckpt = Path(ckpt)
    setup = read_config(config_yaml)
    raw = _safe_load(ckpt)
    key = "state_dict_ema" if "state_dict_ema" in raw else "state_dict" if "state_dict" in raw else None
    if key is None:
        raise InputError(f"{ckpt}: no 'state_dict_ema' or 'state_dict' in the checkpoint (keys: {', '.join(map(str, list(raw)[:6]))})")
    state = raw[key]
    if not isinstance(state, dict):
        raise InputError(f"{ckpt}: '{key}' is not a state dict")
    state = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in state.items()}
    model = load_state(RaSeformer(setup.localizer), state, str(ckpt)).eval()
    epoch = raw.get("epoch")
    trained_on = (f"imported from {ckpt.name} ({key}{f', epoch {epoch}' if isinstance(epoch, int) else ''})"
                  f" with {Path(config_yaml).name if config_yaml else 'the release config'}")
    return write_model_dir(model, setup, out_dir, trained_on=trained_on, name=Path(out_dir).name)


# ---------------------------------------------------------------- inference

class _Localizer:
    """Shared by the ONNX Runtime and eager PyTorch runners: manifest, chunking, post-processing."""

    def __init__(self, model_dir: str | Path):
        from .train import Setup

        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        section = self.manifest.get("localizer")
        if not isinstance(section, dict):
            raise InputError(f"{self.model_dir}: the manifest has no localizer section")
        try:
            cfg = section["config"]
            self.setup = Setup.from_dict({**cfg, "postprocess": section["postprocess"]})
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{self.model_dir}: unusable localizer config in the manifest ({e})") from None
        self.config: LocalizerConfig = self.setup.localizer
        self.postprocess: PostprocessConfig = self.setup.postprocess
        self.grid: FeatureGrid = self.setup.grid
        self.feature_dim = self.config.input_dim

    def raw(self, features: np.ndarray, mask: np.ndarray):
        """features (1, D, L) float32, mask (1, 1, L) bool -> per level logits (T_l, C), offsets (T_l, 2)."""
        raise NotImplementedError

    def detect_arrays(self, features: np.ndarray, duration_s: float, where: str = "features"):
        """(segments (N, 2) s, scores (N,), labels (N,)), best first, exactly as the release's eval."""
        from .train import check_features

        features = check_features(features, where, self.feature_dim)
        if not (duration_s > 0 and np.isfinite(duration_s)):
            raise InputError(f"{where}: duration must be a positive number of seconds, got {duration_s}")
        return detect_segments(features, float(duration_s), self.raw, self.config.fpn_strides,
                               self.config.padded_length, self.postprocess, self.grid, self.config.max_div_factor)

    def detect(self, features: np.ndarray, duration_s: float) -> list[Event]:
        """Events of one recording's (T, D) features, best first; degenerate (zero-length) ones left out."""
        segs, scores, labels = self.detect_arrays(features, duration_s)
        return [Event(float(s), float(e), int(c), float(p))
                for (s, e), p, c in zip(segs, scores, labels) if e > s]


class OnnxLocalizer(_Localizer):
    """The model directory's localizer.onnx under ONNX Runtime (CUDA when present, else CPU)."""

    def __init__(self, model_dir: str | Path, device: str = "auto"):
        super().__init__(model_dir)
        from .model import model_file
        from .runtime import onnx_session, resolve_device

        path = model_file(self.model_dir, self.manifest["localizer"].get("onnx", ONNX_NAME))
        self.session = onnx_session(path, resolve_device(device), what="localizer ONNX graph")
        self.providers = self.session.get_providers()
        n = self.config.num_levels
        self._names = _output_names(n)

    def raw(self, features, mask):
        out = self.session.run(self._names, {"features": features, "mask": mask})
        n = self.config.num_levels
        return [o[0] for o in out[:n]], [o[0] for o in out[n:]]


class TorchLocalizer(_Localizer):
    """The same localizer from localizer.pt in eager PyTorch (training-side checks, speed baseline)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu"):
        super().__init__(model_dir)
        from .model import model_file
        from .runtime import resolve_device

        self.model, _ = load_checkpoint(model_file(self.model_dir, self.manifest["localizer"].get("checkpoint", CHECKPOINT_NAME)))
        self.device = resolve_device(device)
        self.model.to(self.device)

    @torch.no_grad()
    def raw(self, features, mask):
        logits, offsets = self.model(torch.from_numpy(features).to(self.device), torch.from_numpy(mask).to(self.device))
        return [t[0].cpu().numpy() for t in logits], [t[0].cpu().numpy() for t in offsets]


def check_onnx_matches(model_dir: str | Path, length: int = 96, seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch logits/offsets on random features."""
    onnx_loc, torch_loc = OnnxLocalizer(model_dir, "cpu"), TorchLocalizer(model_dir, "cpu")
    rng = np.random.default_rng(seed)
    L = onnx_loc.config.padded_length(length)
    x = rng.standard_normal((1, onnx_loc.feature_dim, L)).astype(np.float32)
    mask = (np.arange(L) < length)[None, None]
    a, b = onnx_loc.raw(x, mask), torch_loc.raw(x, mask)
    diff = max(float(np.abs(p - q).max()) for p, q in zip(a[0] + a[1], b[0] + b[1]))
    if not np.isfinite(diff):
        raise RunError(f"{model_dir}: ONNX and PyTorch outputs are not finite")
    return diff
