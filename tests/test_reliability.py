"""Reliability: what a run does when the folder, the options or another run are not as expected."""

# batch and extract
#
# Most tests use a stand-in scorer that reads events from the "video" file's text, so the batch
# bookkeeping runs in milliseconds; the ones that need the real chain use conftest's tiny_model
# (with --no-roi) on a clip of a few frames.

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from test_batch import EventsFileScorer

import ratscore.batch as batch_module
from ratscore.batch import OutputLock, in_shard, merge_shards, plan_batch, run_batch
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.features import scan_folder
from ratscore.pipeline import content_sha256
from ratscore.video import write_h264

_runner = CliRunner()


def _cli(*args):
    return _runner.invoke(app, [str(a) for a in args])


def _one_line(result, code):
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert err.startswith("ratscore: error: ") and "\n" not in err and "Traceback" not in result.output, result.output
    return err


_RECORD = {"model_sha256": "0" * 64, "no_roi": False, "keep_features": False,
           "racine_config_sha256": None, "mask_sha256": None}


def _folder(tmp_path, files: dict) -> Path:
    folder = tmp_path / "study"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def _tiny_video(path: Path, n_frames: int = 24) -> Path:
    def frame(i):
        image = np.full((48, 64, 3), 40, np.uint8)
        image[10:30, 5 + i: 25 + i] = 200
        return image

    write_h264(path, (frame(i) for i in range(n_frames)), fps=30)
    return path


# --- 1. two videos with one stem are refused up front ------------------------------------------

def test_batch_refuses_two_videos_with_one_stem_before_the_model_loads(tmp_path):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;10", "rat1.m4v": "v1;10", "rat2.mp4": "v1;10"})
    # a model folder that does not exist: the clash must be found before any model is read
    for extra in ([], ["--shard", "0/2"], ["--recursive"]):
        err = _one_line(_cli("batch", folder, "-o", tmp_path / "out", "--model", tmp_path / "no-model", *extra), 2)
        assert "rat1.m4v" in err and "rat1.mp4" in err and "no-model" not in err
    assert not (tmp_path / "out").exists()


def test_same_stem_in_different_sub_folders_is_fine_in_one_it_is_not(tmp_path):
    folder = _folder(tmp_path, {"a/rat1.mp4": "v1;10", "b/rat1.mp4": "v1;10"})
    assert [p.as_posix() for p in plan_batch(folder, recursive=True).videos] == ["a/rat1.mp4", "b/rat1.mp4"]
    (folder / "b" / "rat1.MOV").write_text("v1;10")
    with pytest.raises(InputError, match=r"/b: rat1.MOV and rat1.mp4 share the name 'rat1'"):
        plan_batch(folder, recursive=True)


def test_extract_refuses_two_videos_with_one_stem_before_the_model_loads(tmp_path):
    folder = _folder(tmp_path, {"a.mp4": "x", "a.mkv": "x"})
    err = _one_line(_cli("extract", folder, "-o", tmp_path / "feats", "--model", tmp_path / "no-model", "--no-roi"), 2)
    assert "a.mkv" in err and "a.mp4" in err and "no-model" not in err


# --- 2. resume redoes a video when anything that changes its outputs changed -------------------

def test_resume_compares_the_run_record(tmp_path):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;30;1,2,4"})
    out = tmp_path / "out"
    record = dict(_RECORD)
    run_batch(folder, out, EventsFileScorer(record))
    for key, value in [("model_sha256", "1" * 64), ("no_roi", True), ("keep_features", True),
                       ("racine_config_sha256", "2" * 64), ("mask_sha256", "3" * 64)]:
        record[key] = value
        result = run_batch(folder, out, EventsFileScorer(record))
        assert (result.analysed, result.skipped) == (1, 0), key
    same = EventsFileScorer(record)
    assert (run_batch(folder, out, same).skipped, same.calls) == (1, [])
    # a summary from before the run record existed is not trusted
    old = EventsFileScorer()
    old.run_record = None
    run_batch(folder, out, old, resume=False)
    assert run_batch(folder, out, EventsFileScorer(record)).analysed == 1


def test_content_sha256_is_the_content_not_the_path(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "elsewhere" / "b.yaml"
    b.parent.mkdir()
    a.write_text("racine:\n  staring: 2\n")
    shutil.copy(a, b)
    assert content_sha256(a) == content_sha256(b) and content_sha256(None) is None
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "manifest.json").write_text("{}")
    (model / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    first = content_sha256(model)
    (model / "sub" / "w.bin").write_bytes(b"\x00" * 9 + b"\x01")
    assert content_sha256(model) != first
    (model / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    assert content_sha256(model) == first
    (model / "extra.onnx").write_bytes(b"")
    assert content_sha256(model) != first


def test_batch_resume_redoes_videos_after_an_option_or_config_change(tmp_path, tiny_model):
    folder = tmp_path / "study"
    folder.mkdir()
    _tiny_video(folder / "rat1.mp4")
    out = tmp_path / "out"
    racine = tmp_path / "racine.yaml"
    racine.write_text("racine:\n  staring: 2\n")
    moved = tmp_path / "moved" / "same.yaml"
    moved.parent.mkdir()
    shutil.copy(racine, moved)
    base = ["batch", folder, "-o", out, "--model", tiny_model, "--no-roi", "--device", "cpu", "--threshold", "0"]

    def run(*extra):
        result = _cli(*base, *extra)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "1 analysed, 0 already done" in run()
    assert "1 analysed, 0 already done" in run("--racine-config", racine)
    assert "0 analysed, 1 already done" in run("--racine-config", moved)  # the same content elsewhere
    assert "1 analysed, 0 already done" in run("--racine-config", moved, "--keep-features")
    assert (out / "rat1.features.npy").is_file()


# --- 3. entries named like videos that cannot be read are listed, never skipped silently -----

def _odd_entries(folder: Path) -> dict:
    """Entries named like videos that no run can read, with a word of the reason each must give."""
    (folder / "gone.mp4").symlink_to(folder / "nowhere.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    os.mkfifo(folder / "pipe.mp4")
    (folder / "day1.mov").mkdir()
    (folder / "locked.mp4").write_text("v1;10")
    return {"gone.mp4": "broken symbolic link", "loop.mp4": "loops", "pipe.mp4": "named pipe",
            "day1.mov": "folder", "locked.mp4": "cannot read"}


@pytest.fixture
def locked_is_unreadable(monkeypatch):
    """locked.mp4 cannot be opened: by its mode where that binds, by a refusing os.open as root."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).endswith("locked.mp4"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


def test_batch_lists_every_unreadable_video_entry_and_counts_other_files(tmp_path, locked_is_unreadable):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;30;1,2,4", "notes.txt": "x", ".rat9.mp4": "AppleDouble"})
    reasons = _odd_entries(folder)
    out = tmp_path / "out"
    seen = {}
    result = run_batch(folder, out, EventsFileScorer(), on_video=lambda name, status: seen.update({name: status}))
    failures = pd.read_csv(out / "batch_failures.csv")
    assert sorted(failures.video) == sorted(reasons)
    for name, word in reasons.items():
        assert word in failures.set_index("video").error[name] and word in seen[name]
    summary = pd.read_csv(out / "batch_summary.csv")
    assert dict(zip(summary.video, summary.status)) == {**{n: "failed" for n in reasons}, "rat1.mp4": "ok"}
    assert (result.analysed, result.other_files) == (1, 2)


def test_cli_batch_of_unreadable_entries_exits_1_and_says_what_it_ignored(tmp_path):
    folder = _folder(tmp_path, {"notes.txt": "x", "sub/rat.mp4": "v1;10"})
    reasons = _odd_entries(folder)
    reasons.pop("locked.mp4")  # readable here; nothing else needs a model either
    (folder / "locked.mp4").unlink()
    result = _cli("batch", folder, "-o", tmp_path / "out", "--threshold", "0.3")
    assert result.exit_code == 1, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"0 analysed, 0 already done, {len(reasons)} failed, 1 other files ignored, "
                           "1 sub-folders not searched")
    assert sorted(pd.read_csv(tmp_path / "out" / "batch_failures.csv").video) == sorted(reasons)


def test_scan_never_follows_links_to_folders(tmp_path):
    folder = _folder(tmp_path, {"a/rat1.mp4": "v1;10", "a/day2.mov/rat2.mp4": "v1;10"})
    (folder / "a" / "up").symlink_to(folder)  # a loop through a folder link
    (folder / "b.mp4").symlink_to(folder / "a")
    scan = scan_folder(folder, recursive=True)
    assert [p.as_posix() for p in scan.videos] == ["a/day2.mov/rat2.mp4", "a/rat1.mp4"]
    assert scan.unusable == [(Path("b.mp4"), "a link to a folder (not followed)")]
    assert scan.folders_not_searched == 1
    flat = scan_folder(folder)
    assert flat.videos == [] and flat.folders_not_searched == 1


def test_extract_reports_unreadable_entries_as_failures(tmp_path, tiny_model, locked_is_unreadable):
    folder = tmp_path / "videos"
    folder.mkdir()
    _tiny_video(folder / "good.mp4")
    (folder / "notes.txt").write_text("x")
    reasons = _odd_entries(folder)
    out = tmp_path / "feats"
    err = _one_line(_cli("extract", folder, "-o", out, "--model", tiny_model, "--no-roi", "--device", "cpu"), 1)
    assert f"{len(reasons)} of {len(reasons) + 1} videos failed" in err and "day1.mov" in err
    assert np.load(out / "good.npy").ndim == 2


# --- 4. locks: unsharded excludes all; a shard excludes itself and unsharded; shards run together

class _Holder:
    """Holds an OutputLock in a thread of its own until stopped."""

    def __init__(self, out, shard=None):
        self.ready, self.stop, self.error = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(out, shard), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, out, shard):
        try:
            with OutputLock(out, shard):
                self.ready.set()
                self.stop.wait(20)
        except Exception as e:  # noqa: BLE001 - handed to the test
            self.error = e
            self.ready.set()

    def close(self):
        self.stop.set()
        self.thread.join(10)


@pytest.mark.parametrize("held, started, refused", [
    (None, None, True), (None, (0, 2), True), ((0, 2), None, True), ((0, 2), (0, 2), True),
    ((0, 2), (1, 2), False)])
def test_lock_rule(tmp_path, monkeypatch, held, started, refused):
    monkeypatch.setattr(batch_module, "SHARD_CHECK_S", 0.3)
    holder = _Holder(tmp_path, held)
    try:
        assert holder.error is None
        if refused:
            with pytest.raises(InputError, match="another ratscore batch is writing here") as e:
                with OutputLock(tmp_path, started):
                    pass
            what = "batch" if held is None else f"batch --shard {held[0]}/{held[1]}"
            assert f"({what}, pid {os.getpid()})" in str(e.value)
        else:
            with OutputLock(tmp_path, started):
                pass
    finally:
        holder.close()
    with OutputLock(tmp_path, started):  # free once the holder is gone
        pass


def test_batch_and_a_shard_on_one_folder_do_not_run_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_module, "SHARD_CHECK_S", 0.3)
    folder = _folder(tmp_path, {"rat1.mp4": "v1;10"})
    holder = _Holder(tmp_path / "out", (0, 2))
    try:
        with pytest.raises(InputError, match=r"batch --shard 0/2"):
            run_batch(folder, tmp_path / "out", EventsFileScorer())
        with pytest.raises(InputError, match=r"batch --shard 0/2"):
            merge_shards(tmp_path / "out")
    finally:
        holder.close()


def test_cli_batch_is_refused_before_its_model_loads(tmp_path):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;10"})
    holder = _Holder(tmp_path / "out", (0, 2))
    try:
        err = _one_line(_cli("batch", folder, "-o", tmp_path / "out", "--threshold", "0.3",
                             "--model", tmp_path / "no-model"), 2)
        assert f"another ratscore batch is writing here (batch --shard 0/2, pid {os.getpid()})" in err
    finally:
        holder.close()


def test_shards_starting_together_wait_for_each_others_look_at_the_folder_lock(tmp_path):
    from filelock import FileLock

    tmp_path.mkdir(exist_ok=True)
    brief = FileLock(tmp_path / batch_module.LOCK_NAME, thread_local=False)
    brief.acquire()  # another shard, in the middle of its check
    releaser = threading.Timer(0.3, brief.release)
    releaser.start()
    start = time.monotonic()
    with OutputLock(tmp_path, (1, 2)):
        assert time.monotonic() - start >= 0.2
    releaser.join()


# --- 5. empty folder, empty shard --------------------------------------------------------------

def test_empty_folder_is_exit_2_and_an_empty_shard_is_fine(tmp_path):
    empty = _folder(tmp_path, {"notes.txt": "x"})
    err = _one_line(_cli("batch", empty, "-o", tmp_path / "out", "--model", tmp_path / "no-model"), 2)
    assert "no video files" in err
    one = tmp_path / "one"
    one.mkdir()
    (one / "rat1.mp4").write_text("v1;10")
    idle = next(i for i in range(2) if not in_shard(Path("rat1.mp4"), (i, 2)))
    result = _cli("batch", one, "-o", tmp_path / "sharded", "--shard", f"{idle}/2", "--threshold", "0.3")
    assert result.exit_code == 0, result.output
    assert f"shard {idle}/2: no videos in this shard (1 in the folder)" in result.stdout
    table = pd.read_csv(tmp_path / "sharded" / f"batch_summary.shard-{idle}-of-2.csv")
    assert table.empty and "video" in table.columns


# --- 6. merge exits 1 after failures; integer columns stay integers --------------------------

def test_merge_exit_code_and_integer_columns(tmp_path):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;60;10,20,4;22,30,10", "rat2.mp4": "v1;30;1,2,3", "bad.mp4": "x"})
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    run_batch(folder, whole, EventsFileScorer())
    for i in range(2):
        run_batch(folder, sharded, EventsFileScorer(), shard=(i, 2))
    result = _cli("batch", "--merge", sharded)
    assert result.exit_code == 1 and "(1 failed)" in result.stdout, result.output
    for out in (whole, sharded):
        text = (out / "batch_summary.csv").read_text()
        table = pd.read_csv(out / "batch_summary.csv", dtype=str, keep_default_na=False).set_index("video")
        assert table.loc["rat1.mp4", ["n_events", "n_episodes", "max_stage", "wet_dog_shakes"]].tolist() == [
            "2", "1", "5", "0"], text
        assert table.loc["bad.mp4", "n_events"] == "" and table.loc["bad.mp4", "status"] == "failed"
    assert (whole / "batch_summary.csv").read_bytes() == (sharded / "batch_summary.csv").read_bytes()
    # no failures: exit 0
    ok = _folder(tmp_path / "ok", {"rat1.mp4": "v1;10"})
    for i in range(2):
        run_batch(ok, tmp_path / "ok_out", EventsFileScorer(), shard=(i, 2))
    assert _cli("batch", "--merge", tmp_path / "ok_out").exit_code == 0


# --- 7. warnings (a truncated recording) reach the table and the per-video line ----------------

def test_warnings_column_and_per_video_line(tmp_path):
    folder = _folder(tmp_path, {"rat1.mp4": "v1;30;1,2,4;warn", "rat2.mp4": "v1;30;1,2,4"})
    lines = []
    run_batch(folder, tmp_path / "out", EventsFileScorer(), on_video=lambda name, status: lines.append(f"{name}: {status}"))
    assert lines == ["rat1.mp4: ok (warning: the file breaks off at 12.0 s; 2 frames undecodable)", "rat2.mp4: ok"]
    table = pd.read_csv(tmp_path / "out" / "batch_summary.csv", keep_default_na=False).set_index("video")
    assert table.loc["rat1.mp4", "warnings"] == "the file breaks off at 12.0 s; 2 frames undecodable"
    assert table.loc["rat2.mp4", "warnings"] == ""
    lines.clear()
    run_batch(folder, tmp_path / "out", EventsFileScorer(), on_video=lambda name, status: lines.append(f"{name}: {status}"))
    assert lines[0].startswith("rat1.mp4: skipped (warning: the file breaks off")
