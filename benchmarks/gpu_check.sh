#!/usr/bin/env bash
# The GPU checks of issue 26 as one short run, for a lent GPU machine (one lease is 15 minutes of
# device time, start-up included; this script is sized to end within about 9 minutes on one H200
# with 16 cores). It makes its own inputs there (the machine is offline) and writes everything
# under OUT_DIR (default $OUT, as the device tool sets it):
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
#
#   machine.json        GPU, torch, CUDA, ONNX Runtime and its providers, torchcodec's state
#   pytest_gpu.log      tests/test_gpu.py: fp16 events against the CPU's, channels-last and
#                       autotuning, torchcodec on CUDA
#   bench_gpu.json      full-size I3D by batch in fp16 and fp32, the front end, analyze on 1 and 10 min
#   study_*.json        bench_study: 4 synthetic 2-minute 640x480 videos, bundled model in fp16
#                       (auto) and fp32, full-size I3D in fp16, PyAV and torchcodec decoding
# Each step has its own time limit, so one that hangs leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)

step() {  # step SECONDS NAME COMMAND...: run with a limit, its output to OUT_DIR/NAME.log
  local limit=$1 name=$2; shift 2
  echo "== $name (at most ${limit} s)"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  echo "   exit $? after $((SECONDS - start)) s"
  tail -n 3 "$OUT_DIR/$name.log"
}

step 60 machine "$PY" -c '
import json, os, torch, onnxruntime as ort
info = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_cores": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "onnxruntime": ort.__version__, "onnxruntime_providers": ort.get_available_providers()}
try:
    from ratscore.video import torchcodec_problem
    info["torchcodec_cuda"] = torchcodec_problem("cuda") or "usable"
except Exception as e:  # noqa: BLE001 - the state is the figure
    info["torchcodec_cuda"] = f"{type(e).__name__}: {e}"
print(json.dumps(info, indent=1))'
cp "$OUT_DIR/machine.log" "$OUT_DIR/machine.json"

step 180 pytest_gpu "$PY" -m pytest -q tests/test_gpu.py
step 150 bench_gpu "$PY" benchmarks/bench_gpu.py --batches 8 32 64 -o "$OUT_DIR/bench_gpu.json"

STUDY=(benchmarks/bench_study.py --videos 4 --minutes 2 --size 640x480 --repeats 1 --device cuda --work "$WORK/study")
step 90 study_fp16 "$PY" "${STUDY[@]}" -o "$OUT_DIR/study_fp16.json"
step 60 study_fp32 "$PY" "${STUDY[@]}" --precision fp32 -o "$OUT_DIR/study_fp32.json"
step 60 study_torchcodec "$PY" "${STUDY[@]}" --decoder torchcodec -o "$OUT_DIR/study_torchcodec.json"
step 90 study_full_i3d "$PY" "${STUDY[@]}" --full-i3d -o "$OUT_DIR/study_full_i3d.json"
rm -rf "$WORK"
