"""Where inference runs: the device a command asked for, and ONNX Runtime sessions set up for it.

Extraction runs its networks at once on the CPU: the ONNX detector beside the background thread
that decodes and crops (in a thread of its own in `analyze`, roi.RoiTracker's detect_ahead; inside
that thread in `batch`'s worker processes), and the I3D in the main thread. ONNX Runtime's worker
threads spin-wait for the next call by default, which on a 2-core machine takes the core the
decoder needs (measured: a 3-minute 640x480 video extracted in 32 s with spinning, 22 s without it
and with the thread split below). So spinning is off, the detector gets one thread, and the I3D
leaves one core to the decoding thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; a GPU asked for but absent is an InputError."""
    import torch

    if device not in DEVICES:
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available here")
    return device


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def resolve_precision(precision: str, device: str) -> str:
    """The I3D's arithmetic on `device` (resolved): "auto" -> fp16 on a GPU, fp32 on the CPU.

    fp16, not bf16: with the bundled model on the sample clips, fp16 kept every event within one
    frame and its score within 0.001 of fp32, where bf16 (3 fewer mantissa bits) moved scores by up
    to 0.023 and one event above the threshold by more than a frame (docs/RESULTS.md). Autocast keeps
    the reductions in fp32, where fp16's narrow range would overflow. The CPU stays exact by default:
    reduced precision saves nothing there (the I3D runs in ONNX Runtime, in fp32).
    """
    check_precision(precision)
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    return precision


def cpu_cores() -> int:
    """Cores this process may run on (the container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_processes(count: int):
    """A pool of `count` worker processes for work that keeps one core busy each (rendering,
    training). Spawned, not forked: the caller may hold torch's or ONNX Runtime's threads, which a
    fork does not copy. On Linux each worker ends with the process that made it, so a run killed
    outright (SIGKILL) leaves no worker behind to write into the folder a resumed run uses."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max(1, count), mp_context=multiprocessing.get_context("spawn"),
                               initializer=end_with_parent)


def stop_workers(pool) -> None:
    """Stop a `worker_processes` pool now, its running work lost: after an error or an interrupt.
    shutdown(wait=False) alone is not enough: at exit Python still joins a pool's processes, so a
    Ctrl-C or SIGTERM would wait for every task already running (a video's render, a localizer's
    whole training) before the process ended."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # Python 3.14: pool.terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)  # (which forgets them)
    for process in processes:
        process.terminate()


def end_with_parent() -> None:
    """In a worker process: end it (SIGTERM) when the process that started it ends."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker ends when its work queue closes
        pass


# the largest buffer C's malloc keeps for reuse: above the bundled I3D's largest (between 32 and
# 64 MB at batch 8) and a full-size one's (205 MB: 64 channels x 8 x 112 x 112 floats a clip)
KEPT_ALLOCATION_BYTES = 256 << 20


def keep_freed_memory() -> None:
    """Let glibc's malloc keep what the I3D frees between batches for the next batch.

    By default glibc serves a large buffer with a fresh mmap (above 128 KB, a limit it raises as
    such buffers are freed, to at most 32 MB) and hands it back on free, and trims the heap's free
    top beyond twice that limit, so each batch of clips pages the same activation buffers in
    again, each page zeroed by the kernel. Measured on the bundled I3D on one CPU thread, 60
    batches of 8 clips: 616,000 page faults and 4.5-5.2 s, against 5,000 and 3.6 s with both limits
    at KEPT_ALLOCATION_BYTES (docs/RESULTS.md). The cost is that up to that much freed memory stays
    with the process. Process-wide and idempotent; a no-op where the C library has no mallopt (not
    Linux, or not glibc).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no "this process" library
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, KEPT_ALLOCATION_BYTES)
    mallopt(m_trim_threshold, KEPT_ALLOCATION_BYTES)


def cores_beside_one_thread() -> int:
    """Threads for a network that runs while one other busy thread (decoding) needs a core."""
    return max(1, cpu_cores() - 1)


def onnx_session(path: str | Path, device: str = "cpu", threads: int = 0, what: str = "ONNX model",
                 plan_buffer_reuse: bool = True):
    """An InferenceSession for `path` on `device` ("cpu" or "cuda": resolve "auto" first).

    `threads` caps the CPU worker threads (0: ONNX Runtime's default, one per core).
    `plan_buffer_reuse=False` skips ONNX Runtime's planning of which intermediate tensors share a
    buffer: that planning grows faster than the graph (a graph of three averaged localizers took
    4.1 s to load with it, 0.5 s without), and buffers are still freed after their last use. CUDA is asked
    for only when a GPU is present and this ONNX Runtime build has the provider; otherwise the CPU.
    A file ONNX Runtime cannot load is an InputError naming it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_reuse = plan_buffer_reuse
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputError(f"{path}: not a loadable {what} ({str(e).splitlines()[0][:160]})") from None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB, for the benchmarks.

    VmHWM from /proc where there is one: getrusage's ru_maxrss survives exec, so a child started
    from a big parent reports the parent's size (a child started by a benchmark that had loaded
    full-size I3D would report the parent's peak, not its own).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)  # bytes on macOS, KiB on Linux
