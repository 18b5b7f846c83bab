"""A detector kept only as ONNX (model folders made before 2026-12-05 have no detector.pt) built again as an
ultralytics checkpoint that `train detector --videos` fine-tunes: the same function as the graph,
and batch norms that behave the same in training on the frames they were measured on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ratscore.model import BUNDLED_MODEL_DIR, load_model
from ratscore.training.detector import CLASSES, _offline_ultralytics, checkpoint_from_onnx
from ratscore.video import read_frames

SAMPLE = Path(__file__).resolve().parents[2] / "sample_videos" / "clip_7_0001.mp4"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    work = tmp_path_factory.mktemp("from_onnx")
    _offline_ultralytics(work / "settings")
    frames = [f.image for f in read_frames(SAMPLE)][::15][:16]
    onnx = load_model(BUNDLED_MODEL_DIR).file("detector.onnx")
    return checkpoint_from_onnx(onnx, frames, work / "detector.pt", work), onnx, frames


def _raw_and_decoded(model, batch):
    import torch

    with torch.no_grad():
        model.eval()
        decoded, raw = model(batch)
        model.train()
        trained_raw = model(batch)
    maps = ("boxes", "scores")  # the head's raw maps (ultralytics 8.4: a dict beside the decoded output)
    return decoded.numpy(), [raw[k].numpy() for k in maps], [trained_raw[k].numpy() for k in maps]


def test_the_rebuilt_checkpoint_is_the_onnx_graph(rebuilt):
    import torch
    from ultralytics import YOLO

    from ratscore.roi import Detector

    checkpoint, onnx, frames = rebuilt
    assert checkpoint is not None and checkpoint.is_file()
    model = YOLO(str(checkpoint), task="detect").model.float()
    detector = Detector(onnx, 320, CLASSES)
    batch = np.concatenate([detector.letterbox(f)[0] for f in frames])
    decoded, raw, trained_raw = _raw_and_decoded(model, torch.from_numpy(batch))
    graph = np.concatenate([detector.session.run(None, {detector.input_name: b[None]})[0] for b in batch])
    assert np.abs(decoded - graph).max() < 1e-2  # boxes in input pixels, scores 0 to 1
    # in training a batch norm uses the batch's statistics: on the frames it was measured on, the
    # head's raw maps stay close to the graph's (uncalibrated, they would be another network's)
    for eval_map, train_map in zip(raw, trained_raw):
        assert np.abs(train_map - eval_map).mean() < 0.1 * np.abs(eval_map).mean()


def test_a_graph_that_is_not_a_yolo_detector_gives_none(tmp_path):
    _offline_ultralytics(tmp_path / "settings")
    frames = [np.zeros((120, 160, 3), np.uint8)]
    i3d = load_model(BUNDLED_MODEL_DIR).file("i3d.onnx")
    assert checkpoint_from_onnx(i3d, frames, tmp_path / "x.pt", tmp_path) is None
    assert not (tmp_path / "x.pt").exists()
