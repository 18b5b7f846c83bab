"""benchmarks/light_switch.py: the copy of a recording with the lights switched halfway, which
bench_real_roi.py measures the motion model's stretches with (benchmarks/README.md)."""

import sys

import numpy as np
import pytest
from benchmark_scripts import load_benchmark
from ratscore.video import write_h264

from ratscore.video import read_frames


def test_the_copy_is_dimmed_from_its_middle_with_its_positions(tmp_path, monkeypatch):
    videos, positions, out = tmp_path / "videos", tmp_path / "positions", tmp_path / "out"
    videos.mkdir(), positions.mkdir()
    frames = (np.full((64, 96, 3), 200, np.uint8) for _ in range(60))  # 2 s at 30 fps
    write_h264(videos / "rec.mp4", frames, 30.0)
    (positions / "rec.positions.csv").write_text("time_s,x,y\n0.5,40,30\n")
    (positions / "rec.about.txt").write_text("a grey floor\n")
    tool = load_benchmark("light_switch")
    monkeypatch.setattr(sys, "argv", ["light_switch.py", str(videos), str(positions), str(out), "--gain", "0.5"])
    tool.main()

    brightness = [float(f.image.mean()) for f in read_frames(out / "videos" / "rec_lights.mp4")]
    assert len(brightness) == 60 and [p.name for p in (out / "videos").iterdir()] == ["rec_lights.mp4"]
    assert abs(np.mean(brightness[:25]) - 200) < 4 and abs(np.mean(brightness[35:]) - 100) < 4
    assert (out / "positions" / "rec_lights.positions.csv").read_text() == "time_s,x,y\n0.5,40,30\n"
    assert (out / "positions" / "rec_lights.about.txt").exists()
    # a fade goes from one to the other over its seconds
    assert tool.gain_at(1.0, 1.0, 0.5, 2.0) == 1.0 and tool.gain_at(2.0, 1.0, 0.5, 2.0) == 0.75
    assert tool.gain_at(9.0, 1.0, 0.5, 2.0) == 0.5 and tool.gain_at(0.9, 1.0, 0.5, 0.0) == 1.0


def test_nothing_to_copy_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "positions").mkdir()
    (tmp_path / "positions" / "rec.positions.csv").write_text("time_s,x,y\n")  # its video is missing
    monkeypatch.setattr(sys, "argv", ["light_switch.py", str(tmp_path / "videos"), str(tmp_path / "positions"),
                                      str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_:
        load_benchmark("light_switch").main()
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("light_switch: no video in") and "\n" not in err
