import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# ultralytics writes a settings file on import; keep it out of the user's home in tests.
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "ultralytics"))


def one_line_error(result, code=2):
    """The CLI's error contract: exit `code`, one `ratscore: error: ...` line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert err.startswith("ratscore: error: ") and "\n" not in err and "Traceback" not in result.output
    return err


def without_detector_weights(model_dir, out):
    """A copy of a model folder as folders made before the detector's weights were kept: no
    detector.pt, and no `weights` in its manifest's detector section (hidden work folders left out)."""
    import shutil

    from ratscore.model import read_manifest, update_model

    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("detector.pt", ".*"))
    detector = {k: v for k, v in read_manifest(out)["front_end"]["detector"].items() if k != "weights"}
    update_model(out, {}, front_end={"detector": detector})
    return out


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch means no GPU tests either
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small, untrained but complete model folder: a narrow I3D (64 px, 128-d features) and a tiny
    RaSeformer with training feature statistics; no detector (use it with --no-roi). Its detections
    are meaningless; it exercises the whole chain quickly."""
    from dataclasses import replace

    import numpy as np
    import torch

    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.localizer import RaSeformer
    from ratscore.training.export import add_i3d_to_model_dir, write_model_dir
    from ratscore.training.localizer import read_config

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_model")
    i3d = InceptionI3d(I3DConfig(width=0.125, input_size=64)).eval()
    setup = read_config(None)
    setup = replace(setup, localizer=replace(setup.localizer, input_dim=i3d.feature_dim, embd_dim=32, fpn_dim=32,
                                             head_dim=32))
    rng = np.random.default_rng(0)
    # Training statistics far from what a random I3D gives on any video, so the trust check must flag it.
    features = {f"v{i}": rng.normal(1.0, 0.1, (72, i3d.feature_dim)).astype(np.float32) for i in range(4)}
    write_model_dir(RaSeformer(setup.localizer).eval(), setup, out, features=features,
                    trained_on="nothing: random weights, for tests", name="tiny-test-model")
    add_i3d_to_model_dir(out, i3d.state_dict(), input_size=64, keep_torch_weights=False)
    return out
