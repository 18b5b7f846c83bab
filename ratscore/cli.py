"""The command line: thin Typer wrappers over plain functions.

Every RatscoreError becomes one line on stderr and its exit code (2 bad usage or input, 1 a
failed run); `--debug` (or RATSCORE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .annotations import TEST_SHARE
from .errors import RatscoreError
from .motion import MOTION_DEFAULT

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
PrecisionOption = typer.Option("auto", "--precision",
                               help="The I3D's arithmetic: auto (fp16 on a GPU, fp32 on the CPU), fp32, bf16 or fp16.")
DecoderOption = typer.Option("auto", "--decoder",
                             help="auto (PyAV), pyav or torchcodec: torchcodec decodes and crops on the run's "
                                  "device (the GPU with --device cuda, or auto on a GPU machine); it needs FFmpeg's "
                                  "libraries and, for a GPU, a torchcodec build with CUDA. auto stays PyAV until GPU "
                                  "decoding is measured (docs/CLUSTER.md).")
ThresholdOption = typer.Option(None, "--threshold", help="Report events scoring at least this (default: the model's, else 0.3).")
MaskOption = typer.Option(None, "--mask", help="Rig profile YAML: arena and mirror-reflection regions.")
NoRoiOption = typer.Option(False, "--no-roi", help="Use the whole frame (camera framed on one animal).")
MotionOption = typer.Option(MOTION_DEFAULT, "--motion/--no-motion",
                            help="Check the detector with a quick low-resolution pass that models the recording's "
                                 "background and motion (drops boxes on things that never move; stands in where "
                                 "the detector finds nothing).")
BinOption = typer.Option(1.0, "--bin", help="Racine timeline bin width, seconds.")
GapOption = typer.Option(10.0, "--episode-gap", help="Seizure events closer than this (s) form one episode.")
KeepFeaturesOption = typer.Option(False, "--keep-features", help="Also write <stem>.features.npy.")
IncludeNormalOption = typer.Option(False, "--include-normal", help="Also list 'others' (normal behaviour) events.")
RacineConfigOption = typer.Option(None, "--racine-config", exists=False, dir_okay=False,
                                  help="YAML file overriding the default AU -> Racine stage map.")
NwbOption = typer.Option(False, "--nwb", help="Also write <stem>.nwb: events and episodes as NWB time intervals "
                                               "(needs the optional package pynwb; docs/STUDY.md).")


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
    events_csv: Path = typer.Argument(..., metavar="FILE",
                                      help="An events.csv (as `analyze` writes it, perhaps corrected by hand), or a BORIS project or events export (one set of files per video in it)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for racine.csv, episodes.csv, summary.json and timeline.png."),
    bin_s: float = typer.Option(1.0, "--bin", help="Timeline bin width, seconds."),
    episode_gap: float = typer.Option(10.0, "--episode-gap", help="Seizure events closer than this (s) form one episode."),
    threshold: float = typer.Option(0.0, "--threshold", help="Leave out events scoring below this (BORIS events score 1)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="The video's length, s (default: from its summary.json or the BORIS file, else the last event's end); for a BORIS file, every video's."),
    include_normal: bool = typer.Option(False, "--include-normal", help="Keep 'others' events."),
    racine_config: Optional[Path] = RacineConfigOption,
    code_map: Optional[Path] = typer.Option(None, "--map", dir_okay=False, help="BORIS files: MAP.yaml, behaviour code -> action unit (not needed when the codes are action-unit names)."),
    point_length: Optional[float] = typer.Option(None, "--point-length", help="BORIS files: read point events as events of this many seconds."),
):
    """Rebuild the Racine timeline, episodes, summary and picture from an events file or a BORIS file."""
    from .boris import TABLE_SUFFIXES, annotation_format
    from .errors import InputError
    from .files import check_output_folder
    from .labels import load_racine_map
    from .pipeline import rescore_boris_file, rescore_events_file
    from .timeline import ScoringOptions

    check_output_folder(output)
    options = ScoringOptions(bin_s=bin_s, episode_gap_s=episode_gap, threshold=threshold, include_normal=include_normal)
    racine = load_racine_map(racine_config)
    missing_csv = not events_csv.exists() and events_csv.suffix.lower() == ".csv"
    kind = None if missing_csv else annotation_format(events_csv)  # an events.csv is no BORIS export
    if kind is None:
        if events_csv.suffix.lower() in TABLE_SUFFIXES and events_csv.suffix.lower() != ".csv":
            raise InputError(f"{events_csv}: not a BORIS events export (no header row with 'Behavior' and 'Time' "
                             "or 'Start (s)' and 'Stop (s)')")
        given = [name for name, value in (("--map", code_map), ("--point-length", point_length)) if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)} read BORIS files; {events_csv} is an events table")
        scorings = [rescore_events_file(events_csv, output, options, duration, racine)]
    else:
        scorings = rescore_boris_file(events_csv, output, options, duration, racine, code_map, point_length,
                                      warn=lambda line: typer.echo(f"ratscore: warning: {line}", err=True))
    for scoring in scorings:
        s = scoring.summary
        console.print(f"{scoring.video}: {s['n_events']} events, {s['n_episodes']} episodes, "
                      f"max stage {s['max_stage']} -> {output}", markup=False, highlight=False)


@app.command("import-annotations")
@reports_errors
def import_annotations(
    files: list[Path] = typer.Argument(..., metavar="FILE", help="BORIS projects (.boris) or events exports (tabular or aggregated; .csv, .tsv, .xlsx)."),
    output: Path = typer.Option(..., "-o", "--output", help="Annotation JSON to write (RatSeizure/ActionFormer format)."),
    code_map: Optional[Path] = typer.Option(None, "--map", dir_okay=False, help="MAP.yaml: behaviour code -> action unit (not needed when the codes are action-unit names)."),
    point_length: Optional[float] = typer.Option(None, "--point-length", help="Read point events as segments of this many seconds."),
    test_share: float = typer.Option(TEST_SHARE, "--test-share", help="About this share of the videos goes to 'testing', the rest to 'training' (each video drawn on its own)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same subsets; a video keeps its subset when videos are added."),
):
    """Turn BORIS codings into a RatSeizure annotation file for `train` and `benchmark` (one video per media file)."""
    from .annotations import draw_subsets, from_boris, write_annotations
    from .errors import InputError
    from .files import check_output_folder

    draw_subsets([], test_share, seed)  # the options are judged before any file is read
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give -o the annotation file to write (e.g. annotations.json)")
    check_output_folder(output.parent)
    result = from_boris(files, code_map, point_length, test_share, seed)
    for line in result.warnings:
        typer.echo(f"ratscore: warning: {line}", err=True)
    write_annotations(output, result.videos.values())
    videos = result.videos.values()
    n_test = sum(v.subset == "testing" for v in videos)
    console.print(f"{len(videos)} videos ({len(videos) - n_test} training / {n_test} testing), "
                  f"{sum(len(v.segments) for v in videos)} segments -> {output}", markup=False, highlight=False)


@app.command()
@reports_errors
def extract(
    source: Path = typer.Argument(..., help="A video, or a folder of videos."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for <video_id>.npy feature files."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder with a front end (default: the bundled model)."),
    i3d_weights: Optional[Path] = typer.Option(None, "--i3d-weights", help="I3D weights in pytorch-i3d's format (e.g. rgb_imagenet.pt); overrides the model's I3D."),
    no_roi: bool = typer.Option(False, "--no-roi", help="Use whole frames (camera already framed on one animal; no detector needed)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Rig profile YAML: arena and mirror-reflection regions."),
    device: str = DeviceOption, motion: bool = MotionOption, precision: str = PrecisionOption,
    decoder: str = DecoderOption,
):
    """Extract I3D features (T x 1024 at full size; 16-frame clips, stride 4, 30 fps) and the animal's
    track (<video_id>.track.csv) from videos."""
    from .features import extract_to_folder

    for path, result in extract_to_folder(source, output, model, device, mask, no_roi, i3d_weights, motion=motion,
                                          precision=precision, decoder=decoder):
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
    annotations: Path = typer.Option(..., "--annotations", help="The scoring: RatSeizure/ActionFormer JSON (its 'training' videos train, 'testing' ones measure), or a BORIS project (.boris) or events export (.csv, .tsv, .xlsx), all of whose videos train."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write (a model already there is replaced)."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of the scored videos (<video id>.mp4, .avi, ...): their features are extracted (and cached), and the front end goes into the model."),
    features: Optional[Path] = typer.Option(None, "--features", help="Folder of <video_id>.npy features (T x D), e.g. from `ratscore extract`: a localizer-only model."),
    code_map: Optional[Path] = typer.Option(None, "--map", dir_okay=False, help="BORIS behaviour codes -> action units: a YAML of `code: action unit` lines."),
    point_length: Optional[float] = typer.Option(None, "--point-length", help="Seconds a BORIS point event lasts (needed when the file has point events)."),
    model: Optional[Path] = typer.Option(None, "--model", help="With --videos: the model folder whose front end (detector and I3D) extracts (default: the bundled model's)."),
    i3d_weights: Optional[Path] = typer.Option(None, "--i3d-weights", help="With --videos: pytorch-i3d weights (e.g. rgb_imagenet.pt: full size, 1024-d features) as the I3D."),
    no_roi: bool = typer.Option(False, "--no-roi", help="With --videos: whole frames, no rat detector (camera framed on one animal); the model then has no detector either."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="With --videos: rig profile YAML (arena and mirror-reflection regions)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="With --videos: feature cache folder (default: MODEL/.features); a second run reuses what is there."),
    config: Optional[Path] = typer.Option(None, "--config", dir_okay=False, help="Release-style localizer YAML (default: sized from the features: the bundled localizer's for its 128-d features, else the RatSeizure release's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Total epochs (warm-up share as in the config)."),
    validation_share: float = typer.Option(0.2, "--validation-share", help="Share of the training videos kept apart to choose the event threshold (0: none; the default threshold stays)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation draw (per video)."),
    device: str = DeviceOption,
):
    """Train the RaSeformer localizer on your own scoring; with --videos the model folder holds the
    whole chain, and `analyze --model` takes it as it is."""
    from .training.own_data import train_on_own_scoring

    # stage names are in brackets: printed as they are, not read as rich markup
    run = train_on_own_scoring(annotations, output, videos=videos, features=features, code_map=code_map,
                               point_length_s=point_length, model=model, i3d_weights=i3d_weights, no_roi=no_roi,
                               mask=mask, cache=cache, config=config, epochs=epochs,
                               validation_share=validation_share, seed=seed, device=device,
                               log=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
                               progress=console.is_terminal)
    threshold = "the default threshold" if run.threshold is None else f"threshold {run.threshold:g}"
    if run.front_end is None:
        console.print(f"model written to {run.model_dir} ({threshold}): a localizer-only model; give --videos to "
                      f"include a front end", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"model written to {run.model_dir} ({threshold}; front end: {run.front_end})",
                      markup=False, highlight=False, soft_wrap=True)


@train_app.command("detector")
@reports_errors
def train_detector(
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of your own recordings: the motion model boxes the moving animal (nobody draws a box), the detector is fine-tuned on those frames, and -o is a whole model (a copy of --model with the new detector)."),
    synth: Optional[Path] = typer.Option(None, "--synth", help="A `ratscore synth` folder (videos with their boxes). With --videos: pooled in, so the detector keeps other rigs. Alone: the only source, trained from scratch, the detector written into -o."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write. With --videos: a new folder (not --model's), or one an earlier run left (it resumes). With --synth alone: the detector goes into this model folder."),
    model: Optional[Path] = typer.Option(None, "--model", help="With --videos: the base model copied into -o, whose detector is fine-tuned: from its detector.pt, or where it has none (model folders made before 2026-12-05) from its detector.onnx (default: the bundled model)."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Detector input side, pixels, a multiple of 32 (default: the base detector's with --videos, 192 with --synth alone)."),
    device: str = DeviceOption,
):
    """Train the ROI detector (YOLO): on your own recordings (--videos DIR, boxes from the motion
    model; resumable; writes a model folder `analyze --model` takes and a contact sheet of the boxes,
    detector_labels.png), or on synthetic videos alone (--synth DIR)."""
    from .errors import InputError

    say = lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    if videos is not None:
        from .training.rig_detector import RigOptions, train_rig_detector

        run = train_rig_detector(videos, output, model=model, synth=synth,
                                 options=RigOptions(epochs=epochs, imgsz=imgsz), device=device, log=say)
        how = "trained from scratch" if run.started_from == "scratch" else f"fine-tuned from {run.started_from}"
        say(f"model written to {run.model_dir} (detector {how} on {run.n_train_frames} frames, "
            f"{run.n_val_frames} validation); the boxes it trained on: {run.contact_sheet}")
        return
    if synth is None:
        raise InputError("give --videos DIR (your own recordings) or --synth DIR (synthetic videos), or both")
    if model is not None:
        raise InputError("--model names the base model of --videos; with --synth alone the detector trains from scratch")
    from .model import BUNDLED_MODEL_DIR
    from .training.detector import add_detector_to_model_dir, train_detector as run_synth

    if output.resolve() == BUNDLED_MODEL_DIR.resolve():
        raise InputError(f"{output}: is the bundled model; give -o another model folder")
    trained = run_synth(synth, output / "detector_training", epochs=epochs, imgsz=imgsz or 192, device=device)
    add_detector_to_model_dir(output, trained.onnx, trained.imgsz)
    say(f"detector written to {output / 'detector.onnx'} (validation: {trained.metrics})")


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
    annotations: Path = typer.Option(..., "--annotations", help="The ground truth: annotation JSON, or a BORIS project or export (all its videos in --split)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the bundled model)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Folder of <video_id>.npy features."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of the videos (<video id>.mp4, ...): features are extracted with the model's own front end, and cached."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Score this detections CSV (video, start_s, end_s, au_id, score) instead of a model."),
    subset: str = typer.Option("testing", "--split", help="Subset of the annotations to evaluate."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the report as JSON."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write the model's raw detections as CSV."),
    code_map: Optional[Path] = typer.Option(None, "--map", dir_okay=False, help="BORIS behaviour codes -> action units (YAML of `code: action unit`)."),
    point_length: Optional[float] = typer.Option(None, "--point-length", help="Seconds a BORIS point event lasts."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="With --videos: feature cache folder (default: .ratscore-features beside -o REPORT, else ratscore-features-<uid> in the system's temp folder)."),
    no_roi: bool = typer.Option(False, "--no-roi", help="With --videos: whole frames (a model without a detector needs it)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="With --videos: rig profile YAML (arena and mirror-reflection regions)."),
    speed: bool = typer.Option(False, "--speed", help="Also time ONNX Runtime against eager PyTorch on these features."),
    device: str = DeviceOption,
):
    """mAP at tIoU 0.3..0.7 (and AP per class) of a model, or of any method's detections."""
    from .benchmark import benchmark_detections, benchmark_model, benchmark_videos, format_report, read_ground_truth
    from .errors import InputError
    from .model import BUNDLED_MODEL_DIR

    if detections is not None:
        if features is not None or videos is not None or predictions is not None or speed:
            raise InputError("--detections scores a file; it takes no --features, --videos, --predictions or --speed")
        report = benchmark_detections(annotations, detections, subset, output)
    else:
        if (features is None) == (videos is None):
            raise InputError("give --features DIR or --videos DIR (to run a model), or --detections PRED.csv")
        if features is not None and (cache is not None or no_roi or mask is not None):
            raise InputError("--cache, --no-roi and --mask say how videos are read; they need --videos DIR")
        if code_map is not None:
            from .boris import read_code_map

            code_map = read_code_map(code_map)
        truth = read_ground_truth(annotations, code_map, point_length, videos, subset)
        if videos is not None:
            report = benchmark_videos(model or BUNDLED_MODEL_DIR, truth, videos, subset, output, predictions, cache,
                                      device, no_roi, mask, speed,
                                      log=lambda line: console.print(line, markup=False, highlight=False,
                                                                     soft_wrap=True),
                                      progress=console.is_terminal)
        else:
            report = benchmark_model(model or BUNDLED_MODEL_DIR, truth, features, subset, output, predictions,
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
    style: Optional[str] = typer.Option(None, "--style", help="The drawing: classic (default), varied (for the detector: many looks, things that are not animals, empty frames) or unseen (never trained on). Overrides the config's style."),
):
    """Make synthetic RatSeizure-style videos of a rat with exact ground truth."""
    import dataclasses

    from .synth import load_synth_config, synthesize
    from .synth.planning import make_config

    def report(plan, info):
        console.print(f"{info['file']}: {info['width']}x{info['height']}, {plan.duration:g} s, {plan.subset}, "
                      f"{len(plan.segments)} segments")

    settings = load_synth_config(config)
    if style is not None:
        settings = make_config({**dataclasses.asdict(settings), "style": style}, "--style")
    videos = synthesize(output, clips, seed, settings, long_minutes, long_count, progress=report,
                        jobs=jobs)
    n_test = sum(v.subset == "testing" for v in videos.values())
    console.print(f"{len(videos)} videos ({len(videos) - n_test} training / {n_test} testing), "
                  f"{sum(len(v.segments) for v in videos.values())} segments -> {output}")


def _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features, include_normal,
                     racine_config, nwb=False, motion=MOTION_DEFAULT, precision="auto", decoder="auto"):
    from .model import BUNDLED_MODEL_DIR, load_model
    from .pipeline import AnalyzeOptions
    from .timeline import ScoringOptions

    if nwb:  # a missing optional package is a usage error, found before the model is read
        from .nwb import check_available

        check_available()
    model = model or BUNDLED_MODEL_DIR
    if threshold is None:  # the model's own default (chosen on its validation clips), else DEFAULT_THRESHOLD
        threshold = load_model(model).threshold
    scoring = ScoringOptions(bin_s=bin_s, episode_gap_s=episode_gap, threshold=threshold, include_normal=include_normal)
    return AnalyzeOptions(model_dir=model, device=device, scoring=scoring, mask=mask,
                          no_roi=no_roi, keep_features=keep_features, racine_config=racine_config, nwb=nwb,
                          motion=motion, precision=precision, decoder=decoder)



@app.command()
@reports_errors
def analyze(
    videos: list[Path] = typer.Argument(..., help="Video files to score."),
    output: Path = typer.Option(Path("ratscore_out"), "-o", "--output", help="Output folder."),
    model: Optional[Path] = ModelOption, device: str = DeviceOption, threshold: Optional[float] = ThresholdOption,
    mask: Optional[Path] = MaskOption, no_roi: bool = NoRoiOption, bin_s: float = BinOption,
    episode_gap: float = GapOption, keep_features: bool = KeepFeaturesOption,
    include_normal: bool = IncludeNormalOption, racine_config: Optional[Path] = RacineConfigOption,
    nwb: bool = NwbOption, motion: bool = MotionOption, precision: str = PrecisionOption,
    decoder: str = DecoderOption,
):
    """Score videos: events, Racine timeline, episodes, summary, picture, track and an HTML report each."""
    from .errors import InputError, RatscoreError
    from .files import check_output_folder
    from .pipeline import Analyzer
    from .trust import UNFAMILIAR_FLAG, is_unfamiliar
    from .video import check_video_file

    # everything a user can get wrong is checked before the models load
    check_output_folder(output)
    stems = [v.stem for v in videos]
    if len(set(stems)) < len(stems):
        raise InputError("two videos share a file name; their outputs would collide (use `ratscore batch`)")
    for video in videos:
        check_video_file(video)
    options = _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features,
                               include_normal, racine_config, nwb, motion, precision, decoder)
    analyzer = Analyzer(options)
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
        flag = f"  {UNFAMILIAR_FLAG}" if is_unfamiliar(s) else ""
        warned = "".join(f"  [WARNING: {w}]" for w in s.get("warnings") or [])
        typer.echo(f"{video}: {s['n_events']} events, {s['n_episodes']} episodes, max stage {s['max_stage']}"
                   f" -> {output / video.stem}.*{flag}{warned}")
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
    submit: Optional[str] = typer.Option(None, "--submit", help="Run on a cluster instead: 'slurm' (or 'local' to try it here); see docs/CLUSTER.md."),
    shards: int = typer.Option(1, "--shards", help="With --submit: cluster jobs, one --shard I/N each, then a merge job."),
    partition: Optional[str] = typer.Option(None, "--partition", help="With --submit: the SLURM partition."),
    gpus: int = typer.Option(0, "--gpus", help="With --submit: GPUs per job."),
    time_minutes: int = typer.Option(240, "--time", help="With --submit: time limit per job, minutes."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="With --submit: jobs running at once (default: all)."),
    study: Optional[Path] = typer.Option(None, "--study", help="STUDY.csv: animal, group, treatment (and injection time) per video; adds them to batch_summary.csv and writes study.xlsx (docs/STUDY.md)."),
    nwb: bool = NwbOption, motion: bool = MotionOption, precision: str = PrecisionOption,
    decoder: str = DecoderOption,
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Processes that decode (with PyAV), detect and crop the next videos while the I3D runs (default: one per core; 0: one video at a time). The outputs are the same. With --decoder torchcodec always 0: its frames stay in the process that decoded them."),
):
    """Score every video of a study; one summary table; resumable, shardable, or submitted to a cluster."""
    from .batch import OutputLock, merge_shards, parse_shard, plan_batch, run_batch
    from .errors import InputError
    from .files import check_output_folder
    from .pipeline import Analyzer

    if submit is not None:
        from .cluster import submit_batch

        if folder is None or output is None or shard is not None or merge is not None:
            raise InputError("batch --submit needs FOLDER and -o OUT, and takes no --shard or --merge")
        args = [*(["--recursive"] if recursive else []), *(["--pattern", pattern] if pattern else []),
                "--resume" if resume else "--no-resume", "--device", device,
                *(["--model", str(Path(model).absolute())] if model else []),
                *(["--threshold", str(threshold)] if threshold is not None else []),
                *(["--mask", str(Path(mask).absolute())] if mask else []), *(["--no-roi"] if no_roi else []),
                "--bin", str(bin_s), "--episode-gap", str(episode_gap),
                *(["--keep-features"] if keep_features else []), *(["--include-normal"] if include_normal else []),
                *(["--racine-config", str(Path(racine_config).absolute())] if racine_config else []),
                *(["--nwb"] if nwb else []), "--motion" if motion else "--no-motion", "--precision", precision,
                "--decoder", decoder,
                *(["--workers", str(workers)] if workers is not None else [])]
        submitted = submit_batch(folder, output, args, shards=shards, executor=submit, partition=partition,
                                 gpus_per_job=gpus, time_minutes=time_minutes, concurrency=concurrency, study=study)
        typer.echo(f"submitted {shards} shard job(s): {', '.join(submitted.array_job_ids)}; merge job "
                   f"{submitted.merge_job_id} (logs in {submitted.log_dir})")
        return

    if merge is not None:
        from .study import read_study

        path, n, n_failed = merge_shards(merge, study=read_study(study) if study is not None else None)
        xlsx = f" and {path.with_name('study.xlsx')}" if study is not None else ""
        typer.echo(f"merged {n} videos ({n_failed} failed) -> {path}{xlsx}")  # one line, however long the path
        if n_failed:
            raise typer.Exit(1)
        return
    if folder is None or output is None:
        raise InputError("batch needs FOLDER and -o OUT (or --merge OUT)")
    check_output_folder(output)
    shard_ = parse_shard(shard)
    plan = plan_batch(folder, recursive, pattern, shard_)  # name clashes and an empty folder: before any model loads
    sheet = None
    if study is not None:  # checked against the whole folder, every shard alike: before any model loads
        from .study import load_study

        sheet = load_study(study, folder, recursive, pattern)
    options = _analyze_options(model, device, threshold, mask, no_roi, bin_s, episode_gap, keep_features,
                               include_normal, racine_config, nwb, motion, precision, decoder)
    with OutputLock(output, shard_):  # before the model loads: a refused run ends at once
        analyzer = Analyzer(options) if plan.videos else None
        if workers and analyzer is not None and analyzer.decoder != "pyav":
            typer.echo(f"--workers {workers}: not with the {analyzer.decoder} decoder, whose frames stay in the "
                       f"process that decoded them; the videos go one at a time")
        # a shard's table stays plain: `batch --merge OUT --study STUDY.csv` adds the study to the whole one
        result = run_batch(folder, output, analyzer, recursive, pattern, resume, shard_,
                           on_video=lambda name, status: typer.echo(f"{name}: {status}"), plan=plan, take_lock=False,
                           study=sheet if shard_ is None else None, workers=workers)
    if shard_ is not None and not result.rows:
        typer.echo(f"shard {shard_[0]}/{shard_[1]}: no videos in this shard ({plan.in_folder} in the folder)")
    if shard_ is not None and sheet is not None:
        typer.echo(f"--study {study}: checked; its columns and study.xlsx come with `ratscore batch --merge {output} "
                   f"--study {study}`")
    not_searched = (f", {result.folders_not_searched} sub-folders not searched" if result.folders_not_searched
                    else "")
    unfamiliar = (f"; {result.unfamiliar} unfamiliar: check them by hand (the table's trust_reasons says why)"
                  if result.unfamiliar else "")
    typer.echo(f"{result.analysed} analysed, {result.skipped} already done, {len(result.failures)} failed, "
               f"{result.other_files} other files ignored{not_searched} -> {result.summary_path}"
               + (f" and {result.summary_path.with_name('study.xlsx')}" if shard_ is None and sheet is not None else "")
               + unfamiliar)
    if result.failures:
        raise typer.Exit(1)


def _terminated(signum, frame):
    # a SIGTERM (a cluster's time limit, `kill`) ends a run as Ctrl-C does: temporary files are
    # removed on the way out and the error line says so
    raise KeyboardInterrupt


def main() -> None:
    import signal

    # restored on the way out: a caller that runs main in its own process (a cluster job, the tests)
    # keeps its own SIGTERM handling afterwards
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        _run_app()
    finally:
        signal.signal(signal.SIGTERM, before)


def _run_app() -> None:
    try:
        code = app(prog_name="ratscore", standalone_mode=False)
    except typer.TyperException as e:  # Typer's own usage errors, as one line like every other error
        message = e.format_message().strip()
        if message:  # none when a command given no arguments has just shown its help
            context = getattr(e, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            typer.echo(f"ratscore: error: {message}{hint}", err=True)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("ratscore: error: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
