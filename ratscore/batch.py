"""`ratscore batch`: a whole study, resumable, shardable, with one summary table.

Outputs mirror the input folder tree. A video's outputs are complete when its summary.json
exists (the writers write it last, atomically) and names the same model, the same video
fingerprint and the same scoring options: such a video is skipped on a rerun, so a batch killed
at any point and run again ends with the same files as one that was never interrupted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from filelock import FileLock, Timeout

from .errors import InputError, RatscoreError, RunError
from .files import atomic_write_text
from .video import VIDEO_SUFFIXES

SUMMARY_NAME = "batch_summary.csv"
FAILURES_NAME = "batch_failures.csv"
SUMMARY_COLUMNS = (["video", "status", "duration_s", "n_events", "n_episodes", "max_stage",
                    "latency_stage3_s", "latency_stage5_s"]
                   + [f"time_stage{k}_s" for k in range(8)]
                   + ["wet_dog_shakes", "rat_found_fraction", "feature_distance", "familiar", "model"])
FAILURE_COLUMNS = ["video", "error"]


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'I/N' -> (I, N) with 0 <= I < N (SLURM's default array ids 0..N-1)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def find_videos(folder: Path, recursive: bool = False, pattern: Optional[str] = None) -> list[Path]:
    """Videos under `folder`, as paths relative to it, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    walker = folder.rglob("*") if recursive else folder.glob("*")

    def wanted(name: str) -> bool:
        if pattern:
            return fnmatch.fnmatch(name.lower(), pattern.lower())
        return Path(name).suffix.lower() in VIDEO_SUFFIXES

    return sorted(p.relative_to(folder) for p in walker
                  if p.is_file() and not p.name.startswith(".") and wanted(p.name))


def in_shard(relative: Path, shard: Optional[tuple[int, int]]) -> bool:
    """A video's shard depends only on its path, so adding videos never moves the others."""
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.sha256(relative.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index


class OutputLock:
    """One batch run per output folder (and shard): a kernel lock (flock), released even on SIGKILL.

    The holder writes its pid into the lock file, so a refused second batch can say who holds it.
    """

    def __init__(self, out_dir: Path, name: str):
        self.path = Path(out_dir) / name
        # No soft (existence-file) fallback where flock is missing: a killed batch would leave that
        # file behind and shut the folder until someone deletes it by hand.
        self._lock = FileLock(self.path, blocking=False, fallback_to_soft=False, preserve_lock_file=True,
                              on_acquired=self._write_holder)

    @staticmethod
    def _write_holder(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)

    def _holder(self) -> str:
        try:
            with open(self.path, "rb") as f:
                return f.read(200).decode(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
            raise InputError(f"{self.path.parent}: another ratscore batch is writing here ({self._holder()}); "
                             "wait for it to finish, or use another output folder or --shard") from None
        except PermissionError:
            raise InputError(f"{self.path.parent}: output folder is not writable") from None
        except OSError as e:
            raise InputError(f"{self.path.parent}: cannot use as output folder ({e.strerror or e})") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()
        return False


def outputs_complete(out_dir: Path, stem: str, model_id: str, fingerprint: str, scoring: dict,
                     formats) -> Optional[dict]:
    """The summary of a video whose outputs are complete and current, else None."""
    from .writers import get_writer

    summary_path = get_writer("summary").path(out_dir, stem)
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None
    if (summary.get("model") != model_id or summary.get("source", {}).get("fingerprint") != fingerprint
            or summary.get("scoring") != scoring):
        return None
    if not all(get_writer(fmt).path(out_dir, stem).is_file() for fmt in formats):
        return None
    return summary


def summary_row(video: str, summary: dict) -> dict:
    trust = summary.get("trust") or {}
    row = {"video": video, "status": "ok", "duration_s": summary["duration_s"], "n_events": summary["n_events"],
           "n_episodes": summary["n_episodes"], "max_stage": summary["max_stage"],
           "latency_stage3_s": summary["latency_s"].get("3"), "latency_stage5_s": summary["latency_s"].get("5"),
           "wet_dog_shakes": summary["wet_dog_shakes"], "rat_found_fraction": trust.get("rat_found_fraction"),
           "feature_distance": trust.get("feature_distance"), "familiar": trust.get("familiar"),
           "model": summary.get("model")}
    for k in range(8):
        row[f"time_stage{k}_s"] = summary["per_stage"][str(k)]["total_s"]
    return row


@dataclass
class BatchResult:
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    skipped: int = 0
    analysed: int = 0
    summary_path: Optional[Path] = None


def _table_names(shard: Optional[tuple[int, int]]) -> tuple[str, str, str]:
    if shard is None:
        return SUMMARY_NAME, FAILURES_NAME, ".ratscore-batch.lock"
    tag = f"shard-{shard[0]}-of-{shard[1]}"
    return (f"batch_summary.{tag}.csv", f"batch_failures.{tag}.csv", f".ratscore-batch.{tag}.lock")


def _write_tables(out_dir: Path, rows: list[dict], failures: list[dict], names) -> Path:
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("video", kind="stable")
    fails = pd.DataFrame(failures, columns=FAILURE_COLUMNS).sort_values("video", kind="stable")
    atomic_write_text(out_dir / names[1], fails.to_csv(index=False, lineterminator="\n"))
    return atomic_write_text(out_dir / names[0], summary.to_csv(index=False, lineterminator="\n"))


def run_batch(folder: Path, out_dir: Path, analyzer, recursive: bool = False, pattern: Optional[str] = None,
              resume: bool = True, shard: Optional[tuple[int, int]] = None,
              on_video: Optional[Callable[[str, str], None]] = None) -> BatchResult:
    """Analyse every video under `folder` into `out_dir`; one failure never stops the batch.

    `analyzer` has `.analyze(video, out_dir, stem)`, `.model_id`, `.options`. `on_video(name,
    status)` is called after each video (status: ok, skipped, or the error line).
    """
    from .pipeline import video_fingerprint
    from .writers import ALL_FORMATS

    folder, out_dir = Path(folder), Path(out_dir)
    videos = [v for v in find_videos(folder, recursive, pattern) if in_shard(v, shard)]
    names = _table_names(shard)
    result = BatchResult()
    scoring_dict = asdict(analyzer.options.scoring)  # as score_events records it in summary.json
    with OutputLock(out_dir, names[2]):
        for rel in videos:
            name = rel.as_posix()
            target = out_dir / rel.parent
            try:
                done = None
                if resume:
                    done = outputs_complete(target, rel.stem, analyzer.model_id, video_fingerprint(folder / rel),
                                            scoring_dict, ALL_FORMATS)
                if done is not None:
                    summary, status = done, "skipped"
                    result.skipped += 1
                else:
                    summary, status = analyzer.analyze(folder / rel, target, rel.stem).summary, "ok"
                    result.analysed += 1
                result.rows.append(summary_row(name, summary))
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
        result.summary_path = _write_tables(out_dir, result.rows, result.failures, names)
    return result


def merge_shards(out_dir: Path) -> tuple[Path, int, int]:
    """Join the shard tables of one output folder into batch_summary.csv and batch_failures.csv.

    Returns (summary path, number of videos, number of failures). Every shard 0..N-1 must be there.
    """
    out_dir = Path(out_dir)
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
    path = _write_tables(out_dir, summary.to_dict("records"), fails.to_dict("records"), _table_names(None))
    return path, len(summary), len(fails)
