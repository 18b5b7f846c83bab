"""Writing a file so that it is whole or absent.

Every file ratscore writes goes through `atomic_write`: to a temporary file in the same folder,
flushed to disk, then renamed over the target, so an interrupted run (a kill, a full disk) never
leaves half a file, and an earlier complete file stays as it was until its replacement is whole.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from .errors import InputError, RunError


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call write(f) on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError:
        raise InputError(f"{path.parent}: output folder is not writable") from None
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should be as readable as any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _os_error(path, e) from None
        raise
    return path


def _os_error(path: Path, e: OSError) -> Exception:
    if e.errno == errno.ENOSPC:
        return RunError(f"{path}: disk full (nothing half-written was left behind)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"{path.parent}: output folder is not writable")
    return RunError(f"{path}: cannot write ({e.strerror or e})")


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
