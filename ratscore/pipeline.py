"""The one place that chains stages together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Iterator, Optional, Union

import numpy as np

from .errors import InputError
from .labels import RacineMap, load_racine_map
from .grid import MODEL_FPS
from .model import BUNDLED_MODEL_DIR, load_model
from .motion import MOTION_DEFAULT
from .postprocess import ChunkedDetection
from .runtime import check_precision
from .timeline import Scoring, ScoringOptions, episode_peaks, score_events
from .writers import read_events_csv, write_scoring

def _sidecar_summary(events_csv: Path) -> dict:
    """The summary.json beside an events.csv: when `analyze` published them as a set, only if it is
    still that set's (the events themselves may have been corrected by hand since); a summary with
    no set record (written by hand, or by an older ratscore) is taken as it is."""
    from .files import marker_path, recover, whole_set

    name = events_csv.name
    if not name.endswith(".events.csv"):
        return {}
    stem = name[: -len(".events.csv")]
    sidecar = events_csv.with_name(stem + ".summary.json")
    recover(events_csv.parent)  # a set a killed run left half-moved is finished first
    if marker_path(events_csv.parent, stem).exists() and whole_set(events_csv.parent, stem, only=[sidecar.name]) is None:
        return {}
    try:
        doc = json.loads(sidecar.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def rescore_events_file(events_csv: Path, out_dir: Path, options: ScoringOptions = ScoringOptions(),
                        duration_s: Optional[float] = None, racine: RacineMap = RacineMap()) -> Scoring:
    """Rebuild the Racine timeline, episodes, summary and picture from an events file.

    The video's duration comes from `duration_s`, else from the summary.json that `analyze`
    wrote beside the events file, else from the end of the last event.
    """
    from .timeline import check_timeline_size

    events_csv = Path(events_csv)
    where = "--duration"
    if duration_s is not None:  # judged before the file is read: a typo costs nothing
        check_timeline_size(duration_s, options.bin_s, where)
    video, events = read_events_csv(events_csv)
    sidecar = _sidecar_summary(events_csv)
    if duration_s is None:
        duration_s, where = sidecar.get("duration_s"), f"{events_csv}: the duration in its summary.json"
    if duration_s is None:
        if not events:
            raise InputError(f"{events_csv}: no events and no known duration; give --duration")
        duration_s, where = max(e.end_s for e in events), f"{events_csv}: the end of its last event"
    fps = float(sidecar.get("fps") or MODEL_FPS)
    model = str(sidecar.get("model") or f"events file {events_csv.name}")
    scoring = _rescored(events, video, duration_s, where, fps, model, racine, options, str(events_csv))
    stem = events_csv.name[: -len(".events.csv")] if events_csv.name.endswith(".events.csv") else events_csv.stem
    write_scoring(scoring, out_dir, stem, formats=RESCORE_FORMATS)
    return scoring


RESCORE_FORMATS = ("racine", "episodes", "timeline", "summary")  # what `timeline` writes per video


def _rescored(events, video: str, duration_s: float, where: str, fps: float, model: str, racine: RacineMap,
              options: ScoringOptions, source: str) -> Scoring:
    from .timeline import check_timeline_size

    check_timeline_size(duration_s, options.bin_s, where)
    late = [e for e in events if e.start_s >= duration_s]
    if late:
        raise InputError(f"{source}: an event starts at {late[0].start_s} s, after the video's end ({duration_s} s)")
    return score_events(events, video, duration_s, fps, model, racine, options)


def rescore_boris_file(path: Path, out_dir: Path, options: ScoringOptions = ScoringOptions(),
                       duration_s: Optional[float] = None, racine: RacineMap = RacineMap(), code_map=None,
                       point_length_s: Optional[float] = None, warn=None) -> list[Scoring]:
    """Rebuild the Racine timeline, episodes, summary and picture of every video coded in a BORIS
    project or events export (a person's coding, after review in BORIS): one set of files per
    media file stem. Events score 1. A video's duration is `duration_s` (the same for every video
    of the file) when given, else BORIS's length of the media file, else the end of its last event.
    `code_map` maps the lab's codes to action units (boris.read_code_map); `warn(line)` gets the
    codes left out and other warnings. Nothing is written unless every video scores."""
    from .annotations import read_boris_videos
    from .timeline import Event, check_timeline_size

    path = Path(path)
    if duration_s is not None:  # judged before the file is read: a typo costs nothing
        check_timeline_size(duration_s, options.bin_s, "--duration")
    videos, _, warnings = read_boris_videos([path], code_map, point_length_s, duration_s=duration_s)
    for line in warnings:
        if warn is not None:
            warn(line)
    scorings = []
    for v in videos:
        events = [Event(s.start_s, s.end_s, s.au_id, 1.0) for s in v.segments]
        where = "--duration" if duration_s is not None else f"{path}: video {v.video_id!r}"
        scoring = _rescored(events, v.video_id, v.duration, where, float(v.fps or MODEL_FPS),
                            f"BORIS file {path.name}", racine, options, f"{path}: video {v.video_id!r}")
        scoring.summary["source"] = {"path": v.media_file, "boris_file": str(path.absolute()),
                                     "observation": v.observation}
        scorings.append(scoring)
    for scoring in scorings:
        write_scoring(scoring, out_dir, scoring.video, formats=RESCORE_FORMATS)
    return scorings


# ---------------------------------------------------------------------------------------------
# analyze: video -> features -> events -> scoring -> files


@dataclass(frozen=True)
class AnalyzeOptions:
    model_dir: Path = BUNDLED_MODEL_DIR  # a model folder (manifest.json + ONNX files)
    device: str = "auto"  # auto | cpu | cuda: auto takes a GPU when there is one
    decoder: str = "auto"  # auto | pyav | torchcodec (video.DECODERS): auto is PyAV; torchcodec decodes on the device
    scoring: ScoringOptions = ScoringOptions()  # bins, episode gap, score threshold, include "others"
    mask: Optional[Path] = None  # rig profile YAML: arena and mirror-reflection regions
    no_roi: bool = False  # use the whole frame (camera already framed on one animal)
    motion: bool = MOTION_DEFAULT  # a first, low-resolution pass models the recording's motion to check the detector
    precision: str = "auto"  # the I3D's arithmetic: auto (fp16 on a GPU, fp32 on the CPU) | fp32 | bf16 | fp16
    keep_features: bool = False  # also write <stem>.features.npy
    nwb: bool = False  # also write <stem>.nwb (events and episodes as NWB time intervals; needs pynwb)
    racine_config: Optional[Path] = None  # YAML overriding the AU -> Racine stage map
    progress: bool = True  # progress bars on the terminal

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        check_precision(self.precision)
        from .video import check_decoder_name

        check_decoder_name(self.decoder)  # the name only: whether torchcodec decodes is judged with the device
        if self.nwb:
            from .nwb import check_available

            check_available()


class Analyzer:
    """Loads a model once and analyses any number of videos with it."""

    def __init__(self, options: AnalyzeOptions):
        from .features import load_front_end
        from .mask import load_rig_profile
        from .runner import OnnxLocalizer
        from .trust import TrustCheck

        self.options = options
        self.model = load_model(options.model_dir)
        if not self.model.has_front_end:
            raise InputError(f"{options.model_dir}: this model has no video front end (it scores features only); "
                             "use `ratscore benchmark --features` or a full model")
        self.model_id = self.model.identity
        self.racine = load_racine_map(options.racine_config, self.model.racine)
        self.localizer = OnnxLocalizer(self.model, device=options.device)
        self.front = load_front_end(self.model, device=options.device, no_roi=options.no_roi, motion=options.motion,
                                    precision=options.precision, decoder=options.decoder)
        if self.front.feature_dim != self.localizer.feature_dim:
            raise InputError(f"{options.model_dir}: the I3D gives {self.front.feature_dim}-d features but the "
                             f"localizer takes {self.localizer.feature_dim}-d")
        self.mask = load_rig_profile(options.mask) if options.mask is not None else None
        self.trust = TrustCheck.from_model(self.model)
        # what `batch --resume` compares beside the scoring options: everything else that changes the
        # outputs (the device and the decoder do not, beyond the small differences tests/test_gpu.py
        # and tests/test_decoders.py bound); config files by content, so a moved file changes nothing
        self.run_record = {"model_sha256": content_sha256(options.model_dir), "no_roi": options.no_roi,
                           "keep_features": options.keep_features,
                           "racine_config_sha256": content_sha256(options.racine_config),
                           "mask_sha256": content_sha256(options.mask), "motion": options.motion}
        if options.nwb:  # only when on: sets made before --nwb existed stay current without it
            self.run_record["nwb"] = True

    @property
    def decoder(self) -> str:
        """The front end's decoder, "pyav" or "torchcodec": batch's worker processes decode only with PyAV."""
        return self.front.decoder

    def analyze(self, video: Path, out_dir: Path, stem: Optional[str] = None) -> Scoring:
        from .features import extract_features

        video = Path(video)
        fingerprint = self.prepare(video)
        # the localizer scores each chunk of the recording as soon as its features are made, in the
        # time the I3D would spend waiting for crops; what is left is scored at the end
        detection = self.localizer.chunked()
        result = extract_features(video, self.front, self.options.device, self.mask, self.options.no_roi,
                                  progress=self.options.progress, on_features=detection.feed)
        return self.finish(video, out_dir, stem or video.stem, fingerprint, result, detection)

    def prepare(self, video: Path) -> str:
        """What `analyze` checks before a video is decoded; returns its fingerprint."""
        from .timeline import check_timeline_size
        from .video import probe_video

        fingerprint = video_fingerprint(video)
        stated = probe_video(video).duration_s
        if stated:  # a recording too long for the timeline is refused before it is decoded
            check_timeline_size(stated, self.options.scoring.bin_s, str(video))
        return fingerprint

    def finish(self, video: Path, out_dir: Path, stem: str, fingerprint: str, result,
               detection: Optional[ChunkedDetection] = None) -> Scoring:
        """Features (features.FeatureResult) -> events -> scoring -> the video's output set.
        `detection`: the localizer's chunked detection, fed the features while they were made."""
        from .report import track_strip
        from .video import crop_at

        opts = self.options
        # only the events the scoring keeps: the same ones, and soft-NMS skips the weak candidates
        events = self.localizer.detect(result.features, result.duration_s, fed=detection,
                                       at_least=opts.scoring.threshold)
        scoring = score_events(events, stem, result.duration_s, result.source_fps, self.model_id,
                               self.racine, opts.scoring)
        scoring.summary["source"] = {"path": str(video.absolute()), "fingerprint": fingerprint,
                                     "fps": result.source_fps, "width": result.width, "height": result.height,
                                     "rotation": result.rotation, "decode_warnings": list(result.decode_warnings)}
        scoring.summary["warnings"] = list(result.decode_warnings)  # truncation and decoding problems, in words
        scoring.summary["trust"] = self.trust.assess(result, scoring)
        scoring.summary["run"] = self.run_record
        scoring.track = result.track
        scoring.strip = track_strip(video, result.track, result.strip)
        for t in episode_peaks(scoring):
            try:
                frame = min(len(result.boxes) - 1, max(0, int(t * result.fps))) if result.boxes is not None else None
                box = None if frame is None else result.boxes[frame]
                scoring.stills.append(crop_at(video, t, box))
            except Exception:  # noqa: BLE001 - a missing still never costs a video its scoring
                scoring.stills.append(None)
        features_name = f"{stem}.features.npy"
        extra = {features_name: lambda f: np.save(f, result.features)} if opts.keep_features else {}
        nwb_name = f"{stem}.nwb"
        if opts.nwb:
            from .nwb import write_nwb

            extra[nwb_name] = lambda f: write_nwb(scoring, f)
        write_scoring(scoring, out_dir, stem, extra=extra, removes=[features_name, nwb_name])
        return scoring

    def analyze_many(self, jobs: Iterable[tuple[Hashable, Optional[tuple[Path, Path, str]]]],
                     workers: int) -> Iterator[tuple[Hashable, Union[Scoring, Exception, None]]]:
        """`analyze` for many videos, their decoding, detection and cropping done by `workers`
        worker processes ahead of this process's I3D (features.extract_many); the localizer,
        scoring and writing of each video here, in the order of `jobs`.

        `jobs`: (key, (video, out_dir, stem)), or (key, None) for a place in the order without a
        video; read a few videos ahead of what is yielded. Yields (key, outcome) in the order of
        `jobs`: the video's Scoring, the exception `analyze` would have raised for it, or None.
        Closing the generator ends the workers.
        """
        from contextlib import closing

        from .features import extract_many

        taken: dict = {}  # key -> ((video, out_dir, stem), fingerprint), or the exception prepare raised

        def videos():
            for key, job in jobs:
                if job is None:
                    yield key, None
                    continue
                video = Path(job[0])
                try:
                    taken[key] = ((video, Path(job[1]), job[2]), self.prepare(video))
                except Exception as e:  # noqa: BLE001 - this video's failure, reported in its place
                    taken[key] = e
                    yield key, None
                    continue
                yield key, video

        with closing(extract_many(videos(), self.front, workers, self.mask, progress=self.options.progress)) as outcomes:
            for key, outcome in outcomes:
                entry = taken.pop(key, None)
                if entry is None or isinstance(entry, Exception):
                    yield key, entry
                elif isinstance(outcome, Exception):
                    yield key, outcome
                else:
                    (video, out_dir, stem), fingerprint = entry
                    try:
                        scoring = self.finish(video, out_dir, stem, fingerprint, outcome)
                    except Exception as e:  # noqa: BLE001 - this video's failure, reported in its place
                        yield key, e
                        continue
                    yield key, scoring


def video_fingerprint(video: Path) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the file does.
    InputError for anything but a regular file (a FIFO would block the open, a device never end)."""
    from .video import check_video_file

    video = check_video_file(video)
    try:
        size = video.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(video, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read(1 << 20))
    except FileNotFoundError:
        raise InputError(f"{video}: no such video file") from None
    except IsADirectoryError:
        raise InputError(f"{video}: is a folder, not a video (use `ratscore batch`)") from None
    except OSError as e:
        raise InputError(f"{video}: cannot read ({e.strerror or e})") from None
    return f"{size}:{h.hexdigest()[:16]}"


def content_sha256(path: Optional[Path]) -> Optional[str]:
    """sha256 of a file's bytes, or of a folder's files (every one, in sorted order: name, size and
    bytes each; hidden files and folders, such as a training run's feature cache, left out); None
    for no path."""
    import os

    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        files = [path]
    h = hashlib.sha256()
    for file in files:
        name = file.relative_to(path).as_posix() if file != path else ""
        try:
            with open(file, "rb") as f:
                h.update(f"{name}\0{os.fstat(f.fileno()).st_size}\0".encode())
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as e:
            raise InputError(f"{file}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()
