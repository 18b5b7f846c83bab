"""Episode accuracy of a model on synthetic long recordings, over a grid of scoring options.

    .venv/bin/python benchmarks/bench_episodes.py RECORDINGS_DIR... --work /tmp/episodes
        [--model models/] [--average-with MODEL_DIR...] [--threshold 0.3 0.4] [--episode-gap 10 20]
        [-o report.json] [--episodes episodes.csv]

RECORDINGS_DIR is a `ratscore synth --long-minutes` folder (annotations.json and the videos). The
features of each video are extracted once with the model's front end and kept under
`--work/<front end key>/` with the video's fingerprint (a recording rendered again is extracted
again), as `ratscore benchmark` keeps them: trying scoring options costs seconds, and models that
share a front end (the draws of one recipe, a localizer trained again on the same features) share
the features. The localizer's events are then
scored with every combination of the options given, and the detected episodes are compared with
the true ones as `bench_analyze.py` does (onset within 2 s, same max stage); false alarms are the
seizure events reported in normal behaviour, counted as `bench_false_alarms.py` counts them.

`--average-with` scores the average of several localizers instead of the model's own: other model
folders whose localizers were trained on the same front end's features (other draws of the same
training, for instance). At each pyramid level their class probabilities and their offsets are
averaged, then decoded once as one localizer's output is: the recipe's `localizer_draws` average,
written as a model folder under `--work`. The front ends must be the same.

`--episodes FILE.csv` also writes each true episode beside the detected episode it is matched
with (the one that overlaps it with the nearest onset, as the counts match them), with both
episodes' action units: which episodes are lost, and whether by a late onset or a missed unit.

With several folders the table pools them; a second table gives each folder's episodes right and
false alarms at every combination (a held-out set is judged on its own as well as pooled).

Use it to choose scoring defaults on recordings of seeds of their own (a validation set), and
`bench_analyze.py` on its held-out seeds to measure the choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.metrics import (count_episode_matches, episode_shares, false_alarms, paired_episodes,  # noqa: E402
                              true_episodes)


def averaged_localizer(model_dirs: list[Path], work: Path):
    """One localizer whose raw output is the mean of the given model folders' localizers, as the
    recipe's `localizer_draws` averages them (AveragedRaSeformer), written under `work`. The first
    folder gives the configuration and post-processing."""
    from ratscore.errors import InputError
    from ratscore.runner import OnnxLocalizer
    from ratscore.training.bundle import front_end_digest
    from ratscore.training.export import write_averaged_model_dir

    front_end = front_end_digest(model_dirs[0])
    for other in model_dirs[1:]:
        if front_end_digest(other) != front_end:
            raise InputError(f"{other}: a different front end from {model_dirs[0]}; only localizers trained on the same features can be averaged")
    folder = write_averaged_model_dir(model_dirs, work / "averaged_localizer",
                                      trained_on="the average of " + ", ".join(map(str, model_dirs)))
    return OnnxLocalizer(folder, device="cpu")


# what is counted per folder of recordings, then summed over the folders
COUNTS = ("true_episodes", "found_episodes", "matched", "onset_ok", "stage_ok", "both_ok", "false_alarms")
EPISODE_ROW = ["video", "threshold", "episode_gap_s", "true_onset_s", "true_offset_s", "true_stage", "true_aus",
               "found_onset_s", "found_offset_s", "found_stage", "found_aus", "onset_ok", "stage_ok"]


def episode_row(video: str, threshold: float, gap: float, true, found, onset_ok: bool, stage_ok: bool) -> list:
    """One row of --episodes: a true episode and the detected one matched with it (empty where none
    overlaps), each with its action units in the order the episodes table gives them."""
    seen = [found.onset_s, found.offset_s, int(found.max_stage), found.aus] if found is not None else [None] * 4
    return [video, threshold, gap, true.onset_s, true.offset_s, int(true.max_stage), true.aus, *seen, onset_ok, stage_ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", type=Path, nargs="+")
    parser.add_argument("--work", type=Path, required=True, help="folder for the cached features")
    parser.add_argument("--model", type=Path, default=ROOT / "models")
    parser.add_argument("--average-with", type=Path, nargs="+", default=[],
                        help="more model folders (same front end): score the average of their localizers and the model's")
    parser.add_argument("--threshold", type=float, nargs="+", default=None,
                        help="event thresholds to try (default: the model's own)")
    parser.add_argument("--episode-gap", type=float, nargs="+", default=[10.0])
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--episodes", type=Path,
                        help="also write each true episode beside the detected one it is matched with (CSV)")
    args = parser.parse_args()

    from ratscore.annotations import read_annotations
    from ratscore.features import cached_features, front_end_key, load_front_end
    from ratscore.labels import RacineMap
    from ratscore.model import load_model
    from ratscore.pipeline import video_fingerprint
    from ratscore.runner import OnnxLocalizer
    from ratscore.timeline import ScoringOptions, score_events

    model = load_model(args.model)
    model_id = model.identity
    localizer = (averaged_localizer([args.model, *args.average_with], args.work) if args.average_with
                 else OnnxLocalizer(args.model, device="cpu"))
    front_end = load_front_end(args.model, device="cpu")
    features_key = front_end_key(args.model)
    racine = RacineMap()
    videos = []  # (annotation, events, duration, folder)
    for folder in args.recordings:
        annotations = list(read_annotations(folder / "annotations.json").values())
        # extracted once per video file (its fingerprint: a recording rendered again is extracted again)
        cached = cached_features({a.video_id: folder / f"{a.video_id}.mp4" for a in annotations}, args.work, front_end,
                                 features_key, video_fingerprint, "cpu")
        for annotation in annotations:
            features = np.load(cached.folder / f"{annotation.video_id}.npy")
            videos.append((annotation, localizer.detect(features, annotation.duration), annotation.duration, folder))

    thresholds = args.threshold or [model.threshold]
    rows, by_set, episodes = [], [], []
    for threshold, gap in itertools.product(thresholds, args.episode_gap):
        options = ScoringOptions(threshold=threshold, episode_gap_s=gap)
        per_folder = {folder: dict.fromkeys(COUNTS, 0) for folder in args.recordings}
        for annotation, events, duration, folder in videos:
            scored = score_events(events, annotation.video_id, duration, 30.0, model_id, racine, options)
            # the true episodes keep the default gap, whatever gap the detection is scored with
            truth = true_episodes(annotation, racine)
            counts = per_folder[folder]
            for key, count in count_episode_matches(truth, scored.episodes).items():
                counts[key] += count
            counts["false_alarms"] += len(false_alarms(annotation, scored.events.itertuples(index=False)))
            if args.episodes:
                episodes += [episode_row(annotation.video_id, threshold, gap, *pair)
                             for pair in paired_episodes(truth, scored.episodes)]
        totals = {key: sum(counts[key] for counts in per_folder.values()) for key in COUNTS}
        # a threshold is chosen on both: episodes right, and seizure events reported in normal behaviour
        rows.append({"threshold": threshold, "episode_gap_s": gap, **episode_shares(totals),
                     "episodes_right": totals["both_ok"], "false_alarms": totals["false_alarms"]})
        by_set += [{"recordings": str(folder), "threshold": threshold, "episode_gap_s": gap,
                    "true_episodes": counts["true_episodes"], "episodes_right": counts["both_ok"],
                    "false_alarms": counts["false_alarms"]}
                   for folder, counts in per_folder.items()]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if len(args.recordings) > 1:
        print()
        print(pd.DataFrame(by_set).to_string(index=False))
    if args.episodes:
        table_of_episodes = pd.DataFrame(episodes, columns=EPISODE_ROW).astype({"found_stage": "Int64"})
        table_of_episodes.round({"found_onset_s": 2, "found_offset_s": 2}).to_csv(args.episodes, index=False)
    if args.output:
        args.output.write_text(json.dumps({"model": model_id, "average_with": [str(d) for d in args.average_with],
                                           "recordings": [str(r) for r in args.recordings],
                                           "runs": rows, "runs_by_recordings": by_set}, indent=2) + "\n")


if __name__ == "__main__":
    from ratscore.errors import InputError

    try:
        main()
    except InputError as e:  # a missing folder, an unreadable annotation or video: one line, exit 2
        print(f"bench_episodes: {e}", file=sys.stderr)
        sys.exit(2)
