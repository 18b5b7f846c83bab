"""Front-end speed and memory: decode, detect, crop, I3D (full and small), whole extraction.

    .venv/bin/python benchmarks/bench_front_end.py [--model models/ | --detector DETECTOR.onnx --imgsz 256]
        [--long-minutes 10] [--i3d-sweep] [-o report.json]

Makes its own 640x480 30 fps test videos (a textured floor and a moving rat-sized blob, H.264),
then measures:
  - frames per second of each stage on this machine: decode (to RGB, resampled to 30 fps),
    detect (one detector call; the tracker calls it every k-th frame), crop (square cut + resize),
    I3D per frame (clips/s x stride 4) for full size (224 px, width 1.0) and the small variant,
    in PyTorch and ONNX Runtime; with --i3d-sweep, several small widths and input sizes;
  - the whole front end (`extract_features`) on a 1-minute video with the small I3D, as a
    multiple of real time;
  - peak memory (max RSS) of extraction of a 1-minute and a longer video, each in a fresh process.
With --model (a model folder with a front end, e.g. the bundled models/) the detector stage and
the whole-front-end runs use that model as analyze would (its detector, every-k, I3D); otherwise
weights are random (speed and memory do not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ratscore.training.bundle import BundleRecipe  # noqa: E402
from ratscore.video import write_h264  # noqa: E402

SMALL = {"width": BundleRecipe.i3d_width, "input_size": BundleRecipe.i3d_input_size}  # the bundled model's I3D
SWEEP = [(0.25, 112), (0.25, 96), (0.25, 80), (0.125, 112), (0.125, 96), (0.125, 80), (0.125, 64)]


def make_video(path: Path, seconds: float, width: int = 640, height: int = 480, fps: int = 30) -> Path:
    rng = np.random.default_rng(0)
    floor = rng.integers(60, 120, (height // 8, width // 8, 3), dtype=np.uint8)
    floor = np.kron(floor, np.ones((8, 8, 1), np.uint8))
    yy, xx = np.mgrid[0:height, 0:width]

    def frame(i):
        t = i / fps
        cx, cy = width / 2 + 180 * np.cos(0.7 * t), height / 2 + 120 * np.sin(1.1 * t)
        image = floor.copy()
        image[((xx - cx) / 60) ** 2 + ((yy - cy) / 30) ** 2 < 1] = (215, 205, 195)
        return image

    write_h264(path, (frame(i) for i in range(int(seconds * fps))), fps, {"preset": "veryfast", "crf": "23"})
    return path


def timed(fn, n_items: int) -> float:
    start = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - start)


def bench_stages(video: Path, detector_onnx, imgsz: int, every_k: int = 5, sweep: bool = False,
                 small: dict = SMALL) -> dict:
    import torch

    from ratscore.features import ClipEncoder
    from ratscore.grid import CLIP_FRAMES
    from ratscore.training.export import i3d_onnx_bytes
    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.roi import Detector
    from ratscore.video import crop_square, read_frames

    out = {}
    frames = []

    def decode():
        for f in read_frames(video):
            if len(frames) < 64:
                frames.append(f.image)

    n = sum(1 for _ in read_frames(video))
    out["decode_fps"] = timed(decode, n)
    box = np.array([200, 120, 360, 280], np.float32)
    for size in (224, small["input_size"]):
        out[f"crop_{size}_fps"] = timed(lambda: [crop_square(frames[i % len(frames)], box, size) for i in range(600)], 600)
    if detector_onnx:
        detector = Detector(detector_onnx, imgsz, ["rat", "reflection"])
        detector(frames[0])
        out["detect_calls_per_s"] = timed(lambda: [detector(frames[i % len(frames)]) for i in range(60)], 60)
        out[f"detect_fps_every_{every_k}th"] = out["detect_calls_per_s"] * every_k
    configs = [("full", I3DConfig(), 4), ("small", I3DConfig(**small), 16)]
    if sweep:
        configs += [(f"w{w:g}_s{s}", I3DConfig(width=w, input_size=s), 8) for w, s in SWEEP]
    for name, config, batch in configs:
        torch.manual_seed(0)
        model = InceptionI3d(config).eval()
        size = config.input_size
        clips = np.random.default_rng(0).integers(0, 255, (batch, 16, size, size, 3), dtype=np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "i3d.onnx"
            onnx_path.write_bytes(i3d_onnx_bytes(model, CLIP_FRAMES))
            for backend, encoder in (("torch", ClipEncoder(size, model.feature_dim, model=model)),
                                     ("onnx", ClipEncoder(size, model.feature_dim, onnx_path=onnx_path))):
                encoder(clips)  # warm up
                reps = 1 if name == "full" else 3
                clips_per_s = timed(lambda: [encoder(clips) for _ in range(reps)], batch * reps)
                out[f"i3d_{name}_{backend}_clips_per_s"] = clips_per_s
                out[f"i3d_{name}_{backend}_fps"] = clips_per_s * 4  # one clip per 4 frames (stride 4)
    return out


def small_model_dir(folder: Path, detector_onnx, imgsz: int) -> Path:
    import torch

    from ratscore.training.export import add_i3d_to_model_dir
    from ratscore.i3d import I3DConfig, InceptionI3d

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "small_i3d.pt"
    torch.save({"config": I3DConfig(**SMALL).to_dict(), "state_dict": InceptionI3d(I3DConfig(**SMALL)).state_dict()}, weights)
    add_i3d_to_model_dir(folder, weights, keep_torch_weights=False)
    if detector_onnx:
        from ratscore.training.detector import add_detector_to_model_dir

        add_detector_to_model_dir(folder, detector_onnx, imgsz)
    return folder


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from ratscore.features import extract_features
from ratscore.runtime import peak_rss_mb
start = time.perf_counter()
r = extract_features({video!r}, {model!r}, device="cpu", no_roi={no_roi}, progress=False)
wall = time.perf_counter() - start
print(json.dumps({{"wall_s": wall, "duration_s": r.duration_s, "T": r.features.shape[0],
                   "peak_rss_mb": peak_rss_mb(),
                   "rat_found_fraction": r.rat_found_fraction}}))
"""


def run_extraction(video: Path, model: Path, no_roi: bool) -> dict:
    code = CHILD.format(root=str(Path(__file__).resolve().parent.parent), video=str(video), model=str(model), no_roi=no_roi)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder with a front end (e.g. models/): measure it as analyze runs it")
    parser.add_argument("--detector", help="detector ONNX (from detector.train_detector); without it ROI is off")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--i3d-sweep", action="store_true", help="also time I3D at several widths and input sizes")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("-o", "--output", help="write the figures as JSON here")
    args = parser.parse_args()
    report = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.processor() or 'unknown'}), no GPU",
              "video": "640x480, 30 fps, H.264", "small_i3d": SMALL, "detector": args.detector, "model": args.model}
    detector, imgsz, every_k = args.detector, args.imgsz, 5
    if args.model:
        from ratscore.model import read_manifest

        front = read_manifest(args.model)["front_end"]
        detector = str(Path(args.model) / front["detector"]["onnx"])
        imgsz, every_k = int(front["detector"]["imgsz"]), int(front["detector"]["every_k"])
        report["small_i3d"] = {"width": front["i3d"]["width"], "input_size": front["i3d"]["input_size"]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = make_video(tmp / "one_minute.mp4", 60)
        report["stages"] = bench_stages(one, detector, imgsz, every_k, args.i3d_sweep, report["small_i3d"])
        print(json.dumps(report["stages"], indent=1), flush=True)
        model = Path(args.model) if args.model else small_model_dir(tmp / "model", detector, imgsz)
        no_roi = detector is None
        short = run_extraction(one, model, no_roi)
        report["extract_1min_small"] = {**short, "x_real_time": short["duration_s"] / short["wall_s"]}
        print(json.dumps(report["extract_1min_small"]), flush=True)
        long = make_video(tmp / "long.mp4", 60 * args.long_minutes)
        long_run = run_extraction(long, model, no_roi)
        report[f"extract_{args.long_minutes:g}min_small"] = {**long_run, "x_real_time": long_run["duration_s"] / long_run["wall_s"]}
        report["peak_rss_ratio_long_vs_1min"] = long_run["peak_rss_mb"] / short["peak_rss_mb"]
    print(json.dumps(report, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
