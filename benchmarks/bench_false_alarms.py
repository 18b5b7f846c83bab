"""What a model's false alarms fall on, in synthetic recordings whose every motion is known.

    .venv/bin/python benchmarks/bench_false_alarms.py SYNTH_DIR EVENTS_CSV... [-o report.json]

SYNTH_DIR is a `ratscore synth` folder; each EVENTS_CSV is `ratscore analyze`'s events.csv of one of
its videos. An event is a false alarm when its midpoint lies in normal behaviour ("others" in the
truth). The synthetic rat's normal behaviour is a sequence of everyday motions (walking, exploring,
grooming, sitting, exploratory rearing, turning), rebuilt here from the folder's seeds
(`ratscore.synth.planned_motions`), so each false alarm is counted under the motion it fell on,
beside each motion's share of the normal-behaviour time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.annotations import read_annotations  # noqa: E402
from ratscore.errors import InputError  # noqa: E402
from ratscore.labels import LABELS  # noqa: E402
from ratscore.metrics import false_alarms, normal_spans  # noqa: E402
from ratscore.synth import planned_motions  # noqa: E402
from ratscore.writers import read_events_csv  # noqa: E402

SAMPLE_S = 0.5  # step at which normal-behaviour time is sampled for each motion's share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("synth_dir", type=Path)
    parser.add_argument("events", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    try:
        truth = read_annotations(args.synth_dir / "annotations.json")
        motions = planned_motions(args.synth_dir)
        alarms, normal_time = Counter(), Counter()
        for path in args.events:
            video, events = read_events_csv(path)
            if video not in truth:
                raise InputError(f"{path}: video {video!r} is not in {args.synth_dir}")
            motion_at = motions[video]
            for start, end in normal_spans(truth[video]):
                normal_time.update(motion_at(t) for t in np.arange(start + SAMPLE_S / 2, end, SAMPLE_S))
            for e in false_alarms(truth[video], events):
                alarms[(e.au_id, motion_at((e.start_s + e.end_s) / 2))] += 1
    except InputError as e:  # a missing folder, an unreadable manifest or events file: one line, exit 2
        print(f"bench_false_alarms: {e}", file=sys.stderr)
        sys.exit(2)
    table = pd.DataFrame([{"au": LABELS[au], "motion": motion, "false_alarms": n}
                          for (au, motion), n in alarms.items()], columns=["au", "motion", "false_alarms"])
    by_motion = table.groupby("motion").false_alarms.sum() if len(table) else pd.Series(dtype=int)
    total_normal = max(1, sum(normal_time.values()))
    summary = pd.DataFrame({"share_of_normal_time": {m: round(n / total_normal, 3) for m, n in normal_time.items()},
                            "false_alarms": by_motion}).fillna(0).astype({"false_alarms": int})
    summary = summary.sort_values("false_alarms", ascending=False)
    pd.set_option("display.width", 200)
    print(f"{int(table.false_alarms.sum()) if len(table) else 0} false alarms in "
          f"{total_normal * SAMPLE_S / 60:.1f} min of normal behaviour")
    print(summary.to_string())
    if len(table):
        print()
        print(table.pivot_table(index="au", columns="motion", values="false_alarms", aggfunc="sum",
                                fill_value=0).to_string())
    if args.output:
        args.output.write_text(json.dumps({"by_motion": summary.reset_index(names="motion").to_dict("records"),
                                           "by_au_and_motion": table.to_dict("records")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
