#!/usr/bin/env bash
# The GPU checks in one go, for a session with ~15 minutes of device time (machine start
# included). Cheapest first, each step bounded by `timeout`, all of them by BUDGET_S (default 480 s):
#   1. environment: nvidia-smi, torch / CUDA / timm versions                  ~10 s
#   2. training throughput, eager: vitlib vs timm, s4_32 then b16_224          ~60 s
#   3. end to end (input pipeline overhead): ViT-S/4 training steps on synthetic data  ~60 s
#      vs fed by BatchStream with the vit_small_data augmentation (and pad-crop + flip only);
#      CIFAR-10 from $VITLIB_DATA (default .data/, carried) when there, else fake images;
#      eager unless E2E_FLAGS says otherwise (E2E_FLAGS=--compile: the stricter check)
#   4. sequence length: sdpa vs explicit attention, 16 to 1024 tokens          ~60 s
#   5. throughput compiled (mode "default"), s4_32: vitlib, timm, vitlib-best   ~2 min
#   6. the same for b16_224                                                    ~2 min
#   7. with what is left: s4_32 with CUDA graphs (reduce-overhead) and vitlib-best with
#      max-autotune-no-cudagraphs (the default "best"; its GEMM autotuning takes minutes)
# Once under 30 s of the budget are left, the remaining steps are skipped. The benchmarks write their
# CSV after every row, so a step cut by its timeout keeps what it finished, and its progress lines
# in the log say where it stopped.
#
#   OUT=/some/folder bash bench/gpu_check.sh          # PYTHON=... to choose the interpreter
#
# Writes under $OUT (flat, at most 8 files): gpu_check.log (everything printed),
# throughput_eager.csv, input_pipeline_e2e.csv, sequence_length.csv, sequence_length.png, throughput_compiled_s4_32.csv,
# throughput_compiled_b16_224.csv, throughput_extra_s4_32.csv.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/bench/gpu_check}
BUDGET_S=${BUDGET_S:-480}
PY=${PYTHON:-$(command -v python || command -v python3)}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
START=$(date +%s)

source bench/steps.sh  # step NAME MAX_SECONDS MIN_SECONDS COMMAND...

TP=(-m bench.throughput --steps 20)
COMPILED=(--compile default --impls vitlib,timm,vitlib-best --best-compile default --warmup 3)

ENV_PY='
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability(),
      "bf16", torch.cuda.is_bf16_supported())
try:
    import timm
    print("timm", timm.__version__)
except ImportError as error:
    print("timm missing:", error)
'
step nvidia-smi 20 30 nvidia-smi
step environment 30 30 "$PY" -c "$ENV_PY"
step throughput_eager 100 30 "$PY" "${TP[@]}" --configs s4_32,b16_224 --compile none --impls vitlib,timm \
    --warmup 5 --out "$OUT/throughput_eager.csv"
DATA_DIR=${VITLIB_DATA:-.data}
if [ -e "$DATA_DIR/cifar10-jpeg.tar.gz" ] || [ -d "$DATA_DIR/cifar10" ]; then
    E2E_DATA=(env VITLIB_DATA="$DATA_DIR" "$PY" -m bench.input_pipeline --dataset cifar10)
else
    echo "=== no CIFAR-10 in $DATA_DIR: the end-to-end step uses fake images" | tee -a "$LOG"
    E2E_DATA=("$PY" -m bench.input_pipeline --dataset fake)
fi
step input_pipeline_e2e 120 30 "${E2E_DATA[@]}" --end-to-end --batches 30 --rounds 3 --warmup 5 \
    ${E2E_FLAGS:-} --out "$OUT/input_pipeline_e2e.csv"
step sequence_length 80 30 "$PY" -m bench.sequence_length --out "$OUT/sequence_length.csv" \
    --figure "$OUT/sequence_length.png"
step throughput_compiled_s4_32 130 30 "$PY" "${TP[@]}" --configs s4_32 "${COMPILED[@]}" \
    --out "$OUT/throughput_compiled_s4_32.csv"
step throughput_compiled_b16_224 130 30 "$PY" "${TP[@]}" --configs b16_224 "${COMPILED[@]}" \
    --out "$OUT/throughput_compiled_b16_224.csv"
step throughput_extra_s4_32 300 30 "$PY" "${TP[@]}" --configs s4_32 --compile reduce-overhead \
    --impls vitlib,vitlib-best --best-compile max-autotune-no-cudagraphs --warmup 3 \
    --out "$OUT/throughput_extra_s4_32.csv"

echo "=== done after $(($(date +%s) - START)) s; results:" | tee -a "$LOG"
for csv in "$OUT"/*.csv; do
    if [ -f "$csv" ]; then echo "--- $csv"; cut -d, -f1-12 "$csv"; fi
done
exit 0
