"""ratscore.cluster: a study as a job array of shards and a merge (submitit).

The local executor runs the whole thing on this machine; the SLURM path runs against a stand-in
`sbatch` on PATH that records each submission script and answers with a job id, so what reaches
sbatch is checked without a cluster.
"""

import os
import pickle
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ratscore.cli import app
from ratscore.cluster import (JOB_NAME, LOG_FOLDER, MERGE_JOB_NAME, RatscoreCommand, SubmittedStudy, merge_argv,
                              merge_parameters, slurm_parameters, submit_batch)
from ratscore.errors import InputError, RunError
from ratscore.video import write_h264

runner = CliRunner()


def _video(path: Path, seconds: float, seed: int) -> Path:
    """A short 96x72 H.264 clip: a bright blob moving over a textured floor."""
    rng = np.random.default_rng(seed)
    floor = np.kron(rng.integers(40, 120, (9, 12, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    yy, xx = np.mgrid[0:72, 0:96]

    def frame(i):
        image = floor.copy()
        cx, cy = 48 + 30 * np.cos(0.2 * i + seed), 36 + 20 * np.sin(0.3 * i)
        image[((xx - cx) / 12) ** 2 + ((yy - cy) / 7) ** 2 < 1] = (220, 210, 200)
        return image

    write_h264(path, (frame(i) for i in range(int(seconds * 30))), fps=30)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    for i, seconds in enumerate((1.5, 2.0, 1.2)):
        _video(folder / f"rat{i + 1}.mp4", seconds, seed=i)
    return folder


def _args(model):
    return ["--model", str(model), "--no-roi", "--device", "cpu"]


def _table(path):
    return pd.read_csv(path).sort_values("video").reset_index(drop=True)


@pytest.mark.slow
def test_local_array_runs_every_shard_and_the_merge_matches_one_batch_run(tmp_path, study, tiny_model):
    single = tmp_path / "single"
    result = runner.invoke(app, ["batch", str(study), "-o", str(single), *_args(tiny_model)])
    assert result.exit_code == 0, result.output

    out = tmp_path / "sharded"
    submitted = submit_batch(study, out, _args(tiny_model), shards=3, executor="local", concurrency=2,
                             time_minutes=10, cpus_per_job=1)
    # the local path waits for the array before it submits the merge: every shard's table is there
    assert len(submitted.array_job_ids) == 3 and submitted.merge_job_id
    for i in range(3):
        assert (out / f"batch_summary.shard-{i}-of-3.csv").exists()
    submitted.wait()
    merged, whole = _table(out / "batch_summary.csv"), _table(single / "batch_summary.csv")
    assert list(merged.video) == ["rat1.mp4", "rat2.mp4", "rat3.mp4"] and set(merged.status) == {"ok"}
    # the same rows; floats computed in another process may differ in their last digits
    pd.testing.assert_frame_equal(merged, whole, check_exact=False, rtol=1e-4)
    for i in range(1, 4):
        assert (out / f"rat{i}.events.csv").exists() and (out / f"rat{i}.report.html").exists()
    assert submitted.log_dir == out.absolute() / LOG_FOLDER
    logs = "".join(p.read_text() for p in submitted.log_dir.glob("*_log.out"))
    assert all(f"rat{i}.mp4: ok" in logs for i in range(1, 4))  # each shard lists its videos
    assert "merged 3 videos (0 failed)" in logs


def test_the_job_function_runs_ratscore_and_raises_on_a_non_zero_exit(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert RatscoreCommand(["labels"])() == 0
    with pytest.raises(RunError, match="ratscore batch --merge .* exited with code 2"):
        RatscoreCommand(merge_argv(tmp_path))()  # no shard tables to merge
    assert signal.getsignal(signal.SIGTERM) is before  # the job's own SIGTERM handling (submitit's) is back


def test_wait_reports_a_failed_merge(tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="local")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(RatscoreCommand(merge_argv(tmp_path)))
    study = SubmittedStudy([], job.job_id, tmp_path / "logs", "local", [], job)
    with pytest.raises(RunError, match=f"merge job {job.job_id} failed: .*exited with code 2"):
        study.wait()
    assert "no shard summaries" in "".join(p.read_text() for p in (tmp_path / "logs").glob("*_log.err"))


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`sbatch` and `srun` stand-ins on PATH: sbatch keeps each script in `record` and answers
    'Submitted batch job N' (N from 1000)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch_record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        f"n=$(( $(ls '{record}' | wc -l) + 1000 ))\n"
        f"cp \"$1\" '{record}'/$n.sh\n"
        "echo \"Submitted batch job $n\"\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for name in ("sbatch", "srun"):
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_slurm_parameters():
    params = slurm_parameters(8, partition="gpu", gpus_per_job=1, time_minutes=90, concurrency=3, cpus_per_job=6,
                              mem_gb=16, account="lab")
    assert params == {"name": JOB_NAME, "timeout_min": 90, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 6,
                      "gpus_per_node": 1, "slurm_array_parallelism": 3, "slurm_partition": "gpu",
                      "slurm_account": "lab", "mem_gb": 16}
    cpu = slurm_parameters(4, time_minutes=60, cpus_per_job=2)
    assert "gpus_per_node" not in cpu and "slurm_partition" not in cpu
    assert cpu["slurm_array_parallelism"] == 4  # no limit: every shard at once
    assert slurm_parameters(2, concurrency=10)["slurm_array_parallelism"] == 2
    merge = merge_parameters("4242", partition="gpu", time_minutes=600)
    assert merge["slurm_additional_parameters"] == {"dependency": "afterany:4242"}
    assert merge["name"] == MERGE_JOB_NAME and merge["cpus_per_task"] == 1 and "gpus_per_node" not in merge
    assert merge["timeout_min"] == 30 and merge["slurm_partition"] == "gpu"


def test_slurm_submission_hands_sbatch_an_array_and_a_dependent_merge(tmp_path, study, tiny_model, fake_slurm):
    out = tmp_path / "out"
    submitted = submit_batch(study, out, [*_args(tiny_model), "--threshold", "0.2"], shards=4, executor="slurm",
                             partition="gpu", gpus_per_job=1, time_minutes=90, concurrency=2, cpus_per_job=6)
    assert submitted.array_job_ids == [f"1000_{i}" for i in range(4)]
    assert submitted.merge_job_id == "1001"
    array, merge = (fake_slurm / "1000.sh").read_text(), (fake_slurm / "1001.sh").read_text()
    for line in ("--array=0-3%2", "--partition=gpu", "--gpus-per-node=1", "--time=90", "--cpus-per-task=6",
                 f"--job-name={JOB_NAME}", "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in array, line
    assert "dependency" not in array
    assert f"{out / LOG_FOLDER}/%A_%a_0_log.out" in array
    for line in ("--dependency=afterany:1000", "--partition=gpu", "--time=30", "--cpus-per-task=1",
                 f"--job-name={MERGE_JOB_NAME}"):
        assert f"#SBATCH {line}\n" in merge, line
    assert "gpus" not in merge
    # what each job will run: the pickled submissions submitit left for the nodes
    commands = {}
    for path in (out / LOG_FOLDER).glob("*_submitted.pkl"):
        with open(path, "rb") as f:
            delayed = pickle.load(f)
        assert isinstance(delayed.function, RatscoreCommand)
        commands[path.name.split("_submitted")[0]] = delayed.function.argv
    expected = {f"1000_{i}": ("batch", str(study), "-o", str(out), "--shard", f"{i}/4", *_args(tiny_model),
                              "--threshold", "0.2") for i in range(4)}
    assert commands == {**expected, "1001": ("batch", "--merge", str(out))}
    assert submitted.executor == "slurm" and not any(out.glob("batch_summary*"))


def test_a_requeued_job_reruns_the_same_command():
    command = RatscoreCommand(["batch", "/data/study", "-o", "/data/out", "--shard", "1/4"])
    again = command.checkpoint()
    assert again.function.argv == command.argv and again.args == () and not again.function._requeued
    assert command._requeued  # its own exit (submitit's, after requeueing) is let through


def test_bad_options_are_refused_before_anything_is_submitted(tmp_path, study, tiny_model, fake_slurm):
    out = tmp_path / "out"
    args = _args(tiny_model)

    def refused(match, **changes):
        kwargs = {"folder": study, "out": out, "batch_args": args, "shards": 2, "executor": "slurm", **changes}
        with pytest.raises(InputError, match=match) as e:
            submit_batch(**kwargs)
        assert "\n" not in str(e.value)
        assert not out.exists() and not any(fake_slurm.iterdir())

    refused("--shards", shards=0)
    refused("--shards", shards="4")
    refused("--shards", shards=True)
    refused("--time", time_minutes=0)
    refused("--time", time_minutes=2.5)
    refused("--gpus", gpus_per_job=-1)
    refused("--concurrency", concurrency=0)
    refused("cpus per job", cpus_per_job=0)
    refused("memory", mem_gb=-1)
    refused("--partition", partition="gpu long")
    refused("--partition", partition="")
    refused("--submit", executor="pbs")
    refused("--shard is set by the submission", batch_args=[*args, "--shard", "0/2"])
    refused("-o is set by the submission", batch_args=[*args, "-o", str(tmp_path / "elsewhere")])
    refused("--output is set by the submission", batch_args=[*args, "--output=x"])
    refused("--merge is set", batch_args=["--merge", str(out)])
    refused("list of strings", batch_args="--no-roi")
    refused("--bogus", batch_args=[*args, "--bogus"])
    refused("threshold", batch_args=[*args, "--threshold", "high"])
    refused("extra argument", batch_args=[*args, "another_folder"])
    refused("--device must be", batch_args=["--model", str(tiny_model), "--device", "tpu"])
    refused("--gpus 1", batch_args=["--model", str(tiny_model), "--device", "cuda"])
    refused("--model .*no such", batch_args=["--model", str(tmp_path / "no_model")])
    refused("no such folder", folder=tmp_path / "no_study")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused("no video files", folder=empty)
    clash = tmp_path / "clash"
    clash.mkdir()
    for name in ("rat.mp4", "rat.avi"):
        (clash / name).write_bytes((study / "rat1.mp4").read_bytes())
    refused("share the name", folder=clash)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InputError, match="not a folder"):
        submit_batch(study, blocker / "out", args, shards=2, executor="slurm")

    # shard tables of another split in OUT: the merge could not join them with these
    out.mkdir()
    (out / "batch_summary.shard-0-of-3.csv").write_text("video\n")
    with pytest.raises(InputError, match="--shards 3"):
        submit_batch(study, out, args, shards=2, executor="slurm")
    assert not any(fake_slurm.iterdir()) and not (out / LOG_FOLDER).exists()


def test_no_slurm_here_is_one_line(tmp_path, study, tiny_model, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(InputError, match="no SLURM here"):
        submit_batch(study, tmp_path / "out", _args(tiny_model), shards=2)
    assert not (tmp_path / "out").exists()


def test_a_stale_table_of_this_split_is_removed_before_submitting(tmp_path, study, tiny_model, fake_slurm):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "batch_summary.shard-1-of-2.csv"
    stale.write_text("video,status\nold.mp4,ok\n")
    submit_batch(study, out, _args(tiny_model), shards=2, executor="slurm")
    assert not stale.exists()
    assert re.search(r"--array=0-1%2", (fake_slurm / "1000.sh").read_text())


def test_batch_submit_on_the_command_line(tmp_path, study, tiny_model, fake_slurm):
    from typer.testing import CliRunner

    from ratscore.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["batch", str(study), "-o", str(out), "--model", str(tiny_model), "--no-roi",
                                      "--submit", "slurm", "--shards", "3", "--partition", "gpu", "--gpus", "1",
                                      "--time", "60", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert "1000_0, 1000_1, 1000_2" in result.output and "merge job 1001" in result.output
    array = (fake_slurm / "1000.sh").read_text()
    assert "#SBATCH --array=0-2%2\n" in array and "#SBATCH --partition=gpu\n" in array
    result = CliRunner().invoke(app, ["batch", str(study), "-o", str(out), "--submit", "slurm", "--shard", "0/2"])
    assert result.exit_code == 2 and "takes no --shard" in result.output
