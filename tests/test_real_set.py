"""benchmarks/real_set.py: the real recordings made again from their sources by recipe (the frames
taken, crop, grey, frame rate), their sources found by sha256, their positions beside them; and
the committed recipes are whole."""

import json

import numpy as np
import pytest
from benchmark_scripts import BENCHMARKS, load_benchmark

from ratscore.files import file_sha256
from ratscore.video import read_frames, write_h264


def _source(path, levels):
    """A colour clip whose frame i is level levels[i] in red and green, 0 in blue, over 64 x 48."""
    frames = [np.dstack([np.full((48, 64), v, np.uint8)] * 2 + [np.zeros((48, 64), np.uint8)]) for v in levels]
    write_h264(path, iter(frames), 10.0, {"qp": "0"})
    return path


@pytest.fixture
def set_up(tmp_path):
    """Two source files (20 and 10 frames, each a level of its own) somewhere under sources/, and a recipe that joins them,
    takes 20 frames from frame 5, crops 32 x 32 and turns them grey."""
    tool = load_benchmark("real_set")
    sources = tmp_path / "sources" / "deep" / "er"
    sources.mkdir(parents=True)
    first = _source(sources / "a.mp4", [10 * i for i in range(20)])
    second = _source(sources / "b.mp4", [5 + 10 * i for i in range(10)])
    recipes = tmp_path / "set" / "recipes.json"
    recipes.parent.mkdir()
    recipe = {"stem": "rec", "set": "fresh, held out", "about": "a test floor",
              "sources": [{"repo": "o/a", "path": "a.mp4", "commit": "0" * 40, "licence": "MIT",
                           "sha256": file_sha256(first)},
                          {"repo": "o/b", "path": "v/b.mp4", "commit": "1" * 40, "licence": "MIT",
                           "sha256": file_sha256(second)}],
              "first_frame": 5, "frames": 20, "crop": [8, 4, 40, 36], "grey": True, "fps": 10.0}
    recipes.write_text(json.dumps([recipe]))
    (recipes.parent / "rec.positions.csv").write_text("time_s,x,y,w,h\n0.5,16,16,8,8\n")
    return tool, tmp_path, recipes, recipe


def test_a_recording_is_made_from_its_recipe_and_left_alone_after(set_up, capsys):
    tool, tmp, recipes, recipe = set_up
    assert tool.main([str(tmp / "sources"), str(tmp / "out"), "--recipes", str(recipes)]) == 0
    folder = tmp / "out" / "fresh_held_out"
    frames = [f.image for f in read_frames(folder / "videos" / "rec.mp4", fps=10.0)]
    assert len(frames) == 20 and frames[0].shape == (32, 32, 3)
    assert all((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in frames)  # grey
    # frames 5..19 of the first file, then 0..4 of the second, in grey (0.299 R + 0.587 G)
    expected = [0.886 * 10 * i for i in range(5, 20)] + [0.886 * (5 + 10 * i) for i in range(5)]
    assert np.allclose([f.mean() for f in frames], expected, atol=4)  # a frame apart is 8.9
    assert (folder / "positions" / "rec.positions.csv").read_text() == "time_s,x,y,w,h\n0.5,16,16,8,8\n"
    assert (folder / "positions" / "rec.about.txt").read_text() == "a test floor\n"
    out = capsys.readouterr().out
    assert "rec: made" in out and f"bench_real_roi.py {folder}/videos {folder}/positions" in out
    assert '--record "fresh, held out"' in out

    before = (folder / "videos" / "rec.mp4").stat().st_mtime_ns
    assert tool.main([str(tmp / "sources"), str(tmp / "out"), "--recipes", str(recipes)]) == 0
    assert "rec: there before" in capsys.readouterr().out
    assert (folder / "videos" / "rec.mp4").stat().st_mtime_ns == before


def test_a_changed_source_is_one_line_and_nothing_is_made(set_up, capsys):
    tool, tmp, recipes, _ = set_up
    _source(tmp / "sources" / "deep" / "er" / "b.mp4", [7] * 10)  # another version of the file
    assert tool.main([str(tmp / "sources"), str(tmp / "out"), "--recipes", str(recipes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"real_set: not under {tmp / 'sources'} (by sha256): o/b:v/b.mp4 (rec)"
    assert not (tmp / "out").exists()


def test_sources_too_short_leave_no_half_video(set_up, capsys):
    tool, tmp, recipes, recipe = set_up
    recipes.write_text(json.dumps([{**recipe, "frames": 40}]))  # 25 frames from frame 5
    assert tool.main([str(tmp / "sources"), str(tmp / "out"), "--recipes", str(recipes)]) == 2
    assert capsys.readouterr().err.strip() == "real_set: rec: its sources hold 25 frames from frame 5, not 40"
    assert list((tmp / "out").rglob("*.mp4")) == []
    assert tool.main([str(tmp / "sources"), str(tmp / "out"), "--recipes", str(recipes), "--only", "nope"]) == 2
    assert "no recipe for nope" in capsys.readouterr().err


def test_the_committed_recipes_are_whole():
    """Every committed recording has its positions beside it, a known set, and sources pinned by
    commit and sha256; the set matches bench_real_roi's sets."""
    folder = BENCHMARKS / "real_set"
    recipes = json.loads((folder / "recipes.json").read_text())
    assert len({r["stem"] for r in recipes}) == len(recipes) >= 4
    for r in recipes:
        assert r["set"] in ("dev", "held out", "fresh, held out") and r["about"].strip()
        assert r["fps"] > 0 and r["sources"] and isinstance(r["grey"], bool)
        for s in r["sources"]:
            assert len(s["commit"]) == 40 and len(s["sha256"]) == 64 and s["repo"].count("/") == 1
        rows = (folder / f"{r['stem']}.positions.csv").read_text().splitlines()
        assert rows[0] == "time_s,x,y,w,h" and len(rows) >= 21
        times = [float(row.split(",")[0]) for row in rows[1:]]
        assert times == sorted(times)
