"""ROI detector: train on synthetic videos, then measure on held-out ones.

    .venv/bin/python benchmarks/bench_detector.py --work /tmp/det [--train-clips 24 --test-clips 6]
        [--epochs 20 --imgsz 192] [--pool SYNTH_DIR ...] [--test SYNTH_DIR ... --test-step 5]
        [--onnx detector.onnx (skip training)] [-o report.json]

Renders `--train-clips` synthetic clips (seed 101) and `--test-clips` held-out clips (seed 202,
other scenes) with `ratscore.synth`, trains `detector.train_detector` on the first and reports,
on every frame of the second, the IoU of the box the tracker takes as the rat against the true
rat box: the target is IoU >= 0.7 on 95% of frames, and the pick should never be the reflection.
`--pool` adds the frames of other `ratscore synth` folders to the training (a varied-style
folder, say); `--test` measures on other labelled folders as well (the unseen style, or the
recipe's test clips), every `--test-step`-th frame, each reported under its folder's name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def synth_once(folder: Path, clips: int, seed: int) -> Path:
    from ratscore.synth import synthesize

    if not (folder / "annotations.json").is_file():
        synthesize(folder, clips=clips, seed=seed)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the synthetic videos and the training")
    parser.add_argument("--train-clips", type=int, default=24)
    parser.add_argument("--test-clips", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=192)
    parser.add_argument("--frame-step", type=int, default=4)
    parser.add_argument("--init-from", help="continue from an earlier run's checkpoint")
    parser.add_argument("--pool", action="append", default=[], help="another synth folder to train on (repeatable)")
    parser.add_argument("--test", action="append", default=[], help="another labelled folder to measure on (repeatable)")
    parser.add_argument("--test-step", type=int, default=1, help="measure the --test folders on every n-th frame")
    parser.add_argument("--onnx", help="measure this detector instead of training one")
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    work = Path(args.work)
    test = synth_once(work / "synth_test", args.test_clips, 202)
    report = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU", "imgsz": args.imgsz}
    onnx = args.onnx
    if onnx is None:
        from ratscore.training.detector import train_detector

        train = synth_once(work / "synth_train", args.train_clips, 101)
        start = time.perf_counter()
        result = train_detector([train] + [Path(p) for p in args.pool], work / "detector", epochs=args.epochs,
                                imgsz=args.imgsz, frame_step=args.frame_step, batch=16, init_from=args.init_from)
        report["training"] = {"epochs": args.epochs, "train_frames": result.n_train_frames,
                              "val_frames": result.n_val_frames, "minutes": (time.perf_counter() - start) / 60,
                              "val_metrics": result.metrics, "init_from": args.init_from, "pooled": args.pool}
        onnx = result.onnx
    from ratscore.training.detector import evaluate_detector

    report["held_out"] = evaluate_detector(onnx, test, args.imgsz)
    for folder in args.test:
        report[Path(folder).name] = evaluate_detector(onnx, folder, args.imgsz, frame_step=args.test_step)
    print(json.dumps(report, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
