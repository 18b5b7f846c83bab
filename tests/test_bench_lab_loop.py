"""benchmarks/bench_lab_loop.py: the recordings it finds in a real_set.py folder, and the cut that
keeps the second part and its labelled moments apart from the frames the detector adapts on."""

import numpy as np
from benchmark_scripts import load_benchmark

from ratscore.video import read_frames, write_h264


def test_the_cut_gives_two_parts_and_the_second_parts_moments(tmp_path):
    tool = load_benchmark("bench_lab_loop")
    videos, positions = tmp_path / "real" / "dev" / "videos", tmp_path / "real" / "dev" / "positions"
    videos.mkdir(parents=True), positions.mkdir(parents=True)
    write_h264(videos / "rec.mp4", (np.full((48, 64, 3), 5 * i, np.uint8) for i in range(40)), 10.0, {"qp": "0"})
    (positions / "rec.positions.csv").write_text("time_s,x,y,w,h\n0.5,10,10,4,4\n2.0,20,20,4,4\n3.5,30,30,4,4\n")
    write_h264(videos / "unlabelled.mp4", (np.zeros((48, 64, 3), np.uint8) for _ in range(20)), 10.0)
    found = tool.recordings(tmp_path / "real")
    assert found == [(videos / "rec.mp4", positions / "rec.positions.csv")]  # a video without positions is left out

    first, last, last_positions = tool.cut(*found[0], 0.5, tmp_path / "work")
    a = [f.image.mean() for f in read_frames(first, fps=10.0)]
    b = [f.image.mean() for f in read_frames(last, fps=10.0)]
    assert len(a) == len(b) == 20
    assert np.allclose(a, [5 * i for i in range(20)], atol=2) and np.allclose(b, [5 * i for i in range(20, 40)], atol=2)
    # the moments at or after 2.0 s, timed from the second part's start
    assert last_positions.read_text().splitlines() == ["time_s,x,y,w,h", "0.000,20,20,4,4", "1.500,30,30,4,4"]


def test_nothing_to_measure_is_one_line_and_exit_2(tmp_path, capsys):
    tool = load_benchmark("bench_lab_loop")
    assert tool.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"bench_lab_loop: no recording with its positions under {tmp_path}"
    assert tool.main([str(tmp_path), "--split", "1.0"]) == 2


def test_a_recording_that_cannot_be_measured_is_a_row_with_its_line(tmp_path, monkeypatch, capsys):
    """bench_real_roi.py failing on one recording leaves a row saying why, and the table is written."""
    import subprocess

    tool = load_benchmark("bench_lab_loop")
    videos, positions = tmp_path / "real" / "videos", tmp_path / "real" / "positions"
    videos.mkdir(parents=True), positions.mkdir(parents=True)
    write_h264(videos / "rec.mp4", (np.zeros((48, 64, 3), np.uint8) for _ in range(20)), 10.0)
    (positions / "rec.positions.csv").write_text("time_s,x,y\n1.5,10,10\n")

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 2, "", "Traceback...\nbench_real_roi: it broke\n")

    monkeypatch.setattr(tool.subprocess, "run", failing)
    assert tool.main([str(tmp_path / "real"), "--work", str(tmp_path / "work")]) == 0
    table = (tmp_path / "work" / "lab_loop.md").read_text()
    assert "| rec | 1 |" in table and "not measured: bench_real_roi: it broke" in table
