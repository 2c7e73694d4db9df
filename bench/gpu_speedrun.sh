#!/usr/bin/env bash
# The GPU speedrun (bench/speedrun.py) in one GPU session of ~15 minutes of device time, machine
# start included: one command of at most BUDGET_S (default 560 s, under the 600-s command limit).
# Steps, each bounded by `timeout` and skipped when less than its minimum is left of the budget:
#   1. environment: nvidia-smi, torch / CUDA versions                                 ~10 s
#   2. data: decode .data/cifar10-jpeg.tar.gz once into vitlib's decode cache         ~20-40 s
#   3. ViT seed 0: compilation ~1 min, ~2 min of training, evaluation every epoch     ~4 min
#   4. ResNet-18 seeds 0, 1, 2: compilation ~40 s (less once inductor's cache is warm) ~1.5 min each
#   5. the other ViT seeds, with what is left (a second session: VIT_SEEDS="1 2" RESNET_SEEDS="")
#   6. the report from every run folder, finished or cut: table, CSVs, figure          ~15 s
# A seed cut by its timeout keeps its metrics.csv (one row per epoch), so its curve and speed are
# still reported (status "unfinished"). Run folders go to $RUNS, outside $OUT; they come back as
# one archive without their checkpoints.
#
#   OUT=/some/folder bash bench/gpu_speedrun.sh        # from the repository root; .data/ carried
#   VIT_SEEDS="1 2" RESNET_SEEDS="" OUT=... bash bench/gpu_speedrun.sh     # the remaining seeds
#   VIT_EPOCHS=80 RESNET_EPOCHS=24 ...   # run lengths (default: the recipes'; see epochs_in_budget)
#
# Writes under $OUT (flat, 5 files): speedrun.log (everything printed), speedrun.csv (per seed,
# mean, std), speedrun_curves.csv (every evaluation), speedrun.png, speedrun_runs.tar.gz (the run
# folders: config.json, env.json, metrics.csv, summary.json). To merge sessions, unpack each archive
# into one folder and run `python -m bench.speedrun --from-runs FOLDER`.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/bench/gpu_speedrun}
RUNS=${RUNS:-/tmp/speedrun_runs}
BUDGET_S=${BUDGET_S:-560}
RESERVE_S=40  # kept back from the training steps for the report and the archive
VIT_SEEDS=${VIT_SEEDS-0 1 2}
RESNET_SEEDS=${RESNET_SEEDS-0 1 2}
PY=${PYTHON:-$(command -v python || command -v python3)}
export VITLIB_DATA=${VITLIB_DATA:-.data} MPLBACKEND=Agg PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/speedrun.log"
START=$(date +%s)

source bench/steps.sh  # step NAME MAX_SECONDS MIN_SECONDS COMMAND...

# one seed of one model: add --model M --first-seed K; --resume reads back a seed finished earlier
# on this machine (the per-step CSV and figure are scratch: the report step writes the real ones)
SEED=("$PY" -m bench.speedrun --seeds 1 --runs-dir "$RUNS" --resume --out "$RUNS/last.csv" --figure "$RUNS/last.png")
VIT=(--model vit ${VIT_EPOCHS:+--epochs "$VIT_EPOCHS"})
RESNET=(--model resnet ${RESNET_EPOCHS:+--epochs "$RESNET_EPOCHS"})

if [ ! -f "$VITLIB_DATA/cifar10-jpeg.tar.gz" ]; then
    echo "missing $VITLIB_DATA/cifar10-jpeg.tar.gz: copy the shared archive into .data/ and carry .data" | tee -a "$LOG"
fi
ENV_PY='
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(), "bf16", torch.cuda.is_bf16_supported())
'
DATA_PY='
import time
from vitlib.data import get_dataset
t = time.perf_counter()
train, test = (get_dataset("cifar10", split) for split in ("train", "test"))
print(len(train), "train and", len(test), "test images of", train.source, f"in {time.perf_counter() - t:.1f} s")
'
step nvidia-smi 20 5 nvidia-smi
step environment 30 10 "$PY" -c "$ENV_PY"
step data 120 30 "$PY" -c "$DATA_PY"
set -- $VIT_SEEDS
FIRST_VIT=${1-}
REST_VIT=${*:2}
if [ -n "$FIRST_VIT" ]; then step "vit_seed$FIRST_VIT" 360 150 "${SEED[@]}" "${VIT[@]}" --first-seed "$FIRST_VIT"; fi
for s in $RESNET_SEEDS; do step "resnet_seed$s" 150 60 "${SEED[@]}" "${RESNET[@]}" --first-seed "$s"; done
for s in $REST_VIT; do step "vit_seed$s" 300 150 "${SEED[@]}" "${VIT[@]}" --first-seed "$s"; done

RESERVE_S=0  # the report's share, kept back until now
step report 30 5 "$PY" -m bench.speedrun --from-runs "$RUNS" --out "$OUT/speedrun.csv" --figure "$OUT/speedrun.png"
tar -czf "$OUT/speedrun_runs.tar.gz" -C "$RUNS" --exclude=checkpoint.pt --exclude='last.*' --exclude='*_curves.csv' .
echo "=== done after $(($(date +%s) - START)) s" | tee -a "$LOG"
if [ -f "$OUT/speedrun.csv" ]; then cut -d, -f1-14 "$OUT/speedrun.csv"; fi
exit 0
