"""The command line: thin Typer wrappers over plain functions.

Every RatscoreError becomes one line on stderr and its exit code (2 bad usage or input, 1 a
failed run); `--debug` (or RATSCORE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import RatscoreError

console = Console()
_debug = {"on": os.environ.get("RATSCORE_DEBUG") == "1"}


def _fail(message: str, code: int):
    typer.echo(f"ratscore: error: {message}", err=True)
    raise typer.Exit(code)


def reports_errors(command):
    """Map errors raised by a command to one stderr line and an exit code (see module doc)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except RatscoreError as e:
            if _debug["on"]:
                raise
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            if _debug["on"]:
                raise
            _fail("interrupted", 130)
        except Exception as e:  # noqa: BLE001 - the last line of defence against a bare traceback
            if _debug["on"]:
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper


app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Score rat seizure videos on the Racine scale.")


def _print_version(value: bool):
    if value:
        from . import __version__

        typer.echo(f"ratscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Score rat seizure videos on the Racine scale."""
    _debug["on"] = debug or os.environ.get("RATSCORE_DEBUG") == "1"


ModelOption = typer.Option(None, "--model", help="Model folder (default: the bundled model in models/).")
DeviceOption = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu or cuda.")
ThresholdOption = typer.Option(None, "--threshold", help="Report events scoring at least this (default: the model's, else 0.3).")
MaskOption = typer.Option(None, "--mask", help="Rig profile YAML: arena and mirror-reflection regions.")
NoRoiOption = typer.Option(False, "--no-roi", help="Use the whole frame (camera framed on one animal).")
BinOption = typer.Option(1.0, "--bin", help="Racine timeline bin width, seconds.")
GapOption = typer.Option(10.0, "--episode-gap", help="Seizure events closer than this (s) form one episode.")
KeepFeaturesOption = typer.Option(False, "--keep-features", help="Also write <stem>.features.npy.")
IncludeNormalOption = typer.Option(False, "--include-normal", help="Also list 'others' (normal behaviour) events.")
RacineConfigOption = typer.Option(None, "--racine-config", exists=False, dir_okay=False,
                                  help="YAML file overriding the default AU -> Racine stage map.")


@app.command()
@reports_errors
def labels(racine_config: Optional[Path] = RacineConfigOption):
    """Print the 14 action units with their ids and Racine stages."""
    from .labels import LABELS, load_racine_map

    racine = load_racine_map(racine_config)
    table = Table(title="RatSeizure action units")
    table.add_column("id", justify="right")
    table.add_column("label")
    table.add_column("Racine stage", justify="right")
    for i, name in enumerate(LABELS):
        stage = racine.stage(i)
        table.add_row(str(i), name, "not staged" if stage is None else str(stage))
    console.print(table)


@app.command()
@reports_errors
def timeline(
    events_csv: Path = typer.Argument(..., help="An events.csv (as `analyze` writes it, perhaps corrected by hand)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for racine.csv, episodes.csv, summary.json and timeline.png."),
    bin_s: float = typer.Option(1.0, "--bin", help="Timeline bin width, seconds."),
    episode_gap: float = typer.Option(10.0, "--episode-gap", help="Seizure events closer than this (s) form one episode."),
    threshold: float = typer.Option(0.0, "--threshold", help="Leave out events scoring below this."),
    duration: Optional[float] = typer.Option(None, "--duration", help="The video's length, s (default: from its summary.json, else the last event's end)."),
    include_normal: bool = typer.Option(False, "--include-normal", help="Keep 'others' events."),
    racine_config: Optional[Path] = RacineConfigOption,
):
    """Rebuild the Racine timeline, episodes, summary and picture from an events file."""
    from .labels import load_racine_map
    from .pipeline import rescore_events_file
    from .timeline import ScoringOptions

    options = ScoringOptions(bin_s=bin_s, episode_gap_s=episode_gap, threshold=threshold, include_normal=include_normal)
    scoring = rescore_events_file(events_csv, output, options, duration, load_racine_map(racine_config))
    s = scoring.summary
    console.print(f"{scoring.video}: {s['n_events']} events, {s['n_episodes']} episodes, "
                  f"max stage {s['max_stage']} -> {output}")


@app.command()
@reports_errors
def extract(
    source: Path = typer.Argument(..., help="A video, or a folder of videos."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for <video_id>.npy feature files."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder with a front end (default: the bundled model)."),
    i3d_weights: Optional[Path] = typer.Option(None, "--i3d-weights", help="I3D weights in pytorch-i3d's format (e.g. rgb_imagenet.pt); overrides the model's I3D."),
    no_roi: bool = typer.Option(False, "--no-roi", help="Use whole frames (camera already framed on one animal; no detector needed)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Rig profile YAML: arena and mirror-reflection regions."),
    device: str = DeviceOption,
):
    """Extract I3D features (T x 1024 at full size; 16-frame clips, stride 4, 30 fps) from videos."""
    from .features import extract_to_folder

    for path, result in extract_to_folder(source, output, model, device, mask, no_roi, i3d_weights):
        found = "" if result.rat_found_fraction is None else f", rat found in {100 * result.rat_found_fraction:.0f}% of frames"
        gaps = f", {len(result.gaps)} gap(s) without the rat" if result.gaps else ""
        console.print(f"{result.video}: {result.duration_s:.1f} s -> {result.features.shape[0]} x "
                      f"{result.features.shape[1]} features{found}{gaps} -> {path}", soft_wrap=True)
        for warning in result.decode_warnings:
            typer.echo(f"ratscore: warning: {result.video}: {warning}", err=True)


train_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Train a model: the localizer, the ROI detector, or the whole bundled model.")
app.add_typer(train_app, name="train")


@train_app.command("localizer")
@reports_errors
def train_localizer(
    annotations: Path = typer.Option(..., "--annotations", help="RatSeizure/ActionFormer annotation JSON (its 'training' videos are used)."),
    features: Path = typer.Option(..., "--features", help="Folder of <video_id>.npy features (T x D), e.g. from `ratscore extract`."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    config: Optional[Path] = typer.Option(None, "--config", dir_okay=False, help="Release-style localizer YAML (default: the RatSeizure release's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Total epochs (warm-up share as in the config)."),
    device: str = DeviceOption,
):
    """Train the RaSeformer localizer on cached features into a model folder."""
    from .training.localizer import train_localizer as run

    out = run(annotations, features, output, config=config, epochs=epochs, device=device)
    console.print(f"model written to {out}")


@train_app.command("detector")
@reports_errors
def train_detector(
    synth: Path = typer.Option(..., "--synth", help="A `ratscore synth` folder (videos with their boxes)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write the detector into."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs."),
    device: str = DeviceOption,
):
    """Train the ROI detector (YOLO) on synthetic videos into a model folder."""
    from .training.detector import add_detector_to_model_dir, train_detector as run

    trained = run(synth, output / "detector_training", epochs=epochs, device=device)
    add_detector_to_model_dir(output, trained.onnx, trained.imgsz)
    console.print(f"detector written to {output / 'detector.onnx'} (validation: {trained.metrics})")


@train_app.command("bundle")
@reports_errors
def train_bundle(
    work_dir: Path = typer.Argument(..., help="Work folder for the recipe's renders, checkpoints and markers; a second run resumes."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    config: Optional[Path] = typer.Option(None, "--config", dir_okay=False, help="Recipe YAML (fields of BundleRecipe; default: the bundled model's recipe)."),
    device: str = DeviceOption,
):
    """Build the whole bundled model (synthetic data, detector, I3D, localizer); resumable."""
    from .training.bundle import BundleRecipe, build_bundle

    # stage names are in brackets: printed as they are, not read as rich markup
    figures = build_bundle(work_dir, output, BundleRecipe.from_yaml(config), device=device,
                           log=lambda line: console.print(line, markup=False, highlight=False))
    console.print(f"bundled model written to {output}; timings (s): {figures.get('timings_s')}")


@app.command()
@reports_errors
def benchmark(
    annotations: Path = typer.Option(..., "--annotations", help="Annotation JSON with the ground truth."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the bundled model)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Folder of <video_id>.npy features."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Score this detections CSV (video, start_s, end_s, au_id, score) instead of a model."),
    subset: str = typer.Option("testing", "--split", help="Subset of the annotations to evaluate."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the report as JSON."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write the model's raw detections as CSV."),
    speed: bool = typer.Option(False, "--speed", help="Also time ONNX Runtime against eager PyTorch on these features."),
    device: str = DeviceOption,
):
    """mAP at tIoU 0.3..0.7 (and AP per class) of a model, or of any method's detections."""
    from .benchmark import benchmark_detections, benchmark_model, format_report
    from .errors import InputError
    from .model import BUNDLED_MODEL_DIR

    if detections is not None:
        if features is not None or predictions is not None or speed:
            raise InputError("--detections scores a file; it takes no --features, --predictions or --speed")
        report = benchmark_detections(annotations, detections, subset, output)
    else:
        if features is None:
            raise InputError("give --features DIR (to run a model) or --detections PRED.csv")
        report = benchmark_model(model or BUNDLED_MODEL_DIR, annotations, features, subset, output, predictions,
                                 speed=speed, device=device)
    console.print(format_report(report))


@app.command("import-checkpoint")
@reports_errors
def import_checkpoint(
    checkpoint: Path = typer.Argument(..., help="ActionFormer-format checkpoint (e.g. ratseizure_ckpt.pth.tar)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Its YAML config (default: the RatSeizure release's)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    i3d_weights: Optional[Path] = typer.Option(None, "--i3d-weights", help="pytorch-i3d state_dict (e.g. rgb_imagenet.pt) to put in the folder as its I3D."),
):
    """Make a model folder from the RatSeizure release's checkpoint (EMA weights), optionally with an I3D."""
    from .training.release import import_checkpoint as run_import

    out = run_import(checkpoint, config, output)
    if i3d_weights is not None:
        from .training.export import add_i3d_to_model_dir

        add_i3d_to_model_dir(out, i3d_weights)
    console.print(f"model written to {out}")


@app.command()
@reports_errors
def synth(
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the videos, annotations.json, labels/, boxes/ and contact_sheet.png."),
    clips: Optional[int] = typer.Option(None, "--clips", help="Number of 10 s clips (default 10; 0 with --long-minutes)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and options -> same annotations and frames."),
    long_minutes: float = typer.Option(0.0, "--long-minutes", help="Also make long recordings of this many minutes (normal behaviour with escalating seizure episodes)."),
    long_count: int = typer.Option(1, "--long-count", help="How many long recordings --long-minutes makes."),
    config: Optional[Path] = typer.Option(None, "--config", dir_okay=False, help="YAML file overriding synth settings (resolutions, noise, view, ...)."),
    jobs: int = typer.Option(1, "--jobs", help="Videos rendered at once (one core each); the files are the same whatever it is."),
):
    """Make synthetic RatSeizure-style videos of a rat with exact ground truth."""
    from .synth import load_synth_config, synthesize

    def report(plan, info):
        console.print(f"{info['file']}: {info['width']}x{info['height']}, {plan.duration:g} s, {plan.subset}, "
                      f"{len(plan.segments)} segments")

    videos = synthesize(output, clips, seed, load_synth_config(config), long_minutes, long_count, progress=report,
                        jobs=jobs)
    n_test = sum(v.subset == "testing" for v in videos.values())
    console.print(f"{len(videos)} videos ({len(videos) - n_test} training / {n_test} testing), "
                  f"{sum(len(v.segments) for v in videos.values())} segments -> {output}")


def _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features, include_normal,
                     racine_config):
    from .model import BUNDLED_MODEL_DIR, load_model
    from .pipeline import AnalyzeOptions
    from .timeline import ScoringOptions

    model = model or BUNDLED_MODEL_DIR
    if threshold is None:  # the model's own default (chosen on its validation clips), else DEFAULT_THRESHOLD
        threshold = load_model(model).threshold
    scoring = ScoringOptions(bin_s=bin_s, episode_gap_s=episode_gap, threshold=threshold, include_normal=include_normal)
    return AnalyzeOptions(model_dir=model, device=device, scoring=scoring, mask=mask,
                          no_roi=no_roi, keep_features=keep_features, racine_config=racine_config)



@app.command()
@reports_errors
def analyze(
    videos: list[Path] = typer.Argument(..., help="Video files to score."),
    output: Path = typer.Option(Path("ratscore_out"), "-o", "--output", help="Output folder."),
    model: Optional[Path] = ModelOption, device: str = DeviceOption, threshold: Optional[float] = ThresholdOption,
    mask: Optional[Path] = MaskOption, no_roi: bool = NoRoiOption, bin_s: float = BinOption,
    episode_gap: float = GapOption, keep_features: bool = KeepFeaturesOption,
    include_normal: bool = IncludeNormalOption, racine_config: Optional[Path] = RacineConfigOption,
):
    """Score videos: events, Racine timeline, episodes, summary, picture and an HTML report each."""
    from .errors import InputError, RatscoreError
    from .pipeline import Analyzer

    options = _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features,
                               include_normal, racine_config)
    analyzer = Analyzer(options)
    stems = [v.stem for v in videos]
    if len(set(stems)) < len(stems):
        raise InputError("two videos share a file name; their outputs would collide (use `ratscore batch`)")
    failed = 0
    for video in videos:
        try:
            s = analyzer.analyze(video, output).summary
        except RatscoreError as e:
            if len(videos) == 1:
                raise
            failed += 1
            typer.echo(f"ratscore: error: {e}", err=True)
            continue
        flag = "" if s["trust"].get("familiar", True) else "  [UNFAMILIAR FOOTAGE: check by hand]"
        typer.echo(f"{video}: {s['n_events']} events, {s['n_episodes']} episodes, max stage {s['max_stage']}"
                   f" -> {output / video.stem}.*{flag}")
    if failed:
        raise typer.Exit(1)


@app.command()
@reports_errors
def batch(
    folder: Optional[Path] = typer.Argument(None, help="Folder of videos (a study)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output folder (mirrors the input tree)."),
    recursive: bool = typer.Option(False, "--recursive", help="Also videos in sub-folders."),
    pattern: Optional[str] = typer.Option(None, "--pattern", help="File name pattern, e.g. 'rat*.mp4'."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip videos whose outputs are complete and current."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do the I-th of N deterministic shares (I from 0)."),
    merge: Optional[Path] = typer.Option(None, "--merge", help="Join the shard summaries in this output folder."),
    model: Optional[Path] = ModelOption, device: str = DeviceOption, threshold: Optional[float] = ThresholdOption,
    mask: Optional[Path] = MaskOption, no_roi: bool = NoRoiOption, bin_s: float = BinOption,
    episode_gap: float = GapOption, keep_features: bool = KeepFeaturesOption,
    include_normal: bool = IncludeNormalOption, racine_config: Optional[Path] = RacineConfigOption,
):
    """Score every video of a study; one summary table; resumable and shardable."""
    from .batch import merge_shards, parse_shard, run_batch
    from .errors import InputError
    from .pipeline import Analyzer

    if merge is not None:
        path, n, n_failed = merge_shards(merge)
        console.print(f"merged {n} videos ({n_failed} failed) -> {path}")
        return
    if folder is None or output is None:
        raise InputError("batch needs FOLDER and -o OUT (or --merge OUT)")
    shard_ = parse_shard(shard)
    options = _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features,
                               include_normal, racine_config)
    analyzer = Analyzer(options)
    result = run_batch(folder, output, analyzer, recursive, pattern, resume, shard_,
                       on_video=lambda name, status: typer.echo(f"{name}: {status}"))
    typer.echo(f"{result.analysed} analysed, {result.skipped} already done, {len(result.failures)} failed"
                  f" -> {result.summary_path}")
    if result.failures:
        raise typer.Exit(1)


def main() -> None:
    app(prog_name="ratscore")


if __name__ == "__main__":
    main()
