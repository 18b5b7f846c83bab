"""GPU figures: full-size I3D throughput by batch size, the front end with it, and `ratscore analyze`.

    python benchmarks/bench_gpu.py [--videos ONE_MINUTE.mp4 TEN_MINUTES.mp4] [--model models/]
        [--batches 1 2 4 8 16 32 64] [-o report.json]

Needs a CUDA GPU (torch must see it). It measures:
  - full-size I3D (224 px, width 1.0, 1024-d; random weights: speed does not depend on them) in
    PyTorch on the GPU, as extraction calls it (uint8 clips in, features out, the transfer
    included), for batch sizes 1 to 64: clips/s, frames/s (one clip per 4 frames) and the GPU's
    peak memory, in fp16 (what analyze runs on a GPU: autocast, channels-last, cuDNN autotuning)
    and fp32; and the network alone on clips already on the GPU in fp32, bf16 and fp16;
  - the whole front end (`extract_features`: decode, detector, crop, I3D) with full-size I3D on the
    GPU and the model's detector, on the first video, at the default batch and the best one;
  - `ratscore analyze --device cuda` with the model (default: the bundled one) on each video, in
    a fresh process (wall time, real-time factor, peak RSS), and `--device cpu` on the first.
Without --videos it makes 640x480 30 fps videos of 1 and 10 minutes (bench_front_end.make_video).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_analyze import run_analyze  # noqa: E402
from bench_front_end import make_video, timed  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64)


def machine() -> dict:
    import onnxruntime as ort
    import torch

    return {"gpu": torch.cuda.get_device_name(0), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "onnxruntime": ort.__version__,
            "onnxruntime_providers": ort.get_available_providers(), "python": platform.python_version()}


def cuda_seconds(fn, reps: int) -> float:
    """Mean seconds per call of `fn` on the GPU (CUDA events, after two warm-up calls)."""
    import torch

    fn(), fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / reps


def i3d_sweep(weights: Path, batches=BATCHES) -> list[dict]:
    import torch

    from ratscore.features import load_front_end

    encoders = {precision: load_front_end(i3d_weights=weights, device="cuda", no_roi=True, precision=precision).encoder
                for precision in ("fp16", "fp32")}  # fp16: what analyze runs on a GPU ("auto")
    rows = []
    for batch in batches:
        clips = np.random.default_rng(0).integers(0, 256, (batch, 16, 224, 224, 3), dtype=np.uint8)
        reps = max(3, 256 // batch)
        row = {"batch": batch}
        for precision, encoder in encoders.items():
            torch.cuda.reset_peak_memory_stats()
            encoder(clips), encoder(clips)
            clips_per_s = timed(lambda: [encoder(clips) for _ in range(reps)], batch * reps)  # numpy out: synchronised
            row[f"{precision}_clips_per_s"] = round(clips_per_s, 1)
            row[f"{precision}_fps"] = round(4 * clips_per_s)
            row[f"{precision}_gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        row["fps"] = row["fp16_fps"]
        # the network alone on clips already on the GPU, channels-last as ClipEncoder lays them out
        model = encoders["fp16"].model
        x = torch.randn(batch, 3, 16, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            row["network_only_fp32_fps"] = round(4 * batch / cuda_seconds(lambda: model(x), reps))
            for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                with torch.autocast("cuda", dtype=dtype):
                    row[f"network_only_{name}_fps"] = round(4 * batch / cuda_seconds(lambda: model(x), reps))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def front_end_run(video: Path, model: Path, weights: Path, batch: int) -> dict:
    from ratscore.features import extract_features, load_front_end

    front = load_front_end(model, i3d_weights=weights, device="cuda", batch_size=batch)
    t0 = time.perf_counter()
    result = extract_features(video, front, "cuda", progress=False)
    wall = time.perf_counter() - t0
    return {"batch": batch, "wall_s": round(wall, 1), "fps": round(result.n_frames / wall),
            "x_real_time": round(result.duration_s / wall, 1), "features": list(result.features.shape)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, nargs="+")
    parser.add_argument("--model", type=Path, default=HERE.parent / "models")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="I3D batch sizes to time")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA GPU here")
    from ratscore.i3d import I3DConfig, InceptionI3d

    report = {"machine": machine(), "video": "640x480, 30 fps, H.264"}
    print(json.dumps(report["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = args.videos or [make_video(tmp / "one_minute.mp4", 60), make_video(tmp / "ten_minutes.mp4", 600)]
        weights = tmp / "full_i3d.pt"
        torch.manual_seed(0)
        torch.save(InceptionI3d(I3DConfig()).state_dict(), weights)  # pytorch-i3d's layout, as rgb_imagenet.pt
        report["i3d_full"] = i3d_sweep(weights, args.batches)
        best = max(report["i3d_full"], key=lambda r: r["fps"])["batch"]
        report["i3d_full_best_batch"] = best
        report["front_end_full_i3d"] = []
        for batch in sorted({8, best}):
            report["front_end_full_i3d"].append(front_end_run(videos[0], args.model, weights, batch))
            print(json.dumps(report["front_end_full_i3d"][-1]), flush=True)
        from ratscore.video import probe_video

        runs = []
        for i, video in enumerate(videos):
            seconds = probe_video(video).duration_s
            for device in ("cuda", "cpu") if i == 0 else ("cuda",):
                wall, rss = run_analyze(video, tmp / f"out_{i}_{device}", args.model, device)
                runs.append({"video": video.name, "minutes": round(seconds / 60, 2), "device": device,
                             "wall_s": round(wall, 1), "wall_s_per_video_minute": round(wall * 60 / seconds, 1),
                             "x_real_time": round(seconds / wall, 1), "peak_rss_mb": round(rss)})
                print(json.dumps(runs[-1]), flush=True)
        report["analyze"] = runs
        gpu_runs = [r for r in runs if r["device"] == "cuda"]
        if len(gpu_runs) >= 2:
            report["analyze_peak_rss_ratio_longest_to_shortest"] = round(gpu_runs[-1]["peak_rss_mb"] / gpu_runs[0]["peak_rss_mb"], 3)
    print(json.dumps(report, indent=1))
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
