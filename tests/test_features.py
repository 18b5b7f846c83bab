"""Features: the RatSeizure layout, reproducible, PyTorch == ONNX, streamed == whole read; `ratscore extract`."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.errors import InputError
from ratscore.features import ClipEncoder, extract_features, load_front_end
from ratscore.training.export import add_i3d_to_model_dir
from ratscore.i3d import I3DConfig
from ratscore.model import read_manifest
from ratscore.roi import whole_frame_square
from ratscore.video import crop_square, read_frames
from test_i3d import calibrated_i3d
from test_video import make_video

SIZE = 64  # tiny input and width keep these tests fast; the layout does not depend on them
CONFIG = I3DConfig(width=0.125, input_size=SIZE)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    boxes = [(10 + 2 * i, 20, 50 + 2 * i, 60) for i in range(50)]
    return make_video(tmp_path_factory.mktemp("videos") / "rat_01.mp4", n_frames=50, boxes=boxes)


def whole_read_clips(video) -> np.ndarray:
    """All clips of a video, from all its frames read into memory and cut by index: (N, 16, S, S, 3)."""
    frames = [f.image for f in read_frames(video)]
    crops = np.stack([crop_square(f, whole_frame_square(160, 120), SIZE) for f in frames])
    return np.stack([crops[4 * i: 4 * i + 16] for i in range((len(crops) - 16) // 4 + 1)])


@pytest.fixture(scope="module")
def weights(tmp_path_factory, video):
    """A tiny I3D (BatchNorm statistics from the test video, so features are O(1) as with real
    weights) saved as our {config, state_dict} checkpoint."""
    folder = tmp_path_factory.mktemp("weights")
    model = calibrated_i3d(CONFIG, seed=1, clips=torch.from_numpy(ClipEncoder.normalise(whole_read_clips(video))))
    checkpoint = folder / "tiny_i3d.pt"
    torch.save({"config": CONFIG.to_dict(), "state_dict": model.state_dict()}, checkpoint)
    return model, checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, weights):
    folder = tmp_path_factory.mktemp("model")
    add_i3d_to_model_dir(folder, weights[1])
    return folder


def test_layout_and_fields(video, weights):
    result = extract_features(video, i3d_weights=weights[1], no_roi=True, progress=False, device="cpu")
    assert result.n_frames == 50 and result.fps == 30.0
    assert result.features.shape == ((50 - 16) // 4 + 1, 128) and result.features.dtype == np.float32
    assert result.duration_s == pytest.approx(50 / 30)
    assert result.boxes.shape == (50, 4)
    np.testing.assert_allclose(result.boxes[0], whole_frame_square(160, 120))
    assert result.rat_found_fraction is None and result.gaps == [] and result.decode_warnings == []
    assert result.feature_time(0) == pytest.approx(8 / 30)
    assert result.source_fps == pytest.approx(30.0) and result.video == "rat_01"


def test_same_between_runs(video, weights):
    a = extract_features(video, i3d_weights=weights[1], no_roi=True, progress=False, device="cpu").features
    b = extract_features(video, i3d_weights=weights[1], no_roi=True, progress=False, device="cpu").features
    assert np.array_equal(a, b)
    assert np.abs(a).mean() > 0.05


def test_torch_and_onnx_paths_agree(video, model_dir):
    onnx_front = load_front_end(model_dir, device="cpu", no_roi=True, backend="onnx")
    torch_front = load_front_end(model_dir, device="cpu", no_roi=True, backend="torch")
    assert (onnx_front.encoder.backend, torch_front.encoder.backend) == ("onnx", "torch")
    a = extract_features(video, onnx_front, progress=False).features
    b = extract_features(video, torch_front, progress=False).features
    assert np.abs(a).mean() > 0.05
    # float32 through ~60 conv layers: both paths sit ~1e-5 (relative) from a float64 reference,
    # so "within 1e-4" is judged relative to the features' scale (max |feature| here is ~8)
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= 1e-4 * scale
    assert np.abs(a - b).mean() <= 1e-4


def test_a_model_folder_with_i3d_weights_runs_them_in_torch_on_the_cpu(model_dir, tiny_model):
    import torch

    # PyTorch where the folder has i3d.pt (oneDNN: about half ONNX Runtime's time on the CPU),
    # ONNX Runtime where it has only i3d.onnx
    front = load_front_end(model_dir, device="cpu", no_roi=True)
    assert front.encoder.backend == "torch"
    assert load_front_end(tiny_model, device="cpu", no_roi=True).encoder.backend == "onnx"
    # the I3D takes all cores but one for its call, then gives the process its threads back
    threads = torch.get_num_threads()
    seen = []
    front.encoder.model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    clips = np.zeros((1, 16, front.input_size, front.input_size, 3), np.uint8)
    front.encoder(clips)
    assert seen == [front.encoder.threads] and torch.get_num_threads() == threads


def test_motion_only_i3d_keeps_its_config_through_the_model_folder(tmp_path):
    # the bundled recipe's I3D subtracts each clip's temporal mean inside the network; the model
    # folder's ONNX graph and its i3d.pt must both do the same, or the two backends would differ
    config = I3DConfig(width=0.125, input_size=SIZE, subtract_temporal_mean=True)
    model = calibrated_i3d(config, seed=2)
    add_i3d_to_model_dir(tmp_path, {"config": config.to_dict(), "state_dict": model.state_dict()})
    assert read_manifest(tmp_path)["front_end"]["i3d"]["subtract_temporal_mean"] is True
    clips = np.random.default_rng(0).integers(0, 256, (3, 16, SIZE, SIZE, 3), dtype=np.uint8)
    expected = ClipEncoder(SIZE, 128, model=model)(clips)
    onnx_front = load_front_end(tmp_path, device="cpu", no_roi=True, backend="onnx")
    torch_front = load_front_end(tmp_path, device="cpu", no_roi=True, backend="torch")
    assert torch_front.encoder.model.config.subtract_temporal_mean is True
    scale = float(np.abs(expected).max())  # noise clips drive this network far: judge relative to it
    assert np.abs(onnx_front.encoder(clips) - expected).max() <= 1e-4 * scale
    assert np.abs(torch_front.encoder(clips) - expected).max() <= 1e-5 * scale


def test_streamed_equals_whole_read(video, weights):
    model = weights[0]
    # the whole video in memory, clips cut by index, one network call
    whole = ClipEncoder(SIZE, 128, model=model)(whole_read_clips(video))
    streamed = extract_features(video, i3d_weights=weights[1], no_roi=True, progress=False,
                                device="cpu", batch_size=3).features
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


def test_decoding_in_a_thread_of_its_own_changes_nothing(video, weights, monkeypatch):
    import threading

    import ratscore.crops as crops

    runs = {}
    for cores in (2, 16):  # with more than 2 cores decoding runs ahead in a thread of its own
        monkeypatch.setattr(crops, "cpu_cores", lambda: cores)
        runs[cores] = extract_features(video, i3d_weights=weights[1], no_roi=True, progress=False, device="cpu")
    assert np.array_equal(runs[2].features, runs[16].features)
    assert np.array_equal(runs[2].boxes, runs[16].boxes) and runs[2].n_frames == runs[16].n_frames == 50
    assert runs[2].decode_warnings == runs[16].decode_warnings
    assert not any(t.name == "ratscore-decode" for t in threading.enumerate())


def test_normalisation_maps_uint8_to_minus1_1():
    clips = np.zeros((1, 16, 4, 4, 3), np.uint8)
    clips[..., 0] = 255
    x = ClipEncoder.normalise(clips)
    assert x.shape == (1, 3, 16, 4, 4)
    assert x[0, 0].min() == 1.0 and x[0, 1].max() == -1.0


def test_manifest_records_the_front_end(model_dir):
    manifest = read_manifest(model_dir)
    assert manifest["fps"] == 30.0 and manifest["clip_frames"] == 16 and manifest["clip_stride"] == 4
    assert manifest["feature_dim"] == 128
    i3d = manifest["front_end"]["i3d"]
    assert i3d == {"onnx": "i3d.onnx", "input_size": SIZE, "width": 0.125, "normalisation": "rgb_minus1_1",
                   "subtract_temporal_mean": False, "still_share": 0.0, "feature_dim": 128, "weights": "i3d.pt"}
    assert manifest["front_end"]["detector"] is None
    assert (model_dir / "i3d.onnx").stat().st_size > 10_000


def test_too_short_and_missing_detector(tmp_path, weights, model_dir):
    short = make_video(tmp_path / "short.mp4", n_frames=10)
    with pytest.raises(InputError, match=r"short.mp4: 10 frames at 30 fps \(0.33 s\) is shorter than one 16-frame clip"):
        extract_features(short, i3d_weights=weights[1], no_roi=True, progress=False, device="cpu")
    with pytest.raises(InputError, match="no ROI detector; pass --no-roi"):
        load_front_end(model_dir, device="cpu")


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_extract_file_and_folder(tmp_path, video, weights, model_dir):
    out = tmp_path / "feats"
    result = run_cli("extract", video, "-o", out, "--i3d-weights", weights[1], "--no-roi", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "rat_01" in result.output and "9 x 128" in result.output
    assert np.load(out / "rat_01.npy").shape == (9, 128)
    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "a.mp4", n_frames=20)
    make_video(folder / "b.mkv", n_frames=36, fps=15)
    (folder / "notes.txt").write_text("not a video")
    result = run_cli("extract", folder, "-o", out, "--model", model_dir, "--no-roi")
    assert result.exit_code == 0, result.output
    assert np.load(out / "a.npy").shape == (2, 128) and np.load(out / "b.npy").shape == (15, 128)


@pytest.mark.parametrize("case", ["not_a_video", "zero_frames", "too_short", "bad_mask", "bad_weights",
                                  "no_i3d", "no_detector"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, weights, model_dir, video, case):
    import av

    args = ["--i3d-weights", weights[1], "--no-roi"]
    target = video
    if case == "not_a_video":
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"\x00\x01garbage" * 100)
    elif case == "zero_frames":
        target = tmp_path / "empty.mp4"
        with av.open(str(target), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height = 64, 48
    elif case == "too_short":
        target = make_video(tmp_path / "short.mp4", n_frames=12)
    elif case == "bad_mask":
        mask = tmp_path / "rig.yaml"
        mask.write_text("arena: [[0, 0], [1, 0]\nreflections: {")
        args += ["--mask", mask]
    elif case == "bad_weights":
        state = calibrated_i3d(I3DConfig(width=0.25, input_size=SIZE)).state_dict()
        state["Conv3d_2c_3x3.conv3d.weight"] = torch.zeros(1, 1, 1)
        bad = tmp_path / "wrong.pt"
        torch.save(state, bad)
        args = ["--i3d-weights", bad, "--no-roi"]
    elif case == "no_i3d":  # a model folder without a front end (a localizer-only model)
        from ratscore.model import update_model

        update_model(tmp_path / "features_only", {"name": "features-only"})
        args = ["--no-roi", "--model", tmp_path / "features_only"]
    elif case == "no_detector":
        args = ["--model", model_dir]
    result = run_cli("extract", target, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ratscore: error: "), result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def synth_clip(tmp_path_factory):
    synth = pytest.importorskip("ratscore.synth")
    folder = tmp_path_factory.mktemp("synth")
    config = synth.SynthConfig(clip_seconds=2.0, resolutions=((320, 240),), grayscale_fraction=0.0)
    annotations = synth.synthesize(folder, clips=1, seed=7, config=config)
    return folder / f"{next(iter(annotations))}.mp4"


def test_synthetic_clip_features_reproducible_and_backends_agree(synth_clip, model_dir, weights):
    onnx_front = load_front_end(model_dir, device="cpu", no_roi=True, backend="onnx")
    torch_front = load_front_end(model_dir, device="cpu", no_roi=True, backend="torch")
    first = extract_features(synth_clip, onnx_front, progress=False)
    again = extract_features(synth_clip, onnx_front, progress=False)
    assert first.n_frames == 60 and first.features.shape == (12, 128)
    assert np.array_equal(first.features, again.features)
    other = extract_features(synth_clip, torch_front, progress=False, batch_size=5).features
    scale = max(1.0, float(np.abs(other).max()))
    assert np.abs(first.features - other).max() <= 1e-4 * scale


def test_run_ahead_keeps_order_and_raises_the_producers_error():
    from ratscore.features import run_ahead

    assert list(run_ahead(iter(range(500)), depth=3)) == list(range(500))

    def failing():
        yield 1
        yield 2
        raise InputError("clip.mp4: decoding broke")

    got = []
    with pytest.raises(InputError, match="decoding broke"):
        for item in run_ahead(failing(), depth=1):
            got.append(item)
    assert got == [1, 2]


def test_run_ahead_stopped_early_closes_the_source_and_its_thread():
    import threading

    from ratscore.features import run_ahead

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = run_ahead(endless(), depth=4)
    assert [next(ahead) for _ in range(10)] == list(range(10))
    ahead.close()
    assert closed.wait(5)
    assert not any(t.name == "ratscore-decode" for t in threading.enumerate())


def test_onnx_export_where_the_maps_get_odd_sizes_matches_torch():
    # at 80 px (the bundled I3D) the maps reach 5 x 5, whose SAME padding is lopsided: the export
    # must fix it as constants while the batch stays free
    import onnxruntime as ort
    import torch

    from ratscore.training.export import i3d_onnx_bytes

    model = calibrated_i3d(I3DConfig(width=0.125, input_size=80))
    session = ort.InferenceSession(i3d_onnx_bytes(model, 16), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, 16, 80, 80) * 2 - 1
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"clips": x.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_the_feature_cache_tells_two_files_of_one_name_apart(tmp_path):
    from ratscore.features import cached_features
    from ratscore.pipeline import video_fingerprint

    made = []

    def extract(vid, path):  # features made another way (as bench_true_boxes.py makes them)
        made.append(path.parent.name)
        return np.full((3, 4), len(made), np.float32)

    for folder, content in (("classic", b"one drawing"), ("unseen", b"another drawing")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip_0.mp4").write_bytes(content)
    for folder in ("classic", "unseen", "unseen"):
        cached = cached_features({"clip_0": tmp_path / folder / "clip_0.mp4"}, tmp_path / "cache", None, "key",
                                 video_fingerprint, extract=extract)
    assert made == ["classic", "unseen"] and cached.reused == ["clip_0"]
    assert np.load(cached.folder / "clip_0.npy")[0, 0] == 2  # the second file's, not the first's
