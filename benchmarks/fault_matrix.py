"""`ratscore batch` under faults, as real processes: what each case exits with, says and leaves behind.

    .venv/bin/python benchmarks/fault_matrix.py [--work /tmp/fault_matrix] [--model models/] [--device cpu]

Cases, on copies of the sample videos (sample_videos/):

- kill -9 mid-batch (once in the middle of a video, once while a video's output set is being
  written), then the same command with --resume: the folder as the kill left it, and the resumed
  outputs against an uninterrupted run's (every CSV and JSON byte for byte, timestamps aside);
- two batches on one output folder at once: unsharded + unsharded, unsharded + shard, shard +
  unsharded, shard + the same shard, shard + another shard (the first run is started, the second
  once the first holds its lock; exit codes first / second, and the second's first stderr line);
- disk full: the output folder on a tmpfs of 2 MiB, mostly filled beforehand (needs root and a
  working `mount`; skipped with a note otherwise), then --resume once the space is free again.

It prints one table: case, exit code(s), the first stderr line, and leftovers: temporary files,
staged sets not published, half sets (a video with output files but no whole set). It is a script
to run by hand, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratscore.files import STAGING_DIR, TMP_SUFFIX  # noqa: E402
from ratscore.writers import read_whole_set  # noqa: E402

SAMPLES = ROOT / "sample_videos"
CLIPS = ["clip_7_0000.mp4", "clip_7_0001.mp4", "clip_7_0002.mp4", "clip_7_0003.mp4"]
# the concurrent cases: the first run must outlast the second's start and a shard's wait for the
# folder lock (batch.SHARD_CHECK_S), or the second would simply run after it
CONCURRENT = CLIPS + ["long_18_0.mp4"]
TIMESTAMP_KEYS = {"created", "created_at", "written_at", "timestamp", "started", "finished", "date"}
OUTPUT_SUFFIXES = (".events.csv", ".racine.csv", ".episodes.csv", ".summary.json", ".timeline.png",
                   ".report.html", ".features.npy")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def study(work: Path, name: str, videos: list[str]) -> Path:
    folder = work / name
    folder.mkdir(parents=True)
    for video in videos:
        shutil.copy(SAMPLES / video, folder / video)
    return folder


def batch_cmd(folder: Path, out: Path, args, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ratscore.cli", "batch", str(folder), "-o", str(out), "--model", str(args.model),
            "--device", args.device, *extra]


def first_line(stderr: str) -> str:
    for line in ANSI.sub("", stderr).splitlines():
        if line.strip():
            return line.strip()
    return "-"


def leftovers(out: Path) -> str:
    """Temporary files, staged sets never published, and half sets in an output folder tree."""
    if not out.is_dir():
        return "no output folder"
    tmp = [p for p in out.rglob(f"*{TMP_SUFFIX}") if p.is_file()]
    staged = [p for d in out.rglob(STAGING_DIR) if d.is_dir() for p in d.iterdir()]
    half = []
    for folder in {p.parent for p in out.rglob("*") if p.is_file() and STAGING_DIR not in p.parts}:
        stems = {p.name[: -len(s)] for p in folder.iterdir() for s in OUTPUT_SUFFIXES
                 if p.name.endswith(s) and not p.name.startswith(".")}
        half += [f"{folder.relative_to(out) / stem}" for stem in sorted(stems) if read_whole_set(folder, stem) is None]
    parts = [f"{len(tmp)} temporary file(s)" if tmp else "", f"{len(staged)} staged set(s)" if staged else "",
             f"half set(s): {', '.join(half)}" if half else ""]
    return "; ".join(p for p in parts if p) or "none"


def _normalised(path: Path) -> bytes:
    if path.suffix != ".json":
        return path.read_bytes()

    def strip(doc):
        if isinstance(doc, dict):
            return {k: strip(v) for k, v in doc.items() if k not in TIMESTAMP_KEYS}
        if isinstance(doc, list):
            return [strip(v) for v in doc]
        return doc

    return json.dumps(strip(json.loads(path.read_text())), sort_keys=True).encode()


def compare(a: Path, b: Path) -> str:
    """Whether two output trees hold the same CSV and JSON files with the same content (timestamps aside)."""
    def files(root):
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
                if p.is_file() and p.suffix in (".csv", ".json") and not p.name.startswith(".")}

    fa, fb = files(a), files(b)
    differ = sorted(set(fa) ^ set(fb)) + sorted(n for n in set(fa) & set(fb) if _normalised(fa[n]) != _normalised(fb[n]))
    return f"identical CSV/JSON ({len(fa)} files)" if not differ else f"DIFFER: {', '.join(differ[:4])}"


def wait_for(condition, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def case_kill_resume(work: Path, args, rows: list) -> None:
    folder = study(work, "kill_study", CLIPS)
    whole, killed = work / "kill_whole", work / "kill_out"
    ref = subprocess.run(batch_cmd(folder, whole, args), capture_output=True, text=True)
    rows.append(("uninterrupted batch (reference)", str(ref.returncode), first_line(ref.stderr), leftovers(whole)))
    staging = killed / STAGING_DIR
    moments = [("mid-video", lambda: len(list(killed.glob(".*.set.json"))) >= 2, 1.0),  # into the third video
               ("while a set is written", lambda: staging.is_dir() and any(staging.iterdir()), 0.0)]
    for moment, ready, delay in moments:
        proc = subprocess.Popen(batch_cmd(folder, killed, args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        wait_for(ready, 600, poll=0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        table = "present" if (killed / "batch_summary.csv").exists() else "absent"
        rows.append((f"kill -9 {moment} (folder as left)", str(proc.returncode), first_line(err),
                     f"{leftovers(killed)}; batch_summary.csv {table}"))
        resumed = subprocess.run(batch_cmd(folder, killed, args, "--resume"), capture_output=True, text=True)
        done = re.search(r"(\d+) analysed, (\d+) already done", resumed.stdout)
        rows.append((f"then --resume ({done.group(1)} analysed, {done.group(2)} done)" if done else "then --resume",
                     str(resumed.returncode), first_line(resumed.stderr),
                     f"{leftovers(killed)}; {compare(whole, killed)}"))
        shutil.rmtree(killed)


def _lock_file(out: Path, shard) -> Path:
    return out / (".ratscore-batch.lock" if shard is None else f".ratscore-batch.shard-{shard.replace('/', '-of-')}.lock")


def case_concurrent(work: Path, args, rows: list, first, second, n: int) -> None:
    name = lambda s: "unsharded" if s is None else f"shard {s}"  # noqa: E731
    folder = study(work, f"concurrent_{n}", CONCURRENT)
    out = work / f"concurrent_{n}_out"
    opts = lambda s: () if s is None else ("--shard", s)  # noqa: E731
    a = subprocess.Popen(batch_cmd(folder, out, args, *opts(first)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    held = wait_for(lambda: f"pid {a.pid}" in (_lock_file(out, first).read_text(errors="replace")
                                               if _lock_file(out, first).exists() else ""), 300)
    b = subprocess.run(batch_cmd(folder, out, args, *opts(second)), capture_output=True, text=True)
    a_out, a_err = a.communicate()
    still = "" if held else " (first run never held its lock!)"
    rows.append((f"{name(first)} + {name(second)} on one folder{still}", f"{a.returncode} / {b.returncode}",
                 first_line(b.stderr), leftovers(out)))


def case_disk_full(work: Path, args, rows: list) -> None:
    if os.geteuid() != 0:
        rows.append(("disk full (tmpfs 2 MiB)", "-", "skipped: not running as root", "-"))
        return
    mount = work / "tmpfs"
    mount.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if got.returncode != 0:
        rows.append(("disk full (tmpfs 2 MiB)", "-", f"skipped: mount failed ({first_line(got.stderr)})", "-"))
        return
    try:
        folder = study(work, "disk_study", CLIPS)
        out = mount / "out"
        # leave room for about one video's outputs, so the run fills the disk part-way through
        with open(mount / "filler", "wb") as f:
            f.write(b"\0" * (2 * 1024 * 1024 - 260 * 1024))
        full = subprocess.run(batch_cmd(folder, out, args), capture_output=True, text=True)
        failed = re.search(r"(\d+) failed", full.stdout)
        # a failed video's line is on stdout ("name: error"); stderr has a line only for a run error
        said = first_line(full.stderr) if "ratscore:" in full.stderr else \
            "(stdout) " + first_line("\n".join(line for line in full.stdout.splitlines() if "disk full" in line))
        rows.append((f"disk full (tmpfs 2 MiB, 260 KiB free; {failed.group(1) if failed else '?'} failed)",
                     str(full.returncode), said, leftovers(out)))
        (mount / "filler").unlink()
        again = subprocess.run(batch_cmd(folder, out, args, "--resume"), capture_output=True, text=True)
        done = re.search(r"(\d+) analysed, (\d+) already done", again.stdout)
        rows.append((f"then space freed, --resume ({done.group(1)} analysed, {done.group(2)} done)" if done
                     else "then space freed, --resume", str(again.returncode), first_line(again.stderr),
                     leftovers(out)))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def print_table(rows: list) -> None:
    header = ("case", "exit", "first stderr line", "leftovers")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fault_matrix"), help="scratch folder (emptied)")
    parser.add_argument("--model", type=Path, default=ROOT / "models", help="model folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    os.chdir(ROOT)
    rows: list = []
    case_kill_resume(args.work, args, rows)
    pairs = [(None, None), (None, "0/2"), ("0/2", None), ("0/2", "0/2"), ("0/2", "1/2")]
    for n, (first, second) in enumerate(pairs):
        case_concurrent(args.work, args, rows, first, second, n)
    case_disk_full(args.work, args, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
