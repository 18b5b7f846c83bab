"""The localizer of a model folder, run on one recording's features: ONNX Runtime (what analyze
uses; CUDA when present) or eager PyTorch (the speed baseline and training-side checks). Both
chunk long recordings and post-process exactly as the RatSeizure release's eval (postprocess.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from .errors import InputError, RunError
from .features import check_features
from .model import Model, load_model
from .postprocess import ChunkedDetection
from .timeline import Event

ModelLike = Union[str, Path, Model]


def output_names(num_levels: int) -> list[str]:
    """The localizer ONNX graph's outputs: per pyramid level, class logits then offsets."""
    return [f"cls_logits_{l}" for l in range(num_levels)] + [f"offsets_{l}" for l in range(num_levels)]


class _Localizer:
    """Shared by the ONNX Runtime and eager PyTorch runners: the model's spec, chunking, post-processing."""

    def __init__(self, model: ModelLike):
        self.model_info = model if isinstance(model, Model) else load_model(model)
        self.model_dir = self.model_info.path
        if self.model_info.localizer is None:
            raise InputError(f"{self.model_dir}: the manifest has no localizer section")
        spec = self.model_info.localizer
        self.config = spec.config
        self.postprocess = spec.postprocess
        self.grid = self.model_info.grid
        self.feature_dim = self.config.input_dim

    def raw(self, features: np.ndarray, mask: np.ndarray):
        """features (1, D, L) float32, mask (1, 1, L) bool -> per level logits (T_l, C), offsets (T_l, 2)."""
        raise NotImplementedError

    def chunked(self) -> ChunkedDetection:
        """A detection to feed a recording's features while it is decoded (`extract_features`'s
        `on_features`), then to hand to `detect`: the chunks known not to be the last are scored
        while the video is still decoding."""
        return ChunkedDetection(self.raw, self.config.fpn_strides, self.config.padded_length, self.postprocess,
                                self.grid, self.config.max_div_factor)

    def detect_arrays(self, features: np.ndarray, duration_s: float, where: str = "features",
                      fed: ChunkedDetection | None = None, at_least: float = 0.0):
        """(segments (N, 2) s, scores (N,), labels (N,)), best first, exactly as the release's eval.
        `fed`: a `chunked()` detection fed these features' first steps, whose scored chunks are kept.
        `at_least`: only the detections scoring at least that (the same ones; ChunkedDetection.finish)."""
        features = check_features(features, where, self.feature_dim)
        if not (duration_s > 0 and np.isfinite(duration_s)):
            raise InputError(f"{where}: duration must be a positive number of seconds, got {duration_s}")
        return (fed or self.chunked()).finish(features, float(duration_s), at_least)

    def detect(self, features: np.ndarray, duration_s: float, fed: ChunkedDetection | None = None,
               at_least: float = 0.0) -> list[Event]:
        """Events of one recording's (T, D) features, best first; degenerate (zero-length) ones left out."""
        segs, scores, labels = self.detect_arrays(features, duration_s, fed=fed, at_least=at_least)
        return [Event(float(s), float(e), int(c), float(p))
                for (s, e), p, c in zip(segs, scores, labels) if e > s]


class OnnxLocalizer(_Localizer):
    """The model folder's localizer.onnx under ONNX Runtime (CUDA when present, else CPU)."""

    def __init__(self, model: ModelLike, device: str = "auto"):
        super().__init__(model)
        from .runtime import onnx_session, resolve_device

        spec = self.model_info.localizer
        if not spec.onnx:
            raise InputError(f"{self.model_dir}: the localizer has no ONNX graph")
        path = self.model_info.file(spec.onnx)
        # planning buffer reuse for this graph (several averaged networks) took 3.7 of its 4.1 s
        # load, and scoring is no faster with it (benchmarks/README.md)
        self.session = onnx_session(path, resolve_device(device), what="localizer ONNX graph",
                                    plan_buffer_reuse=False)
        self.providers = self.session.get_providers()
        self._names = output_names(self.config.num_levels)

    def raw(self, features, mask):
        out = self.session.run(self._names, {"features": features, "mask": mask})
        n = self.config.num_levels
        return [o[0] for o in out[:n]], [o[0] for o in out[n:]]


class TorchLocalizer(_Localizer):
    """The same localizer from localizer.pt in eager PyTorch."""

    def __init__(self, model: ModelLike, device: str = "cpu"):
        super().__init__(model)
        from .checkpoint import read_localizer_checkpoint
        from .runtime import resolve_device

        spec = self.model_info.localizer
        if not spec.checkpoint:
            raise InputError(f"{self.model_dir}: the localizer has no PyTorch checkpoint")
        self.model, _ = read_localizer_checkpoint(self.model_info.file(spec.checkpoint))
        self.device = resolve_device(device)
        self.model.to(self.device)

    def raw(self, features, mask):
        import torch

        with torch.no_grad():
            logits, offsets = self.model(torch.from_numpy(features).to(self.device),
                                         torch.from_numpy(mask).to(self.device))
        return [t[0].cpu().numpy() for t in logits], [t[0].cpu().numpy() for t in offsets]


def check_onnx_matches(model_dir: ModelLike, length: int = 96, seed: int = 0) -> float:
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
