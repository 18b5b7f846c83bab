"""Two models on the same videos: each figure of both, their difference, and a 95% interval for
the difference from a paired bootstrap.

    .venv/bin/python benchmarks/compare_models.py MODEL_A MODEL_B --work DIR
        [--clips SYNTH_DIR] [--recordings DIR...] [--resamples 5000] [--seed 0] [-o report.json]

A target such as "not lower than the bundled model" compares a rebuild with one training of the
bundled model, on one set of videos. Whether "lower by one episode" means anything depends on how
much the figure would move on other videos of the same kind: this script says how much. Each
model scores at its own threshold (its manifest's), so the figures are the ones a lab would get.

- `--clips`: a `ratscore synth` folder of short clips, every clip counted (the recipe's test
  clips: seed 9100). Event F1 of the seizure action units (tIoU 0.5, as `metrics.event_f1`, the
  recipe's figure) and the events reported. Resampled unit: the clip.
- `--recordings`: folders of long recordings (`ratscore synth --long-minutes`). Episodes right
  (onset within 2 s and the same max stage, as `bench_episodes.py` counts them; resampled unit:
  the true episode) and false alarms (seizure events whose middle lies in normal behaviour;
  resampled unit: the recording, so a folder of one recording gets no interval). Each folder on
  its own, and all of them pooled.

Paired: each resample draws the same clips, episodes or recordings for both models, and the
interval is the 2.5th to 97.5th percentile of B - A over the resamples. An interval that holds 0
says that this many videos cannot tell the two models apart on that figure. It measures the
videos' chance only: a model trained again with another seed moves too (RESULTS gives the draws'
spread), which this does not add.

The features are extracted once per front end and kept under `--work/<front end key>/`, as
`bench_episodes.py` keeps them: the same folder serves both scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.metrics import event_matches, f1_of_counts, false_alarms, paired_episodes, true_episodes  # noqa: E402


def event_f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Event F1 from summed (matched, reported, true) counts, (..., 3) -> (...), as metrics.event_f1."""
    return f1_of_counts(counts[..., 0], counts[..., 1], counts[..., 2])


def total_of_counts(counts: np.ndarray) -> np.ndarray:
    """The first count, summed: episodes right, false alarms."""
    return counts[..., 0]


def paired_interval(a: np.ndarray, b: np.ndarray, figure, resamples: int, rng: np.random.Generator,
                    level: float = 0.95) -> tuple[float, float] | None:
    """The `level` percentile interval of figure(B) - figure(A) over `resamples` paired resamples.

    a, b: (units, counts) additive counts of each unit (clip, episode, recording) for model A and B,
    in the same order; figure maps summed counts (..., counts) to a figure. None for fewer than two
    units (nothing to resample)."""
    if len(a) != len(b):
        raise ValueError("both models need the same units")
    if len(a) < 2:
        return None
    draws = rng.integers(0, len(a), size=(resamples, len(a)))  # the same units for both models
    differences = figure(b[draws].sum(axis=1)) - figure(a[draws].sum(axis=1))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class Scorer:
    """A model folder loaded once for every folder of videos it scores: its manifest, its localizer
    and its front end (which extracts only the features the cache lacks)."""

    folder: Path
    model: object
    localizer: object
    front: object
    features_key: str

    @classmethod
    def load(cls, model_dir: Path) -> "Scorer":
        from ratscore.features import front_end_key, load_front_end
        from ratscore.model import load_model
        from ratscore.runner import OnnxLocalizer

        return cls(model_dir, load_model(model_dir), OnnxLocalizer(model_dir, device="cpu"),
                   load_front_end(model_dir, device="cpu"), front_end_key(model_dir))

    def features(self, videos: dict[str, Path], work: Path) -> Path:
        """The folder of the videos' features with this front end, extracted where missing."""
        from ratscore.features import cached_features
        from ratscore.pipeline import video_fingerprint

        return cached_features(videos, work, self.front, self.features_key, video_fingerprint, "cpu").folder


def clip_counts(scorer: Scorer, folder: Path, work: Path) -> np.ndarray:
    """(clips, 3): each clip's (matched, reported, true) seizure events at the model's threshold."""
    from ratscore.annotations import read_annotations
    from ratscore.benchmark import ground_truth_of, predict

    videos = read_annotations(folder / "annotations.json")
    cache = scorer.features({vid: folder / f"{vid}.mp4" for vid in videos}, work)
    threshold = scorer.model.threshold
    detections = [d for d in predict(scorer.folder, videos, cache, "cpu", progress=False) if d.au_id != 0]
    truth = [g for g in ground_truth_of(videos) if g.au_id != 0]  # seizure action units only, as the recipe scores
    return np.array([event_matches([g for g in truth if g.video == vid], [d for d in detections if d.video == vid],
                                   threshold) for vid in videos], dtype=np.int64).reshape(-1, 3)


def recording_counts(scorer: Scorer, folder: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """(episodes, 1): each true episode right (1) or not (0), in the recordings' order; and
    (recordings, 1): each recording's false alarms, both at the model's threshold."""
    from ratscore.annotations import read_annotations
    from ratscore.labels import RacineMap
    from ratscore.timeline import ScoringOptions, score_events

    annotations = list(read_annotations(folder / "annotations.json").values())
    cache = scorer.features({a.video_id: folder / f"{a.video_id}.mp4" for a in annotations}, work)
    racine, options = RacineMap(), ScoringOptions(threshold=scorer.model.threshold)
    right, alarms = [], []
    for annotation in annotations:
        events = scorer.localizer.detect(np.load(cache / f"{annotation.video_id}.npy"), annotation.duration)
        scored = score_events(events, annotation.video_id, annotation.duration, 30.0, scorer.model.identity, racine,
                              options)
        right += [int(onset and stage) for _, _, onset, stage in
                  paired_episodes(true_episodes(annotation, racine), scored.episodes)]
        alarms.append(len(false_alarms(annotation, scored.events.itertuples(index=False))))
    return np.array(right, dtype=np.int64).reshape(-1, 1), np.array(alarms, dtype=np.int64).reshape(-1, 1)


def compare_row(figure_name: str, videos: str, unit: str, a: np.ndarray, b: np.ndarray, figure, resamples: int,
                rng: np.random.Generator) -> dict:
    """One row of the table: both models' figure on all units, B - A, and the paired interval."""
    value_a, value_b = float(figure(a.sum(axis=0))), float(figure(b.sum(axis=0)))
    interval = paired_interval(a, b, figure, resamples, rng)
    return {"figure": figure_name, "videos": videos, "units": f"{len(a)} {unit}", "A": round(value_a, 4),
            "B": round(value_b, 4), "B - A": round(value_b - value_a, 4),
            "interval": None if interval is None else [round(interval[0], 4), round(interval[1], 4)]}


def compare(model_a: Path, model_b: Path, work: Path, clips: Path | None, recordings: list[Path],
            resamples: int = 5000, seed: int = 0) -> list[dict]:
    """The rows of the comparison (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    scorer_a, scorer_b = Scorer.load(model_a), Scorer.load(model_b)  # once each, for every folder
    rows = []
    if clips is not None:
        a, b = clip_counts(scorer_a, clips, work), clip_counts(scorer_b, clips, work)
        rows.append(compare_row("event F1", str(clips), "clips", a, b, event_f1_of_counts, resamples, rng))
        rows.append(compare_row("events reported", str(clips), "clips", a[:, 1:2], b[:, 1:2], total_of_counts,
                                resamples, rng))
    pooled = {"episodes": ([], []), "recordings": ([], [])}
    for folder in recordings:
        (right_a, alarms_a), (right_b, alarms_b) = (recording_counts(scorer_a, folder, work),
                                                    recording_counts(scorer_b, folder, work))
        rows.append(compare_row("episodes right", str(folder), "episodes", right_a, right_b, total_of_counts,
                                resamples, rng))
        rows.append(compare_row("false alarms", str(folder), "recordings", alarms_a, alarms_b, total_of_counts,
                                resamples, rng))
        for unit, (a, b) in (("episodes", (right_a, right_b)), ("recordings", (alarms_a, alarms_b))):
            pooled[unit][0].append(a)
            pooled[unit][1].append(b)
    if len(recordings) > 1:
        for name, unit in (("episodes right", "episodes"), ("false alarms", "recordings")):
            a, b = (np.concatenate(parts) for parts in pooled[unit])
            rows.append(compare_row(name, "all recordings", unit, a, b, total_of_counts, resamples, rng))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_a", type=Path)
    parser.add_argument("model_b", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="folder for the cached features")
    parser.add_argument("--clips", type=Path, help="a ratscore synth folder of short clips, every clip counted")
    parser.add_argument("--recordings", type=Path, nargs="+", default=[], help="folders of long recordings")
    parser.add_argument("--resamples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()

    from ratscore.errors import InputError

    if args.clips is None and not args.recordings:
        raise InputError("give --clips, --recordings or both: there is nothing to compare on")
    if args.resamples < 100:
        raise InputError(f"--resamples {args.resamples}: at least 100, for a 95% interval")
    rows = compare(args.model_a, args.model_b, args.work, args.clips, args.recordings, args.resamples, args.seed)
    print(f"A: {args.model_a}\nB: {args.model_b}\n")
    print(pd.DataFrame(rows).to_string(index=False))
    if args.output:
        args.output.write_text(json.dumps({"model_a": str(args.model_a), "model_b": str(args.model_b),
                                           "resamples": args.resamples, "seed": args.seed, "rows": rows},
                                          indent=2) + "\n")


if __name__ == "__main__":
    from ratscore.errors import InputError

    try:
        main()
    except InputError as e:  # a missing folder, an unreadable annotation or video: one line, exit 2
        print(f"compare_models: {e}", file=sys.stderr)
        sys.exit(2)
