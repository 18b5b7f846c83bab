"""Import of the RatSeizure release's localizer checkpoint (ActionFormer format) as a model folder."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import load_state, safe_load
from ..errors import InputError
from ..localizer import RaSeformer
from .export import write_model_dir
from .localizer import read_config


def import_checkpoint(ckpt: str | Path, config_yaml: str | Path | None, out_dir: str | Path) -> Path:
    """A model directory from an ActionFormer/RatSeizure release checkpoint (`state_dict_ema`,
    keys prefixed `module.`) and its YAML config; InputError on anything else."""
    ckpt = Path(ckpt)
    setup = read_config(config_yaml)
    raw = safe_load(ckpt)
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
