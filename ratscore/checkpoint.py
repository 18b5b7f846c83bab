"""The localizer checkpoint format (localizer.pt): the network's weights with the config that
rebuilds it, as plain data.

Checkpoints are read with `torch.load(weights_only=True)`: a file that needs code to unpickle
is refused, never run.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import InputError
from .localizer import AveragedRaSeformer, LocalizerConfig, RaSeformer

LOCALIZER_FORMAT = "ratscore-localizer"


def safe_load(path: Path) -> dict:
    """torch.load without running code from the file; InputError when it is not a plain-data checkpoint."""
    try:
        ckpt = torch_load_plain(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is put in words by load_failure
        needs_code, reason = load_failure(path, e)
        if needs_code:
            raise InputError(f"{path}: refused: the checkpoint needs code to load, not only weights ({reason})") from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: not a checkpoint (expected a dict, got {type(ckpt).__name__})")
    return ckpt


def torch_load_plain(path: Path):
    """torch.load(weights_only=True) on the CPU, quietly: torch warns on stderr about pickle
    protocols it did not write, and a command's errors are one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


_PICKLE_START = tuple(b"\x80" + bytes([protocol]) for protocol in range(2, 6))


def load_failure(path: Path, error: Exception) -> tuple[bool, str]:
    """Why torch.load(weights_only=True) refused `path`, in words: (needs_code, reason).

    needs_code is True only for a pickle that names code (a class or function) to rebuild its
    objects: torch's weights-only unpickler says "GLOBAL <name>" then. Anything else is told from
    the file's first bytes: empty, a zip archive (PyTorch's format) that is damaged or not
    PyTorch's, a Python pickle not written by torch.save, text, or bytes of some other kind. torch's
    own message is never quoted: it runs to paragraphs of advice about weights_only.
    """
    text = str(error)
    named = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if named and not _cut_name(path, named.group(1)):
        return True, f"it names {named.group(1)}; ratscore never runs code from a file"
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return False, f"cannot read it: {e.strerror or type(e).__name__}"
    if not head:
        return False, "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        # torch reads a cut archive as a missing central directory, or fails to seek in it (OSError)
        if ("central directory" in text or "corrupt" in text.lower()
                or isinstance(error, (zipfile.BadZipFile, OSError, EOFError))):
            return False, "a zip archive that is cut off or damaged; copy the file again"
        return False, "a zip archive, but not laid out as PyTorch saves one"
    if head.startswith(_PICKLE_START):
        if named or (isinstance(error, (EOFError, pickle.UnpicklingError)) and "Unsupported operand" not in text):
            return False, "a pickle that is cut off or damaged; copy the file again"
        return False, "a Python pickle, not a file saved by torch.save: such a file can run code, so it is not loaded"
    sample = None
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            sample = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if sample is not None and all(c.isprintable() or c in "\t\r\n" for c in sample):
        return False, "a text file"
    return False, "its bytes are neither a zip archive nor a pickle, as PyTorch saves weights"


def _cut_name(path: Path, name: str) -> bool:
    """True when the file ends inside the name the unpickler read: a file cut off in the middle of
    one (torch._utils._rebuild_tens...), not code the file asks for."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 256))
            tail = f.read()
    except OSError:
        return False
    # the unpickler reads a name up to a newline and drops the last byte it got: a cut name is the
    # file's unfinished last line, less at most one byte
    attr = name.rpartition(".")[2].encode()
    last = tail.rsplit(b"\n", 1)[-1]
    return bool(attr) and last.startswith(attr) and len(last) <= len(attr) + 1


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


def localizer_checkpoint_bytes(model: RaSeformer | AveragedRaSeformer, setup: dict) -> bytes:
    """localizer.pt's content: {"format", "setup" (every config section, plain data), "state_dict"};
    an average of several RaSeformers has "members" (one state dict each) instead of "state_dict"."""
    def plain(network):
        return {k: v.detach().cpu() for k, v in network.state_dict().items()}

    weights = ({"members": [plain(m) for m in model.members]} if isinstance(model, AveragedRaSeformer)
               else {"state_dict": plain(model)})
    buf = io.BytesIO()
    torch.save({"format": LOCALIZER_FORMAT, "setup": setup, **weights}, buf)
    return buf.getvalue()


def read_localizer_checkpoint(path: str | Path) -> tuple[RaSeformer | AveragedRaSeformer, dict]:
    """(the network in eval mode, the checkpoint's setup dict) from a ratscore localizer checkpoint:
    a RaSeformer, or the AveragedRaSeformer of its members."""
    path = Path(path)
    ckpt = safe_load(path)
    members = ckpt.get("members")
    if (ckpt.get("format") != LOCALIZER_FORMAT or "setup" not in ckpt
            or not ("state_dict" in ckpt or (isinstance(members, list) and len(members) >= 2))):
        raise InputError(f"{path}: not a ratscore localizer checkpoint")
    setup = ckpt["setup"]
    try:
        config = LocalizerConfig.from_dict(setup["localizer"])
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{path}: unusable config in the checkpoint ({e})") from None
    if "state_dict" in ckpt:
        return load_state(RaSeformer(config), ckpt["state_dict"], str(path)).eval(), setup
    return AveragedRaSeformer([load_state(RaSeformer(config), state, f"{path} (member {i})")
                               for i, state in enumerate(members)]).eval(), setup
