"""`ratscore train localizer --videos` (a lab's own scoring in one command) and `benchmark --videos`,
on a few tiny synthetic clips with the session's tiny front end (no detector: --no-roi)."""

import json
import shutil

import pytest
import torch
from conftest import one_line_error
from typer.testing import CliRunner

from ratscore.annotations import read_annotations
from ratscore.cli import app

runner = CliRunner()
SMALL_YAML = "model: {embd_dim: 32, fpn_dim: 32, head_dim: 32}\n"  # no input_dim: it comes from the features


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from ratscore.synth.planning import make_config
    from ratscore.synth.writing import synthesize

    root = tmp_path_factory.mktemp("own_clips")
    config = make_config({"resolutions": [[160, 120]], "noise_sigma": [0, 0], "flicker": [0, 0],
                          "blur_sigma": [0, 0], "boxes": False})
    videos = synthesize(root, clips=5, seed=7, config=config)
    subsets = [v.subset for v in videos.values()]
    assert subsets.count("training") >= 3 and subsets.count("testing") >= 1
    return root


@pytest.fixture
def count_extractions(monkeypatch):
    import ratscore.features as features

    calls = []
    real = features.extract_features

    def counted(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(features, "extract_features", counted)
    return calls


def _train(*args):
    return runner.invoke(app, ["train", "localizer", *map(str, args), "--epochs", "1", "--device", "cpu"])


def test_train_on_videos_gives_a_model_analyze_takes(clips, tiny_model, tmp_path, count_extractions):
    import numpy as np

    from ratscore.checkpoint import read_localizer_checkpoint
    from ratscore.model import BUNDLED_MODEL_DIR

    from ratscore.model import update_model

    # the front end comes from a folder whose detector was adapted to the rig and whose scoring is
    # synthetic (what `train detector --videos` writes); the lab's own scoring clears both marks
    front = tmp_path / "ADAPTED"
    shutil.copytree(tiny_model, front)
    update_model(front, {"detector_adapted_to": "2 of the lab's own videos (rig/)", "scores_learned_from": "synthetic"})
    model = tmp_path / "M"
    args = ["--videos", clips, "--annotations", clips / "annotations.json", "--model", front, "--no-roi",
            "-o", model]
    result = _train(*args)
    assert result.exit_code == 0, result.output
    assert len(count_extractions) == 5 and result.stdout.count("72 x 128") == 5
    assert "starting from the bundled localizer's weights" in result.stdout  # 128-d: the bundled network fits
    manifest = json.loads((model / "manifest.json").read_text())
    assert 0 < manifest["threshold"] <= 1
    assert manifest["front_end"]["detector"] is None and manifest["front_end"]["i3d"]["feature_dim"] == 128
    assert manifest["feature_dim"] == manifest["localizer"]["config"]["localizer"]["input_dim"] == 128
    bench = manifest["benchmark"]
    assert set(bench["testing"]) == {"0.3", "0.4", "0.5", "0.6", "0.7", "average"}
    assert set(bench["event_f1_at_threshold"]) == {"validation", "testing"}
    assert "kept apart to choose the event threshold" in manifest["trained_on"]
    assert "detector_adapted_to" not in manifest and "scores_learned_from" not in manifest
    # one epoch from the bundled weights (its first draw's: the bundled localizer averages three), so
    # the averaged weights kept are still almost that draw's
    ours = read_localizer_checkpoint(model / "localizer.pt")[0].state_dict()
    bundled = read_localizer_checkpoint(BUNDLED_MODEL_DIR / "localizer.pt")[0].members[0].state_dict()
    assert max(float((ours[k] - bundled[k]).abs().max()) for k in ours if ours[k].is_floating_point()) < 0.05

    video = clips / f"{next(v for v, a in read_annotations(clips / 'annotations.json').items() if a.subset == 'testing')}.mp4"
    analyzed = runner.invoke(app, ["analyze", str(video), "--model", str(model), "--no-roi", "-o", str(tmp_path / "out"),
                                   "--device", "cpu"])
    assert analyzed.exit_code == 0, analyzed.output
    assert (tmp_path / "out" / f"{video.stem}.events.csv").is_file()
    count_extractions.clear()

    # Again, from a BORIS project of the same scoring (every video in it trains): the features come
    # from the cache, and the model is replaced.
    from ratscore.boris import write_project

    scored = read_annotations(clips / "annotations.json")
    project = write_project(tmp_path / "scoring.boris", [
        {"id": vid, "media_path": str(clips / f"{vid}.mp4"), "fps": 30.0, "duration_s": a.duration,
         "events": [(s.start_s, s.end_s, s.label, None) for s in a.segments]} for vid, a in scored.items()])
    (tmp_path / "stale.txt").write_text("not named by the model")
    result = _train(*[project if a == clips / "annotations.json" else a for a in args])
    assert result.exit_code == 0, result.output
    assert not count_extractions and result.stdout.count("in the cache") == 5
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["trained_on"].startswith("scoring.boris: 5 training videos") and "testing" not in manifest["benchmark"]
    assert 0 < manifest["threshold"] <= 1 and not (model / ".building").exists()

    # benchmark --videos: the model's own front end, its features from the training's cache (same
    # front end, same files), and the same mAP as benchmark --features on features from `extract`
    report_v, report_f = tmp_path / "videos.json", tmp_path / "features.json"
    result = runner.invoke(app, ["benchmark", "--videos", str(clips), "--model", str(model), "--no-roi",
                                 "--annotations", str(clips / "annotations.json"), "--cache", str(model / ".features"),
                                 "-o", str(report_v), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert not count_extractions and "in the cache" in result.stdout
    extracted = runner.invoke(app, ["extract", str(clips), "-o", str(tmp_path / "feats"), "--model", str(model),
                                    "--no-roi", "--device", "cpu"])
    assert extracted.exit_code == 0, extracted.output
    result = runner.invoke(app, ["benchmark", "--features", str(tmp_path / "feats"), "--model", str(model),
                                 "--annotations", str(clips / "annotations.json"), "-o", str(report_f), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    by_videos, by_features = json.loads(report_v.read_text()), json.loads(report_f.read_text())
    assert by_videos["num_videos"] == by_features["num_videos"] >= 1
    assert by_videos["mAP"] == pytest.approx(by_features["mAP"], abs=1e-3)
    cached = np.load(next((model / ".features").glob(f"*/{video.stem}.npy")))
    np.testing.assert_allclose(cached, np.load(tmp_path / "feats" / f"{video.stem}.npy"), atol=1e-5)


def test_the_localizer_is_sized_from_the_feature_dimension(clips, tmp_path):
    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.training.export import add_i3d_to_model_dir
    from ratscore.training.own_data import localizer_setup

    narrow = localizer_setup(64)  # the release's network, from a random start
    assert narrow.setup.localizer.input_dim == 64 and narrow.setup.localizer.embd_dim == 512
    assert narrow.init_state is None and "release" in narrow.source
    bundled = localizer_setup(128)  # the bundled network, from its weights
    assert bundled.setup.localizer.input_dim == 128 and bundled.setup.localizer.embd_dim == 128
    assert bundled.init_state is not None and "bundled" in bundled.source

    # a 64-d front end end to end: no input_dim written anywhere, a small network from --config
    torch.manual_seed(1)
    front = tmp_path / "front64"
    add_i3d_to_model_dir(front, InceptionI3d(I3DConfig(width=0.0625, input_size=64)).state_dict(), input_size=64,
                         keep_torch_weights=False)
    (tmp_path / "small.yaml").write_text(SMALL_YAML)
    result = _train("--videos", clips, "--annotations", clips / "annotations.json", "--model", front, "--no-roi",
                    "--config", tmp_path / "small.yaml", "-o", tmp_path / "M64")
    assert result.exit_code == 0, result.output
    assert "from a random start" in result.stdout and result.stdout.count("72 x 64") == 5
    manifest = json.loads((tmp_path / "M64" / "manifest.json").read_text())
    assert manifest["feature_dim"] == manifest["front_end"]["i3d"]["feature_dim"] == 64
    assert manifest["localizer"]["config"]["localizer"]["embd_dim"] == 32


def test_features_only_model_says_so(tmp_path):
    from ratscore.annotations import write_annotations
    from ratscore.benchmark import make_label_features, synthetic_annotations

    write_annotations(tmp_path / "ann.json", synthetic_annotations(5, 2, seed=3))
    make_label_features(tmp_path / "ann.json", tmp_path / "feats", dim=16, noise=0.5)
    (tmp_path / "small.yaml").write_text(SMALL_YAML)
    result = _train("--features", tmp_path / "feats", "--annotations", tmp_path / "ann.json",
                    "--config", tmp_path / "small.yaml", "-o", tmp_path / "M")
    assert result.exit_code == 0, result.output
    assert "a localizer-only model; give --videos to include a front end" in result.stdout
    manifest = json.loads((tmp_path / "M" / "manifest.json").read_text())
    assert "front_end" not in manifest and manifest["feature_dim"] == 16 and 0 < manifest["threshold"] <= 1
    # benchmark --videos needs a model with a front end
    result = runner.invoke(app, ["benchmark", "--videos", str(tmp_path), "--model", str(tmp_path / "M"),
                                 "--annotations", str(tmp_path / "ann.json")])
    assert "no video front end" in one_line_error(result)


def test_bad_inputs_stop_before_any_work(clips, tiny_model, tmp_path, count_extractions):
    ann = clips / "annotations.json"
    out = tmp_path / "M"
    base = ["--annotations", ann, "--model", tiny_model, "--no-roi", "-o", out]

    some = tmp_path / "some"
    some.mkdir()
    for video in sorted(clips.glob("*.mp4"))[1:]:
        shutil.copy(video, some / video.name)
    missing = sorted(clips.glob("*.mp4"))[0].stem
    err = one_line_error(_train("--videos", some, *base))
    assert "no video file for 1 of the 5 annotated videos" in err and missing in err

    twice = tmp_path / "twice"
    shutil.copytree(clips, twice, ignore=shutil.ignore_patterns("*.json", "*.png"))
    shutil.copy(twice / f"{missing}.mp4", twice / f"{missing}.avi")
    assert "are both video" in one_line_error(_train("--videos", twice, *base))

    assert "--validation-share" in one_line_error(_train("--videos", clips, *base, "--validation-share", "1.5"))
    assert "one of the two" in one_line_error(_train("--videos", clips, "--features", clips, *base))
    assert "one of the two" in one_line_error(_train(*base))
    err = one_line_error(_train("--features", clips, "--annotations", ann, "--model", tiny_model, "-o", out))
    assert "--model" in err and "need --videos" in err
    assert "no ROI detector" in one_line_error(_train("--videos", clips, "--annotations", ann, "--model", tiny_model,
                                                      "-o", out))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("a lab's notes")
    assert "holds other files" in one_line_error(_train("--videos", clips, *base[:-1], taken))
    assert not out.exists() and not count_extractions

    result = runner.invoke(app, ["benchmark", "--videos", str(clips), "--features", str(clips),
                                 "--annotations", str(ann)])
    assert "--features DIR or --videos DIR" in one_line_error(result)


def test_boris_lengths_come_from_the_videos_when_boris_has_none(clips, tmp_path):
    from ratscore.benchmark import read_ground_truth
    from ratscore.boris import write_project

    scored = read_annotations(clips / "annotations.json")
    vid, truth = next(iter(scored.items()))
    project = write_project(tmp_path / "p.boris", [{"id": vid, "media_path": str(clips / f"{vid}.mp4"), "fps": 30.0,
                                                    "duration_s": truth.duration,
                                                    "events": [(s.start_s, s.end_s, s.label, None) for s in truth.segments]}])
    doc = json.loads(project.read_text())
    for obs in doc["observations"].values():
        obs["media_info"].pop("length")
    project.write_text(json.dumps(doc))
    warned = []
    guessed = read_ground_truth(project, log=warned.append)  # no videos: the end of the last event, said so
    assert guessed[vid].duration == pytest.approx(max(s.end_s for s in truth.segments), abs=1e-3)
    assert "no length" in warned[0]
    videos = read_ground_truth(project, videos_dir=clips)
    assert list(videos) == [vid] and videos[vid].subset == "training"
    assert videos[vid].duration == pytest.approx(truth.duration, abs=0.1)
    assert [(s.au_id, round(s.start_s, 2)) for s in videos[vid].segments] == \
        [(s.au_id, round(s.start_s, 2)) for s in truth.segments]
