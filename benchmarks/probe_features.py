"""How well a front end's features tell each action unit from ordinary behaviour: a linear probe.

    .venv/bin/python benchmarks/probe_features.py WORK_DIR [--context 8] [-o probe.json]

WORK_DIR is a `ratscore train bundle` work folder whose features stage is done: its
annotations.json (each video under its subset) and features/<video>.npy. A linear classifier of the
14 classes is trained on every feature step of the training videos (each step with its neighbours
up to `--context` steps either side, 1 s at the default 8), and read on the validation recordings
(`validation_long_recordings` of the recipe): for each class, the AUC of its probability on that
class's steps against the steps of ordinary behaviour ("others"), and the share of its steps the
probe names right.

Why: a localizer finds only what its features tell apart. When a class is missed in recordings
(falls, docs/RESULTS.md), this says whether the features hold it, so that the I3D and not the
localizer is worked on, or the other way round; and it compares two front ends on the same renders
in a minute, before their localizers are trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.annotations import read_annotations  # noqa: E402
from ratscore.errors import InputError  # noqa: E402
from ratscore.grid import DEFAULT_GRID  # noqa: E402
from ratscore.labels import LABELS, NUM_CLASSES  # noqa: E402


def labelled_steps(videos, features_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature steps of these videos with the class at each step's centre time:
    (features (N, D), labels (N,), video index of each step (N,))."""
    xs, ys, which = [], [], []
    for i, video in enumerate(videos):
        features = np.load(features_dir / f"{video.video_id}.npy")  # (T, D)
        times = DEFAULT_GRID.feature_time(np.arange(len(features)))
        labels = np.zeros(len(features), np.int64)
        for seg in video.segments:
            labels[(times >= seg.start_s) & (times < seg.end_s)] = seg.au_id
        xs.append(features)
        ys.append(labels)
        which.append(np.full(len(features), i))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(which)


def with_context(x: np.ndarray, which: np.ndarray, context: int) -> np.ndarray:
    """Each step's features beside those of up to `context` steps either side (at most 5 offsets a
    side, evenly spaced), within its own video (the edges repeat): (N, D) -> (N, D * offsets)."""
    if not context:
        return x
    offsets = sorted(set(np.linspace(-context, context, 2 * min(context, 4) + 1).round().astype(int)))
    index = np.arange(len(x))
    first = np.searchsorted(which, which, side="left")  # first step of each step's video (which is sorted)
    last = np.searchsorted(which, which, side="right") - 1
    return np.concatenate([x[np.clip(index + k, first, last)] for k in offsets], axis=1)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The chance that a positive scores above a negative (ties count half): the ROC curve's area."""
    scores = np.concatenate([positive, negative])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, tied scores share their mean rank
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, steps: int = 300, seed: int = 0) -> np.ndarray:
    """A linear softmax classifier trained on (x_train, y_train), classes weighted by their inverse
    frequency (others would drown the rest); returns its class probabilities on x_test (N, 14)."""
    import torch

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(seed)
    linear = torch.nn.Linear(x_train.shape[1], NUM_CLASSES)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-4)
    x = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    y = torch.tensor(y_train)
    weight = torch.tensor(1.0 / np.maximum(np.bincount(y_train, minlength=NUM_CLASSES), 1), dtype=torch.float32)
    weight = weight / weight.mean()
    for _ in range(steps):  # full batch: a few thousand steps of 128-d features
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y, weight=weight)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return torch.softmax(linear(torch.tensor((x_test - mean) / std, dtype=torch.float32)), 1).numpy()


def probe_work_folder(work: Path, context: int = 8) -> dict:
    """Per class on the validation recordings: its steps, the AUC against ordinary behaviour and the
    share named right (classes without steps there are left out)."""
    annotations, features_dir = work / "annotations.json", work / "features"
    if not annotations.is_file() or not features_dir.is_dir():
        raise InputError(f"{work}: not a bundle work folder with its features (annotations.json and features/)")
    videos = read_annotations(annotations)
    train = [v for v in videos.values() if v.subset == "training"]
    test = [v for v in videos.values() if v.subset == "validation" and v.video_id.startswith("long_")]
    if not train or not test:
        raise InputError(f"{work}: needs training videos and validation recordings "
                         "(the recipe's validation_long_recordings) with features")
    missing = [v.video_id for v in train + test if not (features_dir / f"{v.video_id}.npy").is_file()]
    if missing:
        raise InputError(f"{work}: no features for {len(missing)} videos ({missing[0]}, ...): run the recipe's features stage")
    x_train, y_train, w_train = labelled_steps(train, features_dir)
    x_test, y_test, w_test = labelled_steps(test, features_dir)
    p = probe(with_context(x_train, w_train, context), y_train, with_context(x_test, w_test, context))
    normal = y_test == 0
    classes = {}
    for c in sorted(set(y_test.tolist()) - {0}):
        mine = y_test == c
        classes[LABELS[c]] = {"steps": int(mine.sum()), "auc_against_normal": round(auc(p[mine, c], p[normal, c]), 3),
                              "share_named_right": round(float((p[mine].argmax(1) == c).mean()), 3)}
    return {"work": str(work), "context_steps": context, "training_steps": int(len(y_train)),
            "validation_recordings": len(test), "normal_steps": int(normal.sum()), "classes": classes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="a `ratscore train bundle` work folder, features done")
    parser.add_argument("--context", type=int, default=8, help="feature steps either side given to the probe (8: 1 s)")
    parser.add_argument("-o", "--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    try:
        if args.context < 0:
            raise InputError(f"--context must be 0 or more steps, not {args.context}")
        report = probe_work_folder(args.work, args.context)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{report['validation_recordings']} validation recordings, {report['normal_steps']} steps of ordinary behaviour; "
          f"context ±{report['context_steps']} steps")
    print(f"{'class':30s} {'steps':>6s} {'AUC vs normal':>14s} {'named right':>12s}")
    for name, row in report["classes"].items():
        print(f"{name:30s} {row['steps']:6d} {row['auc_against_normal']:14.3f} {row['share_named_right']:12.2f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
