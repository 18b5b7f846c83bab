"""`ratscore train detector --videos`: the detector fine-tuned on a lab's own recordings with boxes
from the motion model, on tiny videos of a dark blob moving over a static floor beside a static
white card (which must never be taken for the animal)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, without_detector_weights
from typer.testing import CliRunner
from ratscore.video import write_h264

from ratscore.cli import app

runner = CliRunner()
W, H, FPS = 160, 120, 30
CARD = (120, 10, 150, 30)  # the static white distractor, x0 y0 x1 y1
HALF = (14, 9)  # the blob's half axes


def blob_centre(t: float, phase: float) -> tuple[float, float]:
    return 40 + 60 * (0.5 + 0.5 * np.sin(1.3 * t + phase)), 60 + 25 * np.sin(0.9 * t + 2 * phase)


def blob_box(t: float, phase: float) -> np.ndarray:
    cx, cy = blob_centre(t, phase)
    return np.array([cx - HALF[0], cy - HALF[1], cx + HALF[0], cy + HALF[1]])


def write_video(path: Path, seconds: float, phase: float = 0.0, moving: bool = True, gop: int = 30) -> Path:
    floor = np.random.default_rng(0).integers(90, 110, (H, W)).astype(np.uint8)
    floor = np.repeat(floor[:, :, None], 3, 2)
    floor[CARD[1]:CARD[3], CARD[0]:CARD[2]] = 250
    yy, xx = np.mgrid[0:H, 0:W]

    def frame(n: int) -> np.ndarray:
        cx, cy = blob_centre(n / FPS if moving else 0.0, phase)
        image = floor.copy()
        image[((xx - cx) / HALF[0]) ** 2 + ((yy - cy) / HALF[1]) ** 2 <= 1] = 20
        return image

    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    write_h264(path, (frame(n) for n in range(int(seconds * FPS))), FPS, options)
    return path


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def lab_videos(tmp_path_factory):
    """Two short clips (every frame decoded by the motion model) and one 130 s recording with a
    keyframe every 0.5 s (enough keyframes for 120 labels: sampled at keyframes, its frames
    decoded by seeking)."""
    folder = tmp_path_factory.mktemp("lab_videos")
    write_video(folder / "rat0.mp4", 4.0, phase=0.0)
    write_video(folder / "rat1.mp4", 4.0, phase=1.0)
    write_video(folder / "rat2.mp4", 130.0, phase=2.0, gop=15)
    return folder


def _train(*args):
    return runner.invoke(app, ["train", "detector", *map(str, args), "--epochs", "2", "--imgsz", "64",
                               "--device", "cpu"])


@pytest.fixture(scope="module")
def trained(lab_videos, tmp_path_factory):
    """One run interrupted after its first epoch (its labels made), then run again: it resumes."""
    import ratscore.training.rig_detector as rig

    model = tmp_path_factory.mktemp("rig") / "RIG_MODEL"
    real = rig.fit_detector

    def interrupted(*args, on_epoch=None, **kwargs):
        def stop(epoch, epochs, metrics):
            on_epoch(epoch, epochs, metrics)
            raise KeyboardInterrupt

        return real(*args, on_epoch=stop, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rig, "fit_detector", interrupted)
        first = _train("--videos", lab_videos, "-o", model)
    first.model_after = (model / "manifest.json").exists()  # no model yet: the manifest comes last
    second = _train("--videos", lab_videos, "-o", model)
    third = _train("--videos", lab_videos, "-o", model)
    return model, first, second, third


def test_labels_resume_and_a_model_analyze_takes(trained, lab_videos, tmp_path):
    from ratscore.model import BUNDLED_MODEL_DIR, load_model

    model, first, second, third = trained
    assert first.exit_code == 130, first.output  # interrupted, after labelling every video
    for name in ("rat0.mp4", "rat1.mp4", "rat2.mp4"):
        assert f"[label] {name}: " in first.stdout and "frames with a clear moving animal" in first.stdout
    # the default base is the bundled model, fine-tuned from its detector.pt
    assert f"fine-tuning {BUNDLED_MODEL_DIR / 'detector.pt'}" in first.stdout and "(the weights of " not in first.stdout
    assert "[detector] epoch 1/2" in first.stdout and not first.model_after

    assert second.exit_code == 0, second.output
    assert second.stdout.count("labelled before") == 3 and "frames with a clear moving animal" not in second.stdout
    assert "resuming the interrupted training" in second.stdout and "[detector] epoch 2/2" in second.stdout
    assert "[detector] epoch 1/2" not in second.stdout
    assert third.exit_code == 0, third.output
    assert "not redone" in third.stdout and "[detector] epoch" not in third.stdout

    loaded = load_model(model)  # the whole chain: the bundled I3D and localizer, the new detector
    bundled = load_model(BUNDLED_MODEL_DIR)
    assert loaded.detector.weights == "detector.pt" and loaded.file("detector.pt").is_file()
    assert loaded.detector.imgsz == 64 and loaded.detector.every_k == bundled.detector.every_k
    assert loaded.i3d == bundled.i3d and loaded.localizer.onnx == bundled.localizer.onnx
    assert (model / "localizer.onnx").read_bytes() == (BUNDLED_MODEL_DIR / "localizer.onnx").read_bytes()
    assert "motion model" in loaded.manifest["trained_on"] and loaded.name == "RIG_MODEL"
    # what trust reads: a detector adapted to the lab's rig, a scoring that learned from drawn rats
    assert loaded.detector_adapted_to.startswith("3 of the lab's own videos (") and bundled.detector_adapted_to is None
    assert loaded.scores_learned_from == "synthetic"
    assert (model / "detector_labels.png").stat().st_size > 1000

    out = tmp_path / "out"
    analyzed = runner.invoke(app, ["analyze", str(lab_videos / "rat0.mp4"), "--model", str(model), "-o", str(out),
                                   "--device", "cpu"])
    assert analyzed.exit_code == 0, analyzed.output
    summary = json.loads((out / "rat0.summary.json").read_text())
    assert summary["model"].startswith("RIG_MODEL@") and (out / "rat0.track.csv").is_file()


def test_the_labels_sit_on_the_moving_blob_not_the_card(trained):
    model = trained[0]
    work = model / ".detector_training"
    modes = {}
    for stem, phase in (("rat0", 0.0), ("rat1", 1.0), ("rat2", 2.0)):
        record = json.loads((work / "videos" / f"{stem}.json").read_text())
        modes[stem] = record["mode"]
        assert len(record["frames"]) >= 15
        for frame in record["frames"]:
            box = frame["box"]
            assert iou(box, blob_box(frame["t"], phase)) > 0.6, (stem, frame)
            assert iou(box, CARD) == 0.0
            # the YOLO label is the same box, class 0 (rat), normalised to the frame
            c, cx, cy, bw, bh = (work / "frames" / "labels" / stem / f"{frame['image']}.txt").read_text().split()
            assert c == "0" and abs(float(cx) * W - (box[0] + box[2]) / 2) < 0.5
            assert (work / "frames" / "images" / stem / f"{frame['image']}.jpg").is_file()
    assert modes == {"rat0": "frames", "rat1": "frames", "rat2": "keyframes"}
    # the split is by video: a whole video validates
    data = json.loads((work / "data.yaml").read_text())
    train, val = ({Path(d).name for d in data[k]} for k in ("train", "val"))
    assert train | val == {"rat0", "rat1", "rat2"} and not train & val and len(val) == 1


def test_a_base_without_detector_pt_is_fine_tuned_from_its_onnx(trained, lab_videos, tmp_path, monkeypatch):
    """From a model folder with no detector.pt (the first test's without it, as folders made before
    the detector's weights were kept), with synthetic frames pooled in: its detector.onnx is built
    again as a checkpoint, and that is what training starts from."""
    import ratscore.training.rig_detector as rig
    from ratscore.model import load_model
    from ratscore.synth import SynthConfig, synthesize

    synth = tmp_path / "synth"
    synthesize(synth, clips=2, seed=3, config=SynthConfig(clip_seconds=2.0, resolutions=((160, 120),)))

    base = without_detector_weights(trained[0], tmp_path / "BASE")
    starts = []
    real = rig.fit_detector

    def spy(*args, **kwargs):
        starts.append(kwargs.get("init_from"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rig, "fit_detector", spy)
    out = tmp_path / "TUNED"
    result = runner.invoke(app, ["train", "detector", "--videos", str(lab_videos), "--model", str(base), "-o", str(out),
                                 "--synth", str(synth), "--epochs", "1", "--device", "cpu"])  # imgsz: the base's (64)
    assert result.exit_code == 0, result.output
    rebuilt = out / ".detector_training" / "base_detector.pt"
    assert [Path(start).resolve() for start in starts] == [rebuilt.resolve()]
    assert "detector.onnx: the base model has no detector.pt)" in result.stdout
    tuned = load_model(out)
    assert tuned.detector.imgsz == 64 and tuned.detector.weights == "detector.pt"
    assert "synthetic frames pooled in" in tuned.manifest["trained_on"] and "[synth] " in result.stdout
    data = json.loads((out / ".detector_training" / "data.yaml").read_text())
    assert any(d.endswith("synth/images/train") for d in data["train"])
    assert any(d.endswith("synth/images/val") for d in data["val"])


def test_bad_inputs_exit_2_in_one_line(tmp_path, lab_videos, tiny_model):
    from ratscore.model import BUNDLED_MODEL_DIR

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no videos here\n")
    assert "no video files" in one_line_error(_train("--videos", empty, "-o", tmp_path / "M"))
    still = tmp_path / "still"
    still.mkdir()
    write_video(still / "sleeper.mp4", 4.0, moving=False)
    err = one_line_error(_train("--videos", still, "-o", tmp_path / "M2"))
    assert "too few to train on" in err and "sleeper" in err and "never moved" in err
    assert "bundled model" in one_line_error(_train("--videos", lab_videos, "-o", BUNDLED_MODEL_DIR))
    assert "base model" in one_line_error(_train("--videos", lab_videos, "--model", tiny_model, "-o", tiny_model))
    assert "--videos DIR" in one_line_error(_train("-o", tmp_path / "M3"))
    assert "--model" in one_line_error(_train("--synth", empty, "--model", tiny_model, "-o", tmp_path / "M4"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "thesis.docx").write_text("mine")
    assert "holds other files" in one_line_error(_train("--videos", lab_videos, "-o", taken))


def test_one_recording_validates_on_its_last_moments(tmp_path):
    """With one recording there is no other to validate on: its last fifth of labelled moments
    is kept apart (in time, not at random: neighbouring frames are near copies)."""
    from ratscore.training.rig_detector import _split_in_time

    work = tmp_path / "work"
    (work / "videos").mkdir(parents=True)
    times = np.random.default_rng(0).permutation(np.arange(40) * 0.5)  # the record's order is not time's
    frames = [{"t": float(t), "image": f"f{int(t * 10):05d}", "box": [0, 0, 1, 1]} for t in times]
    (work / "videos" / "rig.json").write_text(json.dumps({"frames": frames}))
    train, val, n_train, n_val = _split_in_time(work, "rig", 0.2)
    assert (n_train, n_val) == (32, 8)
    train_images, val_images = (Path(p).read_text().splitlines() for p in (train, val))
    assert len(train_images) == 32 and len(val_images) == 8
    stamp = lambda image: int(Path(image).stem[1:]) / 10  # noqa: E731
    assert max(map(stamp, train_images)) < min(map(stamp, val_images)) == 16.0
    assert all(Path(p).parent == (work / "frames" / "images" / "rig").resolve() for p in train_images + val_images)


def test_a_recording_with_few_keyframes_is_read_frame_by_frame_for_more_labels(tmp_path):
    """40 s with a keyframe a second: the first pass would sample 40 keyframes (enough for analyze),
    fewer than the 120 labels a video may give, so every frame is read and more moments labelled."""
    from ratscore.motion import build_motion_model
    from ratscore.training.rig_detector import _label_video

    video = write_video(tmp_path / "rat.mp4", 40.0, gop=30)
    assert build_motion_model(video).mode == "keyframes"  # analyze's pass
    labelled = _label_video(video, "rat", tmp_path / "work", 64, 120, "fingerprint")
    record = json.loads((tmp_path / "work" / "videos" / "rat.json").read_text())
    assert record["mode"] == "frames" and labelled.frames == len(record["frames"]) > 60
    assert all(iou(f["box"], blob_box(f["t"], 0.0)) > 0.6 for f in record["frames"])


def test_calibration_frames_read_image_lists_whose_paths_hold_spaces(tmp_path):
    """The frames a detector rebuilt from ONNX is calibrated on come from YOLO folders or image
    lists (one path a line, as _split_in_time writes them); a lab's folder may have spaces in it."""
    import cv2

    from ratscore.training.rig_detector import _calibration_frames

    folder = tmp_path / "My Videos" / "frames"
    folder.mkdir(parents=True)
    for n in range(3):
        cv2.imwrite(str(folder / f"f{n}.jpg"), np.full((8, 8, 3), (10 * n, 0, 255), np.uint8))
    listed = tmp_path / "My Videos" / "train.txt"
    listed.write_text("".join(f"{folder / f'f{n}.jpg'}\n" for n in (0, 2)))
    frames = _calibration_frames([str(listed), str(folder)])
    assert len(frames) == 5 and frames[0].shape == (8, 8, 3)
    assert frames[0][0, 0, 0] > 200  # RGB: the red channel first (written as BGR 255 in red)
