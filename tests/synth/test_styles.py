"""ratscore.synth styles: names validated, "varied" (empty frames, things that are not animals,
boxes on the animal only), "unseen" (the same motions drawn otherwise), their files and sheets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.synth.planning import STYLES, make_config, plan_clips
from ratscore.synth.frames import render_clip_frames, scene_and_timeline

# tiny: 1 s clips of 160x120
VARIED = make_config({"style": "varied", "resolutions": [[160, 120]], "clip_seconds": 1.0, "min_segment_seconds": 0.5})
UNSEEN = make_config({"style": "unseen", "resolutions": [[160, 120]], "clip_seconds": 1.0, "min_segment_seconds": 0.5})
CLASSIC = make_config({"resolutions": [[160, 120]], "clip_seconds": 1.0, "min_segment_seconds": 0.5})


def test_style_names_are_validated(tmp_path):
    assert STYLES == ("classic", "varied", "unseen")
    with pytest.raises(InputError, match="style must be one of classic, varied, unseen"):
        make_config({"style": "fancy"})
    cfg = tmp_path / "s.yaml"
    cfg.write_text("style: fancy\n")
    for args in (["--style", "fancy"], ["--config", str(cfg)]):
        result = CliRunner().invoke(app, ["synth", "-o", str(tmp_path / "o"), "--clips", "1"] + args)
        assert result.exit_code == 2
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "style" in lines[0]
    assert not (tmp_path / "o").exists()


def _frames(plan, config, with_masks=True):
    return list(render_clip_frames(plan, config, with_masks=with_masks))


def test_varied_has_empty_frames_distractors_and_boxes_on_the_animal_only():
    plans = plan_clips(8, seed=7, config=VARIED)
    summaries = [scene_and_timeline(p, VARIED)[1].look.summary for p in plans]
    assert {s["animal"] for s in summaries} >= {"none", "all", "start"}
    assert any(s["distractors"] for s in summaries)
    empty = boxed = 0
    for plan, summary in zip(plans, summaries):
        for f in _frames(plan, VARIED)[::3]:
            assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
            if f.rat_box is None:
                empty += 1
                assert not f.rat_mask.any()  # no animal drawn, whatever else is
                continue
            boxed += 1
            assert summary["animal"] != "all"
            # the box is exactly the animal's visible pixels: nothing else can widen it
            ys, xs = np.nonzero(f.rat_mask)
            assert f.rat_box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            x0, y0, x1, y1 = (int(c) for c in f.rat_box)
            assert f.rat_mask[y0:y1, x0:x1].astype(bool).mean() > 0.1
    assert empty > 0 and boxed > 0


def test_distractors_alone_get_no_box():
    plan = plan_clips(8, seed=7, config=VARIED)[1]  # an empty rig: paper, tape, cables, a hand, text
    scene = scene_and_timeline(plan, VARIED)[1]
    assert scene.look.summary["animal"] == "all" and "paper" in scene.look.summary["distractors"]
    frames = _frames(plan, VARIED, with_masks=False)
    assert all(f.rat_box is None and f.reflection_box is None for f in frames)
    assert frames[0].image.std() > 5  # something is drawn there


def test_varied_folder_writes_empty_label_files_the_detector_takes_as_background(tmp_path):
    from ratscore.synth.writing import synthesize
    from ratscore.training.bundle import behaviour_videos
    from ratscore.training.detector import build_dataset

    out = tmp_path / "varied"
    synthesize(out, clips=3, seed=7, config=VARIED)
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["config"]["style"] == "varied"
    entry = manifest["videos"]["clip_7_0001"]
    assert entry["style"]["animal"] == "all" and entry["empty_frames"] == entry["frames"] == 30
    labels = sorted((out / "labels" / "clip_7_0001").iterdir())
    assert len(labels) == 30 and all(p.read_text() == "" for p in labels)
    table = (out / "boxes" / "clip_7_0001.csv").read_text().splitlines()
    assert table == ["frame,cls,cx,cy,w,h"]
    start = manifest["videos"]["clip_7_0002"]  # put in after a while: its first frames are empty
    assert 0 < start["empty_frames"] < start["frames"]
    assert (out / "labels" / "clip_7_0002" / "000000.txt").read_text() == ""
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # the bundle recipe learns behaviour only where the animal shows throughout
    assert behaviour_videos(out) == {vid for vid, e in manifest["videos"].items() if e["empty_frames"] == 0}
    assert "clip_7_0001" not in behaviour_videos(out) and "clip_7_0002" not in behaviour_videos(out)
    # the detector's dataset keeps empty frames as images with an empty label file (background)
    data, n_train, n_val = build_dataset(out, tmp_path / "ds", 64, 10, 0.3, 0)
    empty = [p for p in (tmp_path / "ds" / "labels").rglob("clip_7_0001_*.txt")]
    assert empty and all(p.read_text() == "" for p in empty)
    assert all((tmp_path / "ds" / "images" / p.parent.name / f"{p.stem}.jpg").is_file() for p in empty)


def test_unseen_draws_the_same_motions_otherwise_with_the_animal_always_boxed():
    plan = plan_clips(3, seed=9100, config=UNSEEN)[0]
    classic_timeline = scene_and_timeline(plan, CLASSIC)[2]
    unseen_timeline = scene_and_timeline(plan, UNSEEN)[2]
    for t in np.arange(0.0, 1.0, 0.1):
        assert np.allclose(classic_timeline.pose(t), unseen_timeline.pose(t))
    classic, unseen = _frames(plan, CLASSIC, False), _frames(plan, UNSEEN)
    assert len(classic) == len(unseen) == 30
    assert all(f.rat_box is not None and f.reflection_box is None for f in unseen)
    assert [f.label_id for f in classic] == [f.label_id for f in unseen]
    assert not np.array_equal(classic[5].image, unseen[5].image)
    for f in unseen[::5]:
        ys, xs = np.nonzero(f.rat_mask)
        assert f.rat_box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("config", [VARIED, UNSEEN], ids=["varied", "unseen"])
def test_styles_are_deterministic(config):
    plan = plan_clips(2, seed=3, config=config)[1]
    a, b = _frames(plan, config, False)[:8], _frames(plan, config, False)[:8]
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and x.rat_box == y.rat_box


def test_cli_style_option(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("resolutions: [[160, 120]]\nclip_seconds: 1.0\nmin_segment_seconds: 0.5\n")
    out = tmp_path / "u"
    result = CliRunner().invoke(app, ["synth", "-o", str(out), "--clips", "1", "--seed", "2", "--config", str(cfg),
                                      "--style", "unseen"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["config"]["style"] == "unseen" and manifest["videos"]["clip_2_0000"]["empty_frames"] == 0
