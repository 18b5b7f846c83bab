"""`ratscore train localizer`: the localizer trained on a lab's own scoring, in one command.

From the scoring (RatSeizure/ActionFormer JSON, or a BORIS project or export) and either the
videos or features extracted before:

1. Every input is checked before anything heavy runs: the annotations, the options, one video
   file for each annotated video, the front end, the output folder.
2. With videos, the features of every annotated video are extracted with the front end named (the
   bundled model's, another model folder's, or pytorch-i3d weights) into a cache keyed by the
   video's fingerprint and the front end (features.cached_features): a second run reuses them.
3. The localizer is sized from the feature dimension: for features of the bundled localizer's
   dimension, its network and recipe, starting from its weights; for any other dimension the
   RatSeizure release's, from a random start. A --config YAML overrides either.
4. It trains on the `training` videos less a validation share (drawn per video), chooses the event
   threshold on that share (seizure action units only, as the bundle recipe does), and measures
   the model on the `testing` videos when there are any.
5. It writes a model folder: the localizer and, with videos, the front end that made its features
   (detector and I3D), so that `analyze --model` takes it as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError
from .localizer import Setup, TrainConfig, fit, read_config, with_total_epochs

FEATURE_CACHE = ".features"  # the feature cache inside the model folder, unless --cache names another


@dataclass
class SizedLocalizer:
    setup: Setup  # the network, training, post-processing and grid to train with
    init_state: Optional[dict]  # the bundled localizer's weights when they fit the network; None: a random start
    source: str  # in words: where the configuration came from


@dataclass
class OwnTraining:
    model_dir: Path
    feature_dim: int
    threshold: Optional[float]  # chosen on the validation videos; None: none held out (the default stays)
    from_bundled_weights: bool  # training started from the bundled localizer's weights
    figures: dict  # the manifest's benchmark
    front_end: Optional[str] = None  # where the folder's front end came from; None: a localizer-only model
    extracted: list[str] = field(default_factory=list)  # videos whose features were extracted in this run
    reused: list[str] = field(default_factory=list)  # videos whose features came from the cache


def _bundled_localizer() -> Optional[tuple[Setup, dict]]:
    """(setup, weights) of the bundled localizer: its network as its manifest states it, its
    training recipe from its checkpoint; None where there is no bundled localizer."""
    from ..checkpoint import read_localizer_checkpoint
    from ..model import BUNDLED_MODEL_DIR, MANIFEST_NAME, load_model

    if not (BUNDLED_MODEL_DIR / MANIFEST_NAME).is_file():
        return None
    model = load_model(BUNDLED_MODEL_DIR)
    spec = model.localizer
    if spec is None or not spec.checkpoint:
        return None
    network, saved = read_localizer_checkpoint(model.file(spec.checkpoint))
    # an average of several draws (the recipe's localizer_draws): a lab's training starts from the
    # first of them, one network, which its own data then moves as far as the others would
    network = getattr(network, "members", [network])[0]
    try:
        train = TrainConfig(**saved["train"])
    except (KeyError, TypeError):
        train = TrainConfig()
    return Setup(spec.config, train, spec.postprocess, model.grid), network.state_dict()


def _stated_input_dim(config) -> Optional[int]:
    from ..config import read_yaml_mapping

    dataset = read_yaml_mapping(Path(config), "config file").get("dataset")
    return dataset.get("input_dim") if isinstance(dataset, dict) else None


def localizer_setup(feature_dim: int, config=None, grid=None) -> SizedLocalizer:
    """The localizer for features of `feature_dim`: a --config YAML's (its input_dim, when it states
    one, must be the features'), else the bundled localizer's network and recipe when its input is
    that dimension, else the RatSeizure release's with that input. Training starts from the bundled
    weights whenever the network is the bundled one's. `grid` (the front end's) replaces the setup's."""
    bundled = _bundled_localizer()
    if config is not None:
        setup = read_config(config)
        stated = _stated_input_dim(config)
        if stated is not None and stated != feature_dim:
            raise InputError(f"{config}: dataset.input_dim is {stated}, but the features have dimension {feature_dim}")
        setup = replace(setup, localizer=replace(setup.localizer, input_dim=feature_dim))
        source = f"the network and recipe of {Path(config).name}"
    elif bundled is not None and bundled[0].localizer.input_dim == feature_dim:
        setup, source = bundled[0], "the bundled localizer's network and recipe"
    else:
        base = read_config(None)
        setup = replace(base, localizer=replace(base.localizer, input_dim=feature_dim))
        source = "the RatSeizure release's network and recipe"
    if grid is not None:
        setup = replace(setup, grid=grid)
    fits = bundled is not None and setup.localizer == bundled[0].localizer
    return SizedLocalizer(setup, bundled[1] if fits else None, source)


def validation_split(training: dict, share: float, seed: int) -> tuple[dict, dict]:
    """(videos to train on, videos that choose the threshold): a share of the training videos drawn
    per video with `seed`; every video is in one or the other."""
    if share == 0:
        return training, {}
    ids = sorted(training)
    n = max(1, round(share * len(ids)))
    if n >= len(ids):
        raise InputError(f"{len(ids)} training video(s) are too few to keep a validation share of {share:g} apart; "
                         "score more videos, or give --validation-share 0 (the model then keeps the default threshold)")
    chosen = set(random.Random(seed).sample(ids, n))
    return ({k: v for k, v in training.items() if k not in chosen},
            {k: v for k, v in training.items() if k in chosen})


def _check_share(share) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise InputError(f"--validation-share must be a number from 0 up to (not including) 1, got {share!r}")
    return float(share)


def _front_end_words(source, i3d_weights, no_roi: bool) -> str:
    """The front end in words: where its I3D and its detector come from."""
    i3d = f"the I3D of {Path(i3d_weights).name}" if i3d_weights is not None else f"the I3D of {source.path}"
    if no_roi or source is None or source.detector is None:
        return f"{i3d} on whole frames (no detector: analyze with --no-roi)"
    if i3d_weights is None:
        return f"the detector and I3D of {source.path}"
    return f"{i3d} with the detector of {source.path}"


def _add_front_end(model_dir: Path, source, i3d_weights, no_roi: bool) -> None:
    """The front end that made the features into the model folder: the source model's detector
    (unless whole frames were used) and its I3D, or the I3D of `i3d_weights`."""
    from ..model import update_model

    front = (source.manifest.get("front_end") or {}) if source is not None else {}
    parts: dict = {"detector": None}
    files = {}
    if not no_roi and source is not None and source.detector is not None:
        parts["detector"] = dict(front["detector"])
        for name in (source.detector.onnx, source.detector.weights):  # the weights: for `train detector` later
            if name:
                files[name] = source.file(name)
    if i3d_weights is None:
        parts["i3d"] = dict(front["i3d"])
        for name in (source.i3d.onnx, source.i3d.weights):
            if name:
                files[name] = source.file(name)
    update_model(model_dir, {}, files, front_end=parts)
    if i3d_weights is not None:
        from .export import add_i3d_to_model_dir

        add_i3d_to_model_dir(model_dir, i3d_weights)


def _threshold_and_test(model_dir: Path, validation: dict, testing: dict, features_dir: Path, device: str,
                        say: Callable[[str], None]) -> tuple[Optional[float], dict]:
    """The event threshold chosen on the validation videos (seizure action units only), and the
    model's figures on the testing videos (mAP over every action unit, as `benchmark`; event F1 at
    the threshold over the seizure ones)."""
    from ..benchmark import ground_truth_of, predict
    from ..metrics import TIOU_THRESHOLDS, best_event_threshold, evaluate, event_f1
    from ..model import load_model

    def seizure_only(videos, dets):
        return [g for g in ground_truth_of(videos) if g.au_id != 0], [d for d in dets if d.au_id != 0]

    figures: dict = {}
    f1: dict = {}
    threshold = None
    if validation:
        truth, dets = seizure_only(validation, predict(model_dir, validation, features_dir, device, progress=False))
        if truth:
            threshold, f1_validation = best_event_threshold(truth, dets)
            f1["validation"] = round(f1_validation, 4)
            say(f"[threshold] {threshold:g}, chosen on {len(validation)} validation video(s) "
                f"(event F1 {f1_validation:.2f})")
        else:
            say(f"[threshold] the {len(validation)} validation video(s) hold no seizure segment: "
                f"the default threshold stays")
    if testing:
        dets = predict(model_dir, testing, features_dir, device, progress=False)
        result = evaluate(ground_truth_of(testing), dets, TIOU_THRESHOLDS)
        result.num_videos = len(testing)
        report = result.to_dict()
        figures["testing"] = report["mAP"] | {"average": report["average_mAP"]}
        figures["ap_per_class_at_0.5"] = {c: ap["0.5"] for c, ap in report["ap_per_class"].items()}
        used = threshold if threshold is not None else load_model(model_dir).threshold
        f1["testing"] = round(event_f1(*seizure_only(testing, dets), used), 4)
        say(f"[test] {len(testing)} testing video(s): mAP {report['average_mAP']:.2f} (average over tIoU 0.3..0.7), "
            f"event F1 {f1['testing']:.2f} at threshold {used:g}")
    if f1:
        figures["event_f1_at_threshold"] = f1
    return threshold, figures


def train_on_own_scoring(annotations, output, *, videos=None, features=None, code_map=None,
                         point_length_s: Optional[float] = None, model=None, i3d_weights=None, no_roi: bool = False,
                         mask=None, cache=None, config=None, epochs: Optional[int] = None,
                         validation_share: float = 0.2, seed: int = 0, device: str = "auto",
                         log: Optional[Callable[[str], None]] = None, progress: bool = False) -> OwnTraining:
    """Train the localizer on scored videos (`videos`, a folder) or their features (`features`, a
    folder of <video_id>.npy) and write the model folder `output` (see the module doc).

    `code_map` (a MAP.yaml path or a dict) and `point_length_s` read a BORIS file. `model`,
    `i3d_weights`, `no_roi`, `mask` and `cache` say how videos are read (load_front_end's
    arguments; the cache defaults to `output`/.features). A `validation` subset of the annotations
    chooses the threshold when there is one; otherwise `validation_share` of the training videos,
    drawn with `seed` (0: no threshold is chosen). `log` gets one line per stage and per video."""
    from ..annotations import split
    from ..benchmark import read_ground_truth
    from ..features import check_features, load_features
    from ..model import check_model_output
    from ..runtime import resolve_device

    say = log or (lambda line: None)
    output = Path(output)
    # ---- every check a user can fail, before anything heavy runs
    if (videos is None) == (features is None):
        raise InputError("give --videos DIR (the scored videos) or --features DIR (their features), one of the two")
    if features is not None:
        video_only = [name for name, value in (("--model", model), ("--i3d-weights", i3d_weights), ("--mask", mask),
                                               ("--cache", cache), ("--no-roi", no_roi or None)) if value is not None]
        if video_only:
            raise InputError(f"{', '.join(video_only)} say how videos are read; they need --videos DIR, not --features")
    share = _check_share(validation_share)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"--seed must be an integer, got {seed!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if config is not None:
        read_config(config)
    check_model_output(output)
    if code_map is not None and not isinstance(code_map, dict):
        from ..boris import read_code_map

        code_map = read_code_map(code_map)
    scored = read_ground_truth(annotations, code_map, point_length_s, videos, "training", log=say)
    training = split(scored, "training")
    first_training = next(iter(training))
    held_out = {k: v for k, v in scored.items() if v.subset == "validation"}
    if share == 0:
        validation = {}
    elif held_out:
        validation = held_out
    else:
        training, validation = validation_split(training, share, seed)
    testing = {k: v for k, v in scored.items() if v.subset == "testing"}
    used = {**training, **validation}
    resolved = resolve_device(device or "auto")

    if videos is not None:
        from ..features import cached_features, find_annotated_videos, front_end_key, front_end_model, load_front_end
        from ..pipeline import video_fingerprint

        files = find_annotated_videos(videos, [v for v in scored if v in used or v in testing])
        front = load_front_end(model, i3d_weights, resolved, no_roi)
        key = front_end_key(model, i3d_weights, no_roi, mask)
        source = front_end_model(model)  # the model load_front_end takes the detector (and I3D) from
        dim = front.feature_dim
        sized = localizer_setup(dim, config, front.grid)
        cache_dir = Path(cache) if cache is not None else output / FEATURE_CACHE
        say(f"[annotations] {Path(annotations).name}: {len(training)} training, {len(validation)} validation, "
            f"{len(testing)} testing video(s)")
        front_words = _front_end_words(source, i3d_weights, no_roi)
        say(f"[front end] {front_words}: {dim}-d features")
        say(f"[features] {len(files)} video(s) from {videos}, cached in {cache_dir / key}")
        cached = cached_features(files, cache_dir, front, key, video_fingerprint, resolved, mask, say,
                                 progress=progress)
        features_dir = cached.folder
        feats = load_features(features_dir, used, dim)
        described = f"{dim}-d features of the videos in {Path(videos).name}/ by {front_words}"
    else:
        features_dir = Path(features)
        feats = load_features(features_dir, used)
        stated = _stated_input_dim(config) if config is not None else None
        dim = int(stated) if stated else int(feats[first_training].shape[1])  # the first training video's
        for vid, f in feats.items():
            check_features(f, str(features_dir / f"{vid}.npy"), dim)
        sized = localizer_setup(dim, config)
        if not all((features_dir / f"{v}.npy").is_file() for v in testing):
            testing = {}  # measured only when every testing video's features are there
        say(f"[annotations] {Path(annotations).name}: {len(training)} training, {len(validation)} validation, "
            f"{len(testing)} testing video(s) with features")
        cached = front_words = None
        described = f"{dim}-d features from {features_dir.name}/"

    # ---- training
    setup = with_total_epochs(sized.setup, epochs)
    start = ("starting from the bundled localizer's weights" if sized.init_state is not None
             else "from a random start")
    say(f"[localizer] {dim}-d features: {sized.source}, {start}")
    say(f"[train] {len(training)} video(s), {setup.train.total_epochs} epoch(s) on {resolved}")
    result = fit(training, {k: feats[k] for k in training}, setup, device=resolved, progress=progress,
                 init_state=sized.init_state)

    # ---- the model folder: written whole beside the old one's files, then moved into place
    from ..model import building_folder, replace_model, update_model
    from .export import write_model_dir

    building = building_folder(output)
    threshold_words = (f"{len(training)} trained on, {len(validation)} kept apart to choose the event threshold"
                       if validation else "all trained on, no threshold chosen")
    trained_on = (f"{Path(annotations).name}: {len(used)} training videos ({threshold_words}), {described}; "
                  f"{result.epochs_run} epoch(s), seed {setup.train.seed}, {start}")
    write_model_dir(result.model, setup, building, features=feats, trained_on=trained_on, name=output.name)
    if videos is not None:
        _add_front_end(building, source, i3d_weights, no_roi)
    threshold, figures = _threshold_and_test(building, validation, testing, features_dir, resolved, say)
    figures.update({"train_seconds": round(result.seconds, 1), "seconds_per_epoch": round(result.seconds_per_epoch, 2),
                    "device": resolved})
    fields: dict = {"benchmark": figures}
    if threshold is not None:
        fields["threshold"] = threshold
    update_model(building, fields)
    replace_model(output, building)
    return OwnTraining(output, dim, threshold, sized.init_state is not None, figures, front_words,
                       cached.extracted if cached else [], cached.reused if cached else [])
