"""How much of a synthetic set's mAP its detector costs: the model's features made from its
detector's boxes, against the same model's features made from the true boxes the renderer wrote.

    .venv/bin/python benchmarks/bench_true_boxes.py SYNTH_DIR [--model DIR] [--work DIR] [--all-testing]
        [--device cpu|cuda] [-o report.json]

SYNTH_DIR is a `ratscore synth` folder (videos, annotations.json, boxes/). Two sets of features are
made and kept under --work, per front end (a second call with the same model reuses those of the
very same files: the unseen style's clips share their names with the classic clips they redraw):

  - detector: the model's own front end, as `ratscore benchmark --videos` runs it (the detector
    every k-th frame, boxes held between, the motion model on as by default);
  - true boxes: every frame cropped around the renderer's rat box (boxes/<video>.csv) as the
    recipe crops the I3D's training clips, with the model's crop margin (the last box held where
    the rat is out of sight, the whole frame before the first box); then the same I3D on the same
    clip grid.

Each is scored with the model's localizer on the same annotations (`--all-testing`: every video
of the folder counts, as for the unseen style's 120 clips; else the folder's `testing` split).
The gap between the two is what a perfect detector would give back; what remains between the
true-box figure and the recipe's own test clips is the behaviour model's (I3D and localizer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def true_box_features(video: Path, boxes_of_frame, front) -> np.ndarray:
    """(T, D) features of a synthetic video cropped around its true rat boxes, as the recipe crops
    the I3D classifier's training clips (training.i3d_classifier.load_rat_crops)."""
    from ratscore.features import encode_crops
    from ratscore.training.i3d_classifier import load_rat_crops

    crops = load_rat_crops(video, boxes_of_frame, front.input_size, front.roi_options.margin)
    features = encode_crops(front, iter(crops), video)
    if not features:
        return np.zeros((0, front.feature_dim), np.float32)
    return np.concatenate(features).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("synth_dir", type=Path)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("true_boxes_work"))
    parser.add_argument("--all-testing", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args(argv)

    from ratscore.annotations import read_annotations, split
    from ratscore.benchmark import benchmark_model, benchmark_videos
    from ratscore.features import cached_features, find_annotated_videos, front_end_key, load_front_end
    from ratscore.model import BUNDLED_MODEL_DIR
    from ratscore.pipeline import content_sha256, video_fingerprint
    from ratscore.training.i3d_classifier import rat_boxes

    model_dir = args.model or BUNDLED_MODEL_DIR
    videos = read_annotations(args.synth_dir / "annotations.json")
    if args.all_testing:
        for annotation in videos.values():
            annotation.subset = "testing"
    videos = split(videos, "testing")
    files = find_annotated_videos(args.synth_dir, videos)
    args.work.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    detector = benchmark_videos(model_dir, videos, args.synth_dir, cache_dir=args.work / "detector",
                                device=args.device, progress=False)
    detector_s = time.perf_counter() - start

    front = load_front_end(model_dir, device=args.device)

    def fingerprint(video: Path) -> list:  # the video and its true boxes: another folder's clip of one name is not it
        return [video_fingerprint(video), content_sha256(args.synth_dir / "boxes" / f"{video.stem}.csv")]

    start = time.perf_counter()
    # under the front end's key, as benchmark_videos keeps its own: another model's I3D makes other features
    true = cached_features(files, args.work / "true_boxes", front, front_end_key(model_dir), fingerprint,
                           extract=lambda vid, path: true_box_features(path, rat_boxes(args.synth_dir, vid), front))
    true_s = time.perf_counter() - start
    true = benchmark_model(model_dir, videos, true.folder, device=args.device, progress=False)

    def figures(report):
        return {"average": report["average_mAP"], "per_tiou": report["mAP"],
                "ap_at_0.5": {c: ap["0.5"] for c, ap in report["ap_per_class"].items()}}

    report = {"synth_dir": str(args.synth_dir), "model": str(model_dir), "videos": len(files),
              "detector_boxes": figures(detector), "true_boxes": figures(true),
              "seconds": {"detector_features": round(detector_s, 1), "true_box_features": round(true_s, 1)}}
    text = json.dumps(report, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    print(f"{len(files)} videos: average mAP {report['detector_boxes']['average']:.1f} with the detector's boxes, "
          f"{report['true_boxes']['average']:.1f} with the true boxes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
