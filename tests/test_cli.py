"""The command line as a user meets it: `ratscore` itself (cli.main), not only its commands.

Usage errors are one line and exit 2 like every other error; an output that cannot be a folder is
refused before any model loads; SIGTERM ends a run as Ctrl-C does and leaves no temporary file.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratscore.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["ratscore", *map(str, args)])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as ended:
        main()
    # main's SIGTERM handler does not outlive it: left installed in pytest's process, a SIGTERM to
    # the test run (a CI time limit) became a KeyboardInterrupt inside whichever later test was
    # running, which its command reported as "interrupted" (exit 130) while the run went on
    assert signal.getsignal(signal.SIGTERM) is before
    return ended.value.code, capsys.readouterr()


@pytest.mark.parametrize("args", [
    ["analyze"],
    ["analyze", "x.mp4", "--bin"],
    ["analyze", "x.mp4", "--bin", "wide"],
    ["frobnicate"],
    ["train", "localizer", "-o", "x"],
    ["batch", "--no-such-option"],
])
def test_usage_errors_are_one_line_exit_2(monkeypatch, capsys, args):
    code, out = run_main(monkeypatch, capsys, *args)
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ratscore: error: "), out.err


def test_version(monkeypatch, capsys):
    from ratscore import __version__

    code, out = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and out.out.strip() == f"ratscore {__version__}"


@pytest.mark.parametrize("command", ["analyze", "timeline"])
def test_output_that_is_a_file_is_refused_before_any_work(monkeypatch, capsys, tmp_path, command):
    in_the_way = tmp_path / "results"
    in_the_way.write_text("not a folder")
    source = SAMPLES / ("clip_7_0001.mp4" if command == "analyze" else "example.events.csv")
    code, out = run_main(monkeypatch, capsys, command, source, "-o", in_the_way / "sub")
    assert code == 2 and "exists and is not a folder" in out.err and len(out.err.strip().splitlines()) == 1
    assert in_the_way.read_text() == "not a folder"


def test_missing_video_is_refused_before_the_model_loads(monkeypatch, capsys, tmp_path):
    import ratscore.pipeline as pipeline

    def never(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(pipeline.Analyzer, "__init__", never)
    code, out = run_main(monkeypatch, capsys, "analyze", tmp_path / "absent.mp4", "-o", tmp_path / "o")
    assert code == 2 and "absent.mp4" in out.err


def test_sigterm_ends_a_run_like_ctrl_c_and_leaves_no_temporary_file(tmp_path, tiny_model):
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "ratscore.cli", "analyze", str(SAMPLES / "long_18_0.mp4"),
                            "-o", str(out), "--model", str(tiny_model), "--no-roi", "--device", "cpu"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # past start-up, into the video
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ratscore: error: interrupted"
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert left == [], left
