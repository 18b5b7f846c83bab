"""Atomic writes (files.py): a file is whole or absent, never half-written."""

import errno

import pytest

from ratscore import files
from ratscore.errors import InputError, RunError


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "x.csv"
    files.atomic_write_text(target, "old\n")

    def half_then_crash(f):
        f.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half_then_crash)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]  # no temporary file left


def test_full_disk_is_a_run_error_and_leaves_nothing(tmp_path):
    def disk_full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunError, match="disk full"):
        files.atomic_write(tmp_path / "y.json", disk_full)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_an_input_error(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match="not writable"):
        files.atomic_write_text(tmp_path / "z.txt", "x")


# --- one set per video --------------------------------------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402


def texts(**named):
    return {name: (lambda f, t=text: f.write(t.encode())) for name, text in named.items()}


def dead_owner() -> str:
    """The owner tag of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{files._OWNER.rpartition('-')[0]}-{child.pid}"


def test_published_set_is_whole_until_a_file_changes(tmp_path):
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "a1", "rat1.b.json": "b1"}))
    assert set(files.whole_set(tmp_path, "rat1")) == {"rat1.a.csv", "rat1.b.json"}
    (tmp_path / "rat1.a.csv").write_text("edited")
    assert files.whole_set(tmp_path, "rat1") is None
    assert not (tmp_path / files.STAGING_DIR).exists()


def test_interrupted_set_leaves_the_previous_one_whole(tmp_path):
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "old", "rat1.b.json": "old"}))

    def crash(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.publish_set(tmp_path, "rat1", {"rat1.a.csv": lambda f: f.write(b"new"), "rat1.b.json": crash})
    assert (tmp_path / "rat1.a.csv").read_text() == "old" and files.whole_set(tmp_path, "rat1") is not None
    assert not (tmp_path / files.STAGING_DIR).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["rat1.a.csv", "rat1.b.json"]


def test_full_disk_while_staging_leaves_the_previous_set(tmp_path):
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "old"}))

    def disk_full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunError, match="disk full"):
        files.publish_set(tmp_path, "rat1", {"rat1.a.csv": disk_full})
    assert (tmp_path / "rat1.a.csv").read_text() == "old" and files.whole_set(tmp_path, "rat1") is not None


def stage_by(owner: str, out_dir, stem: str, contents: dict, ready: bool):
    stage = out_dir / files.STAGING_DIR / f"{stem}.{owner}.abc123"
    stage.mkdir(parents=True)
    hashes = {}
    for name, text in contents.items():
        (stage / name).write_text(text)
        hashes[name] = files.file_sha256(stage / name)
    if ready:
        (stage / files._READY).write_text(json.dumps({"stem": stem, "files": hashes}))
    return stage


def test_a_half_moved_set_is_not_whole_and_the_next_run_finishes_it(tmp_path):
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "old", "rat1.b.json": "old"}))
    # a writer killed while moving its ready set into place: one file moved, one still staged
    stage = stage_by(dead_owner(), tmp_path, "rat1", {"rat1.a.csv": "new", "rat1.b.json": "new"}, ready=True)
    (stage / "rat1.a.csv").replace(tmp_path / "rat1.a.csv")
    assert files.whole_set(tmp_path, "rat1") is None  # never taken for a whole set
    files.recover(tmp_path)
    assert files.whole_set(tmp_path, "rat1") is not None
    assert (tmp_path / "rat1.b.json").read_text() == "new" and not stage.exists()


def test_recover_discards_an_unfinished_stage_of_a_dead_run_only(tmp_path):
    dead = stage_by(dead_owner(), tmp_path, "rat1", {"rat1.a.csv": "half"}, ready=False)
    alive = stage_by(files._OWNER, tmp_path, "rat2", {"rat2.a.csv": "writing"}, ready=False)
    other_host = stage_by("elsewhere-1", tmp_path, "rat3", {"rat3.a.csv": "x"}, ready=False)
    leftover = tmp_path / f".rat1.a.csv.{dead_owner()}.xyz.tmp"
    leftover.write_text("half")
    files.recover(tmp_path)
    assert not dead.exists() and not leftover.exists() and alive.exists() and other_host.exists()
    assert not (tmp_path / "rat1.a.csv").exists()


def test_a_new_set_removes_files_only_the_old_set_had(tmp_path):
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "1", "rat1.features.npy": "f"}))
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.b.csv": "2"}))  # another kind of set keeps them
    assert (tmp_path / "rat1.features.npy").exists() and (tmp_path / "rat1.a.csv").exists()
    files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": "2"}), removes=["rat1.features.npy", "rat1.a.csv"])
    assert not (tmp_path / "rat1.features.npy").exists() and (tmp_path / "rat1.a.csv").read_text() == "2"
    assert files.whole_set(tmp_path, "rat1") is not None


def test_concurrent_sets_of_one_video_end_whole(tmp_path):
    def publish(tag):
        for _ in range(20):
            files.publish_set(tmp_path, "rat1", texts(**{"rat1.a.csv": tag, "rat1.b.json": tag * 2}))

    threads = [threading.Thread(target=publish, args=(tag,)) for tag in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    whole = files.whole_set(tmp_path, "rat1")
    assert whole is not None
    a, b = (tmp_path / "rat1.a.csv").read_text(), (tmp_path / "rat1.b.json").read_text()
    assert b == a * 2  # both files from one run
