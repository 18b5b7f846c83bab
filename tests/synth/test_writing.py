"""ratscore.synth.writing: the CLI end to end, the files, bad input, and the planned motions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ratscore.annotations import read_annotations
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.labels import LABELS, NORMAL_ID
from ratscore.synth.planning import make_config
from ratscore.synth.writing import synthesize

# small, clean frames: fast, and motion is the rat's own (no sensor noise, no flicker)
TINY = make_config({"resolutions": [[160, 120]], "noise_sigma": [0, 0], "flicker": [0, 0], "blur_sigma": [0, 0]})


# ---- end to end ----------------------------------------------------------------------------

def _decode(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return codec, frames


def test_cli_end_to_end(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("resolutions: [[160, 120]]\n")
    out = tmp_path / "synth"
    result = CliRunner().invoke(app, ["synth", "-o", str(out), "--clips", "2", "--seed", "5",
                                      "--config", str(cfg), "--long-minutes", "0.1"])
    assert result.exit_code == 0, result.output
    videos = read_annotations(out / "annotations.json")
    assert sorted(videos) == ["clip_5_0000", "clip_5_0001", "long_5_0"]
    assert videos["long_5_0"].duration == 6.0
    raw = json.loads((out / "annotations.json").read_text())
    assert all(v["fps"] == 30.0 for v in raw["database"].values())
    manifest = json.loads((out / "synth_manifest.json").read_text())
    for vid, v in videos.items():
        codec, frames = _decode(out / f"{vid}.mp4")
        assert codec == "h264"
        assert len(frames) == round(v.duration * 30) == manifest["videos"][vid]["frames"]
        assert frames[0].shape == (120, 160, 3)
        labels = sorted((out / "labels" / vid).iterdir())
        assert [p.name for p in labels[:2]] == ["000000.txt", "000001.txt"] and len(labels) == len(frames)
        for p in labels[::37]:
            rows = [line.split() for line in p.read_text().splitlines()]
            assert rows[0][0] == "0" and all(r[0] in ("0", "1") for r in rows)
            assert all(0.0 <= float(x) <= 1.0 for r in rows for x in r[1:])
        table = (out / "boxes" / f"{vid}.csv").read_text().splitlines()
        assert table[0] == "frame,cls,cx,cy,w,h"
        assert sum(1 for line in table[1:] if line.split(",")[1] == "0") == len(frames)
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # the same command again, rendering two videos at once, gives the same files
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["synth", "-o", str(again), "--clips", "2", "--seed", "5", "--config", str(cfg),
                                      "--long-minutes", "0.1", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    for name in names:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.parametrize("args, words", [
    (["--clips", "0"], "nothing to make"),
    (["--clips", "-3"], "--clips"),
    (["--long-minutes", "-1"], "--long-minutes"),
    (["--long-minutes", "nan"], "--long-minutes"),
    (["--long-minutes", "1", "--long-count", "0"], "--long-count"),
    (["--config", "/no/such/synth.yaml"], "no such synth config"),
    (["--jobs", "0"], "--jobs"),
])
def test_cli_bad_options(tmp_path, args, words):
    result = CliRunner().invoke(app, ["synth", "-o", str(tmp_path / "o")] + args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0]
    assert not (tmp_path / "o").exists()  # refused before the output folder is made


def test_cli_unwritable_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        result = CliRunner().invoke(app, ["synth", "-o", str(target), "--clips", "1"])
        assert result.exit_code == 2
        assert str(target) in result.output and len(result.output.strip().splitlines()) == 1


def test_synthesize_api_defaults_to_ten_clips_without_rendering_twice(tmp_path, monkeypatch):
    import ratscore.synth.writing as synth

    written = []
    monkeypatch.setattr(synth, "write_video", lambda plan, out, config: written.append(plan.video_id) or {})
    monkeypatch.setattr(synth, "render_contact_sheet", lambda path, seed, config: path)
    videos = synthesize(tmp_path, seed=2, config=TINY)
    assert len(videos) == 10 and written == list(videos)
    assert all(v.fps == 30.0 for v in videos.values())
    assert read_annotations(tmp_path / "annotations.json").keys() == videos.keys()
    videos = synthesize(tmp_path, seed=2, config=TINY, long_minutes=2.0, long_count=2)
    assert list(videos) == ["long_2_0", "long_2_1"]
    assert LABELS[NORMAL_ID] == "others"


def test_planned_motions_rebuild_what_was_rendered(tmp_path):
    from ratscore.synth.behaviours import _EVERYDAY, MOTIONS
    from ratscore.synth.planning import plan_videos
    from ratscore.synth.frames import scene_and_timeline
    from ratscore.synth.writing import planned_motions

    synthesize(tmp_path, clips=2, seed=4, config=TINY, long_minutes=0.5)
    motions = planned_motions(tmp_path)
    everyday = {kind.__name__ for kind, _ in _EVERYDAY}
    for plan in plan_videos(2, 4, TINY, long_minutes=0.5):
        rendered = scene_and_timeline(plan, TINY)[2]  # the timeline the video was rendered from
        times = np.arange(0.05, plan.duration, 0.1)
        assert [motions[plan.video_id](t) for t in times] == [type(rendered.motion_at(t)).__name__ for t in times]
        for s in plan.segments:
            middle = motions[plan.video_id]((s.start_s + s.end_s) / 2)
            assert middle in everyday if s.au_id == NORMAL_ID else middle == MOTIONS[s.au_id].__name__
    assert len(motions) == 3
    (tmp_path / "synth_manifest.json").write_text("{")
    with pytest.raises(InputError, match="synth_manifest.json"):
        planned_motions(tmp_path)
