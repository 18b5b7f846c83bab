"""Localizer benchmark: accuracy on label-encoding features, training time, ONNX vs eager speed.

    .venv/bin/python benchmarks/bench_localizer.py --annotations /tmp/ratseizure.json --work /tmp/bench_loc

1. Writes features that encode each clip's labels under noise (ratscore.benchmark.make_label_features).
2. Times training steps of the full-size model (1024-d in, 512-d embedding, release config) and
   extrapolates to the release schedule (40 epochs over the training split).
3. Trains a model with --config (default: release config with --epochs) and reports its mAP on
   the testing split.
4. Times the network over the testing split: ONNX Runtime vs eager PyTorch on the CPU.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ratscore.annotations import read_annotations, split
from ratscore.benchmark import benchmark_model, make_label_features, speed_benchmark
from ratscore.features import load_features
from ratscore.training.localizer import (Setup, _Losses, _batch, _make_clips, assign_targets, make_optimizer,
                                        make_points, random_crop, train_localizer, ModelEma)


def time_full_size(annotations, features_dir, steps: int) -> dict:
    """Seconds per training step of the release-size model, extrapolated to its schedule."""
    import random

    setup = Setup()
    videos = split(read_annotations(annotations), "training")
    feats = load_features(features_dir, videos, setup.localizer.input_dim)
    clips = _make_clips(videos, feats, setup.grid)
    from ratscore.localizer import RaSeformer

    torch.manual_seed(0)
    model = RaSeformer(setup.localizer).train()
    ema, opt = ModelEma(model, 0.999), make_optimizer(model, setup.train)
    losses, points, rng = _Losses(setup.train, 14), make_points(setup.localizer, 96), random.Random(0)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        batch = [random_crop(clips[(2 * i + j) % len(clips)], 96, setup.train, setup.grid, rng) for j in range(2)]
        x, mask = _batch(batch, 96)
        tg = [assign_targets(points, c.segments, c.labels, 14, setup.train) for c in batch]
        lg, of = model(x, mask)
        loss, _, _ = losses(lg, of, [mask[:, 0, ::s] for s in setup.localizer.fpn_strides],
                            torch.stack([t[0] for t in tg]), torch.stack([t[1] for t in tg]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
        if i >= 2:  # first steps warm up the allocator
            times.append(time.perf_counter() - t0)
    per_step = float(np.median(times))
    steps_per_epoch = len(clips) // setup.train.batch_size
    return {"seconds_per_step": round(per_step, 3), "steps_per_epoch": steps_per_epoch,
            "seconds_per_epoch": round(per_step * steps_per_epoch, 1),
            "release_schedule_minutes": round(per_step * steps_per_epoch * setup.train.total_epochs / 60, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--annotations", default="/tmp/ratseizure.json")
    ap.add_argument("--work", default="/tmp/bench_localizer")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--config", default=None, help="YAML for the accuracy run (default: release config)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--timing-steps", type=int, default=10)
    ap.add_argument("--skip", nargs="*", default=[], choices=["timing", "train", "speed"])
    args = ap.parse_args()
    work = Path(args.work)
    feats = work / "features"
    if not feats.is_dir():
        t = time.perf_counter()
        make_label_features(args.annotations, feats, dim=1024, noise=args.noise, seed=0)
        print(f"features written in {time.perf_counter() - t:.1f} s")
    results = {"machine": f"{torch.get_num_threads()} torch threads", "noise": args.noise}
    if "timing" not in args.skip:
        results["full_size_training"] = time_full_size(args.annotations, feats, args.timing_steps)
        print(json.dumps(results["full_size_training"]))
    model_dir = work / "model"
    if "train" not in args.skip:
        t = time.perf_counter()
        train_localizer(args.annotations, feats, model_dir, config=args.config, epochs=args.epochs, device="cpu",
                        evaluate_split=None)
        results["train_seconds"] = round(time.perf_counter() - t, 1)
        report = benchmark_model(model_dir, args.annotations, feats, "testing", output=work / "report.json", progress=False)
        results["testing_mAP"] = report["mAP"] | {"average": report["average_mAP"]}
        print(json.dumps(results["testing_mAP"]))
    if "speed" not in args.skip:
        # speed of the full-size network (weights do not change its speed): a release-config model folder
        from ratscore.training.export import write_model_dir
        from ratscore.localizer import RaSeformer

        full_dir = work / "full_size_model"
        if not (full_dir / "manifest.json").is_file():
            torch.manual_seed(0)
            write_model_dir(RaSeformer(Setup().localizer).eval(), Setup(), full_dir, name="random-full-size")
        videos = split(read_annotations(args.annotations), "testing")
        results["speed"] = speed_benchmark(full_dir, videos, feats)
        print(json.dumps(results["speed"]))
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
