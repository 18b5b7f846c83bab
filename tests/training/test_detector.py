"""The ROI detector: trained from a YAML (no downloads) on synthetic frames, exported, run."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from ratscore.errors import InputError


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    synth = pytest.importorskip("ratscore.synth")
    folder = tmp_path_factory.mktemp("synth")
    config = synth.SynthConfig(clip_seconds=2.0, resolutions=((320, 240),))
    synth.synthesize(folder, clips=2, seed=11, config=config)
    return folder


def test_train_export_and_run_detector(tmp_path, synth_dir, monkeypatch):
    import socket

    from ratscore.training.detector import add_detector_to_model_dir, evaluate_detector, train_detector
    from ratscore.features import load_front_end
    from ratscore.model import read_manifest
    from ratscore.roi import Detector

    def no_network(*args, **kwargs):
        raise AssertionError("the detector tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    import os

    import torch

    theirs = min(8, max(1, os.cpu_count() - 1))  # what ultralytics sets for its training (its NUM_THREADS)
    threads = torch.get_num_threads()
    torch.set_num_threads(theirs + 1)
    try:
        result = train_detector(synth_dir, tmp_path / "det", epochs=1, imgsz=64, frame_step=15, batch=4)
        # the stages after it (the I3D classifier) keep their threads
        assert torch.get_num_threads() == theirs + 1
    finally:
        torch.set_num_threads(threads)
    assert result.onnx.is_file() and result.n_train_frames > 0 and result.n_val_frames > 0
    run_args = yaml.safe_load((tmp_path / "det" / "detector_training" / "run" / "args.yaml").read_text())
    assert run_args["optimizer"] == "AdamW" and run_args["warmup_bias_lr"] == 0.1
    # Continuing from a checkpoint starts from its weights (at a learning rate of ~0 they stay
    # put), and without ultralytics' bias warm-up from 0.1.
    more = train_detector(synth_dir, tmp_path / "det_more", epochs=1, imgsz=64, frame_step=15, batch=4,
                          init_from=result.checkpoint, lr0=1e-12)
    assert more.onnx.is_file()
    more_args = yaml.safe_load((tmp_path / "det_more" / "detector_training" / "run" / "args.yaml").read_text())
    assert more_args["warmup_bias_lr"] == 0.0 and more_args["warmup_epochs"] == 1
    from ultralytics import YOLO

    before, after = (YOLO(str(r.checkpoint)).model.state_dict() for r in (result, more))
    convs = [k for k in before if k.endswith("conv.weight")]
    assert convs and all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in convs)
    detector = Detector(result.onnx, 64, ["rat", "reflection"], conf=0.0)
    dets = detector(np.zeros((240, 320, 3), np.uint8))
    assert dets.ndim == 2 and dets.shape[1] == 6
    assert (dets[:, :4] >= 0).all() and (dets[:, [0, 2]] <= 320).all() and (dets[:, [1, 3]] <= 240).all()
    figures = evaluate_detector(result.onnx, synth_dir, 64, frame_step=20)
    assert figures["frames"] > 0 and 0.0 <= figures["share_iou_ge_0.7"] <= 1.0
    model = tmp_path / "model"
    add_detector_to_model_dir(model, result.onnx, 64, every_k=4)
    assert read_manifest(model)["front_end"]["detector"]["every_k"] == 4
    # its PyTorch checkpoint comes along (what `train detector --videos` fine-tunes from)
    assert read_manifest(model)["front_end"]["detector"]["weights"] == "detector.pt"
    assert (model / "detector.pt").read_bytes() == result.checkpoint.read_bytes()
    with pytest.raises(InputError, match="no I3D"):
        load_front_end(model, device="cpu")


def test_an_interrupted_training_resumes_and_a_finished_one_is_not_redone(tmp_path, synth_dir, monkeypatch):
    import pandas as pd

    from ratscore.training import detector as module

    real, calls = module.fit_detector, []

    def spy(*args, on_epoch=None, **kwargs):
        calls.append("resumed" if kwargs.get("resume_from") is not None else "started")
        return real(*args, on_epoch=on_epoch, **kwargs)

    def interrupted(*args, **kwargs):
        def stop(epoch, epochs, metrics):
            raise KeyboardInterrupt  # as Ctrl-C after the first epoch

        return spy(*args, on_epoch=stop, **kwargs)

    how = dict(epochs=2, imgsz=64, frame_step=15, batch=4)
    monkeypatch.setattr(module, "fit_detector", interrupted)
    with pytest.raises(KeyboardInterrupt):
        module.train_detector(synth_dir, tmp_path / "det", **how)
    monkeypatch.setattr(module, "fit_detector", spy)
    result = module.train_detector(synth_dir, tmp_path / "det", **how)
    assert calls == ["started", "resumed"] and result.onnx.is_file() and result.n_train_frames > 0
    epochs = pd.read_csv(tmp_path / "det" / "detector_training" / "run" / "results.csv")["epoch"].tolist()
    assert epochs == [1, 2]  # the first epoch was not trained again
    again = module.train_detector(synth_dir, tmp_path / "det", **how)
    assert calls == ["started", "resumed"] and again.checkpoint == result.checkpoint  # finished: not redone
    module.train_detector(synth_dir, tmp_path / "det", **{**how, "epochs": 1})  # other settings: afresh
    assert calls[-1] == "started"


def test_cli_synth_alone_writes_the_detector_and_its_weights(tmp_path, synth_dir):
    from typer.testing import CliRunner

    from ratscore.cli import app
    from ratscore.model import load_model

    model = tmp_path / "M"
    result = CliRunner().invoke(app, ["train", "detector", "--synth", str(synth_dir), "-o", str(model), "--epochs", "1",
                                      "--imgsz", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    detector = load_model(model).detector
    assert detector.imgsz == 64 and detector.weights == "detector.pt" and (model / "detector.pt").is_file()


def test_a_model_folder_without_detector_weights_loads(tmp_path):
    """A detector with no detector.pt (model folders made before it was kept, such as the model
    bundled until 2026-12-05): it loads, with no weights named."""
    from conftest import without_detector_weights

    from ratscore.model import BUNDLED_MODEL_DIR, load_model

    assert load_model(BUNDLED_MODEL_DIR).detector.weights == "detector.pt"
    older = without_detector_weights(BUNDLED_MODEL_DIR, tmp_path / "older")
    assert not (older / "detector.pt").exists()
    detector = load_model(older).detector
    assert detector is not None and detector.weights is None


def test_refuses_pretrained_weights_and_missing_data(tmp_path):
    from ratscore.training.detector import train_detector

    with pytest.raises(InputError, match="not pretrained weights"):
        train_detector(tmp_path, tmp_path / "out", model_yaml="yolov8n.pt")
    with pytest.raises(InputError, match="no synthetic videos"):
        train_detector(tmp_path, tmp_path / "out", epochs=1)


def test_dataset_pools_several_folders(tmp_path, synth_dir):
    """Two folders' frames go into one dataset, each video wholly in train or val, none lost to a
    name shared across the folders (here the same folder twice: every name is shared)."""
    from ratscore.training.detector import build_dataset

    _, n_train_one, n_val_one = build_dataset(synth_dir, tmp_path / "one", 64, 15, 0.5, seed=0)
    _, n_train, n_val = build_dataset([synth_dir, synth_dir], tmp_path / "two", 64, 15, 0.5, seed=0)
    assert n_train + n_val == 2 * (n_train_one + n_val_one) and n_train > 0 and n_val > 0
    for split in ("train", "val"):
        images = sorted(p.stem for p in (tmp_path / "two" / "images" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (tmp_path / "two" / "labels" / split).glob("*.txt"))
        assert images == labels
    videos_of = {split: {name.rsplit("_", 1)[0] for name in (p.stem for p in (tmp_path / "two" / "images" / split).glob("*.jpg"))}
                 for split in ("train", "val")}
    assert not videos_of["train"] & videos_of["val"]
    with pytest.raises(InputError, match="no such folder"):
        build_dataset([synth_dir, tmp_path / "absent"], tmp_path / "three", 64, 15, 0.5, seed=0)
