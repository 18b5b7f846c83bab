"""The bundled model's recipe: synthetic data -> ROI detector -> small I3D -> features -> RaSeformer.

`ratscore train bundle WORK_DIR -o MODEL_DIR` runs the recipe's stages (`bundle_stages`) in order,
one loop (`build_bundle`) for all of them. Each stage leaves a marker in WORK_DIR when it is done
and the I3D classifier checkpoints every epoch, so a run that is interrupted picks up where it
stopped: run the same command again. Each marker, checkpoint and feature file records the recipe
fields it was made from (`stage_inputs`): a stage whose fields changed since is done again, and so
is every stage after it that depends on it.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError


# Fields whose smallest sensible value is not the rule below: 0 of these means "none"
_MAY_BE_ZERO = ("train_long_recordings", "train_long_severe_recordings", "localizer_clips", "validation_long_recordings",
                "detector_style_clips", "behaviour_style_clips")
_MAY_BE_ZERO_FLOAT = ("crop_margin",)


def _field_problem(name: str, value, default) -> Optional[str]:
    """Why a recipe field's value is unusable (one line), or None. The default's type is the
    field's: whole numbers are counts, epochs and sizes of at least 1 (seeds and the fields in
    _MAY_BE_ZERO: at least 0); numbers are above 0 (crop_margin: at least 0; i3d_still_share: from 0
    up to, not including, 1). Checked before any stage runs, so that a typo does not surface an
    hour in, when its stage starts."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"{name} must be true or false, not {value!r}"
    elif isinstance(default, int):
        least = 0 if name.endswith("seed") or name in _MAY_BE_ZERO else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            zero = " (0: none)" if name in _MAY_BE_ZERO else ""
            return f"{name} must be a whole number of at least {least}{zero}, not {value!r}"
    elif isinstance(default, float):
        if name == "i3d_still_share":
            # 1 keeps the whole mean (the temporal-mean step then does nothing); above 1 adds it back
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                return f"{name} must be a number from 0 up to (not including) 1, not {value!r}"
            return None
        at_least_zero = name in _MAY_BE_ZERO_FLOAT
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                or (value == 0 and not at_least_zero)):
            unit = " of minutes" if name.endswith("minutes") else ""
            return f"{name} must be a number{unit} {'of at least 0' if at_least_zero else 'above 0'}, not {value!r}"
    elif isinstance(default, str) and not isinstance(value, str):
        return f"{name} must be text, not {value!r}"
    return None


@dataclass(frozen=True)
class BundleRecipe:
    train_clips: int = 100  # synthetic 10 s clips for training (the 65:35 split inside is all used)
    train_seed: int = 1000  # seed of the training clips
    train_long_recordings: int = 12  # long synthetic recordings (mostly normal behaviour) for the localizer only
    train_long_minutes: float = 2.0  # length of each (one seizure episode in each)
    train_long_seed: int = 3000  # their seed (analyze's episode benchmark uses 4242 and up)
    train_long_severe_recordings: int = 0  # more of them, each episode reaching stage 5 or 6-7, for the localizer only
    train_long_severe_seed: int = 3500  # their seed
    localizer_clips: int = 200  # more 10 s clips for the localizer only (not the detector or the I3D)
    localizer_clips_seed: int = 2000  # their seed
    validation_clips: int = 40  # unseen clips that choose the event threshold and check the detector
    validation_seed: int = 9000  # a seed the training never sees
    validation_long_recordings: int = 0  # long unseen recordings that also choose the event threshold (0: clips only)
    validation_long_minutes: float = 10.0  # length of each (a seizure episode every 3 to 6 minutes)
    validation_long_seed: int = 5300  # their seed, another the training never sees
    test_clips: int = 120  # unseen clips for the benchmark: enough segments of each class for its own AP
    test_seed: int = 9100  # another seed the training never sees
    front_end: str = ""  # a model folder whose detector and I3D to use instead of training them ("": train)
    i3d_from: str = ""  # a model folder whose I3D to use instead of training one; the detector is trained ("": train)
    detector_epochs: int = 24  # YOLO epochs over the training frames
    detector_imgsz: int = 320  # YOLO input side, pixels: 320x240 video keeps its own resolution
    detector_frame_step: int = 30  # train the detector on every n-th frame of each clip
    detector_localizer_clips: bool = True  # the detector also trains on the localizer clips: 3x the scenes, same frames
    detector_style: str = "classic"  # synth style of the detector's extra clips: "classic" (none: today's detector) or "varied"
    detector_style_clips: int = 200  # with detector_style "varied": that many clips of it, for the detector only
    detector_style_seed: int = 5000  # their seed
    behaviour_style: str = "classic"  # synth style of more clips for the I3D and the localizer: "classic" (none) or "varied"
    behaviour_style_clips: int = 200  # with behaviour_style "varied": that many rendered; those whose animal shows throughout are used
    behaviour_style_seed: int = 6000  # their seed
    detector_every_k: int = 10  # at analysis, the detector runs on every k-th frame (boxes interpolated between)
    i3d_width: float = 0.125  # channel multiplier of the small I3D (128-d features)
    i3d_input_size: int = 80  # crop side given to the I3D, pixels
    i3d_subtract_temporal_mean: bool = True  # the I3D sees motion only (see I3DConfig)
    i3d_still_share: float = 0.5  # ... but for this share of the still picture: postures that do not move (see I3DConfig)
    crop_margin: float = 0.25  # margin around the rat's box, as a share of its longer side
    classifier_epochs: int = 12  # epochs of 14-class clip classification
    classifier_stride: int = 12  # frames between training windows
    classifier_batch: int = 16
    classifier_lr: float = 2e-3
    classifier_long_recordings: bool = False  # the I3D classifier also learns from the long training recordings, near their seizures
    localizer_epochs: int = 41  # RaSeformer epochs (warm-up included): as many steps as 80 were without localizer_clips
    localizer_dim: int = 128  # RaSeformer embedding, neck and head width (the release: 512)
    localizer_lr: float = 5e-4  # AdamW peak learning rate (the release: 1e-4, for 1024-d I3D features)
    seed: int = 0  # torch seed for every training stage
    localizer_draws: int = 1  # Top-K localizers trained with seeds seed, seed+1, ...; the model's localizer is their average
    ablation: bool = True  # also train keep ratio 1.0 (plain local attention) on the same features

    def __post_init__(self):
        for name in ("detector_style", "behaviour_style"):
            style = getattr(self, name)
            # "unseen" is the drawing kept back to measure the model with: no stage may train on it
            if style == "unseen":
                raise InputError(f"{name} 'unseen' is the synth style kept back for measuring; "
                                 "the recipe never trains on it (use classic or varied)")
            if style not in ("classic", "varied"):
                raise InputError(f"{name} must be classic or varied, not {style!r}")
        if self.front_end and self.i3d_from:
            raise InputError("front_end already brings an I3D: give front_end or i3d_from, not both")
        if self.classifier_long_recordings and (self.front_end or self.i3d_from):
            raise InputError("classifier_long_recordings trains the I3D, but front_end or i3d_from brings one: "
                             "give one or the other")
        if self.classifier_long_recordings and not self.train_long_recordings:
            raise InputError("classifier_long_recordings needs long training recordings (train_long_recordings above 0)")
        for name, spec in self.__dataclass_fields__.items():
            problem = _field_problem(name, getattr(self, name), spec.default)
            if problem:
                raise InputError(problem)

    @classmethod
    def from_yaml(cls, path: Optional[Path]) -> "BundleRecipe":
        if path is None:
            return cls()
        from ..config import read_yaml_mapping

        doc = read_yaml_mapping(path, "recipe")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InputError(f"{path}: unknown recipe key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**doc)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None


# The recipe fields each stage's output depends on, its own and those of the stages it builds on.
_RENDER_FIELDS = {
    "synth_train": ("train_clips", "train_seed"),
    "synth_validation": ("validation_clips", "validation_seed"),
    "synth_test": ("test_clips", "test_seed"),
    "synth_long": ("train_long_recordings", "train_long_minutes", "train_long_seed"),
    "synth_localizer": ("localizer_clips", "localizer_clips_seed"),
}
_DETECTOR_FIELDS = ("detector_epochs", "detector_imgsz", "detector_frame_step", "detector_localizer_clips", "seed")
_CLASSIFIER_FIELDS = ("i3d_width", "i3d_input_size", "i3d_subtract_temporal_mean", "i3d_still_share", "crop_margin", "classifier_epochs",
                      "classifier_stride", "classifier_batch", "classifier_lr", "seed")
_STAGE_FIELDS = {
    **_RENDER_FIELDS,
    "detector": _RENDER_FIELDS["synth_train"] + _RENDER_FIELDS["synth_localizer"] + _DETECTOR_FIELDS,
    "i3d_classifier": _RENDER_FIELDS["synth_train"] + _CLASSIFIER_FIELDS,
}
_STAGE_FIELDS["front_end"] = (_STAGE_FIELDS["detector"] + _STAGE_FIELDS["i3d_classifier"]
                               + ("detector_every_k", "front_end"))
# the detector measured on the validation clips: other clips measure it again, without retraining it
_STAGE_FIELDS["detector_heldout"] = _STAGE_FIELDS["front_end"] + _RENDER_FIELDS["synth_validation"]
_STAGE_FIELDS["features"] = _STAGE_FIELDS["front_end"] + sum(_RENDER_FIELDS.values(), ())
_STAGE_FIELDS["localizer_topk"] = _STAGE_FIELDS["localizer_plain"] = (
    _STAGE_FIELDS["features"] + ("localizer_epochs", "localizer_dim", "localizer_lr"))

# The detector's clips of another style (detector_style): a stage of their own, and fields of
# every stage the detector feeds; none of it while the style is classic, so that a classic
# recipe's stages are found done as they were before the field existed.
_STYLE_FIELDS = ("detector_style", "detector_style_clips", "detector_style_seed")
_STAGE_FIELDS["synth_detector"] = _STYLE_FIELDS
# The behaviour's clips of another style (behaviour_style) likewise: their render, and the stages
# that learn from them (the I3D classifier, when the recipe trains it, and all it feeds; the
# features and the localizers in any case).
_BEHAVIOUR_FIELDS = ("behaviour_style", "behaviour_style_clips", "behaviour_style_seed")
_STAGE_FIELDS["synth_behaviour"] = _BEHAVIOUR_FIELDS

# Long validation recordings (validation_long_recordings): a render of their own, whose features
# choose the threshold with the validation clips'. No localizer or detector reads them, so they
# are inputs of their render and the features only, and only when asked for: a recipe without
# them keeps its markers, and adding them to a finished run costs their render and features.
_VALIDATION_LONG_FIELDS = ("validation_long_recordings", "validation_long_minutes", "validation_long_seed")
_STAGE_FIELDS["synth_validation_long"] = _VALIDATION_LONG_FIELDS

# Long training recordings whose episode always ends high (train_long_severe_recordings): in the
# recordings of the plain mix a fall, a tonic extension or wild running comes once in about ten, and
# the localizer names a recording's tonic extension "staring" (docs/RESULTS.md). A render of their
# own, read by the features and the localizers only, and only when asked for, so that a recipe
# without them keeps its markers.
_SEVERE_FIELDS = ("train_long_severe_recordings", "train_long_severe_seed", "train_long_minutes")
_STAGE_FIELDS["synth_long_severe"] = _SEVERE_FIELDS
SEVERE_MAX_STAGE_WEIGHTS = (0.0, 0.0, 0.0, 0.0, 0.4, 0.6)  # synth's long_max_stage_weights: stage 5, or 6-7

# The long training recordings read by the I3D classifier too (classifier_long_recordings): then
# they are inputs of the classifier and all it feeds, and only then, so that a recipe without it
# keeps its markers.
_CLASSIFIER_LONG_FIELDS = ("classifier_long_recordings",) + _RENDER_FIELDS["synth_long"]

# the stages that read the localizer clips themselves (the others only through the detector)
_READ_LOCALIZER_CLIPS = {"synth_localizer", "features", "localizer_topk", "localizer_plain"}
_READ_FEATURES = {"features", "localizer_topk", "localizer_plain"}


def stage_inputs(recipe: BundleRecipe, stage: str) -> dict:
    """The recipe fields a stage's output was made from, as stored in its marker. A front end taken
    from a model folder is also recorded by its files' digest: the same path with other weights
    in it is another front end."""
    stage = draw_of(stage)[0]  # another draw of a localizer reads what its first draw reads
    fields = set(_STAGE_FIELDS[stage])
    if not recipe.detector_localizer_clips and stage not in _READ_LOCALIZER_CLIPS:
        # the detector then never saw those clips: a change to them redoes only what reads them
        fields -= set(_RENDER_FIELDS["synth_localizer"])
    if recipe.detector_style != "classic" and "detector_epochs" in fields:
        fields |= set(_STYLE_FIELDS)
    if recipe.validation_long_recordings and stage == "features":
        fields |= set(_VALIDATION_LONG_FIELDS)
    if recipe.train_long_severe_recordings and stage in _READ_FEATURES:
        fields |= set(_SEVERE_FIELDS)
    if recipe.behaviour_style != "classic" and (stage in _READ_FEATURES
                                                or (not recipe.front_end and not recipe.i3d_from
                                                    and "classifier_epochs" in fields)):
        fields |= set(_BEHAVIOUR_FIELDS)
    if recipe.classifier_long_recordings and "classifier_epochs" in fields:  # never with a given I3D (BundleRecipe checks)
        fields |= set(_CLASSIFIER_LONG_FIELDS)
    inputs = {name: getattr(recipe, name) for name in sorted(fields)}
    if recipe.front_end and "front_end" in inputs:
        inputs["front_end_sha256"] = front_end_digest(Path(recipe.front_end))
    if recipe.i3d_from and "front_end" in inputs:
        # only when given, so that a recipe that trains its I3D keeps the markers it had before the field
        inputs["i3d_from"] = recipe.i3d_from
        inputs["i3d_sha256"] = front_end_digest(Path(recipe.i3d_from), parts=("i3d",))
    return inputs


def draw_stage(draw: int) -> str:
    """The stage that trains the Top-K localizer's draw-th draw (1: the first, with the recipe's seed)."""
    return "localizer_topk" if draw == 1 else f"localizer_topk_{draw}"


def draw_of(stage: str) -> tuple[str, int]:
    """(the localizer stage a stage is a draw of, which draw): ("localizer_topk", 3) for
    localizer_topk_3; any other stage is its own first draw."""
    base, _, draw = stage.rpartition("_")
    return (base, int(draw)) if base == "localizer_topk" and draw.isdigit() else (stage, 1)


def front_end_digest(model_dir: Path, parts: tuple[str, ...] = ("detector", "i3d")) -> str:
    """A digest of a model folder's front end (or of some of its parts): their manifest sections
    and the files they name. Two folders with the same digest make the same features."""
    import hashlib

    from ..model import model_file, read_manifest

    front = read_manifest(model_dir).get("front_end") or {}  # a recipe's front_end was checked before (train_bundle)
    front = {part: front.get(part) for part in parts}
    digest = hashlib.sha256(json.dumps(front, sort_keys=True).encode())
    for name in _front_end_files(front):
        digest.update(model_file(model_dir, name).read_bytes())
    return digest.hexdigest()


def _stage_done(work: Path, stage: str, inputs: dict) -> Optional[dict]:
    """The stage's marker if it is done from these recipe fields. A marker written before markers
    recorded their fields is taken as it is."""
    marker = work / f"{stage}.done.json"
    if not marker.exists():
        return None
    done = json.loads(marker.read_text())
    return done if done.get("inputs", inputs) == inputs else None


def _mark_done(work: Path, stage: str, info: dict) -> None:
    from ..files import atomic_write_text

    atomic_write_text(work / f"{stage}.done.json", json.dumps(info, indent=2) + "\n")


# ---- the stage graph ------------------------------------------------------------------------------


@dataclass
class BundleRun:
    """What the stages share: where they work, the recipe, the device, the log, and the record of
    each stage before them (`results`, as its marker keeps it, less its inputs)."""
    work: Path
    model_out: Path
    recipe: BundleRecipe
    device: str  # as asked ("auto" too): the front end, the features and the localizers resolve it themselves
    torch_device: str  # resolved: the classifier trains here, in torch
    log: Callable[[str], None] = print
    results: dict = field(default_factory=dict)  # stage name -> its record, in the order the stages came
    pool: Optional[Executor] = None  # the worker processes, once the stages that run in them started
    workers: dict = field(default_factory=dict)  # stage name -> Future of its record
    workers_started: float = 0.0  # time.time() when they started: their stages count from here
    averaged: dict = field(default_factory=dict)  # the record of the Top-K draws' average, once made
    scored: dict = field(default_factory=dict)  # the model's threshold and test figures: measured once
    figures: dict = field(default_factory=dict)  # the finished model's benchmark, as last written

    @property
    def front_dir(self) -> Path:
        return self.work / "front_end"

    @property
    def features_dir(self) -> Path:
        return self.work / "features"

    @cached_property
    def annotations(self) -> Path:
        """One annotation file of every render of this recipe (a folder left by an earlier recipe is
        not used), each under its subset; written on first use, so once per run."""
        subset_of = {"synth_validation": "validation", "synth_validation_long": "validation", "synth_test": "testing"}
        return _combined_annotations([(self.work / name, subset_of.get(name, "training"))
                                      for name, _ in _renders(self.recipe)], self.work / "annotations.json")


@dataclass(frozen=True)
class Stage:
    name: str  # its marker is <name>.done.json in the work folder, and its record results[name]
    run: Optional[Callable[[BundleRun], Optional[dict]]] = None  # does the work; returns what the marker keeps
    # instead of run: starts the work in a worker process of its own and returns a Future of that
    # record; every such stage not done yet starts when the first of them comes, so they run at once
    start: Optional[Callable[[BundleRun], Future]] = None
    then: Optional[Callable[[BundleRun], None]] = None  # runs after the stage, done now or found done before


def bundle_stages(recipe: BundleRecipe) -> list[Stage]:
    """The recipe's stages, in the order they run."""
    stages = [Stage(name, partial(_render, name, how)) for name, how in _renders(recipe)]
    if not recipe.front_end:  # a front end taken from a model folder is used as it is, not trained
        if recipe.detector_style != "classic":
            stages.append(Stage("synth_detector", _render_detector_style))
        stages.append(Stage("detector", _train_detector))
        if not recipe.i3d_from:  # an I3D taken from a model folder is used as it is
            stages.append(Stage("i3d_classifier", _train_classifier))
    stages += [Stage("front_end", _assemble_front_end), Stage("detector_heldout", _measure_detector),
               Stage("features", _extract_features)]
    # The two localizers train at once, one process and one thread each: at batch 2 a second
    # thread makes a step slower, not faster, and two processes take 2 cores for the price of one.
    # The model is finished as soon as the Top-K one is done, so an interrupted ablation never
    # costs the model, and again with the ablation's figures.
    # With several draws the model is finished once the last of them is done: their average.
    for draw in range(1, recipe.localizer_draws + 1):
        stages.append(Stage(draw_stage(draw), start=partial(_start_localizer, 0.5, draw),
                            then=_finish if draw == recipe.localizer_draws else None))
    if recipe.ablation:
        stages.append(Stage("localizer_plain", start=partial(_start_localizer, 1.0, 1), then=_finish))
    return stages


def build_bundle(work_dir: Path, model_out: Path, recipe: BundleRecipe = BundleRecipe(), device: str = "auto",
                 log=print) -> dict:
    """Run (or resume) every stage of the recipe; write the finished model folder to model_out.

    Returns the timings and measured figures, which also go into the manifest.
    """
    from ..runtime import resolve_device

    torch_device = resolve_device(device)  # a GPU asked for but absent stops here, before anything is written
    if recipe.front_end:
        _front_end_of(Path(recipe.front_end))  # so does a front_end folder without a detector and an I3D
    if recipe.i3d_from:
        _front_end_of(Path(recipe.i3d_from), "i3d_from", ("i3d",))  # and an i3d_from folder without an I3D
    run = BundleRun(Path(work_dir), Path(model_out), recipe, device, torch_device, log)
    run.work.mkdir(parents=True, exist_ok=True)
    stages = bundle_stages(recipe)
    try:
        for stage in stages:
            if stage.start and run.pool is None:
                _start_in_workers(run, [s for s in stages if s.start])
            _run_stage(run, stage)
            if stage.then:
                stage.then(run)
    except BaseException:
        if run.pool is not None:  # not waiting for the other stages' workers: what they did is resumed
            from ..runtime import stop_workers

            stop_workers(run.pool)
        raise
    if run.pool is not None:
        run.pool.shutdown()
    return run.figures


def _run_stage(run: BundleRun, stage: Stage) -> None:
    """Skip the stage if its marker says it is done from this recipe's inputs; else run it (or wait
    for its worker), time it and leave its marker."""
    inputs = stage_inputs(run.recipe, stage.name)
    done = _stage_done(run.work, stage.name, inputs)
    if done is not None:
        run.log(f"[{stage.name}] done before ({done.get('seconds')} s), skipped")
        run.results[stage.name] = {k: v for k, v in done.items() if k != "inputs"}  # the same shape as a stage just run
        return
    redo = (run.work / f"{stage.name}.done.json").exists()
    run.log(f"[{stage.name}] ..." + (" (the recipe changed since it ran)" if redo else ""))
    t0 = run.workers_started if stage.start else time.time()  # a worker's stage counts from its process's start
    info = (run.workers[stage.name].result() if stage.start else stage.run(run)) or {}
    info["seconds"] = round(time.time() - t0, 1)
    _mark_done(run.work, stage.name, {**info, "inputs": inputs})
    run.results[stage.name] = info
    run.log(f"[{stage.name}] done in {info['seconds']} s")


def _start_in_workers(run: BundleRun, stages: list[Stage]) -> None:
    """Start each of these stages that is not done yet, each in a worker process of its own."""
    from ..runtime import worker_processes

    pending = [s for s in stages if _stage_done(run.work, s.name, stage_inputs(run.recipe, s.name)) is None]
    run.pool = worker_processes(len(pending))
    run.workers_started = time.time()
    run.workers = {s.name: s.start(run) for s in pending}
    if len(run.workers) > 1:
        run.log(f"[{', '.join(run.workers)}] training at once, one process each")


# ---- the stages -----------------------------------------------------------------------------------


def _renders(recipe: BundleRecipe) -> list[tuple[str, dict]]:
    """The synthetic renders of the recipe: (stage name, which is also its folder; synthesize's arguments)."""
    renders = [("synth_train", dict(clips=recipe.train_clips, seed=recipe.train_seed)),
               ("synth_validation", dict(clips=recipe.validation_clips, seed=recipe.validation_seed)),
               ("synth_test", dict(clips=recipe.test_clips, seed=recipe.test_seed))]
    if recipe.train_long_recordings:
        # The clips hold an action almost all the time; without hours of ordinary behaviour the
        # localizer learns that something always happens, and a real recording is scored as one
        # long seizure. These recordings train the localizer (and, with classifier_long_recordings,
        # the I3D classifier near their seizures), never the detector.
        renders.append(("synth_long", dict(clips=0, seed=recipe.train_long_seed, long_minutes=recipe.train_long_minutes,
                                           long_count=recipe.train_long_recordings)))
    if recipe.train_long_severe_recordings:
        renders.append(("synth_long_severe", dict(clips=0, seed=recipe.train_long_severe_seed,
                                                  long_minutes=recipe.train_long_minutes,
                                                  long_count=recipe.train_long_severe_recordings,
                                                  long_max_stage_weights=SEVERE_MAX_STAGE_WEIGHTS)))
    if recipe.validation_long_recordings:
        # The validation clips hold an action almost all the time: a threshold chosen on them alone
        # never pays for the false alarms of hours of ordinary behaviour (docs/RESULTS.md).
        renders.append(("synth_validation_long", dict(clips=0, seed=recipe.validation_long_seed,
                                                      long_minutes=recipe.validation_long_minutes,
                                                      long_count=recipe.validation_long_recordings)))
    if recipe.localizer_clips:
        # More segments of every action for the localizer, whose features are cheap next to the
        # detector's and the classifier's training on more frames.
        renders.append(("synth_localizer", dict(clips=recipe.localizer_clips, seed=recipe.localizer_clips_seed)))
    if recipe.behaviour_style != "classic" and recipe.behaviour_style_clips:
        # The same behaviours drawn otherwise, so that the I3D and the localizer learn the movement
        # apart from one drawing (docs/RESULTS.md: the unseen style's gap is half theirs).
        renders.append(("synth_behaviour", dict(clips=recipe.behaviour_style_clips, seed=recipe.behaviour_style_seed,
                                                style=recipe.behaviour_style)))
    return renders


_RENDER_CONFIG_KEYS = ("style", "long_max_stage_weights")  # a render's settings that are SynthConfig's, not synthesize's


def _render(name: str, how: dict, run: BundleRun) -> dict:
    from ..runtime import cpu_cores
    from ..synth import SynthConfig, synthesize

    folder = run.work / name
    if folder.exists():
        shutil.rmtree(folder)  # a half-rendered folder from an interrupted run
    drawing = {k: how[k] for k in _RENDER_CONFIG_KEYS if k in how}
    config = {"config": SynthConfig(**drawing)} if drawing else {}
    synthesize(folder, **{k: v for k, v in how.items() if k not in _RENDER_CONFIG_KEYS}, **config,
               jobs=cpu_cores())  # the same files whatever the number of jobs
    return dict(how)


def behaviour_videos(folder: Path) -> set[str]:
    """The ids of a render's videos that can teach behaviour: all of a classic render; of another
    style, those whose animal shows in every frame (a styled render also has empty arenas and
    animals put in or taken out, whose annotations still give the planned behaviour where no
    animal shows: see docs/TRAINING.md)."""
    manifest = json.loads((folder / "synth_manifest.json").read_text())
    return {vid for vid, entry in manifest["videos"].items()
            if (entry.get("style") or {}).get("animal", "none") == "none"}


def _render_detector_style(run: BundleRun) -> dict:
    """The detector's clips of its own style (never a features or localizer input, never "unseen")."""
    from ..runtime import cpu_cores
    from ..synth import SynthConfig, synthesize

    recipe, folder = run.recipe, run.work / "synth_detector"
    if folder.exists():
        shutil.rmtree(folder)
    synthesize(folder, clips=recipe.detector_style_clips, seed=recipe.detector_style_seed,
               config=SynthConfig(style=recipe.detector_style), jobs=cpu_cores())
    return {"style": recipe.detector_style, "clips": recipe.detector_style_clips, "seed": recipe.detector_style_seed}


def _train_detector(run: BundleRun) -> dict:
    from .detector import train_detector

    recipe = run.recipe
    # More scenes rather than more frames of each: with the localizer clips pooled in, the
    # detector misses the rat in fewer held-out frames (docs/RESULTS.md)
    pooled = [run.work / "synth_train"] + ([run.work / "synth_localizer"]
                                           if recipe.detector_localizer_clips and recipe.localizer_clips else [])
    if recipe.detector_style != "classic":
        pooled.append(run.work / "synth_detector")
    trained = train_detector(pooled, run.work / "detector", epochs=recipe.detector_epochs,
                             imgsz=recipe.detector_imgsz, seed=recipe.seed, frame_step=recipe.detector_frame_step)
    return {"onnx": str(trained.onnx), "train_frames": trained.n_train_frames}


def _train_classifier(run: BundleRun) -> dict:
    from ..annotations import read_annotations
    from .i3d_classifier import ClassifierOptions, rat_boxes, train_i3d_classifier

    recipe = run.recipe
    videos = []
    for folder in [run.work / "synth_train"] + ([run.work / "synth_behaviour"]
                                                if recipe.behaviour_style != "classic" else []):
        shown = behaviour_videos(folder)
        videos += [(folder / f"{vid}.mp4", v.segments, rat_boxes(folder, vid))
                   for vid, v in read_annotations(folder / "annotations.json").items() if vid in shown]
    if recipe.classifier_long_recordings:  # with train_long_recordings above 0 (BundleRecipe checks)
        # In a 10 s clip an action fills most of the clip; in a recording it is a few seconds between
        # others (a fall of 2 to 6 s after rearing), and the I3D taught on clips alone takes such a
        # fall for ordinary behaviour (docs/RESULTS.md). So it also sees the recordings' seizures
        # in context; the minutes of ordinary behaviour far from them would only add time.
        folder = run.work / "synth_long"
        videos += [(folder / f"{vid}.mp4", near_seizure(v.segments, CLASSIFIER_CONTEXT_S), rat_boxes(folder, vid))
                   for vid, v in read_annotations(folder / "annotations.json").items()]
    options = ClassifierOptions(width=recipe.i3d_width, input_size=recipe.i3d_input_size,
                                subtract_temporal_mean=recipe.i3d_subtract_temporal_mean,
                                still_share=recipe.i3d_still_share, crop_margin=recipe.crop_margin,
                                epochs=recipe.classifier_epochs, stride=recipe.classifier_stride,
                                batch=recipe.classifier_batch, lr=recipe.classifier_lr, seed=recipe.seed)
    metrics = train_i3d_classifier(videos, run.work, options, stage_inputs(recipe, "i3d_classifier"), run.torch_device,
                                   run.log)
    return {**metrics, "videos": len(videos)}


CLASSIFIER_CONTEXT_S = 5.0  # seconds of the ordinary behaviour either side of a recording's seizure the classifier sees


def near_seizure(segments: list, context_s: float) -> list:
    """A recording's segments cut to its seizure (its action units other than "others") and
    `context_s` either side: the classifier's windows outside them have no label and are skipped.
    A recording without a seizure keeps nothing."""
    from dataclasses import replace

    seizure = [seg for seg in segments if seg.au_id != 0]
    if not seizure:
        return []
    first, last = min(seg.start_s for seg in seizure) - context_s, max(seg.end_s for seg in seizure) + context_s
    return [replace(seg, start_s=max(seg.start_s, first), end_s=min(seg.end_s, last))
            for seg in segments if seg.end_s > first and seg.start_s < last]


def _assemble_front_end(run: BundleRun) -> dict:
    """The detector and the I3D in a model folder of their own (work/front_end): trained, or copied."""
    import torch

    from .detector import add_detector_to_model_dir
    from .export import add_i3d_to_model_dir

    recipe, front_dir = run.recipe, run.front_dir
    if front_dir.exists():
        shutil.rmtree(front_dir)
    if recipe.front_end:
        _copy_front_end(Path(recipe.front_end), front_dir)
        return {"from": str(Path(recipe.front_end))}
    if recipe.i3d_from:
        _copy_front_end(Path(recipe.i3d_from), front_dir, "i3d_from", ("i3d",))
    else:
        ckpt = torch.load(run.work / "i3d_classifier.pt", map_location="cpu", weights_only=True)
        add_i3d_to_model_dir(front_dir, ckpt, input_size=recipe.i3d_input_size)  # its config comes along
    add_detector_to_model_dir(front_dir, Path(run.results["detector"]["onnx"]), recipe.detector_imgsz,
                              every_k=recipe.detector_every_k, margin=recipe.crop_margin)
    return {}


def _measure_detector(run: BundleRun) -> dict:
    from ..model import read_manifest
    from .detector import evaluate_detector

    spec = read_manifest(run.front_dir)["front_end"]["detector"]
    quality = evaluate_detector(run.front_dir / spec["onnx"], run.work / "synth_validation", spec["imgsz"],
                                frame_step=5, max_videos=20)
    return {"heldout": {k: v for k, v in quality.items() if isinstance(v, (int, float))}}


def _extract_features(run: BundleRun) -> dict:
    from ..features import extract_features, load_front_end
    from ..files import atomic_write, atomic_write_text

    # Resumable: each video's features are written whole or not at all, and kept only while
    # the front end and the video's render are those of this recipe (stamps.json).
    features_dir = run.features_dir
    stamps_path = features_dir / "stamps.json"
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    front = load_front_end(run.front_dir, device=run.device)
    done = 0
    for render, _ in _renders(run.recipe):  # those of this recipe: a folder left by an earlier recipe is not used
        stamp = {**stage_inputs(run.recipe, "front_end"), **stage_inputs(run.recipe, render)}
        shown = behaviour_videos(run.work / render)
        for video in [v for v in sorted((run.work / render).glob("*.mp4")) if v.stem in shown]:
            target = features_dir / f"{video.stem}.npy"
            if not (target.exists() and stamps.get(video.stem) == stamp):
                result = extract_features(video, front, run.device, progress=False)
                atomic_write(target, lambda f: np.save(f, result.features))
                stamps[video.stem] = stamp
                atomic_write_text(stamps_path, json.dumps(stamps, indent=1) + "\n")
            done += 1
    return {"videos": done}


def _start_localizer(keep_ratio: float, draw: int, run: BundleRun) -> Future:
    """The RaSeformer of this keep ratio, its draw-th draw (seed: the recipe's + draw - 1), training
    in a worker process (train_recipe_localizer)."""
    from dataclasses import replace

    folder = run.work / (f"localizer_k{keep_ratio}" + (f"_draw{draw}" if draw > 1 else ""))
    return run.pool.submit(train_recipe_localizer, run.annotations, run.features_dir, folder,
                           replace(run.recipe, seed=run.recipe.seed + draw - 1), keep_ratio, run.device)


def _finish(run: BundleRun) -> None:
    """The finished model: the Top-K localizer with the front end beside it, and the figures of
    every stage so far (the ablation's too, once it is done)."""
    from ..model import read_manifest, update_model

    recipe, timings, model_out = run.recipe, run.results, run.model_out
    if recipe.localizer_draws > 1 and not run.averaged:  # the same draws each time: average them once
        run.averaged.update(_averaged_draws(run))
    topk = run.averaged or timings["localizer_topk"]
    if model_out.exists():
        shutil.rmtree(model_out)
    shutil.copytree(topk["model_dir"], model_out)
    front = read_manifest(run.front_dir)["front_end"]
    for name in _front_end_files(front):  # i3d.pt: the I3D in torch on a GPU
        shutil.copy2(run.front_dir / name, model_out / name)
    # A reused front end brings its classifier's figures along.
    reused_from = recipe.front_end or recipe.i3d_from
    reused_classifier = ((read_manifest(Path(reused_from)).get("benchmark") or {}).get("i3d_classifier")
                         if reused_from else None)
    manifest = {"front_end": front, "trained_on": _trained_on(recipe), "recipe": asdict(recipe),
                "scores_learned_from": "synthetic"}
    manifest["benchmark"] = {"machine": _machine(),
                             "timings_s": {k: v.get("seconds") for k, v in timings.items()},
                             "detector_heldout": timings["detector_heldout"].get("heldout"),
                             "i3d_classifier": timings.get("i3d_classifier", reused_classifier),
                             "localizer_topk_0.5": topk.get("benchmark")}
    if "localizer_plain" in timings:
        manifest["benchmark"]["localizer_plain_1.0"] = timings["localizer_plain"].get("benchmark")
    if not run.scored:  # the same Top-K localizer each time: measure it once
        run.scored.update(_threshold_and_test_figures(model_out, run.annotations, run.features_dir, run.device))
    manifest["threshold"] = run.scored["threshold"]
    manifest["benchmark"].update(run.scored["figures"])
    update_model(model_out, manifest)
    run.figures = manifest["benchmark"]


def _averaged_draws(run: BundleRun) -> dict:
    """The Top-K localizer's draws averaged into one model folder (work/localizer_k0.5_average),
    and its record as one draw's: the average's mAP on the test clips, each draw's beside it."""
    from ..benchmark import benchmark_model
    from .export import write_averaged_model_dir

    draws = [run.results[draw_stage(d)] for d in range(1, run.recipe.localizer_draws + 1)]
    folder = write_averaged_model_dir([Path(d["model_dir"]) for d in draws], run.work / "localizer_k0.5_average",
                                      trained_on=f"the average of {len(draws)} draws")
    report = benchmark_model(folder, run.annotations, run.features_dir, subset="testing", device=run.device,
                             progress=False)
    benchmarks = [d.get("benchmark") or {} for d in draws]
    figures = {"train_seconds": round(sum(b.get("train_seconds") or 0 for b in benchmarks), 1),
               "seconds_per_epoch": benchmarks[0].get("seconds_per_epoch"), "device": benchmarks[0].get("device"),
               "testing": report["mAP"] | {"average": report["average_mAP"]},
               "draws": [{"seed": run.recipe.seed + i, "testing": b.get("testing")} for i, b in enumerate(benchmarks)]}
    return {"model_dir": str(folder), "benchmark": figures}


def train_recipe_localizer(annotations: Path, features_dir: Path, out_dir: Path, recipe: BundleRecipe,
                           keep_ratio: float, device: str) -> dict:
    """One RaSeformer of the recipe (in a process of its own): returns its model folder and benchmark."""
    from dataclasses import replace

    import torch

    from ..model import read_manifest
    from ..runtime import resolve_device
    from .localizer import read_config, train_localizer

    if resolve_device(device) == "cpu":
        torch.set_num_threads(1)  # see bundle_stages: faster at this batch size, and the other core is the other's
    setup = read_config(None)
    dim = int(np.load(next(Path(features_dir).glob("*.npy"))).shape[1])
    d = recipe.localizer_dim
    setup = replace(setup, localizer=replace(setup.localizer, input_dim=dim, embd_dim=d, fpn_dim=d, head_dim=d,
                                             attn_keep_ratio=keep_ratio),
                    train=replace(setup.train, learning_rate=recipe.localizer_lr, seed=recipe.seed,
                                  cover_long_videos=True))
    out = train_localizer(annotations, features_dir, out_dir, config=setup, epochs=recipe.localizer_epochs,
                          device=device, progress=False, name="ratscore-synthetic")
    return {"model_dir": str(out), "benchmark": read_manifest(out).get("benchmark", {})}


def _trained_on(recipe: BundleRecipe) -> str:
    localizer_only = ""
    if recipe.train_long_recordings:
        readers = ("the I3D classifier (near their seizures) and the localizer" if recipe.classifier_long_recordings
                   else "the localizer")
        localizer_only += (f", plus {recipe.train_long_recordings} recordings of {recipe.train_long_minutes:g} min "
                           f"(seed {recipe.train_long_seed}) for {readers}")
    if recipe.train_long_severe_recordings:
        localizer_only += (f", plus {recipe.train_long_severe_recordings} recordings of {recipe.train_long_minutes:g} min "
                           f"whose episode reaches stage 5 or more (seed {recipe.train_long_severe_seed}) for the localizer")
    if recipe.localizer_clips:
        also_detector = recipe.detector_localizer_clips and not recipe.front_end
        localizer_only += (f", plus {recipe.localizer_clips} clips of 10 s (seed {recipe.localizer_clips_seed}) "
                           f"for the localizer{' and the detector' if also_detector else ''}")
    if recipe.detector_style != "classic" and not recipe.front_end:
        localizer_only += (f", plus {recipe.detector_style_clips} clips of 10 s in the synth style "
                           f"{recipe.detector_style} (seed {recipe.detector_style_seed}) for the detector")
    if recipe.behaviour_style != "classic":
        learners = "the localizer" if recipe.front_end or recipe.i3d_from else "the I3D classifier and the localizer"
        localizer_only += (f", plus those of {recipe.behaviour_style_clips} clips of 10 s in the synth style "
                           f"{recipe.behaviour_style} (seed {recipe.behaviour_style_seed}) whose animal shows "
                           f"throughout, for {learners}")
    validation_long = (f" and {recipe.validation_long_recordings} recordings of {recipe.validation_long_minutes:g} min "
                       f"(seed {recipe.validation_long_seed})" if recipe.validation_long_recordings else "")
    if recipe.front_end:
        trained = f"the localizer{localizer_only}, with the front end (detector and I3D) of {recipe.front_end}"
    elif recipe.i3d_from:
        trained = f"the detector and the localizer{localizer_only}, with the I3D of {recipe.i3d_from}"
    else:
        trained = f"the detector, the I3D classifier and the localizer{localizer_only}"
    return (f"synthetic videos only (ratscore synth): {recipe.train_clips} clips of 10 s, seed {recipe.train_seed}, "
            f"for {trained}; event threshold chosen on {recipe.validation_clips} clips of the unseen seed "
            f"{recipe.validation_seed}{validation_long}; benchmarked on {recipe.test_clips} clips of the unseen seed {recipe.test_seed}. "
            "Never trained on a real rat.")


def _threshold_and_test_figures(model_dir: Path, annotations: Path, features_dir: Path, device: str) -> dict:
    """The event threshold, chosen on the validation videos (the clips, and the long recordings when
    the recipe has them), and the model's figures on the test clips."""
    from ..annotations import read_annotations, split
    from ..benchmark import benchmark_model, ground_truth_of, predict
    from ..metrics import best_event_threshold, event_f1

    videos = read_annotations(annotations)
    events = {}
    for subset in ("validation", "testing"):
        chosen = split(videos, subset)
        dets = [d for d in predict(model_dir, chosen, features_dir, device, progress=False) if d.au_id != 0]
        events[subset] = ([g for g in ground_truth_of(chosen) if g.au_id != 0], dets)  # seizure action units only
    threshold, f1_validation = best_event_threshold(*events["validation"])
    report = benchmark_model(model_dir, annotations, features_dir, speed=True, device=device, progress=False)
    return {"threshold": threshold,
            "figures": {"event_f1_at_threshold": {"validation": round(f1_validation, 4),
                                                  "testing": round(event_f1(*events["testing"], threshold), 4)},
                        "ap_per_class_at_0.5": {c: ap["0.5"] for c, ap in report["ap_per_class"].items()},
                        "neighbour_confusion": report["neighbour_confusion"], "localizer_speed": report["speed"]}}


def _combined_annotations(folders: list[tuple[Path, str]], out: Path) -> Path:
    """One annotation file: every video of each (folder, subset) under that subset ('training',
    'validation', 'testing'), whatever subset synth gave it inside its folder."""
    from ..annotations import VideoAnnotation, read_annotations, write_annotations

    videos = []
    for folder, subset in folders:
        shown = behaviour_videos(folder)
        for v in read_annotations(folder / "annotations.json").values():
            if v.video_id in shown:
                videos.append(VideoAnnotation(v.video_id, subset, v.duration, v.segments, v.fps))
    return write_annotations(out, videos)


def _front_end_files(front: dict) -> list[str]:
    """The files a manifest's front_end section names (ONNX models, and the I3D's torch weights)."""
    return [name for part in (front.get("detector") or {}, front.get("i3d") or {})
            for name in (part.get("onnx"), part.get("weights")) if name]


_PART_WORDS = {"detector": "a detector", "i3d": "an I3D"}


def _front_end_of(model_dir: Path, field: str = "front_end", parts: tuple[str, ...] = ("detector", "i3d")) -> dict:
    """The manifest of the model folder a recipe's `field` names; its front end must have these parts."""
    from ..model import read_manifest

    manifest = read_manifest(model_dir)
    front = manifest.get("front_end") or {}
    if not all(front.get(part) for part in parts):
        raise InputError(f"{model_dir}: the recipe's {field} must be a model folder with "
                         + " and ".join(_PART_WORDS[part] for part in parts))
    return manifest


def _copy_front_end(source: Path, front_dir: Path, field: str = "front_end",
                    parts: tuple[str, ...] = ("detector", "i3d")) -> None:
    """These parts of a model folder's front end (the whole front end by default; the I3D alone for
    `i3d_from`, beside a trained detector) with its clip layout, into the front-end folder."""
    from ..model import model_file, update_model

    manifest = _front_end_of(source, field, parts)
    front = {part: manifest["front_end"][part] for part in parts}
    files = {name: model_file(source, name) for name in _front_end_files(front)}
    update_model(front_dir, {"name": "front_end", **{k: manifest[k] for k in ("fps", "clip_frames", "clip_stride",
                                                                              "feature_dim")}},
                 files, front_end=front)


def _machine() -> str:
    import os
    import platform

    from importlib.metadata import PackageNotFoundError, version

    def installed(package):
        try:
            return version(package)
        except PackageNotFoundError:
            return "absent"

    # a rebuild is a model of the same kind, not the same weights, when these differ (ultralytics above all)
    versions = ", ".join(f"{p} {installed(p)}" for p in ("torch", "ultralytics", "onnxruntime-gpu"))
    return (f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}, "
            f"python {platform.python_version()}, {versions}")
