"""The model card: a markdown page about a model folder, made from its manifest alone.

    .venv/bin/python -m ratscore.training.model_card [MODEL_DIR] [-o OUT.md]

Defaults: the bundled model and docs/MODEL_CARD.md. The card reads only the manifest fields that
describe a model (name, trained_on, benchmark, recipe, threshold, the front end, the time grid,
the Racine map); the fields that only configure inference (file names, post-processing) are left
out. Every section is optional: a manifest without a benchmark or a recipe still gives a card.
The same manifest always gives the same text, so a test can check that the committed card is
current.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from ..errors import RatscoreError
from ..files import atomic_write_text
from ..labels import LABELS
from ..model import BUNDLED_MODEL_DIR, read_manifest

DEFAULT_OUTPUT = Path("docs") / "MODEL_CARD.md"
TIOUS = ("0.3", "0.4", "0.5", "0.6", "0.7")
REGENERATE = ".venv/bin/python -m ratscore.training.model_card models/ -o docs/MODEL_CARD.md"

# benchmark keys this card shows in their own sections; any other key goes under "Other figures"
_KNOWN_BENCHMARK = {"machine", "timings_s", "detector_heldout", "i3d_classifier", "localizer_topk_0.5",
                    "localizer_plain_1.0", "event_f1_at_threshold", "ap_per_class_at_0.5",
                    "neighbour_confusion", "localizer_speed", "testing", "train_seconds",
                    "seconds_per_epoch", "device", "real_footage"}

# The timing stages of the bundle recipe, in the order they run, with words for each.
_STAGE_WORDS = {
    "synth_train": "render the training clips",
    "synth_validation": "render the validation clips",
    "synth_test": "render the test clips",
    "synth_long": "render the long training recordings",
    "synth_validation_long": "render the long validation recordings",
    "synth_localizer": "render the localizer clips",
    "synth_behaviour": "render the behaviour clips of another style",
    "synth_detector": "render the detector's clips of its own style",
    "detector": "train the ROI detector",
    "i3d_classifier": "train the I3D as a clip classifier",
    "front_end": "export the front end",
    "detector_heldout": "check the detector on validation clips",
    "features": "extract features of every video",
    "localizer_topk": "train the localizer (Top-K, keep ratio 0.5)",
    "localizer_plain": "train the ablation (keep ratio 1.0)",
}


def _stage_words(stage: str) -> str:
    """Words for a recipe stage's timing; another draw of the Top-K localizer (localizer_topk_2, ...) by its number."""
    from .bundle import draw_of

    base, draw = draw_of(stage)
    if draw > 1:
        return f"train the localizer's draw {draw} (Top-K, keep ratio 0.5)"
    return _STAGE_WORDS.get(stage, stage)


INTENDED_USE = """\
## Intended use

- Score rat videos on the Racine scale with `ratscore analyze` or `ratscore batch`: the seizure
  action units with their start and end, a Racine timeline, seizure episodes and a summary.
- Give a first pass that a trained scorer then reviews and corrects (`ratscore timeline` rescores
  a corrected events.csv).
- For the bundled model: show that the whole chain runs, and what the outputs look like, before a
  lab trains or imports a model of its own.
"""

NOT_FOR = """\
## What it is not for

- **Not validated on real rats.** No ratscore model has been checked against a human scorer on
  real recordings. A model trained on synthetic videos (as the bundled one) has never seen a real
  animal, and its figures above say nothing about real footage. Validate any model on your own
  hand-scored videos before you rely on it.
- **Not a diagnosis.** The output is a list of detected behaviours with scores, not a clinical
  or experimental conclusion.
- **Not a replacement for a scorer's review.** Check every reported episode by eye, above all in
  videos that the summary marks `"familiar": false`.
"""


def _num(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x, digits: int = 1) -> str:
    return "-" if not isinstance(x, (int, float)) or isinstance(x, bool) else f"{100 * x:.{digits}f}%"


def _plain(x) -> str:
    """A recipe or config value as written in YAML (lists, booleans, empty strings)."""
    if isinstance(x, str):
        return f'"{x}"' if x == "" else x
    return json.dumps(x)


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


def _map_row(label: str, figures: dict) -> Optional[str]:
    if not any(k in figures for k in TIOUS + ("average",)):
        return None
    return f"| {label} | " + " | ".join(_num(figures.get(k)) for k in TIOUS) + f" | {_num(figures.get('average'))} |"


def _about(m: dict) -> list[str]:
    lines = [f"# Model card: {m.get('name', 'unnamed model')}", "",
             "Generated from the model's `manifest.json` by `ratscore.training.model_card`. Do not edit by hand:",
             "change the model, then regenerate (see the last section).", ""]
    if m.get("trained_on"):
        lines += ["## What it was trained on", "", str(m["trained_on"]), ""]
    return lines


def _accuracy(m: dict) -> list[str]:
    b = _dict(m.get("benchmark"))
    topk = _dict(b.get("localizer_topk_0.5"))
    draws = [_dict(d) for d in topk.get("draws") or []]
    shipped = "localizer as shipped (Top-K, keep ratio 0.5)"
    if draws:  # the recipe's localizer_draws: the shipped localizer is their average
        shipped = f"localizer as shipped: the average of {len(draws)} Top-K draws (keep ratio 0.5)"
    rows = [_map_row(shipped, _dict(topk.get("testing"))),
            *[_map_row(f"one of those draws alone: seed {d.get('seed', '?')}", _dict(d.get("testing"))) for d in draws],
            _map_row("ablation: keep ratio 1.0 (plain local attention), same features" + (", one draw" if draws else ""),
                     _dict(_dict(b.get("localizer_plain_1.0")).get("testing"))),
            _map_row("this model", _dict(b.get("testing")))]
    rows = [r for r in rows if r]
    lines: list[str] = []
    if rows:
        lines += ["## Accuracy", "",
                  "mAP (%) on the test split at tIoU 0.3 to 0.7 (ActionFormer's ANETdetection, as `ratscore",
                  "benchmark` computes it). Nothing was chosen on the test split.", "",
                  "| localizer | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | average |", "|---|---|---|---|---|---|---|", *rows, ""]
    f1 = _dict(b.get("event_f1_at_threshold"))
    if f1 or "threshold" in m:
        if not lines:
            lines += ["## Accuracy", ""]
        if "threshold" in m:
            lines.append(f"Event threshold: **{_num(m['threshold'], 2)}** (the default `--threshold` of `analyze`).")
        if f1:
            parts = ", ".join(f"{k} {_num(v, 2)}" for k, v in f1.items())
            lines.append(f"Event F1 at that threshold (tIoU >= 0.5, same action unit): {parts}.")
        lines.append("")
    ap = _dict(b.get("ap_per_class_at_0.5"))
    if ap:
        names = [n for n in LABELS if n in ap] + [n for n in ap if n not in LABELS]
        lines += ["### AP per action unit at tIoU 0.5 (test split)", "", "| action unit | AP (%) |", "|---|---|",
                  *[f"| {n} | {_num(ap[n])} |" for n in names], ""]
    confusion = _dict(b.get("neighbour_confusion"))
    if confusion:
        lines += ["### Confusion between neighbouring action units (test split)", "",
                  "For each true segment: the class of the best overlapping detection among its neighbours",
                  "(tIoU >= 0.5), or missed.", ""]
        groups: list[tuple[list, list]] = []  # (detected-as columns, [(true class, row), ...])
        for true, row in confusion.items():
            row = _dict(row)
            if groups and groups[-1][0] == list(row):
                groups[-1][1].append((true, row))
            else:
                groups.append((list(row), [(true, row)]))
        for cols, rows in groups:
            lines += ["| true, detected as: | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
                      *[f"| {true} | " + " | ".join(str(row[c]) for c in cols) + " |" for true, row in rows], ""]
    return lines


def _front_end_figures(m: dict) -> list[str]:
    b = _dict(m.get("benchmark"))
    lines: list[str] = []
    det = _dict(b.get("detector_heldout"))
    if det:
        what = f"{det.get('frames', '?')} frames of {det.get('videos', '?')} validation clips"
        lines += ["### ROI detector on held-out frames", "", f"Measured on {what}.", "",
                  "| figure | value |", "|---|---|",
                  f"| frames with box IoU >= 0.7 | {_pct(det.get('share_iou_ge_0.7'))} |",
                  f"| box IoU, mean / median | {_num(det.get('iou_mean'), 2)} / {_num(det.get('iou_median'), 2)} |",
                  f"| rat missed | {_pct(det.get('share_missed'))} |",
                  f"| reflection taken for the rat | {_pct(det.get('share_on_reflection'))} |", ""]
    cls = _dict(b.get("i3d_classifier"))
    if cls:
        lines += ["### I3D clip classifier (the front end's training)", "",
                  f"Training accuracy {_pct(cls.get('train_accuracy'))} over {cls.get('windows', '?')} augmented "
                  f"windows after {cls.get('epoch', '?')} epochs (loss {_num(cls.get('loss'), 3)}).", ""]
    return lines


def _speed(m: dict) -> list[str]:
    b = _dict(m.get("benchmark"))
    lines: list[str] = []
    speed = _dict(b.get("localizer_speed"))
    if speed:
        lines += ["### Localizer speed", "",
                  f"Over the {speed.get('videos', '?')} test videos' features: ONNX Runtime "
                  f"{_num(speed.get('onnxruntime_s'), 2)} s, eager PyTorch {_num(speed.get('pytorch_eager_s'), 2)} s "
                  f"({_num(speed.get('speedup'), 2)}x). Machine: {speed.get('machine', 'not recorded')}.", ""]
    draws = len(_dict(b.get("localizer_topk_0.5")).get("draws") or [])
    topk = f"localizer (Top-K, its {draws} draws one after another)" if draws else "localizer (Top-K)"
    for key, label in (("localizer_topk_0.5", topk), ("localizer_plain_1.0", "ablation")):
        part = _dict(b.get(key))
        if "train_seconds" in part:
            lines.append(f"Training of the {label}: {_num(part.get('train_seconds'))} s "
                         f"({_num(part.get('seconds_per_epoch'), 2)} s an epoch) on {part.get('device', '?')}.")
    if "train_seconds" in b:
        lines.append(f"Training of the localizer: {_num(b.get('train_seconds'))} s "
                     f"({_num(b.get('seconds_per_epoch'), 2)} s an epoch) on {b.get('device', '?')}.")
    if lines and lines[-1] != "":
        lines.append("")
    timings = _dict(b.get("timings_s"))
    if timings:
        lines += ["### Time to build", "", "| stage | seconds |", "|---|---|"]
        for stage, seconds in timings.items():
            lines.append(f"| {_stage_words(stage)} (`{stage}`) | {_num(seconds)} |")
        numbers = [v for v in timings.values() if isinstance(v, (int, float))]
        lines += [f"| **all stages, one after another** | **{_num(sum(numbers))}** "
                  f"({_num(sum(numbers) / 60)} min) |", "",
                  "The sum adds every stage; stages that ran side by side (the recipe trains its",
                  "localizers at the same time) took less wall time than that. A stage that a resumed run",
                  "reused keeps the time it took when it first ran.", ""]
    return lines


def _real_footage(m: dict) -> list[str]:
    """benchmark.real_footage: one row per public real recording (benchmarks/bench_real_roi.py --record)."""
    rows = _dict(m.get("benchmark")).get("real_footage")
    if not isinstance(rows, list) or not rows:
        return []
    lines = ["## On real footage", "",
             "Public recordings of real rodents, none of them made for ratscore (the recordings are not in the",
             "repository; `benchmarks/README.md` says where they come from). \"box holds\": the share of",
             "labelled moments whose ROI box contains the animal and is at most 4x its size.", "",
             "| set | recording | what it shows | box holds | trust | max stage |", "|---|---|---|---|---|---|"]
    for r in rows:
        r = _dict(r)
        trust = "familiar" if r.get("familiar") else "unfamiliar: " + "; ".join(map(str, r.get("reasons") or []))
        lines.append(f"| {r.get('set', '')} | {r.get('recording', '')} | {r.get('shows', '')} | "
                     f"{_pct(r.get('hold'), 0)} | {trust} | {_plain(r.get('max_stage'))} |")
    return lines + [""]


def _figures(m: dict) -> list[str]:
    b = _dict(m.get("benchmark"))
    body = _front_end_figures(m) + _speed(m)
    others = {k: v for k, v in b.items() if k not in _KNOWN_BENCHMARK}
    if others:
        body += ["### Other figures", "", "```json", json.dumps(others, indent=2, sort_keys=True), "```", ""]
    if not body and "machine" not in b:
        return []
    lines = ["## Measured figures", ""]
    if "machine" in b:
        lines += [f"Measured on: {b['machine']}.", ""]
    return lines + body


def _design(m: dict) -> list[str]:
    rows = []
    for key, words in (("fps", "frames per second of the time grid"), ("clip_frames", "frames per I3D clip"),
                       ("clip_stride", "frames between clips"), ("feature_dim", "feature size")):
        if key in m:
            rows.append(f"| {words} (`{key}`) | {_plain(m[key])} |")
    front = _dict(m.get("front_end"))
    det = front.get("detector")
    if "detector" in front:
        if isinstance(det, dict):
            classes = ", ".join(str(c) for c in det.get("classes", [])) or "-"
            rows.append(f"| ROI detector input size (`imgsz`) | {_plain(det.get('imgsz'))} px |")
            rows.append(f"| ROI detector classes | {classes} |")
        else:
            rows.append("| ROI detector | none: the whole frame is used |")
    i3d = _dict(front.get("i3d"))
    for key, words in (("input_size", "I3D input size, px"), ("width", "I3D width (channel multiplier)"),
                       ("subtract_temporal_mean", "I3D sees motion only (temporal mean taken away)"),
                       ("still_share", "share of the still picture the I3D keeps"),
                       ("feature_dim", "I3D feature size")):
        if key in i3d:
            rows.append(f"| {words} (`{key}`) | {_plain(i3d[key])} |")
    lines: list[str] = []
    if rows:
        lines += ["## How it sees a video", "", "| what | value |", "|---|---|", *rows, ""]
        if not front:
            lines += ["This model has no video front end: it scores feature files only.", ""]
    racine = _dict(m.get("racine_map"))
    if racine:
        names = [n for n in LABELS if n in racine] + [n for n in racine if n not in LABELS]
        lines += ["## Racine map", "",
                  "The model's own action unit -> Racine stage map (`--racine-config` overrides it).", "",
                  "| action unit | stage |", "|---|---|",
                  *[f"| {n} | {'not staged' if racine[n] is None else racine[n]} |" for n in names], ""]
    recipe = _dict(m.get("recipe"))
    if recipe:
        lines += ["## Recipe", "",
                  "The `ratscore train bundle` recipe this model was built with (docs/TRAINING.md explains each field).",
                  "", "| field | value |", "|---|---|",
                  *[f"| `{k}` | {_plain(v)} |" for k, v in recipe.items()], ""]
    return lines


def model_card(manifest: dict) -> str:
    """The markdown model card of a manifest (as `ratscore.model.read_manifest` returns it)."""
    lines = (_about(manifest) + _accuracy(manifest) + _real_footage(manifest) + _figures(manifest) + _design(manifest)
             + [INTENDED_USE, NOT_FOR,
                "## Regenerating this card", "",
                "The card is made from the manifest. After a model changes, run from the repository root:", "",
                f"    {REGENERATE}", "",
                "`tests/training/test_model_card.py` fails while the committed card differs from the bundled model's.", ""])
    return "\n".join(lines).rstrip("\n") + "\n"


def write_model_card(model_dir: str | Path, output: str | Path) -> Path:
    """Read a model folder's manifest and write its card, atomically."""
    return atomic_write_text(Path(output), model_card(read_manifest(model_dir)))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratscore.training.model_card",
                                     description="Write the model card of a model folder.")
    parser.add_argument("model_dir", nargs="?", type=Path, default=BUNDLED_MODEL_DIR,
                        help="model folder (default: the bundled model)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"markdown file to write (default: {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    try:
        path = write_model_card(args.model_dir, args.output)
    except RatscoreError as e:
        print(f"ratscore: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"model card written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
