"""The localizer checkpoint format (localizer.pt): the network's weights with the config that
rebuilds it, as plain data.

Checkpoints are read with `torch.load(weights_only=True)`: a file that needs code to unpickle
is refused, never run.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from .errors import InputError
from .localizer import LocalizerConfig, RaSeformer

LOCALIZER_FORMAT = "ratscore-localizer"


def safe_load(path: Path) -> dict:
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


def localizer_checkpoint_bytes(model: RaSeformer, setup: dict) -> bytes:
    """localizer.pt's content: {"format", "setup" (every config section, plain data), "state_dict"}."""
    buf = io.BytesIO()
    torch.save({"format": LOCALIZER_FORMAT, "setup": setup,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buf)
    return buf.getvalue()


def read_localizer_checkpoint(path: str | Path) -> tuple[RaSeformer, dict]:
    """(RaSeformer in eval mode, the checkpoint's setup dict) from a ratscore localizer checkpoint."""
    path = Path(path)
    ckpt = safe_load(path)
    if ckpt.get("format") != LOCALIZER_FORMAT or "setup" not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path}: not a ratscore localizer checkpoint")
    setup = ckpt["setup"]
    try:
        config = LocalizerConfig.from_dict(setup["localizer"])
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{path}: unusable config in the checkpoint ({e})") from None
    return load_state(RaSeformer(config), ckpt["state_dict"], str(path)).eval(), setup
