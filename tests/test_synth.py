"""ratscore synth: plans, determinism, what the frames show, the boxes, the CLI and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ratscore.annotations import Segment, read_annotations
from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.labels import LABEL_IDS, LABELS, NORMAL_ID, NUM_CLASSES
from ratscore.synth import (SynthConfig, VideoPlan, load_synth_config, make_config, plan_clips, plan_long,
                            render_clip_frames, synthesize)

# small, clean frames: fast, and motion is the rat's own (no sensor noise, no flicker)
TINY = make_config({"resolutions": [[160, 120]], "noise_sigma": [0, 0], "flicker": [0, 0], "blur_sigma": [0, 0]})
REAL = Path("/tmp/ratseizure.json")


def _single(au: int, seconds: float = 2.0, seed: int = 1) -> VideoPlan:
    return VideoPlan(f"t{au}", "training", seconds, (Segment(0.0, seconds, au),), 1000 + 17 * au + seed)


# ---- plans ---------------------------------------------------------------------------------

def _check_partition(video_segments, duration):
    assert video_segments[0].start_s == 0.0
    assert video_segments[-1].end_s == pytest.approx(duration)
    for a, b in zip(video_segments, video_segments[1:]):
        assert a.end_s == pytest.approx(b.start_s)
        assert a.au_id != b.au_id
    for s in video_segments:
        assert s.end_s > s.start_s


def test_clip_plans_look_like_the_ratseizure_release():
    plans = plan_clips(60, seed=4)
    segments = [s for p in plans for s in p.segments]
    for p in plans:
        assert p.duration == 10.0 and 1 <= len(p.segments) <= 5
        _check_partition(p.segments, 10.0)
        for s in p.segments:
            assert 1.0 - 1e-9 <= s.end_s - s.start_s <= 10.0
            assert abs(s.start_s * 10 - round(s.start_s * 10)) < 1e-6  # on the 0.1 s grid
    others = sum(s.au_id == NORMAL_ID for s in segments) / len(segments)
    assert 0.2 <= others <= 0.45
    testing = sum(p.subset == "testing" for p in plans) / len(plans)
    assert 0.25 <= testing <= 0.45
    for subset in ("training", "testing"):
        seen = {s.au_id for p in plans if p.subset == subset for s in p.segments}
        assert seen == set(range(NUM_CLASSES)), f"{subset} lacks {set(range(NUM_CLASSES)) - seen}"
    per_class = Counter(s.au_id for s in segments if s.au_id != NORMAL_ID)
    assert min(per_class.values()) >= 3
    assert len({p.video_id for p in plans}) == 60


@pytest.mark.skipif(not REAL.exists(), reason="RatSeizure annotations not available here")
def test_clip_statistics_match_the_real_release():
    real = read_annotations(REAL)
    plans = plan_clips(794, seed=0)
    real_per_clip = np.mean([len(v.segments) for v in real.values()])
    ours_per_clip = np.mean([len(p.segments) for p in plans])
    assert abs(ours_per_clip - real_per_clip) < 0.25
    real_mean = np.mean([s.end_s - s.start_s for v in real.values() for s in v.segments])
    ours_mean = np.mean([s.end_s - s.start_s for p in plans for s in p.segments])
    assert abs(ours_mean - real_mean) < 1.0


def test_plans_are_deterministic_and_depend_on_the_seed():
    assert plan_clips(20, 7) == plan_clips(20, 7)
    assert plan_clips(20, 7) != plan_clips(20, 8)
    assert plan_long(3.0, 7) == plan_long(3.0, 7)


def test_long_recording_is_mostly_normal_with_escalating_episodes():
    plan = plan_long(20.0, seed=3)
    assert plan.duration == 1200.0 and plan.video_id == "long_3_0"
    _check_partition(plan.segments, 1200.0)
    normal = sum(s.end_s - s.start_s for s in plan.segments if s.au_id == NORMAL_ID)
    assert normal / plan.duration > 0.6
    runs, run = [], []
    for s in plan.segments:
        if s.au_id == NORMAL_ID:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(s.au_id)
    assert len(runs) >= 2
    episodes = [r for r in runs if r != [LABEL_IDS["wet dog shakes"]]]
    assert episodes, "no seizure episode"
    for r in episodes:  # each one starts with staring or mouth clonus
        assert r[0] in (LABEL_IDS["staring"], LABEL_IDS["mouth clonus"])
    assert any(LABEL_IDS["head nodding"] in r for r in episodes)


# ---- config --------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    ({"noise_sigma": [5, 1]}, "noise_sigma"),
    ({"resolutions": [[321, 240]]}, "resolutions"),
    ({"view": "fisheye"}, "view"),
    ({"colour": 1}, "unknown synth setting 'colour'"),
    ({"train_fraction": 1.5}, "train_fraction"),
])
def test_bad_config_values_are_one_line_errors(overrides, words):
    with pytest.raises(InputError, match=words) as e:
        make_config(overrides)
    assert "\n" not in str(e.value)


def test_config_from_yaml(tmp_path):
    path = tmp_path / "synth.yaml"
    path.write_text("resolutions: [[320, 240]]\nview: topdown\nnoise_sigma: [1, 2]\n")
    config = load_synth_config(path)
    assert config.resolutions == ((320, 240),) and config.view == "topdown" and config.noise_sigma == (1, 2)
    assert load_synth_config(None) == SynthConfig()


# ---- frames --------------------------------------------------------------------------------

def test_frames_are_deterministic():
    plan = plan_clips(3, seed=11)[1]
    a = [f for _, f in zip(range(25), render_clip_frames(plan, TINY))]
    b = [f for _, f in zip(range(25), render_clip_frames(plan, TINY))]
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image)
        assert x.rat_box == y.rat_box and x.reflection_box == y.reflection_box
    other = plan_clips(3, seed=12)[1]
    c = next(iter(render_clip_frames(other, TINY)))
    assert not np.array_equal(a[0].image, c.image)


def _motion_in_box(au: int, seed: int = 1) -> float:
    """Mean absolute frame difference inside the rat's box, after the first second."""
    frames = list(render_clip_frames(_single(au, 2.5, seed), TINY))[30:]
    diffs = []
    for prev, cur in zip(frames, frames[1:]):
        x0 = int(min(prev.rat_box[0], cur.rat_box[0]))
        y0 = int(min(prev.rat_box[1], cur.rat_box[1]))
        x1 = int(np.ceil(max(prev.rat_box[2], cur.rat_box[2])))
        y1 = int(np.ceil(max(prev.rat_box[3], cur.rat_box[3])))
        d = np.abs(cur.image[y0:y1, x0:x1].astype(np.int16) - prev.image[y0:y1, x0:x1].astype(np.int16))
        diffs.append(d.mean())
    return float(np.mean(diffs))


def test_motion_differs_by_class_where_it_should():
    staring = [_motion_in_box(LABEL_IDS["staring"], seed) for seed in (1, 2)]
    running = [_motion_in_box(LABEL_IDS["wild running"], seed) for seed in (1, 2)]
    shakes = _motion_in_box(LABEL_IDS["wet dog shakes"])
    assert max(staring) < 0.3  # arrest: nothing moves
    assert min(running) > 5.0 and min(running) > 20 * max(staring)
    assert shakes > 5 * max(staring)


def test_forelimb_clonus_patterns_differ():
    from ratscore.synth_rat import F, build_timeline

    def limbs(au):
        rng = np.random.default_rng(5)
        timeline = build_timeline([(0.0, 3.0, au)], rng, (0.3, 0.3))
        poses = np.array([timeline.pose(t) for t in np.arange(0.0, 3.0, 1 / 30)])
        return poses[:, F["fl_l"]], poses[:, F["fl_r"]]

    left, right = limbs(LABEL_IDS["unilateral forelimb clonus"])
    assert min(np.std(left), np.std(right)) < 0.02 < max(np.std(left), np.std(right))
    left, right = limbs(LABEL_IDS["bilateral forelimb clonus"])
    assert np.corrcoef(left, right)[0, 1] > 0.8
    left, right = limbs(LABEL_IDS["alternating forelimb clonus"])
    assert np.corrcoef(left, right)[0, 1] < -0.8


def test_transitions_have_no_brightness_jump():
    plan = VideoPlan("x", "training", 3.0, (Segment(0.0, 1.5, NORMAL_ID), Segment(1.5, 3.0, LABEL_IDS["staring"])), 99)
    config = make_config({"resolutions": [[160, 120]]})
    means = np.array([f.image.mean() for f in render_clip_frames(plan, config)])
    steps = np.abs(np.diff(means))
    assert steps[40:50].max() < 3 * np.median(steps) + 0.5


def test_boxes_leave_the_tail_out():
    """The label boxes bound the body: every primitive but the tail's segments, which are drawn."""
    from ratscore.synth_rat import _CAP_PRIMS, _PRIMS, TAIL_N, _without_tail

    prims = np.array(_PRIMS + _CAP_PRIMS, dtype=float)
    boxed = _without_tail(prims)
    left_out = {tuple(p) for p in prims} - {tuple(p) for p in boxed}
    assert len(boxed) == len(prims) - (TAIL_N - 1) and len(left_out) == TAIL_N - 1
    assert all(kind == 1 and a >= 28 and b == a + 1 for kind, a, b, _, _ in left_out)  # the tail's chain of lines
    assert not any(kind == 1 and a >= 28 for kind, a, *_ in boxed)


@pytest.mark.parametrize("au", [0, 9, 10, 11, 12, 13, 3])
def test_boxes_cover_the_rendered_rat(au):
    for frame in list(render_clip_frames(_single(au, 1.5, 3), TINY, with_masks=True))[::4]:
        ys, xs = np.nonzero(frame.rat_mask)
        x0, y0, x1, y1 = frame.rat_box
        assert xs.min() >= np.floor(x0) and xs.max() + 1 <= np.ceil(x1)
        assert ys.min() >= np.floor(y0) and ys.max() + 1 <= np.ceil(y1)
        h, w = frame.image.shape[:2]
        if 0 < x0 and 0 < y0 and x1 < w and y1 < h:  # and tight: a few pixels of slack at most
            assert xs.min() - x0 < 5 and x1 - xs.max() - 1 < 5 and ys.min() - y0 < 5 and y1 - ys.max() - 1 < 5
        if frame.reflection_box is not None:
            rx0, ry0, rx1, ry1 = frame.reflection_box
            assert 0 <= rx0 < rx1 <= w and 0 <= ry0 < ry1 <= h


def test_reflections_show_in_some_frames_and_labels_follow_the_plan():
    plans = plan_clips(6, seed=21)
    seen = 0
    for plan in plans[:4]:
        for n, frame in enumerate(render_clip_frames(plan, TINY)):
            seen += frame.reflection_box is not None
            t = n / 30
            expected = [s.au_id for s in plan.segments if s.start_s <= t < s.end_s]
            assert frame.label_id == expected[0]
    assert seen > 0


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
    import ratscore.synth as synth

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
    from ratscore.synth import _scene_and_timeline, plan_videos, planned_motions
    from ratscore.synth_rat import _EVERYDAY, MOTIONS

    synthesize(tmp_path, clips=2, seed=4, config=TINY, long_minutes=0.5)
    motions = planned_motions(tmp_path)
    everyday = {kind.__name__ for kind, _ in _EVERYDAY}
    for plan in plan_videos(2, 4, TINY, long_minutes=0.5):
        rendered = _scene_and_timeline(plan, TINY)[2]  # the timeline the video was rendered from
        times = np.arange(0.05, plan.duration, 0.1)
        assert [motions[plan.video_id](t) for t in times] == [type(rendered.motion_at(t)).__name__ for t in times]
        for s in plan.segments:
            middle = motions[plan.video_id]((s.start_s + s.end_s) / 2)
            assert middle in everyday if s.au_id == NORMAL_ID else middle == MOTIONS[s.au_id].__name__
    assert len(motions) == 3
    (tmp_path / "synth_manifest.json").write_text("{")
    with pytest.raises(InputError, match="synth_manifest.json"):
        planned_motions(tmp_path)
