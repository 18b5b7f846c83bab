"""A study's throughput: `ratscore batch` over a folder against merely decoding the same folder.

    .venv/bin/python benchmarks/bench_study.py [--videos 4] [--minutes 10] [--size 640x480|320x240]
        [--folder DIR] [--work DIR] [--model DIR] [--device cpu|cuda] [--precision auto|fp32|bf16|fp16]
        [--decoder auto|pyav|torchcodec] [--full-i3d] [--repeats 2] [--seed 5000] [--workers N[,N...]]
        [-o report.json]

Without --folder it renders N synthetic recordings of M minutes (`ratscore synth --long-minutes M
--long-count N`, seed --seed, one resolution) into --work, and reuses them on the next call with
the same settings; --folder takes a folder of real videos instead (its top level, as `batch`
without --recursive). Then, --repeats times, in pairs (decode, batch, decode, batch, ...: absolute
times drift, the pair's ratio much less):

  - decode: every video of the folder decoded with PyAV to RGB arrays, one after the other, in one
    fresh process, with the decoder's threads as ratscore's reader sets them (thread_type AUTO)
    and nothing else: the floor any scoring of the folder stands on;
  - decode torchcodec (with --decoder torchcodec): the same with ratscore's torchcodec reader on the
    device (--device), to torch tensors there: the floor of a run that decodes with torchcodec;
  - batch: `ratscore batch FOLDER -o OUT --no-resume --model DIR --device D --decoder X` in a fresh process,
    into a fresh output folder each time (start-up and model loading included: a study pays them);
    with --workers 0,2 once with `--workers 0` and once with `--workers 2` after each decode (the
    outputs of the two are compared byte for byte: every CSV and JSON file). With --decoder
    torchcodec batch takes no workers (its videos decode in its own process), whatever --workers says.

Each run: wall time (measured around the process), hours of video per hour of wall time, and the
process's peak memory (VmHWM, ratscore.runtime.peak_rss_mb, printed by the child itself); each
pair: batch / decode (the PyAV floor, as the targets are stated; with --decoder torchcodec also
batch / decode torchcodec). --full-i3d replaces the model's I3D with a full-size one (224 px, width 1.0,
1024-d, random weights: speed does not depend on them) and its localizer with a random one taking
1024-d features, keeping its detector; the folder is made once under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = ("640x480", "320x240")

DECODE_CHILD = """
import json, sys, time
import av
from ratscore.runtime import peak_rss_mb
frames = 0
start = time.perf_counter()
for path in sys.argv[1:]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            frames += 1
print(json.dumps({"frames": frames, "inner_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))
"""

TORCHCODEC_DECODE_CHILD = """
import json, sys, time
from pathlib import Path
import torch
from ratscore.runtime import peak_rss_mb
from ratscore.video import _torchcodec_frames  # ratscore's own reader: the settings batch --decoder torchcodec uses
device = sys.argv[1]
frames = 0
start = time.perf_counter()
for path in sys.argv[2:]:
    for t, image in _torchcodec_frames(Path(path), [], device):
        frames += 1
if device == "cuda":
    torch.cuda.synchronize()  # the GPU's decoding is done, not only queued
print(json.dumps({"frames": frames, "inner_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))
"""

BATCH_CHILD = ("import sys; from ratscore.cli import main; from ratscore.runtime import peak_rss_mb\n"
               "sys.argv = sys.argv[1:]\n"
               "try:\n    main()\nfinally:\n"
               "    print('PEAK_RSS_MB', peak_rss_mb(), file=sys.stderr)")


def machine(device: str) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cores}-core {platform.machine()}"
    if device == "cuda":
        import torch

        text += f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU seen by torch"
    else:
        text += ", CPU only"
    return text


def synth_folder(work: Path, videos: int, minutes: float, size: str, seed: int) -> Path:
    """N long synthetic recordings (made once; reused while annotations.json is there)."""
    folder = work / f"videos_{videos}x{minutes:g}min_{size}_seed{seed}"
    if (folder / "annotations.json").exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted render
    width, height = (int(v) for v in size.split("x"))
    config = work / f"synth_{size}.yaml"
    config.write_text(f"resolutions: [[{width}, {height}]]\nboxes: false\n")
    jobs = max(1, min(videos, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    cmd = [sys.executable, "-m", "ratscore.cli", "synth", "-o", str(folder), "--long-minutes", f"{minutes:g}",
           "--long-count", str(videos), "--seed", str(seed), "--config", str(config), "--jobs", str(jobs)]
    print(f"rendering {videos} x {minutes:g} min at {size} into {folder} ...", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"bench_study: synth failed: {done.stderr.strip()[-800:]}")
    return folder


def full_i3d_model(base: Path, work: Path) -> Path:
    """`base` with a full-size random I3D and a random 1024-d localizer; its detector kept."""
    from dataclasses import replace

    import numpy as np
    import torch

    from ratscore.i3d import I3DConfig, InceptionI3d
    from ratscore.localizer import RaSeformer
    from ratscore.model import read_manifest
    from ratscore.training.detector import add_detector_to_model_dir
    from ratscore.training.export import add_i3d_to_model_dir, write_model_dir
    from ratscore.training.localizer import Setup

    folder = work / f"full_i3d_{base.resolve().name}"
    if (folder / "manifest.json").exists() and (folder / "i3d.pt").exists():
        return folder
    manifest = read_manifest(base)
    detector = (manifest.get("front_end") or {}).get("detector")
    if not detector:
        sys.exit(f"bench_study: {base} has no detector to keep")
    torch.manual_seed(0)
    i3d = InceptionI3d(I3DConfig())
    setup = Setup.from_dict({**manifest["localizer"]["config"], "postprocess": manifest["localizer"]["postprocess"]})
    setup = replace(setup, localizer=replace(setup.localizer, input_dim=i3d.feature_dim))
    rng = np.random.default_rng(0)
    features = {f"v{i}": rng.normal(0, 1, (64, i3d.feature_dim)).astype(np.float32) for i in range(4)}
    build = work / (folder.name + ".partial")
    shutil.rmtree(build, ignore_errors=True)
    write_model_dir(RaSeformer(setup.localizer).eval(), setup, build, features=features,
                    trained_on="nothing: random weights, for speed only", name="full-i3d-random")
    # i3d.pt too: on a GPU the I3D runs in PyTorch, the form that has bf16/fp16 (--precision)
    add_i3d_to_model_dir(build, i3d.state_dict(), input_size=224, keep_torch_weights=True)
    add_detector_to_model_dir(build, base / detector["onnx"], detector["imgsz"], every_k=detector["every_k"],
                              conf=detector["conf"], margin=detector["margin"])
    build.rename(folder)
    return folder


def decode_run(videos: list[Path], torchcodec_device: Optional[str] = None) -> dict:
    """The decoding floor: PyAV, or with `torchcodec_device` ratscore's torchcodec reader there."""
    child = [DECODE_CHILD] if torchcodec_device is None else [TORCHCODEC_DECODE_CHILD, torchcodec_device]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", *child, *map(str, videos)], capture_output=True, text=True,
                          cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench_study: decoding failed: {done.stderr.strip()[-800:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "frames": child["frames"], "peak_rss_mb": child["peak_rss_mb"]}


def batch_run(folder: Path, out: Path, model: Path, device: str, workers: Optional[int] = None,
              precision: str = "auto", decoder: str = "auto") -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-c", BATCH_CHILD, "ratscore", "batch", str(folder), "-o", str(out), "--no-resume",
           "--model", str(model), "--device", device, "--precision", precision, "--decoder", decoder,
           *(["--workers", str(workers)] if workers is not None else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench_study: batch failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    rss = next(float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_MB"))
    return {"wall_s": wall, "peak_rss_mb": rss}


def same_outputs(a: Path, b: Path) -> bool:
    """Every CSV and JSON file of two batch output folders, byte for byte."""
    def files(out: Path) -> dict:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.suffix in (".csv", ".json") and not p.name.startswith(".")}
    return files(a) == files(b)


def table(rows: list[dict]) -> str:
    head = "| run | wall (s) | video h per wall h | peak memory (MB) | batch / decode |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        lines.append(f"| {r['run']} | {r['wall_s']:.1f} | {r['x_real_time']:.1f} | {r['peak_rss_mb']:.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="synthetic recordings to render")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each synthetic recording")
    parser.add_argument("--size", choices=SIZES, default="640x480")
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--folder", type=Path, help="a folder of real videos instead of synthetic ones")
    parser.add_argument("--work", type=Path, help="where videos, models and outputs go (default: a temporary folder)")
    parser.add_argument("--model", type=Path, default=ROOT / "models")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="batch --precision: the I3D's arithmetic (auto: fp16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--full-i3d", action="store_true", help="a full-size random I3D front end (see above)")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs (decode, batch)")
    parser.add_argument("--workers", help="batch --workers values, comma-separated (e.g. 0,2): one batch run "
                                          "of each after every decode (default: batch's own default)")
    parser.add_argument("--decoder", choices=("auto", "pyav", "torchcodec"), default="auto",
                        help="batch --decoder; torchcodec adds its own decoding floor (decode torchcodec) to each pair")
    parser.add_argument("-o", "--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.videos < 1 or args.minutes <= 0 or args.repeats < 1:
        parser.error("--videos, --minutes and --repeats must be positive")
    try:
        worker_counts = [int(w) for w in args.workers.split(",")] if args.workers else [None]
    except ValueError:
        parser.error(f"--workers takes whole numbers separated by commas, got {args.workers!r}")
    if any(w is not None and w < 0 for w in worker_counts):
        parser.error("--workers values must be 0 or more")

    from ratscore.batch import find_videos
    from ratscore.video import probe_video

    temporary = None if args.work else tempfile.TemporaryDirectory(prefix="bench_study_")
    work = args.work or Path(temporary.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.folder:
            folder = args.folder
        else:
            folder = synth_folder(work, args.videos, args.minutes, args.size, args.seed)
        videos = [folder / rel for rel in find_videos(folder)]
        if not videos:
            sys.exit(f"bench_study: no videos in {folder}")
        infos = [probe_video(v) for v in videos]
        unknown = [i.path.name for i in infos if not i.duration_s]
        if unknown:
            sys.exit(f"bench_study: the container does not say how long {unknown[0]} is")
        video_s = sum(i.duration_s for i in infos)
        model = full_i3d_model(args.model, work) if args.full_i3d else args.model
        report = {"machine": machine(args.device), "python": platform.python_version(),
                  "folder": str(folder), "videos": len(videos), "video_hours": video_s / 3600,
                  "sizes": sorted({f"{i.width}x{i.height}" for i in infos}),
                  "model": str(args.model), "full_i3d": args.full_i3d, "device": args.device, "precision": args.precision,
                  "decoder": args.decoder, "workers": worker_counts, "runs": []}
        print(f"{len(videos)} videos, {video_s / 60:.1f} min in all, {', '.join(report['sizes'])}; "
              f"model {args.model}{' with full-size I3D' if args.full_i3d else ''}; device {args.device}, "
              f"precision {args.precision}, decoder {args.decoder}; "
              f"{report['machine']}", flush=True)
        def label(workers: Optional[int]) -> str:
            return "batch" if workers is None else f"batch --workers {workers}"

        for r in range(1, args.repeats + 1):
            decode = decode_run(videos)
            decode.update(run=f"decode {r}", x_real_time=video_s / decode["wall_s"])
            report["runs"].append(decode)
            floor = None
            if args.decoder == "torchcodec":
                floor = decode_run(videos, torchcodec_device=args.device)
                floor.update(run=f"decode torchcodec {r}", x_real_time=video_s / floor["wall_s"])
                report["runs"].append(floor)
            for workers in worker_counts:
                out = work / f"out_{r}" if workers is None else work / f"out_{r}_w{workers}"
                batch = batch_run(folder, out, model, args.device, workers, args.precision, args.decoder)
                batch.update(run=f"{label(workers)} {r}", workers=workers, x_real_time=video_s / batch["wall_s"],
                             ratio=batch["wall_s"] / decode["wall_s"])
                if floor is not None:
                    batch["ratio_torchcodec_decode"] = batch["wall_s"] / floor["wall_s"]
                report["runs"].append(batch)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in batch.items()}),
                      flush=True)
            if len(worker_counts) > 1:
                outs = [work / f"out_{r}_w{w}" for w in worker_counts]
                report.setdefault("same_outputs", []).append(all(same_outputs(outs[0], o) for o in outs[1:]))
        print()
        print(table(report["runs"]))
        report["by_workers"] = {}
        for workers in worker_counts:
            batches = [run for run in report["runs"] if run["run"].startswith("batch") and run["workers"] == workers]
            ratios = [round(b["ratio"], 3) for b in batches]
            figures = {"batch_over_decode": ratios, "batch_over_decode_median": round(statistics.median(ratios), 3),
                       "batch_video_hours_per_hour_median":
                           round(statistics.median(b["x_real_time"] for b in batches), 2)}
            if floor is not None:
                figures["batch_over_torchcodec_decode_median"] = round(
                    statistics.median(b["ratio_torchcodec_decode"] for b in batches), 3)
            report["by_workers"][str(workers)] = figures
            if len(worker_counts) == 1:
                report.update(figures)
            over_torchcodec = (f", / decode torchcodec {figures['batch_over_torchcodec_decode_median']:.2f}"
                               if floor is not None else "")
            print(f"{label(workers)} / decode, median of {len(batches)}: {figures['batch_over_decode_median']:.2f}"
                  f"{over_torchcodec}; {figures['batch_video_hours_per_hour_median']:.1f} hours of video per hour")
        if "same_outputs" in report:
            print(f"the same CSV and JSON outputs for every --workers value: {all(report['same_outputs'])}")
        if args.output:
            args.output.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    main()
