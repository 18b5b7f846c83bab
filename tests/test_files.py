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
