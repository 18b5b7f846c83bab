"""Localizer training: label assignment, the release config, `ratscore train localizer` end to end (tiny config)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ratscore.annotations import write_annotations
from ratscore.benchmark import make_label_features, synthetic_annotations
from ratscore.cli import app
from ratscore.localizer import LocalizerConfig
from ratscore.training.localizer import TrainConfig, assign_targets, make_points, read_config

TINY = LocalizerConfig(input_dim=16, embd_dim=32, fpn_dim=32, head_dim=32)
TINY_YAML = """\
dataset: {input_dim: 16}
model: {embd_dim: 32, fpn_dim: 32, head_dim: 32}
opt: {learning_rate: 0.001, epochs: 2, warmup_epochs: 1}
loader: {batch_size: 4}
"""


def test_label_assignment_by_hand():
    cfg = LocalizerConfig(input_dim=16, embd_dim=32, fpn_dim=32, head_dim=32)
    points = make_points(cfg, 96)
    cls, off = assign_targets(points, torch.tensor([[10.0, 13.0]]), torch.tensor([5]), 14, TrainConfig())
    positive = cls.sum(1) > 0
    # length 3 -> farthest end <= 3 < 4: level 0 only; centre 11.5 +- 1.5 -> points 11, 12
    assert points[positive, 0].tolist() == [11.0, 12.0]
    assert cls[positive, 5].tolist() == [1.0, 1.0]
    assert off[positive].tolist() == [[1.0, 2.0], [2.0, 1.0]]


def test_release_config_defaults():
    setup = read_config(None)
    assert setup.localizer.n_mha_win_size == (9, 9, 9, 1, 1, 1) and setup.localizer.attn_keep_ratio == 0.5
    assert setup.train.learning_rate == 1e-4 and setup.train.total_epochs == 40 and setup.train.crop_ratio == (0.9, 1.0)
    assert setup.postprocess.max_seg_num == 200 and setup.postprocess.min_score == 0.001


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("loc")
    write_annotations(root / "ann.json", synthetic_annotations(8, 4, seed=3))
    make_label_features(root / "ann.json", root / "feats", dim=16, noise=0.5)
    (root / "tiny.yaml").write_text(TINY_YAML)
    return root


def test_train_writes_model_dir(data, tmp_path):
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "localizer", "--annotations", str(data / "ann.json"), "--features", str(data / "feats"),
                                      "-o", str(out), "--config", str(data / "tiny.yaml"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["feature_dim"] == 16 and manifest["clip_stride"] == 4 and manifest["clip_frames"] == 16
    assert manifest["racine_map"]["tonic extension"] == 7 and "front_end" not in manifest
    assert manifest["localizer"]["postprocess"]["nms_sigma"] == 0.5
    assert set(manifest["benchmark"]["testing"]) == {"0.3", "0.4", "0.5", "0.6", "0.7", "average"}
    ckpt = torch.load(out / "localizer.pt", weights_only=True)
    assert ckpt["setup"]["localizer"]["embd_dim"] == 32
    stats = np.load(out / manifest["feature_stats"])
    assert stats["mean"].shape == (16,) and len(stats["video_distances"]) == 8


def _train(args):
    return CliRunner().invoke(app, ["train", "localizer", *map(str, args)])


def test_train_bad_inputs(data, tmp_path):
    base = ["--annotations", data / "ann.json", "-o", tmp_path / "m", "--config", data / "tiny.yaml"]
    feats = tmp_path / "feats"
    feats.mkdir()
    for f in (data / "feats").glob("*.npy"):
        (feats / f.name).write_bytes(f.read_bytes())
    (feats / "clip_0001.npy").unlink()
    (feats / "clip_0002.npy").unlink()
    r = _train(base + ["--features", feats])
    assert r.exit_code == 2 and "2 feature file(s)" in r.output and "clip_0001.npy" in r.output

    np.save(feats / "clip_0001.npy", np.zeros((72, 9), np.float32))
    np.save(feats / "clip_0002.npy", np.zeros((72, 16), np.float32))
    r = _train(base + ["--features", feats])
    assert r.exit_code == 2 and "dimension 9, the model expects 16" in r.output

    bad = np.zeros((72, 16), np.float32)
    bad[3, 2] = np.nan
    np.save(feats / "clip_0001.npy", bad)
    r = _train(base + ["--features", feats])
    assert r.exit_code == 2 and "NaN or infinite" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_train_bad_config(data, tmp_path):
    (tmp_path / "c.yaml").write_text("model: {fpn_type: fpn}\n")
    r = _train(["--annotations", data / "ann.json", "--features", data / "feats", "-o", tmp_path / "m",
                "--config", tmp_path / "c.yaml"])
    assert r.exit_code == 2 and "model.fpn_type" in r.output
    (tmp_path / "c.yaml").write_text("opt: {learning_rat: 0.1}\n")
    r = _train(["--annotations", data / "ann.json", "--features", data / "feats", "-o", tmp_path / "m",
                "--config", tmp_path / "c.yaml"])
    assert r.exit_code == 2 and "opt.learning_rat: unknown config key" in r.output


def test_train_empty_split(data, tmp_path):
    ann = json.loads((data / "ann.json").read_text())
    for v in ann["database"].values():
        v["subset"] = "testing"
    (tmp_path / "a.json").write_text(json.dumps(ann))
    r = _train(["--annotations", tmp_path / "a.json", "--features", data / "feats", "-o", tmp_path / "m"])
    assert r.exit_code == 2 and "no videos in subset 'training'" in r.output


def test_model_ema_is_the_exponential_average_of_the_weights():
    import torch

    from ratscore.training.localizer import ModelEma

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(4, 3))  # moves the BatchNorm statistics and its integer batch counter
    ema.update(model)
    now, target = ema.module.state_dict(), model.state_dict()
    for key, value in before.items():
        if value.is_floating_point():
            torch.testing.assert_close(now[key], 0.9 * value + 0.1 * target[key])
        else:
            assert torch.equal(now[key], target[key])


def test_long_videos_give_one_window_per_max_seq_len_each_epoch():
    from ratscore.training.localizer import _Clip, windows_per_epoch

    def clip(steps):
        return _Clip("v", torch.zeros(4, steps), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))

    # a 10 s clip (75 steps) once; exactly max_seq_len once; one step more twice; 5 minutes 24 times
    draws = windows_per_epoch([clip(75), clip(96), clip(97), clip(2250)], 96)
    assert [draws.count(i) for i in range(4)] == [1, 1, 2, 24]
