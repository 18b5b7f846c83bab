"""A study on a cluster: one job array of `ratscore batch --shard I/N`, then the merge, via submitit.

    submit_batch(folder, out, ["--model", "models/"], shards=16, partition="gpu", gpus_per_job=1)

submits job I of the array as `ratscore batch FOLDER -o OUT --shard I/N <batch_args>` and a last
job, `ratscore batch --merge OUT`, that SLURM starts once every shard has ended, whether it
succeeded or not (`afterany`): a shard that failed or was killed leaves its table missing and the
merge says which; a shard with one unreadable video still writes its table. It returns once the
jobs are queued, with their ids; `SubmittedStudy.wait()` blocks until the merge has run.

Each job runs the ratscore program in the job's own Python process (the submitter's interpreter,
so the same environment), as `python -m ratscore.cli` would. It is checkpointable: when SLURM
warns of the time limit or of preemption, submitit requeues the same command, and the batch's
resume skips the videos already done. Running the same submission again after any stop does the
same.

Nothing is submitted until every option has been checked (InputError, one line): the numbers, the
batch options (parsed as `ratscore batch` parses them), the folder (it must hold videos and no two
of one stem), the output folder (no other batch writing into it, no shard tables of another split).
Submitting then removes this split's old shard tables, so the merge can only join tables that this
submission's shards wrote.
"""

from __future__ import annotations

import math
import re
import runpy
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import InputError, RunError

EXECUTORS = ("slurm", "local")
LOG_FOLDER = ".slurm"  # under OUT, unless log_dir is given
DEFAULT_TIME_MINUTES = 240  # per shard
DEFAULT_CPUS_PER_JOB = 4
MERGE_TIME_MINUTES = 30  # joining CSV tables; capped by the shards' own limit
JOB_NAME = "ratscore-batch"
MERGE_JOB_NAME = "ratscore-merge"
# Set by the submission itself (or the submitting command's own options): refused in batch_args.
RESERVED_OPTIONS = ("-o", "--output", "--shard", "--merge", "--submit", "--shards", "--partition", "--gpus",
                    "--time", "--concurrency", "--study")
LOCAL_POLL_S = 0.5


def _cli_program() -> dict:
    """The `ratscore` command-line program's namespace (its Typer `app` and `main`), run from its
    module as `python -m ratscore.cli` would run it, not imported: the CLI imports this module (for
    `batch --submit`), and the package's imports stay free of cycles (tests/test_layout.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy's note when the CLI is imported as well
        return runpy.run_module("ratscore.cli", run_name="ratscore_program")


# ---- what runs inside a job ----------------------------------------------------------------------

class RatscoreCommand:
    """`ratscore ARGV...` in the job's own process; a picklable callable for submitit.

    Checkpointable (it has `checkpoint`): on SLURM's time-limit or preemption signal submitit calls
    it, requeues the job with the same command and exits, and the rerun resumes. A non-zero exit
    (a video failed, bad input) is raised as RunError, so the job shows as failed.
    """

    def __init__(self, argv: Sequence[str]):
        self.argv = tuple(str(a) for a in argv)
        self._requeued = False

    def __repr__(self) -> str:
        return f"RatscoreCommand({shlex.join(['ratscore', *self.argv])!r})"

    def __call__(self) -> int:
        main = _cli_program()["main"]
        saved = sys.argv
        sys.argv = ["ratscore", *self.argv]
        try:
            main()
            code = 0
        except SystemExit as e:
            if self._requeued:  # submitit's own exit after requeueing this job: let it end the process
                raise
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = saved
        if code != 0:
            raise RunError(f"{shlex.join(['ratscore', *self.argv])} exited with code {code} (see this job's log)")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.helpers import DelayedSubmission

        self._requeued = True
        return DelayedSubmission(RatscoreCommand(self.argv))


# ---- what is handed to submitit (pure: tested without a cluster) ------------------------------------

def shard_argv(folder: Path, out: Path, index: int, shards: int, batch_args: Sequence[str] = ()) -> list[str]:
    """The ratscore arguments of shard `index` of `shards`."""
    return ["batch", str(folder), "-o", str(out), "--shard", f"{index}/{shards}", *batch_args]


def merge_argv(out: Path, study: Optional[Path] = None) -> list[str]:
    """The merge job's ratscore arguments; with `study`, it adds the study sheet's columns and study.xlsx."""
    return ["batch", "--merge", str(out), *(["--study", str(study)] if study is not None else [])]


def slurm_parameters(shards: int, partition: Optional[str] = None, gpus_per_job: int = 0,
                     time_minutes: int = DEFAULT_TIME_MINUTES, concurrency: Optional[int] = None,
                     cpus_per_job: int = DEFAULT_CPUS_PER_JOB, mem_gb: Optional[float] = None,
                     account: Optional[str] = None) -> dict:
    """The array's parameters, as submitit.AutoExecutor.update_parameters takes them (`slurm_`
    ones reach sbatch only; the local executor honours the time and the GPUs)."""
    params = {"name": JOB_NAME, "timeout_min": int(time_minutes), "nodes": 1, "tasks_per_node": 1,
              "cpus_per_task": int(cpus_per_job), "gpus_per_node": int(gpus_per_job),
              # at most this many shards run at once (sbatch --array=0-(N-1)%K)
              "slurm_array_parallelism": int(min(concurrency or shards, shards))}
    if not gpus_per_job:
        del params["gpus_per_node"]  # no --gpus-per-node=0 line: some clusters refuse it on CPU partitions
    params.update(_placement(partition, account, mem_gb))
    return params


def merge_parameters(array_job_id: Optional[str], partition: Optional[str] = None, account: Optional[str] = None,
                     time_minutes: int = DEFAULT_TIME_MINUTES) -> dict:
    """The merge job's parameters: one CPU, after every task of the array has ended, whatever its
    state (None: no dependency, for the local executor, which has none)."""
    params = {"name": MERGE_JOB_NAME, "timeout_min": int(min(time_minutes, MERGE_TIME_MINUTES)), "nodes": 1,
              "tasks_per_node": 1, "cpus_per_task": 1}
    if array_job_id is not None:
        params["slurm_additional_parameters"] = {"dependency": f"afterany:{array_job_id}"}
    params.update(_placement(partition, account, None))
    return params


def _placement(partition: Optional[str], account: Optional[str], mem_gb: Optional[float]) -> dict:
    params = {}
    if partition:
        params["slurm_partition"] = partition
    if account:
        params["slurm_account"] = account
    if mem_gb:
        params["mem_gb"] = mem_gb
    return params


# ---- checks, before anything is submitted --------------------------------------------------------

def _whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _name(option: str, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InputError(f"{option} must be a SLURM name without spaces, got {value!r}")
    return value


def check_batch_args(folder: Path, out: Path, batch_args: Sequence[str]) -> dict:
    """Parse `ratscore batch FOLDER -o OUT <batch_args>` as the CLI would, running nothing; the
    parsed options, or an InputError naming what is wrong."""
    import typer

    if isinstance(batch_args, str) or not all(isinstance(a, str) for a in batch_args):
        raise InputError(f"batch_args must be a list of strings, got {batch_args!r}")
    for arg in batch_args:
        if arg.split("=", 1)[0] in RESERVED_OPTIONS:
            raise InputError(f"batch option {arg.split('=', 1)[0]} is set by the submission itself; leave it out")
    command = typer.main.get_command(_cli_program()["app"]).commands["batch"]
    try:
        with command.make_context("ratscore batch", [str(folder), "-o", str(out), *batch_args]) as ctx:
            return dict(ctx.params)
    except typer.TyperException as e:
        raise InputError(f"batch options {shlex.join(batch_args)!r}: {e.format_message()}") from None


def check_submission(folder: Path, out: Path, batch_args: Sequence[str], shards: int, executor: str,
                     partition: Optional[str], gpus_per_job: int, time_minutes: int, concurrency: Optional[int],
                     cpus_per_job: int, mem_gb: Optional[float], account: Optional[str]) -> None:
    """Every InputError a submission can meet, before it writes or submits anything."""
    from .batch import plan_batch
    from .files import check_output_folder
    from .runtime import DEVICES

    if executor not in EXECUTORS:
        raise InputError(f"--submit must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    _whole("--shards", shards, 1)
    _whole("--time (minutes)", time_minutes, 1)
    _whole("--gpus", gpus_per_job, 0)
    _whole("cpus per job", cpus_per_job, 1)
    if concurrency is not None:
        _whole("--concurrency", concurrency, 1)
    if mem_gb is not None and (isinstance(mem_gb, bool) or not isinstance(mem_gb, (int, float))
                               or not math.isfinite(mem_gb) or mem_gb <= 0):
        raise InputError(f"memory per job must be a number of GB > 0, got {mem_gb!r}")
    _name("--partition", partition)
    _name("--account", account)
    options = check_batch_args(folder, out, batch_args)
    if options.get("device") not in DEVICES:
        raise InputError(f"--device must be auto, cpu or cuda, got {options.get('device')!r}")
    if options.get("device") == "cuda" and not gpus_per_job:
        raise InputError("--device cuda needs a GPU per job: give --gpus 1 (or more)")
    for option in ("model", "mask", "racine_config"):
        path = options.get(option)
        if path is not None and not Path(path).exists():
            raise InputError(f"--{option.replace('_', '-')} {path}: no such file or folder")
    plan_batch(folder, bool(options.get("recursive")), options.get("pattern"))  # videos there, no stem clashes
    check_output_folder(out)
    _check_other_splits(out, shards)
    if executor == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise InputError("--submit slurm: no SLURM here (sbatch and srun not found); submit from a login node "
                         "of the cluster")


def _split_tables(out: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    if out.is_dir():
        for p in out.glob("batch_*.shard-*-of-*.csv"):
            m = re.fullmatch(r"batch_(summary|failures)\.shard-\d+-of-(\d+)\.csv", p.name)
            if m:
                found.setdefault(int(m.group(2)), []).append(p)
    return found


def _check_other_splits(out: Path, shards: int) -> None:
    other = {n: paths for n, paths in _split_tables(out).items() if n != shards}
    if other:
        n = min(other)
        raise InputError(f"{out}: holds shard tables of an earlier split into {n} (batch_summary.shard-*-of-{n}.csv); "
                         f"submit with --shards {n} to resume it, or remove those tables")


def _clear_split(out: Path, shards: int) -> None:
    """Remove this split's shard tables while no batch writes into OUT (InputError if one does)."""
    from .batch import OutputLock

    with OutputLock(out, what="batch --submit"):
        for path in _split_tables(out).get(shards, []):
            path.unlink(missing_ok=True)


# ---- submission ----------------------------------------------------------------------------------

@dataclass
class SubmittedStudy:
    """The jobs of one submitted study."""

    array_job_ids: list[str]  # one per shard, in shard order (SLURM: "<array id>_<index>")
    merge_job_id: str
    log_dir: Path  # submitit's job logs: <job id>_<task>_log.out / .err
    executor: str
    _array_jobs: list = field(default_factory=list, repr=False, compare=False)
    _merge_job: Any = field(default=None, repr=False, compare=False)

    def wait(self) -> None:
        """Block until the merge job has ended; RunError when it failed (a shard's table missing,
        a video failed: its log and OUT/batch_failures.csv say which)."""
        if self._merge_job is None:
            raise RunError("this study's jobs were not submitted from this process; watch them with squeue")
        self._merge_job.wait()
        error = self._merge_job.exception()
        if error is not None:
            raise RunError(f"merge job {self.merge_job_id} failed: {_job_error_line(error)} (log in {self.log_dir})")


def submit_batch(folder: str | Path, out: str | Path, batch_args: Sequence[str] = (), shards: int = 1,
                 executor: str = "slurm", partition: Optional[str] = None, gpus_per_job: int = 0,
                 time_minutes: int = DEFAULT_TIME_MINUTES, concurrency: Optional[int] = None,
                 cpus_per_job: int = DEFAULT_CPUS_PER_JOB, log_dir: Optional[str | Path] = None,
                 mem_gb: Optional[float] = None, account: Optional[str] = None,
                 study: Optional[str | Path] = None) -> SubmittedStudy:
    """Score FOLDER into OUT as `shards` cluster jobs and a merge; returns once they are submitted.

    `batch_args`: further `ratscore batch` options for every shard (e.g. ["--model", DIR,
    "--recursive"]); not -o, --shard, --merge or --study, which the submission sets. `study`: a
    STUDY.csv, checked against the folder before anything is submitted, given to the merge job. `executor`: "slurm"
    (sbatch, from a login node), or "local" (submitit's local executor: the jobs run on this machine,
    for trying a set-up out). Per shard job: `time_minutes` (the limit), `gpus_per_job`,
    `cpus_per_job`, `mem_gb` (default: the partition's); `concurrency` caps the shards running at
    once (default: all); `partition` and `account` as sbatch takes them. Logs go to `log_dir`
    (default OUT/.slurm). Jobs start in the current directory, as sbatch does: relative paths in
    `batch_args` must resolve from there on the nodes too.

    The local executor cannot express a dependency between jobs, so there this function runs the
    shards itself (at most `concurrency` at once), waits for all of them, and only then submits the
    merge: it returns when the shards are done and the merge is running (`wait()` for the merge).
    """
    folder, out = Path(folder).absolute(), Path(out).absolute()  # jobs may start in another directory
    batch_args = list(batch_args) if not isinstance(batch_args, str) else batch_args
    check_submission(folder, out, batch_args, shards, executor, partition, gpus_per_job, time_minutes,
                     concurrency, cpus_per_job, mem_gb, account)
    if study is not None:
        from .study import load_study

        study = Path(study).absolute()
        options = check_batch_args(folder, out, batch_args)
        load_study(study, folder, bool(options.get("recursive")), options.get("pattern"))
    import submitit

    log_dir = Path(log_dir).absolute() if log_dir is not None else out / LOG_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    _clear_split(out, shards)
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = [RatscoreCommand(shard_argv(folder, out, i, shards, batch_args)) for i in range(shards)]
    array = submitit.AutoExecutor(folder=log_dir, cluster=executor)
    array.update_parameters(**slurm_parameters(shards, partition, gpus_per_job, time_minutes, concurrency,
                                               cpus_per_job, mem_gb, account))
    if executor == "slurm":
        try:
            with array.batch():
                jobs = [array.submit(c) for c in commands]
        except Exception as e:  # noqa: BLE001 - sbatch's refusal, as one line
            raise RunError(f"sbatch refused the shard array: {_last_line(e)}") from None
        dependency = jobs[0].job_id.split("_")[0]  # the array's id: afterany waits for all its tasks
    else:
        jobs = _run_local(array, commands, concurrency or shards)
        dependency = None  # the shards have all ended already
    merge = submitit.AutoExecutor(folder=log_dir, cluster=executor)
    merge.update_parameters(**merge_parameters(dependency, partition, account, time_minutes))
    try:
        merge_job = merge.submit(RatscoreCommand(merge_argv(out, study)))
    except Exception as e:  # noqa: BLE001
        raise RunError(f"the shards were submitted ({jobs[0].job_id.split('_')[0]}) but the merge job was refused: "
                       f"{_last_line(e)}; run `{shlex.join(['ratscore', *merge_argv(out, study)])}` once they are done") from None
    return SubmittedStudy([j.job_id for j in jobs], merge_job.job_id, log_dir, executor, jobs, merge_job)


def _run_local(executor, commands: list[RatscoreCommand], concurrency: int) -> list:
    """Start the shards with at most `concurrency` running; return when all have ended."""
    jobs: list = []
    try:
        for command in commands:
            while sum(not j.done() for j in jobs) >= concurrency:
                time.sleep(LOCAL_POLL_S)
            jobs.append(executor.submit(command))
        for job in jobs:
            job.wait()
    except BaseException:  # Ctrl-C while waiting: stop the shards this call started
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        raise
    return jobs


def _job_error_line(error: Exception) -> str:
    """The exception line of the traceback submitit wraps a failed job's error in."""
    lines = [line.strip() for line in str(error).splitlines()]
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    if len(rules) >= 2:
        inside = [line for line in lines[rules[0] + 1:rules[1]] if line]
        if inside:
            return re.sub(r"^[\w.]+(Error|Exception): ", "", inside[-1])
    return _last_line(error)


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
