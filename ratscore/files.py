"""Writing files so that each is whole or absent, and a video's outputs are one set.

Every file ratscore writes goes through `atomic_write`: to a temporary file in the same folder,
flushed to disk, then renamed over the target, so an interrupted run (a kill, a full disk) never
leaves half a file, and an earlier complete file stays as it was until its replacement is whole.

A video's outputs go through `publish_set`: every file is first written whole into a staging
folder (`.ratscore-staging/` inside the output folder); then, under the video's lock, the files
are moved into place and a marker (`.<stem>.set.json`) naming each file's hash is written last.
`whole_set` trusts a set only when its marker is there and every file matches it, so a set that a
kill, a full disk or a concurrent run left half-moved is never taken for a whole one; and the next
run that writes into the folder finishes a staged set whose writer died (all its files were whole)
or throws away one that was never complete. Temporary names carry the host and process id, so
only leftovers of processes that are gone are touched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping, Optional

from .errors import InputError, RunError


_UMASK = os.umask(0)
os.umask(_UMASK)

TMP_SUFFIX = ".tmp"
STAGING_DIR = ".ratscore-staging"
_READY = "set.json"  # written into a staging folder once every file of the set is whole


def _owner() -> str:
    host = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
    return f"{host}-{os.getpid()}"


_OWNER = _owner()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call write(f) on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_OWNER}.", suffix=TMP_SUFFIX, dir=path.parent)
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


def check_output_folder(path: str | Path) -> Path:
    """An output folder that is there or can be made: a file in its place (or in its parents')
    is one InputError at once, before any work is done for it."""
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                raise InputError(f"{existing}: exists and is not a folder (give -o a folder)")
            break
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_user_csv(path: Path, what: str, expected: str, **read_options):
    """A CSV table a user gives (`what`: "detections", "events"), as a pandas DataFrame; a missing,
    empty or unreadable file is one InputError (`expected`: the columns it should have, in words)."""
    import pandas as pd

    try:
        return pd.read_csv(path, **read_options)
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what} file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file, expected {expected}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None


# --- one set of files per video ----------------------------------------------------------------

def marker_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f".{stem}.set.json"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gone(owner: str) -> bool:
    """Whether the process named by a temporary name's owner tag (host-pid) has ended; a tag of
    another host, or one that does not parse, is never taken for gone."""
    host, _, pid = owner.rpartition("-")
    if host != _OWNER.rpartition("-")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _lock(out_dir: Path, stem: str):
    from filelock import FileLock

    return FileLock(str(Path(out_dir) / f".{stem}.set.lock"))


def _commit(out_dir: Path, stage: Path) -> None:
    """Move a ready staging folder's files into place, marker last, under the video's lock; the
    files the set says it replaces and does not hold go too (no stale file is left beside it)."""
    ready = json.loads((stage / _READY).read_text())
    stem, files = ready["stem"], ready["files"]
    with _lock(out_dir, stem):
        if not (stage / _READY).exists():  # another run finished it while this one waited
            return
        for name in files:
            if (stage / name).exists():
                os.replace(stage / name, out_dir / name)
        for name in ready.get("removes", ()):
            if name not in files and (out_dir / name).is_file():
                os.unlink(out_dir / name)
        os.replace(stage / _READY, marker_path(out_dir, stem))
        shutil.rmtree(stage, ignore_errors=True)


def publish_set(out_dir: str | Path, stem: str, files: Mapping[str, Callable[[IO[bytes]], None]],
                removes: Iterable[str] = ()) -> list[Path]:
    """Write one video's outputs (file name -> writer) into out_dir as one set; see the module doc.
    `removes`: names of files an earlier set of this kind may have left (an optional output not
    asked for this time); they are deleted when the set is published. Returns the published paths."""
    out_dir = Path(out_dir)
    recover(out_dir)
    root = out_dir / STAGING_DIR
    try:
        for attempt in range(3):  # another run may remove the emptied staging folder in between
            root.mkdir(parents=True, exist_ok=True)
            try:
                stage = Path(tempfile.mkdtemp(prefix=f"{stem}.{_OWNER}.", dir=root))
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
    except PermissionError:
        raise InputError(f"{out_dir}: output folder is not writable") from None
    except OSError as e:
        raise _os_error(out_dir / stem, e) from None
    try:
        hashes = {}
        for name, write in files.items():
            hashes[name] = file_sha256(atomic_write(stage / name, write))
        removes = sorted(set(removes) - set(files))
        atomic_write_text(stage / _READY, json.dumps({"stem": stem, "files": hashes, "removes": removes}, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_if_empty(root)
        raise
    try:
        _commit(out_dir, stage)
    except OSError as e:
        raise _os_error(out_dir / stem, e) from None
    _remove_if_empty(root)
    return [out_dir / name for name in files]


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only when no other run is staging a set there
    except OSError:
        pass


def whole_set(out_dir: str | Path, stem: str, only: Optional[Iterable[str]] = None) -> Optional[dict[str, Path]]:
    """name -> path of a video's published set when its marker is there and every file it names
    (or each of `only`, which must be of the set) is present with the recorded content; None
    otherwise (absent, half-moved, or changed since)."""
    out_dir = Path(out_dir)
    try:
        files = json.loads(marker_path(out_dir, stem).read_text())["files"]
        checked = files if only is None else {name: files[name] for name in only}
        if all((out_dir / name).is_file() and file_sha256(out_dir / name) == digest for name, digest in checked.items()):
            return {name: out_dir / name for name in files}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def recover(out_dir: str | Path) -> None:
    """Finish or discard what processes that are gone left in out_dir: a staged set whose files
    were all whole is published, one that was not is removed, and their temporary files go."""
    out_dir = Path(out_dir)
    root = out_dir / STAGING_DIR
    if root.is_dir():
        for stage in sorted(root.iterdir()):
            parts = stage.name.split(".")
            if len(parts) < 3 or not _gone(parts[-2]):
                continue
            if (stage / _READY).is_file():
                try:
                    _commit(out_dir, stage)
                except (OSError, ValueError, KeyError):
                    shutil.rmtree(stage, ignore_errors=True)
            else:
                shutil.rmtree(stage, ignore_errors=True)
    if out_dir.is_dir():
        for tmp in out_dir.glob(f".*{TMP_SUFFIX}"):
            parts = tmp.name.split(".")
            if len(parts) >= 4 and _gone(parts[-3]):
                try:
                    tmp.unlink()
                except OSError:
                    pass
