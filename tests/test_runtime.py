"""Device choice, ONNX Runtime sessions and the benchmarks' memory figure."""

import platform
import subprocess
import sys

import numpy as np
import pytest

from ratscore.errors import InputError
from ratscore.runtime import cores_beside_one_thread, cpu_cores, onnx_session, peak_rss_mb, resolve_device


def test_device_names():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(InputError, match="--device must be auto, cpu or cuda"):
        resolve_device("tpu")


def test_threads_leave_a_core_to_the_decoder():
    assert 1 <= cores_beside_one_thread() <= max(1, cpu_cores() - 1)


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path):
    bad = tmp_path / "i3d.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(InputError, match=r"i3d.onnx: not a loadable I3D ONNX model"):
        onnx_session(bad, "cpu", threads=1, what="I3D ONNX model")


def test_peak_memory_sees_a_big_allocation():
    before = peak_rss_mb()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
    assert peak_rss_mb() >= before and peak_rss_mb() >= block.nbytes / 2**20


def test_stopped_workers_do_not_finish_what_they_were_doing():
    """After an interrupt, a pool's running work is stopped, not waited for: at exit Python joins a
    pool's processes, so a worker left running would hold up Ctrl-C until its task ended."""
    import multiprocessing.connection
    import time

    from ratscore.runtime import stop_workers, worker_processes

    pool = worker_processes(2)
    running = [pool.submit(time.sleep, 600) for _ in range(2)]
    queued = pool.submit(time.sleep, 600)
    while not all(f.running() for f in running):
        time.sleep(0.05)
    processes = list(pool._processes.values())
    stop_workers(pool)
    # A process's sentinel is ready once it has ended. Not process.join(): the pool's own thread
    # reaps a worker that died too, and a join that loses that race returns with no exit code yet.
    deadline = time.monotonic() + 60  # far less than the sleep: a worker still sleeping fails here
    waiting = [process.sentinel for process in processes]
    while waiting and time.monotonic() < deadline:
        ended = multiprocessing.connection.wait(waiting, timeout=deadline - time.monotonic())
        waiting = [sentinel for sentinel in waiting if sentinel not in ended]
    assert not waiting
    # the task not started yet never runs: cancelled, or failed with the pool it was queued in. Poll
    # done() rather than futures.wait(): a future the shutdown cancelled is never "cancelled and
    # notified", so wait() would sit out its whole timeout on it.
    while not queued.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued.cancelled() or queued.exception(timeout=0) is not None


FREED_MEMORY_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from ratscore.runtime import keep_freed_memory
    keep_freed_memory()
elif sys.argv[1] == "encoder":
    from ratscore.features import ClipEncoder
    from ratscore.i3d import I3DConfig, InceptionI3d
    ClipEncoder(64, 128, model=InceptionI3d(I3DConfig(width=0.125, input_size=64)), device="cpu")
block = 48 << 17  # float64s: 48 MB, above glibc's largest mmap threshold (32 MB)
np.ones(block).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(block).sum()  # written, read and freed, as an I3D batch's activations are
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's malloc's")
def test_freed_memory_is_kept_for_the_next_batch():
    """A big buffer freed and asked for again comes back without the kernel paging it in anew:
    after keep_freed_memory, and after a CPU ClipEncoder is made (which calls it)."""

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FREED_MEMORY_FAULTS, mode], capture_output=True, text=True,
                             check=True)
        return int(run.stdout.split()[-1])

    by_default = faults("default")
    assert by_default >= 10  # each of the ten buffers paged in again
    assert faults("keep") * 5 < by_default
    assert faults("encoder") * 5 < by_default
