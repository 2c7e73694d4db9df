#!/usr/bin/env bash
# The first run of vitlib's GPU paths (CUDA, bf16 autocast, torch.compile with inductor, fused
# optimisers, CUDA graphs), in at most BUDGET_S seconds (default 180). Correctness, not speed
# (bench/gpu_check.sh times things). Each step is bounded by `timeout`; steps with under 30 s of
# the budget left are skipped:
#   1. environment: GPU, torch / CUDA versions, native bf16                          ~5 s
#   2. the tests that need CUDA (`pytest -k cuda`): a training step with the sync detector
#      set to "error", evaluation under CUDA graphs with flip-TTA, a compiled bf16 fit
#      stopped after its first checkpoint and resumed, pad-crop/flip/RandAugment/Mixup on
#      the GPU against the CPU                                                        ~60-100 s
#   3. `python -m vitlib train` on `fake` data, 1 epoch, --compile --precision bf16, EMA
#      and flip-TTA; then its summary.json must say bf16, complete, finite loss         ~40-80 s
#   4. with what is left: test_train.py and test_vit.py with the GPU visible (fit's "auto"
#      device trains the digits acceptance runs there, in bf16)
# No DDP check: NCCL needs two GPUs (tests/test_distributed.py covers the logic with gloo on the CPU).
#
#   OUT=/some/folder bash bench/gpu_smoke.sh          # PYTHON=... to choose the interpreter
#
# Writes under $OUT: gpu_smoke.log (everything printed), cuda_tests.xml and train_tests.xml
# (pytest's JUnit reports), smoke_run/ (the CLI run's folder). Exit status: 0 when every step
# that ran passed, else 1.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/bench/gpu_smoke}
BUDGET_S=${BUDGET_S:-180}
PY=${PYTHON:-$(command -v python || command -v python3)}
mkdir -p "$OUT"
LOG="$OUT/gpu_smoke.log"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
START=$(date +%s)

source bench/steps.sh  # step NAME MAX_SECONDS MIN_SECONDS COMMAND...

ENV_PY='
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability(),
      "native bf16", torch.cuda.is_bf16_supported(including_emulation=False))
import pytest; print("pytest", pytest.__version__)
'
CHECK_RUN='
import json, math, sys
s = json.load(open(sys.argv[1]))
print({k: s[k] for k in ("status", "precision", "steps", "compile_seconds", "train_seconds")}, s["final"])
assert s["status"] == "complete" and s["precision"] == "bf16", "expected a complete bf16 run"
assert math.isfinite(s["final"]["train_loss"]) and s["compile_seconds"] is not None
'
RUN="$OUT/smoke_run"
rm -rf "$RUN"

step environment 20 30 "$PY" -c "$ENV_PY"
step cuda_tests 110 30 "$PY" -m pytest -q -rs -m "not slow" -k cuda --junitxml "$OUT/cuda_tests.xml" \
    tests/test_gpu_paths.py tests/test_augment.py
step cli_compile_bf16 90 30 "$PY" -m vitlib train --model vit_ti4 --dataset fake --out "$RUN" --no-progress \
    --model-arg depth=4 --epochs 1 --batch-size 64 --compile --precision bf16 --ema-decay 0.99 --tta-flip
if [ -f "$RUN/summary.json" ]; then
    step cli_summary 20 30 "$PY" -c "$CHECK_RUN" "$RUN/summary.json"
fi
step train_tests_on_gpu 120 30 "$PY" -m pytest -q -x -m "not slow" --junitxml "$OUT/train_tests.xml" \
    tests/test_train.py tests/test_vit.py

echo "=== done after $(($(date +%s) - START)) s; failed: $FAILED" | tee -a "$LOG"
exit "$FAILED"
