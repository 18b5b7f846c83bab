"""`ratscore batch`: a whole study, resumable, shardable, with one summary table.

Outputs mirror the input folder tree. A video's outputs are complete when its output set is whole
(writers.read_whole_set) and its summary.json names the same model (name and manifest hash, and a
hash of every file of the model folder), the same video fingerprint, the same scoring options and
the same run record (ROI on or off, features kept or not, the content of the Racine map and rig
profile files): such a video is skipped on a rerun, so a batch killed at any point and run again
ends with the same files as one that was never interrupted, and a rerun with any option that
changes the outputs redoes them.

Every entry of the folder named like a video is analysed or listed as a failure with its reason
(a broken link, a folder, a pipe, an unreadable file); two videos of one folder with one stem are
refused before anything runs, since every output is named after the stem.

With workers (`--workers N`, default one per core), worker processes decode, detect and crop
the next videos while this process runs the I3D over their clips (pipeline.Analyzer.analyze_many);
the videos are still scored, written and reported one after the other in the same order, with
the same files on the CPU as one video at a time. The workers decode with PyAV: a run that decodes
with torchcodec (`--decoder torchcodec`, whose frames may be CUDA tensors, which cannot cross to
another process) takes its videos one at a time in its own process.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from filelock import FileLock, Timeout

from .errors import InputError, RatscoreError, RunError
from .files import atomic_write_text, recover
from .trust import UNFAMILIAR_FLAG, is_unfamiliar
from .video import VIDEO_SUFFIXES

SUMMARY_NAME = "batch_summary.csv"
FAILURES_NAME = "batch_failures.csv"
SUMMARY_COLUMNS = (["video", "status", "duration_s", "n_events", "n_episodes", "max_stage",
                    "latency_stage3_s", "latency_stage5_s"]
                   + [f"time_stage{k}_s" for k in range(8)]
                   + ["wet_dog_shakes", "rat_found_fraction", "feature_distance", "familiar", "trust_reasons", "model",
                      "warnings"])
INT_COLUMNS = ["n_events", "n_episodes", "max_stage", "wet_dog_shakes"]  # stay integers beside a failed row
FAILURE_COLUMNS = ["video", "error"]
LOCK_NAME = ".ratscore-batch.lock"  # held by an unsharded run (and a merge) for its whole run
SHARD_LOCK_GLOB = ".ratscore-batch.shard-*.lock"
# A starting shard takes the folder lock for a moment to see that no unsharded run holds it; this
# long it waits for another shard doing the same, so shards started together never refuse each other.
SHARD_CHECK_S = 10.0


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'I/N' -> (I, N) with 0 <= I < N (SLURM's default array ids 0..N-1)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def find_videos(folder: Path, recursive: bool = False, pattern: Optional[str] = None) -> list[Path]:
    """Readable videos under `folder`, as paths relative to it, in a stable order."""
    from .features import scan_folder

    return scan_folder(Path(folder), recursive, pattern).videos


@dataclass
class BatchPlan:
    """What one run (or shard) of a batch does, decided before any model loads."""

    videos: list[Path]  # this run's share of the videos, relative to the folder
    unusable: list[tuple[Path, str]]  # this run's share of entries named like videos that cannot be read: (path, why)
    other_files: int  # files in the folder that are not videos (all shards)
    folders_not_searched: int  # sub-folders left out: no --recursive, or links to folders
    in_folder: int  # entries named like videos in the whole folder (all shards)


def plan_batch(folder: Path, recursive: bool = False, pattern: Optional[str] = None,
               shard: Optional[tuple[int, int]] = None) -> BatchPlan:
    """The videos of this run; InputError for two videos of one folder with one stem, and for an
    unsharded run of a folder without videos (a shard may get none: a cluster array cannot know)."""
    from .features import scan_folder

    folder = Path(folder)
    scan = scan_folder(folder, recursive, pattern)
    scan.check_names(folder)
    in_folder = len(scan.videos) + len(scan.unusable)
    if in_folder == 0 and shard is None:
        what = f"matching {pattern!r}" if pattern else f"({' '.join(VIDEO_SUFFIXES)})"
        hint = ("; its sub-folders are searched with --recursive"
                if scan.folders_not_searched and not recursive else "")
        raise InputError(f"{folder}: no video files {what}{hint}")
    return BatchPlan(videos=[v for v in scan.videos if in_shard(v, shard)],
                     unusable=[(p, why) for p, why in scan.unusable if in_shard(p, shard)],
                     other_files=scan.other_files, folders_not_searched=scan.folders_not_searched,
                     in_folder=in_folder)


def in_shard(relative: Path, shard: Optional[tuple[int, int]]) -> bool:
    """A video's shard depends only on its path, so adding videos never moves the others."""
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.sha256(relative.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index


def _shard_lock_name(shard: tuple[int, int]) -> str:
    return f".ratscore-batch.shard-{shard[0]}-of-{shard[1]}.lock"


class OutputLock:
    """Who may write into one output folder at once: an unsharded run (or a merge) excludes every
    other run; a shard excludes the same shard and an unsharded run; different shards run together.

    Each run takes its own lock (unsharded: the folder lock; a shard: its shard lock), then checks
    the other side: an unsharded run also takes every shard lock file there is, for the whole run;
    a shard takes the folder lock for a moment (waiting up to SHARD_CHECK_S for another shard doing
    the same) to see that no unsharded run holds it. Kernel locks (flock): a killed run releases
    them. The holder writes what it is and its pid into the lock file, so a refused run can say who
    holds the folder.
    """

    def __init__(self, out_dir: Path, shard: Optional[tuple[int, int]] = None, what: str = "batch"):
        self.out_dir, self.shard = Path(out_dir), shard
        self.label = f"batch --shard {shard[0]}/{shard[1]}" if shard is not None else what
        self._held: list[FileLock] = []

    def _lock(self, name: str) -> FileLock:
        # No soft (existence-file) fallback where flock is missing: a killed batch would leave that
        # file behind and shut the folder until someone deletes it by hand.
        return FileLock(self.out_dir / name, blocking=False, fallback_to_soft=False, preserve_lock_file=True,
                        on_acquired=self._write_holder)

    def _write_holder(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.label}, pid {os.getpid()}".encode(), 0)

    def _holder(self, name: str) -> str:
        try:
            with open(self.out_dir / name, "rb") as f:
                return f.read(200).decode(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def _refuse(self, name: str) -> InputError:
        return InputError(f"{self.out_dir}: another ratscore batch is writing here ({self._holder(name)}); "
                          "wait for it to finish, or use another output folder (only shards of one split, "
                          "--shard I/N, run together)")

    def _take(self, name: str, timeout: Optional[float] = None) -> FileLock:
        lock = self._lock(name)
        try:
            if timeout is None:
                lock.acquire()
            else:
                lock.acquire(timeout=timeout, blocking=True)
        except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
            raise self._refuse(name) from None
        return lock

    def __enter__(self):
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.shard is None:
                self._held.append(self._take(LOCK_NAME))
                for path in sorted(self.out_dir.glob(SHARD_LOCK_GLOB)):
                    self._held.append(self._take(path.name))
            else:
                self._held.append(self._take(_shard_lock_name(self.shard)))
                self._take(LOCK_NAME, timeout=SHARD_CHECK_S).release()
        except BaseException as e:
            self._release()
            if isinstance(e, PermissionError):
                raise InputError(f"{self.out_dir}: output folder is not writable") from None
            if isinstance(e, OSError):
                raise InputError(f"{self.out_dir}: cannot use as output folder ({e.strerror or e})") from None
            raise
        return self

    def _release(self) -> None:
        while self._held:
            self._held.pop().release()

    def __exit__(self, *exc):
        self._release()
        return False


def outputs_complete(out_dir: Path, stem: str, model_id: str, fingerprint: str, scoring: dict,
                     run: dict) -> Optional[dict]:
    """The summary of a video whose output set is whole and was made from the same video, model,
    options and config files (`run`: the Analyzer's run_record), else None. A set without a file
    of every output format (made before a format was added, e.g. the .boris project) is redone."""
    from .files import whole_set
    from .writers import ALL_FORMATS, get_writer, read_whole_set

    summary = read_whole_set(out_dir, stem)
    if summary is None:
        return None
    names = whole_set(out_dir, stem, only=()) or {}  # the set's file names (read_whole_set checked them)
    if any(f"{stem}{get_writer(fmt).suffix}" not in names for fmt in ALL_FORMATS):
        return None
    if (summary.get("model") != model_id or (summary.get("source") or {}).get("fingerprint") != fingerprint
            or summary.get("scoring") != scoring or summary.get("run") != run):
        return None
    return summary


def summary_row(video: str, summary: dict) -> dict:
    trust = summary.get("trust") or {}
    row = {"video": video, "status": "ok", "duration_s": summary["duration_s"], "n_events": summary["n_events"],
           "n_episodes": summary["n_episodes"], "max_stage": summary["max_stage"],
           "latency_stage3_s": summary["latency_s"].get("3"), "latency_stage5_s": summary["latency_s"].get("5"),
           "wet_dog_shakes": summary["wet_dog_shakes"], "rat_found_fraction": trust.get("rat_found_fraction"),
           "feature_distance": trust.get("feature_distance"), "familiar": trust.get("familiar"),
           "trust_reasons": "; ".join(trust.get("reasons") or []),  # why unfamiliar, in words, as the report says
           "model": summary.get("model"), "warnings": "; ".join(summary.get("warnings") or [])}
    for k in range(8):
        row[f"time_stage{k}_s"] = summary["per_stage"][str(k)]["total_s"]
    return row


@dataclass
class BatchResult:
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    skipped: int = 0
    analysed: int = 0
    other_files: int = 0  # files in the folder that are not videos
    folders_not_searched: int = 0
    summary_path: Optional[Path] = None

    @property
    def unfamiliar(self) -> int:
        """Scored videos (analysed now or before) whose trust check said no."""
        return sum(1 for row in self.rows if row.get("familiar") is False)


def _table_names(shard: Optional[tuple[int, int]]) -> tuple[str, str]:
    if shard is None:
        return SUMMARY_NAME, FAILURES_NAME
    tag = f"shard-{shard[0]}-of-{shard[1]}"
    return f"batch_summary.{tag}.csv", f"batch_failures.{tag}.csv"


def _write_tables(out_dir: Path, rows: list[dict], failures: list[dict], names, study=None) -> Path:
    """`study` (study.Study): its columns join the summary, and study.xlsx is written beside it."""
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("video", kind="stable")
    # a failed row has no counts: nullable integers keep the others "3", not "3.0"
    summary = summary.astype({c: "Int64" for c in INT_COLUMNS})
    if study is not None:
        study.check_table(summary)  # checked at the start of a batch too; a merge learns its videos only here
        summary = study.add_columns(summary)
    fails = pd.DataFrame(failures, columns=FAILURE_COLUMNS).sort_values("video", kind="stable")
    atomic_write_text(out_dir / names[1], fails.to_csv(index=False, lineterminator="\n"))
    path = atomic_write_text(out_dir / names[0], summary.to_csv(index=False, lineterminator="\n"))
    if study is not None:
        study.write_workbook(out_dir, summary)
    return path


def _status_line(status: str, summary: dict) -> str:
    """A scored video's status as its line shows it: the unfamiliar flag, as analyze prints it, and
    the warnings."""
    warnings = summary.get("warnings") or []
    flag = f" {UNFAMILIAR_FLAG}" if is_unfamiliar(summary) else ""
    return f"{status}{flag} (warning: {'; '.join(warnings)})" if warnings else f"{status}{flag}"


def default_workers() -> int:
    """Worker processes for `batch`: one per core. Decoding, detecting and cropping a video take
    about twice the CPU time the bundled I3D takes over its clips (benchmarks/README.md), so the
    workers set the pace and the I3D takes its share of the cores beside them."""
    from .runtime import cpu_cores

    return cpu_cores()


def run_batch(folder: Path, out_dir: Path, analyzer, recursive: bool = False, pattern: Optional[str] = None,
              resume: bool = True, shard: Optional[tuple[int, int]] = None,
              on_video: Optional[Callable[[str, str], None]] = None, plan: Optional[BatchPlan] = None,
              take_lock: bool = True, study=None, workers: Optional[int] = None) -> BatchResult:
    """Analyse every video under `folder` into `out_dir`; one failure never stops the batch.

    `analyzer` has `.analyze(video, out_dir, stem)`, `.model_id`, `.options` and `.run_record`; it
    may be None when the plan has no video to read. `plan` (plan_batch's, made before the model
    loaded) is made here when not given. `take_lock=False`: the caller already holds the folder's
    OutputLock for this shard (taken before its model loaded, so a refused run ends at once).
    `on_video(name, status)` is called after each entry (status: ok or skipped, with the video's
    warnings, or the error line). `study` (study.load_study's, checked before the model loaded): its
    columns join the summary table, and OUT/study.xlsx is written.

    `workers`: processes that decode, detect and crop the next videos while this one runs the I3D
    over their clips (an analyzer with `.analyze_many`, pipeline.Analyzer's); None: default_workers();
    0, or a single video to analyse, or an analyzer that decodes with anything but PyAV (its
    `.decoder`): one video at a time through `.analyze`. Either way the same files, the same order
    of videos and the same lines.
    """
    from .pipeline import video_fingerprint

    folder, out_dir = Path(folder), Path(out_dir)
    if plan is None:
        plan = plan_batch(folder, recursive, pattern, shard)
    if plan.videos and analyzer is None:
        raise ValueError("run_batch needs an analyzer for a plan with videos")
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be 0 or more, got {workers}")
    workers = default_workers() if workers is None else workers
    if getattr(analyzer, "decoder", "pyav") != "pyav":
        workers = 0  # worker processes decode with PyAV; torchcodec's frames (CUDA tensors) stay in this process
    names = _table_names(shard)
    result = BatchResult(other_files=plan.other_files, folders_not_searched=plan.folders_not_searched)
    scoring_dict = asdict(analyzer.options.scoring) if analyzer is not None else None  # as summary.json has it
    entries = sorted([(rel, None) for rel in plan.videos] + list(plan.unusable))

    def done_before(rel: Path, unusable: Optional[str]) -> Optional[dict]:
        """The summary of a video whose outputs are current (resume), else None; InputError for an
        entry that cannot be read."""
        if unusable is not None:
            raise InputError(f"{folder / rel}: {unusable}")
        if not resume:
            return None
        return outputs_complete(out_dir / rel.parent, rel.stem, analyzer.model_id, video_fingerprint(folder / rel),
                                scoring_dict, analyzer.run_record)

    def one_at_a_time():
        for rel, unusable in entries:
            try:
                done = done_before(rel, unusable)
                if done is not None:
                    yield rel, "skipped", done
                else:
                    yield rel, "ok", analyzer.analyze(folder / rel, out_dir / rel.parent, rel.stem).summary
            except Exception as e:  # noqa: BLE001 - one bad video never stops the batch
                yield rel, "failed", e

    def in_workers():
        decided: dict[int, tuple[str, object]] = {}  # entries settled without the analyzer

        def jobs():
            for i, (rel, unusable) in enumerate(entries):
                try:
                    done = done_before(rel, unusable)
                except Exception as e:  # noqa: BLE001 - one bad video never stops the batch
                    decided[i] = ("failed", e)
                    yield i, None
                    continue
                if done is not None:
                    decided[i] = ("skipped", done)
                    yield i, None
                else:
                    yield i, (folder / rel, out_dir / rel.parent, rel.stem)

        with closing(analyzer.analyze_many(jobs(), workers)) as outcomes:
            for i, outcome in outcomes:
                if i in decided:
                    yield (entries[i][0], *decided.pop(i))
                elif isinstance(outcome, Exception):
                    yield entries[i][0], "failed", outcome
                else:
                    yield entries[i][0], "ok", outcome.summary

    parallel = workers > 0 and len(plan.videos) > 1 and hasattr(analyzer, "analyze_many")
    with OutputLock(out_dir, shard) if take_lock else nullcontext():
        recover(out_dir)  # what a killed run left at the top (sub-folders: as their videos are written)
        with closing(in_workers() if parallel else one_at_a_time()) as outcomes:
            for rel, status, payload in outcomes:
                name = rel.as_posix()
                try:
                    if status == "failed":
                        raise payload
                    if status == "skipped":
                        result.skipped += 1
                    else:
                        result.analysed += 1
                    result.rows.append(summary_row(name, payload))
                    status = _status_line(status, payload)
                except RatscoreError as e:
                    status = str(e)
                    result.failures.append({"video": name, "error": status})
                    result.rows.append({"video": name, "status": "failed"})
                except Exception as e:  # noqa: BLE001 - one bad video never stops the batch
                    status = f"internal error: {type(e).__name__}: {e}"
                    result.failures.append({"video": name, "error": status})
                    result.rows.append({"video": name, "status": "failed"})
                if on_video:
                    on_video(name, status)
        result.summary_path = _write_tables(out_dir, result.rows, result.failures, names, study)
    return result


def merge_shards(out_dir: Path, study=None) -> tuple[Path, int, int]:
    """Join the shard tables of one output folder into batch_summary.csv and batch_failures.csv
    (with `study`, study.read_study's: its columns, and study.xlsx).

    Returns (summary path, number of videos, number of failures). Every shard 0..N-1 must be there.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: no such folder, so no shard summaries to merge")
    with OutputLock(out_dir, what="batch --merge"):  # no shard may be writing its tables meanwhile
        return _merge_shards(out_dir, study)


def _merge_shards(out_dir: Path, study=None) -> tuple[Path, int, int]:
    found = {}
    for p in out_dir.glob("batch_summary.shard-*-of-*.csv"):
        m = re.fullmatch(r"batch_summary\.shard-(\d+)-of-(\d+)\.csv", p.name)
        if m:
            found.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not found:
        raise InputError(f"{out_dir}: no shard summaries (batch_summary.shard-I-of-N.csv) to merge")
    if len(found) > 1:
        raise InputError(f"{out_dir}: shard summaries of different splits ({', '.join(f'/{n}' for n in sorted(found))}); "
                         "remove the stale ones")
    (count, have), = found.items()
    missing = sorted(set(range(count)) - have)
    if missing:
        raise InputError(f"{out_dir}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} not finished yet")
    rows, failures = [], []
    for i in range(count):
        names = _table_names((i, count))
        try:
            rows.append(pd.read_csv(out_dir / names[0]))
            failures.append(pd.read_csv(out_dir / names[1]))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise RunError(f"{out_dir}: cannot read shard {i}/{count} tables ({e})") from None
    summary = pd.concat(rows, ignore_index=True)
    fails = pd.concat(failures, ignore_index=True)
    duplicated = summary.video[summary.video.duplicated()]
    if len(duplicated):
        raise InputError(f"{out_dir}: video {duplicated.iloc[0]!r} appears in two shards")
    path = _write_tables(out_dir, summary.to_dict("records"), fails.to_dict("records"), _table_names(None), study)
    return path, len(summary), len(fails)
