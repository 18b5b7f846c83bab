"""ONNX export vs PyTorch, OnnxLocalizer.detect, import of a release-format checkpoint, trust statistics."""

import collections
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.runner import OnnxLocalizer, TorchLocalizer
from ratscore.training.export import write_model_dir
from ratscore.training.release import import_checkpoint
from ratscore.localizer import LocalizerConfig, RaSeformer
from ratscore.postprocess import chunk_starts
from ratscore.timeline import Event
from ratscore.training.localizer import Setup
from ratscore.trust import feature_distance, feature_stats, read_feature_stats, training_percentile

TINY = LocalizerConfig(input_dim=16, embd_dim=32, fpn_dim=32, head_dim=32)
TINY_YAML = "dataset: {input_dim: 16}\nmodel: {embd_dim: 32, fpn_dim: 32, head_dim: 32}\n"


def _weights(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    model = RaSeformer(cfg)
    # move every weight off its initial value so the test exercises all of them
    return {k: v + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    model = RaSeformer(TINY)
    model.load_state_dict(_weights())
    rng = np.random.default_rng(0)
    write_model_dir(model.eval(), Setup(localizer=TINY), out,
                    features={f"v{i}": rng.standard_normal((60, 16)).astype(np.float32) for i in range(5)})
    return out


@pytest.mark.parametrize("length", [40, 72, 96, 130, 300])
def test_onnx_matches_pytorch(model_dir, length):
    onnx_loc, torch_loc = OnnxLocalizer(model_dir, "cpu"), TorchLocalizer(model_dir, "cpu")
    rng = np.random.default_rng(length)
    L = onnx_loc.config.padded_length(length)
    x = np.zeros((1, 16, L), np.float32)
    x[0, :, :length] = rng.standard_normal((16, length))
    mask = (np.arange(L) < length)[None, None]
    (la, oa), (lb, ob) = onnx_loc.raw(x, mask), torch_loc.raw(x, mask)
    assert max(float(np.abs(a - b).max()) for a, b in zip(la + oa, lb + ob)) < 1e-4
    features = x[0, :, :length].T.copy()
    da, db = onnx_loc.detect_arrays(features, 30.0), torch_loc.detect_arrays(features, 30.0)
    assert np.array_equal(da[2], db[2]) and np.allclose(da[0], db[0], atol=1e-4) and np.allclose(da[1], db[1], atol=1e-5)


def test_detect_long_recording_in_chunks(model_dir):
    loc = OnnxLocalizer(model_dir, "cpu")
    features = np.random.default_rng(1).standard_normal((1000, 16)).astype(np.float32)
    duration = (999 * 4 + 16) / 30
    events = loc.detect(features, duration)
    assert events and all(isinstance(e, Event) for e in events)
    assert all(0 <= e.start_s < e.end_s <= duration for e in events)
    n_chunks = len(chunk_starts(1000, loc.postprocess, loc.config.max_div_factor))
    assert n_chunks == 9 and len(events) <= 200 * n_chunks  # max segments per chunk
    assert events == loc.detect(features, duration)  # deterministic


def test_detect_bad_features(model_dir):
    loc = OnnxLocalizer(model_dir, "cpu")
    with pytest.raises(InputError, match="dimension 8, the model expects 16"):
        loc.detect(np.zeros((50, 8), np.float32), 10.0)
    bad = np.zeros((50, 16), np.float32)
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        loc.detect(bad, 10.0)


def _release_checkpoint(path, state):
    ema = collections.OrderedDict((f"module.{k}", v) for k, v in state.items())
    raw = collections.OrderedDict((f"module.{k}", v * 0.5) for k, v in state.items())
    torch.save({"epoch": 40, "state_dict": raw, "state_dict_ema": ema,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-8, "weight_decay": 0.05, "params": [0, 1]}]}}, path)


def test_import_release_checkpoint(tmp_path):
    state = _weights(seed=3)
    _release_checkpoint(tmp_path / "ckpt.pth.tar", state)
    (tmp_path / "cfg.yaml").write_text(TINY_YAML)
    result = CliRunner().invoke(app, ["import-checkpoint", str(tmp_path / "ckpt.pth.tar"), "--config",
                                      str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    loaded = TorchLocalizer(tmp_path / "model").model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)  # the EMA weights
    reference = RaSeformer(TINY).eval()
    reference.load_state_dict(state)
    x = torch.randn(1, 16, 96)
    mask = torch.ones(1, 1, 96, dtype=torch.bool)
    with torch.no_grad():
        expected = reference(x, mask)[0][0][0].numpy()
    got = OnnxLocalizer(tmp_path / "model", "cpu").raw(x.numpy(), mask.numpy())[0][0]
    assert np.abs(expected - got).max() < 1e-4


def test_import_refuses_other_architecture(tmp_path):
    _release_checkpoint(tmp_path / "ckpt.pth.tar", _weights(LocalizerConfig(input_dim=16, embd_dim=64, fpn_dim=64, head_dim=64)))
    (tmp_path / "cfg.yaml").write_text(TINY_YAML)
    r = CliRunner().invoke(app, ["import-checkpoint", str(tmp_path / "ckpt.pth.tar"), "--config", str(tmp_path / "cfg.yaml"),
                                 "-o", str(tmp_path / "model")])
    assert r.exit_code == 2 and "another architecture" in r.output and len(r.output.strip().splitlines()) == 1
    state = _weights()
    state.pop("reg_head.scale.0.scale")
    _release_checkpoint(tmp_path / "ckpt.pth.tar", state)
    with pytest.raises(InputError, match="1 missing .*reg_head.scale.0.scale"):
        import_checkpoint(tmp_path / "ckpt.pth.tar", tmp_path / "cfg.yaml", tmp_path / "model")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_import_refuses_code(tmp_path, capsys):
    torch.save({"state_dict_ema": _Payload()}, tmp_path / "evil.pth.tar")
    (tmp_path / "cfg.yaml").write_text(TINY_YAML)
    with pytest.raises(InputError, match="refused: the checkpoint needs code"):
        import_checkpoint(tmp_path / "evil.pth.tar", tmp_path / "cfg.yaml", tmp_path / "model")
    assert "this must never run" not in capsys.readouterr().out
    (tmp_path / "junk.pth.tar").write_bytes(pickle.dumps([1, 2]) + b"junk")
    with pytest.raises(InputError):
        import_checkpoint(tmp_path / "junk.pth.tar", tmp_path / "cfg.yaml", tmp_path / "model")


def test_feature_distance(model_dir):
    stats = read_feature_stats(model_dir / "feature_stats.npz")
    rng = np.random.default_rng(7)
    near = feature_distance(rng.standard_normal((60, 16)).astype(np.float32), stats)
    far = feature_distance(3 + 2 * rng.standard_normal((60, 16)).astype(np.float32), stats)
    assert 0.8 < near < 1.3 and far > 3
    assert training_percentile(far, stats) == 100.0
    assert feature_stats([np.ones((3, 2), np.float32)])["std"].min() > 0


def test_import_checkpoint_with_i3d_weights(tmp_path):
    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.model import read_manifest

    cfg = LocalizerConfig(input_dim=128, embd_dim=32, fpn_dim=32, head_dim=32)
    _release_checkpoint(tmp_path / "ckpt.pth.tar", _weights(cfg, seed=4))
    (tmp_path / "cfg.yaml").write_text("dataset: {input_dim: 128}\nmodel: {embd_dim: 32, fpn_dim: 32, head_dim: 32}\n")
    torch.save(InceptionI3d(I3DConfig(width=0.125)).state_dict(), tmp_path / "i3d.pt")  # 128-d features
    args = ["import-checkpoint", str(tmp_path / "ckpt.pth.tar"), "--config", str(tmp_path / "cfg.yaml")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "model"), "--i3d-weights", str(tmp_path / "i3d.pt")])
    assert result.exit_code == 0, result.output
    front = read_manifest(tmp_path / "model")["front_end"]
    assert front["i3d"]["feature_dim"] == 128 and (tmp_path / "model" / front["i3d"]["onnx"]).is_file()
    # An I3D whose features do not fit the localizer is refused in one line.
    torch.save(InceptionI3d(I3DConfig(width=0.25)).state_dict(), tmp_path / "i3d_256.pt")
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "model2"), "--i3d-weights", str(tmp_path / "i3d_256.pt")])
    assert result.exit_code == 2 and "256-d" in result.stderr and "\n" not in result.stderr.strip()


def _draw(tmp_path_factory, seed, cfg=TINY):
    out = tmp_path_factory.mktemp("draw") / f"seed{seed}"
    model = RaSeformer(cfg)
    model.load_state_dict(_weights(cfg, seed))
    rng = np.random.default_rng(0)
    write_model_dir(model.eval(), Setup(localizer=cfg), out,
                    features={f"v{i}": rng.standard_normal((60, cfg.input_dim)).astype(np.float32) for i in range(5)})
    return out


def test_averaged_draws_are_one_localizer_in_onnx_and_in_pytorch(tmp_path_factory, tmp_path):
    from ratscore.checkpoint import read_localizer_checkpoint
    from ratscore.localizer import AveragedRaSeformer
    from ratscore.model import read_manifest
    from ratscore.training.export import write_averaged_model_dir

    draws = [_draw(tmp_path_factory, seed) for seed in (1, 2, 3)]
    averaged = write_averaged_model_dir(draws, tmp_path / "averaged", trained_on="three draws")
    assert read_manifest(averaged)["localizer"]["members"] == 3
    network, _ = read_localizer_checkpoint(averaged / "localizer.pt")
    assert isinstance(network, AveragedRaSeformer) and len(network.members) == 3
    singles = [OnnxLocalizer(d, "cpu") for d in draws]
    onnx_avg, torch_avg = OnnxLocalizer(averaged, "cpu"), TorchLocalizer(averaged, "cpu")
    # loads without planning buffer reuse (slow to plan for several networks), and still agrees
    assert onnx_avg.session.get_session_options().enable_mem_reuse is False
    L = onnx_avg.config.padded_length(72)
    x = np.random.default_rng(5).standard_normal((1, 16, L)).astype(np.float32)
    mask = (np.arange(L) < 72)[None, None]
    (la, oa), (lb, ob) = onnx_avg.raw(x, mask), torch_avg.raw(x, mask)
    assert max(float(np.abs(a - b).max()) for a, b in zip(la + oa, lb + ob)) < 1e-4
    outputs = [s.raw(x, mask) for s in singles]
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    assert not np.allclose(outputs[0][0][0], outputs[1][0][0])  # different draws, or the test shows nothing
    for level in range(onnx_avg.config.num_levels):
        np.testing.assert_allclose(sigmoid(la[level]), np.mean([sigmoid(o[0][level]) for o in outputs], axis=0),
                                   atol=1e-5)
        np.testing.assert_allclose(oa[level], np.mean([o[1][level] for o in outputs], axis=0), atol=1e-4)
    # an average averaged with one more draw is the average of all four, not of two
    again = write_averaged_model_dir([averaged, _draw(tmp_path_factory, 4)], tmp_path / "four", trained_on="four")
    assert len(read_localizer_checkpoint(again / "localizer.pt")[0].members) == 4


def test_draws_of_other_networks_are_not_averaged(tmp_path_factory, tmp_path):
    from dataclasses import replace

    from ratscore.training.export import write_averaged_model_dir

    other = _draw(tmp_path_factory, 2, replace(TINY, embd_dim=16, fpn_dim=16, head_dim=16))
    with pytest.raises(InputError, match="share one config"):
        write_averaged_model_dir([_draw(tmp_path_factory, 1), other], tmp_path / "averaged", trained_on="")
    assert not (tmp_path / "averaged").exists()


def test_a_checkpoint_with_one_member_is_refused(tmp_path):
    from ratscore.checkpoint import read_localizer_checkpoint

    torch.save({"format": "ratscore-localizer", "setup": Setup(localizer=TINY).to_dict(),
                "members": [_weights()]}, tmp_path / "localizer.pt")
    with pytest.raises(InputError, match="not a ratscore localizer checkpoint"):
        read_localizer_checkpoint(tmp_path / "localizer.pt")


def test_a_lab_training_starts_from_the_first_draw_of_an_averaged_bundled_localizer(tmp_path_factory, tmp_path,
                                                                                    monkeypatch):
    import ratscore.model
    from ratscore.checkpoint import read_localizer_checkpoint
    from ratscore.training.export import write_averaged_model_dir
    from ratscore.training.own_data import localizer_setup

    draws = [_draw(tmp_path_factory, seed) for seed in (1, 2)]
    monkeypatch.setattr(ratscore.model, "BUNDLED_MODEL_DIR", write_averaged_model_dir(draws, tmp_path / "m", ""))
    sized = localizer_setup(16)
    first = read_localizer_checkpoint(draws[0] / "localizer.pt")[0].state_dict()
    assert sized.init_state is not None and sized.init_state.keys() == first.keys()
    assert all(torch.equal(sized.init_state[k], first[k]) for k in first)
