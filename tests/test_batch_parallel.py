"""`batch --workers N`: videos decoded, detected and cropped in worker processes, one I3D here.

Every test compares with `--workers 0` (one video at a time, as `analyze` does): the CSV and JSON
outputs must be the same bytes, a broken video fails alone and with the same line, resume and
shards work as before, and an interrupted or killed run leaves no worker process behind.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from ratscore.video import write_h264

from ratscore.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"
runner = CliRunner()


def _tiny_args(model):
    return ["--model", str(model), "--no-roi", "--device", "cpu", "--threshold", "0"]


def _short_video(path: Path, n_frames: int) -> Path:
    def frame(i: int) -> np.ndarray:
        image = np.full((48, 64, 3), 40, np.uint8)
        image[10:30, 5 + i % 30: 25 + i % 30] = 200
        return image

    write_h264(path, (frame(i) for i in range(n_frames)), fps=30)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three sample clips (one in a sub-folder), a file that is no video, a video shorter than one
    clip (it decodes, then fails in its worker) and a short video of a few clips."""
    folder = tmp_path_factory.mktemp("study")
    (folder / "day2").mkdir()
    shutil.copy(SAMPLES / "clip_7_0000.mp4", folder / "rat1.mp4")
    shutil.copy(SAMPLES / "clip_7_0002.mp4", folder / "rat3.mp4")
    shutil.copy(SAMPLES / "clip_7_0001.mp4", folder / "day2" / "rat2.mp4")
    (folder / "day2" / "broken.mp4").write_bytes(b"not a video at all")
    _short_video(folder / "day2" / "blink.mp4", 8)
    _short_video(folder / "rat4.mp4", 70)  # 14 clips: a last batch of 6
    return folder


def _outputs(out: Path) -> dict[str, bytes]:
    """Every CSV and JSON file under `out` by relative path, and each BORIS project less its dates."""
    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.suffix in (".csv", ".json") and not any(p.startswith(".") for p in path.relative_to(out).parts):
            found[rel] = path.read_bytes()
        elif path.suffix == ".boris":
            doc = json.loads(path.read_text())
            doc.pop("project_date", None)
            for observation in doc.get("observations", {}).values():
                observation.pop("date", None)
            found[rel] = json.dumps(doc, sort_keys=True).encode()
    return found


def _batch(folder, out, *args):
    result = runner.invoke(app, ["batch", str(folder), "-o", str(out), *map(str, args)])
    return result


@pytest.fixture(scope="module")
def one_at_a_time(study, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("workers0")
    result = _batch(study, out, "--recursive", "--workers", "0", *_tiny_args(tiny_model))
    assert result.exit_code == 1, result.output  # two videos fail
    return out, result.stdout


def test_workers_give_the_same_files_and_lines(study, tiny_model, one_at_a_time, tmp_path):
    whole, lines = one_at_a_time
    out = tmp_path / "workers2"
    result = _batch(study, out, "--recursive", "--workers", "2", *_tiny_args(tiny_model))
    assert result.exit_code == 1, result.output
    assert result.stdout.replace(str(out), "OUT") == lines.replace(str(whole), "OUT")  # the same lines, in order
    mine, theirs = _outputs(out), _outputs(whole)
    assert sorted(mine) == sorted(theirs)
    assert {"rat1.track.csv", "rat4.track.csv"} <= set(mine)  # the track travels from the workers too
    assert len([n for n in mine if n.endswith(".summary.json")]) == 4
    for name in theirs:
        assert mine[name] == theirs[name], name
    failures = pd.read_csv(out / "batch_failures.csv").set_index("video").error
    assert sorted(failures.index) == ["day2/blink.mp4", "day2/broken.mp4"]  # each fails alone
    assert "shorter than one 16-frame clip" in failures["day2/blink.mp4"]
    assert "not a readable video" in failures["day2/broken.mp4"]
    assert list(pd.read_csv(out / "batch_summary.csv").status) == ["failed", "failed", "ok", "ok", "ok", "ok"]


def test_resume_skips_done_videos(study, tiny_model, one_at_a_time, tmp_path):
    whole, _ = one_at_a_time
    out = tmp_path / "resumed"
    shutil.copytree(whole, out)
    for path in out.glob("rat3.*"):
        path.unlink()
    (out / ".rat3.set.json").unlink()
    before = (out / "rat1.events.csv").stat().st_mtime_ns
    result = _batch(study, out, "--recursive", "--workers", "2", *_tiny_args(tiny_model))
    assert result.exit_code == 1, result.output
    assert "1 analysed, 3 already done, 2 failed" in result.stdout
    assert "rat1.mp4: skipped" in result.stdout and "rat3.mp4: ok" in result.stdout
    assert (out / "rat1.events.csv").stat().st_mtime_ns == before
    assert _outputs(out) == _outputs(whole)


def test_shards_with_workers_then_merge(study, tiny_model, one_at_a_time, tmp_path):
    whole, _ = one_at_a_time
    out = tmp_path / "sharded"
    for i in range(2):
        result = _batch(study, out, "--recursive", "--workers", "2", "--shard", f"{i}/2", *_tiny_args(tiny_model))
        assert result.exit_code in (0, 1), result.output
    assert runner.invoke(app, ["batch", "--merge", str(out)]).exit_code == 1
    assert (out / "batch_summary.csv").read_bytes() == (whole / "batch_summary.csv").read_bytes()
    mine = {k: v for k, v in _outputs(out).items() if "shard" not in k}
    assert mine == _outputs(whole)


def test_bundled_model_with_its_detector(tmp_path):
    # the model's ONNX detector in each worker: the same crops, so the same boxes and features
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("clip_7_0001.mp4", "clip_7_0002.mp4"):
        shutil.copy(SAMPLES / name, folder / name)
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        result = _batch(folder, out, "--workers", workers, "--device", "cpu", "--keep-features")
        assert result.exit_code == 0, result.output
        runs[workers] = _outputs(out)
        found = json.loads((out / "clip_7_0002.summary.json").read_text())["trust"]["rat_found_fraction"]
        assert found is not None and found > 0.5
    assert runs[2] == runs[0]
    assert (tmp_path / "out2" / "clip_7_0001.features.npy").read_bytes() == \
        (tmp_path / "out0" / "clip_7_0001.features.npy").read_bytes()


def test_workers_option_is_checked(study, tmp_path):
    result = _batch(study, tmp_path / "out", "--workers", "-1")
    assert result.exit_code == 2 and "--workers" in result.output


# --- the worker processes themselves -------------------------------------------------------------

def _recipe():
    from ratscore.crops import CropRecipe
    from ratscore.grid import DEFAULT_GRID
    from ratscore.roi import RoiOptions

    return CropRecipe(64, DEFAULT_GRID, RoiOptions(), None)


def _drain(pool, key, timeout=60):
    deadline = time.time() + timeout
    crops = 0
    while time.time() < deadline:
        for kind, got, payload in pool.receive(timeout=1):
            assert got == key
            if kind == "crops":
                crops += len(payload)
            else:
                return kind, payload, crops
    raise AssertionError("no answer from the worker")


def test_a_worker_that_dies_fails_its_video_only():
    from ratscore.crops import CropWorkers
    from ratscore.errors import RunError

    with CropWorkers(1, _recipe()) as pool:
        pool.submit("long", SAMPLES / "long_18_0.mp4")
        for kind, _, _ in pool.receive(timeout=60):
            assert kind == "crops"  # it has started
        os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        kind, error, _ = _drain(pool, "long")
        assert kind == "error" and isinstance(error, RunError)
        assert "long_18_0.mp4: the worker process making its crops ended unexpectedly (killed by signal 9)" in str(error)
        pool.submit("next", SAMPLES / "clip_7_0001.mp4")  # a new worker takes the next video
        kind, tally, crops = _drain(pool, "next")
        assert kind == "done" and tally.n_frames == crops == 300 and tally.boxes.shape == (300, 4)


def test_mixed_batches_keep_each_videos_rows(tiny_model, monkeypatch):
    # On a GPU the clips of several videos share larger batches; forced on here (ONNX Runtime may
    # differ in the last bits with a batch's size, hence allclose), the rows must go to their videos.
    from ratscore.features import ClipEncoder, extract_features, extract_many, load_front_end

    front = load_front_end(tiny_model, device="cpu", no_roi=True)
    videos = [SAMPLES / "clip_7_0001.mp4", SAMPLES / "clip_7_0003.mp4", SAMPLES / "clip_7_0000.mp4"]
    alone = [extract_features(v, front, progress=False) for v in videos]
    monkeypatch.setattr(ClipEncoder, "on_gpu", property(lambda self: True))
    jobs = [(0, videos[0]), ("skip", None), (1, videos[1]), (2, videos[2])]
    got = list(extract_many(jobs, front, workers=2))
    assert [key for key, _ in got] == [0, "skip", 1, 2] and got[1][1] is None
    for (_, result), single in zip([g for g in got if g[0] != "skip"], alone):
        assert result.features.shape == single.features.shape
        np.testing.assert_allclose(result.features, single.features, rtol=0, atol=1e-5)
        assert np.array_equal(result.boxes, single.boxes) and result.n_frames == single.n_frames


# --- stopping -----------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_batch(tmp_path, tiny_model):
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(3):
        shutil.copy(SAMPLES / "long_18_0.mp4", folder / f"rat{i}.mp4")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ratscore.cli", "batch", str(folder), "-o", str(out),
                             "--workers", "2", *_tiny_args(tiny_model)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
    assert len(workers) == 2, "the workers did not start"
    time.sleep(2)  # into the videos
    return proc, _children(proc.pid), out  # the workers and multiprocessing's resource tracker


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _gone(pids, seconds=15) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_sigterm_ends_the_run_and_its_workers_and_leaves_no_temporary_file(tmp_path, tiny_model):
    proc, workers, out = _start_batch(tmp_path, tiny_model)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ratscore: error: interrupted"
    assert _gone(workers)
    left = [p for p in out.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".ratscore-staging" in p.parts)]
    assert left == []


def test_workers_end_with_a_killed_parent(tmp_path, tiny_model):
    proc, workers, _ = _start_batch(tmp_path, tiny_model)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _gone(workers)
