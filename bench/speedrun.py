"""Speedrun: training seconds to a CIFAR-10 test accuracy (the shared JPEG copy) for a ViT trained
from scratch and for a ResNet rival, on one GPU or on the CPU.

    VITLIB_DATA=/path/to/data python -m bench.speedrun --model vit --seeds 3      # ~8 min on an H100
    VITLIB_DATA=/path/to/data python -m bench.speedrun --model resnet --seeds 3   # ~4 min
    VITLIB_DATA=/path/to/data python -m bench.speedrun --device cpu --model vit --seeds 2   # ~2 h on 2 cores
    python -m bench.speedrun --from-runs results/bench/speedrun_runs    # table, CSVs, figure only
    python -m bench.speedrun --tiny --model vit,resnet --device cpu --out /tmp/s.csv  # CPU test size

GPU targets (SPECS, mean of 3 seeds, one H100 / H200): ViT >= 85% in <= 120 s (stretch 90% in
180 s), ResNet-18 >= 92% in <= 60 s. CPU targets (CPU_SPECS, mean of 2 seeds, 2 cores): ViT >= 75%
in <= 60 min (stretch 80%), a ResNet >= 88% in <= 60 min (stretch 90%); `--device cpu` picks them,
with their own default outputs (cpu_speedrun.csv, cpu_speedrun_runs/, figures/cpu_speedrun.png).
A seed is one `vitlib.train.fit` run of the spec's recipe on the spec's model,
evaluated on the test set every epoch, in <runs-dir>/<model>-seed<k>. Training seconds are fit's
clock: optimiser steps with their batch gathering and augmentation; not evaluation, checkpoints,
nor the first step (it compiles: compile_s; the evaluation graphs compile inside eval_s).
Columns (accuracies in percent, `_pct`, as every result of the project): `met` (airbench's criterion:
final accuracy >= target and training seconds <= budget; the mean row applies it to the means),
`time_to_target_s` (DAWNBench's first crossing, linear between evaluations), `acc_at_budget_pct`
(last evaluation within the budget), flip-TTA apart, and `epochs_in_budget` (epochs that fit the
budget at the measured speed: set --epochs from it). As in
airbench and DAWNBench, the recipes were chosen on the test set: this measures speed, not
generalisation. Writes results/bench/speedrun.csv (per seed, mean, std), speedrun_curves.csv
(every evaluation), both with the environment columns, and results/figures/speedrun.png.
"""
import argparse
import csv
import json
import math
import sys
import textwrap
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/speedrun.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import (
    RESULTS,
    check_positive,
    free_memory,
    parse_list,
    print_table,
    progress,
    resolve_out,
    run_cli,
    write_csv,
)
from vitlib import create_model
from vitlib.data import get_dataset
from vitlib.device import cpu_kind, resolve_device
from vitlib.experiments.results import percent
from vitlib.keyvalue import parse_overrides
from vitlib.train import fit, get_recipe
from vitlib.train.runfolder import read_json

# The models. ViT: the paper's architecture (patch embedding + Transformer, no convolutional stem)
# at ViT-S width (D 384, 6 heads of 64, MLP 1536) with 4 x 4 patches (64 tokens of a 32 px image),
# cut to 6 blocks so ~100 epochs fit 2 minutes (4.2 GFLOPs per training image, half of ViT-S/4).
# Global average pooling and fixed 2-D sin-cos positions as in Beyer et al. 2022 ("Better plain
# ViT baselines for ImageNet-1k"): no class token to learn (64 tokens, not 65), and positions that
# need no training — the paper finds pooling (App. D.3) and the kind of position embedding
# (Table 8) matter little. The tiny specs run the same code on 16 px digits on a CPU (tests).
SPECS = {
    "vit": dict(model="vit_s4", args=dict(depth=6, pool="gap", pos_emb="sincos2d"), recipe="vit_speedrun",
                target=0.85, budget_s=120.0, stretch_target=0.90, stretch_budget_s=180.0),
    "resnet": dict(model="resnet18_cifar", args={}, recipe="resnet_speedrun", target=0.92, budget_s=60.0),
}
# The CPU's models: what 2 cores (fp32 where the CPU has no native bf16) train in an hour. ViT: the
# paper's architecture at ViT-Ti width (D 192, 3 heads of 64) with 4 x 4 patches, 6 blocks and an
# MLP of 2 D instead of 4 D (two thirds of the FLOPs per token; the MLP ratio is the cheapest width
# to give up, Fig. 8 / App. D.2: width helps least), GAP and sin-cos positions as above. ResNet:
# the CIFAR ResNet at one block per stage and half the widths (ResNet-10 shape, 1.2M parameters),
# ~8x fewer FLOPs than ResNet-18, which trains at ~15 images/s in fp32 here (bench/README.md).
CPU_SPECS = {
    "vit": dict(model="vit_ti4", args=dict(depth=6, mlp_dim=384, pool="gap", pos_emb="sincos2d"), recipe="vit_cpu",
                target=0.75, budget_s=3600.0, stretch_target=0.80, stretch_budget_s=3600.0),
    "resnet": dict(model="resnet18_cifar", args=dict(blocks=(1, 1, 1, 1), widths=(32, 64, 128, 256)),
                   recipe="resnet_cpu", target=0.88, budget_s=3600.0, stretch_target=0.90, stretch_budget_s=3600.0),
}
# The paper's own trick (§3.2) as a speedrun: most epochs at 16 px (16 tokens of 4 x 4 patches: ~4x
# fewer FLOPs per image), then a short second run at 32 px from those weights, the fixed sin-cos
# positions recomputed for the 8 x 8 grid (learned ones would be 2-D-interpolated). Each stage is
# one fit with its own one-cycle, in <run>/stage<i>-<px>px; its seconds add up. 20 + 2 epochs fill
# ~53 minutes at the measured ~470 img/s (16 px) and ~117 img/s (32 px) (--stage-epochs to change).
CPU_SPECS["vit_lowres"] = dict(CPU_SPECS["vit"], stages=(dict(img_size=16, epochs=20),
                                                         dict(img_size=32, epochs=2, lr=1e-3, warmup_epochs=0.2)))
# The same ViT with a convolutional stem (models/convstem.py, Xiao et al. 2021) instead of the
# linear 4 x 4 patch embedding: the same 8 x 8 grid and Transformer, ~3% more FLOPs.
CPU_SPECS["vit_convstem"] = dict(CPU_SPECS["vit"], model="c_vit_ti4")
# What fills the hour on a CPU kind (vitlib.device.cpu_kind) other than the AVX2 one the recipes'
# lengths were set on (vit_cpu 7 epochs, resnet_cpu 14; vit_lowres 20 + 2), measured there in bf16
# with the fast path (explicit attention, bench/README.md): `epochs` (the last stage's), `stage_epochs`
# and TrainConfig fields. --epochs, --stage-epochs and --set still override them. AVX512-BF16: from
# 1-epoch probes of each model through fit (results/bench/cpu_speedrun_tuning_avx512-bf16/): compiled
# ViT 1,047 img/s at 16 px and 275 at 32 px, the ResNet 514, so ~3,300 s for each ViT and 2,900 for
# the ResNet's 30 epochs (the AMX recipe's).
# vit_lowres's lr: 5e-4 in both stages, a quarter of vit_cpu's 2e-3 (set for 7 fp32 epochs without a
# sweep), from 8-epoch runs at 16 px on AVX512-BF16 (results/bench/cpu_speedrun_tuning_avx512-bf16/
# px16-ep8: 2e-3 51.2%, 1e-3 56.3%, 5e-4 56.4%, 2.5e-4 54.3%) and an hour-long run there: 79.4%
# against 70.9% for the same seed at the recipe's rate (bench/README.md). Not yet run on AMX.
CPU_KIND_RUNS = {
    "amx-bf16": {"vit": dict(epochs=36, compile=True), "resnet": dict(epochs=30),
                 "vit_lowres": dict(stage_epochs=(50, 20), compile=True, lr=5e-4)},
    "avx512-bf16": {"vit": dict(epochs=18, compile=True), "resnet": dict(epochs=30),
                    "vit_lowres": dict(stage_epochs=(28, 11), compile=True, lr=5e-4)},
}
TINY_ARGS = {"vit": dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64, pool="gap", pos_emb="sincos2d"),
             "resnet": dict(blocks=(1, 1, 1, 1), widths=(8, 16, 32, 64))}
TINY_TRAIN = dict(batch_size=128, epochs=2, warmup_epochs=0.5, compile=False)
COLUMNS = ("model", "machine", "settings", "seed", "status", "epochs", "batch", "target_pct", "budget_s", "met",
           "final_acc_pct", "train_s", "time_to_target_s", "acc_at_budget_pct", "final_acc_tta_pct",
           "time_to_target_tta_s", "final_acc_ema_pct", "stretch_target_pct", "stretch_budget_s", "time_to_stretch_s",
           "compile_s", "eval_s", "elapsed_s", "images_per_s", "epochs_in_budget", "params", "data", "run")
TABLE = ("model", "machine", "settings", "seed", "epochs", "train_s", "final_acc_pct", "final_acc_tta_pct",
         "time_to_target_s", "acc_at_budget_pct", "target_pct", "budget_s", "met", "compile_s", "images_per_s",
         "epochs_in_budget")
CURVE_COLUMNS = ("model", "machine", "settings", "seed", "epoch", "step", "lr", "train_s", "eval_acc_pct",
                 "eval_acc_tta_pct", "eval_acc_ema_pct", "run")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit", help=f"comma list of {', '.join(SPECS)}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (runs) per model")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    p.add_argument("--epochs", type=int, default=None, help="run length (default: the recipe's, or this CPU kind's in "
                                                                "CPU_KIND_RUNS; the last stage's)")
    p.add_argument("--stage-epochs", default=None, help="comma list: the epochs of each stage of a staged model")
    p.add_argument("--img-size", type=int, default=None, help="train a one-stage model at N px (default: native; "
                                                              "short tuning runs at a staged model's first size)")
    p.add_argument("--budget-s", type=float, default=None, help="training-seconds budget (default: the model's)")
    p.add_argument("--target", type=float, default=None, help="test accuracy to reach, 0..1 (default: the model's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a TrainConfig field over the recipe")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a model field over the spec")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data-dir", default=None, help="folder holding cifar10-jpeg.tar.gz (default $VITLIB_DATA)")
    p.add_argument("--tiny", action="store_true", help="digits at 16 px, 1-block ViT, narrow ResNet (CPU tests)")
    p.add_argument("--runs-dir", default=None, help="run folders (default results/bench/speedrun_runs, "
                                                     "cpu_speedrun_runs with --device cpu)")
    p.add_argument("--resume", action="store_true", help="read finished runs back, continue unfinished ones")
    p.add_argument("--from-runs", nargs="+", default=None, metavar="DIR", help="report these run folders; no training")
    p.add_argument("--out", default=None, help="CSV (default results/bench/speedrun.csv; curves beside it)")
    p.add_argument("--figure", default=None, help="PNG (default results/figures/speedrun.png)")
    args = p.parse_args(argv)
    args.model = parse_list(args.model, list(dict.fromkeys([*SPECS, *CPU_SPECS])), "--model")
    check_positive(seeds=args.seeds, **{k: v for k, v in (("epochs", args.epochs), ("budget_s", args.budget_s),
                                                          ("img_size", args.img_size)) if v is not None})
    if args.first_seed < 0 or args.target is not None and not 0 < args.target <= 1:
        raise ValueError(f"--first-seed must be >= 0 (got {args.first_seed}), --target in (0, 1] (got {args.target})")
    if args.from_runs is None:  # everything a training run needs, checked before any data is read
        args.device = str(resolve_device(args.device))
    args.hardware = "cpu" if str(args.device) == "cpu" else "gpu"
    args.prefix = "cpu_" if args.hardware == "cpu" else ""
    args.runs_dir = Path(args.runs_dir) if args.runs_dir else RESULTS / "bench" / f"{args.prefix}speedrun_runs"
    if args.from_runs is None:
        for kind in args.model:
            train_config(kind, args, args.first_seed), build_model(kind, args)
            for seed in seeds(args):
                run = args.runs_dir / f"{kind}-seed{seed}"
                if (run / "config.json").exists() and not args.resume:
                    raise ValueError(f"run folder {run} exists: pass --resume to reuse it, or another --runs-dir")
    return args


def specs(hardware):
    """The models, recipes and targets of a speedrun on "gpu" or "cpu"."""
    return CPU_SPECS if hardware == "cpu" else SPECS


def model_family(kind):
    """The report's family of a speedrun model (runfolder.describe_model): "resnet", "hybrid" (a ViT
    on a convolutional stem) or "vit"."""
    model = {**SPECS, **CPU_SPECS}.get(kind, {}).get("model", kind)
    return "resnet" if "resnet" in model else "hybrid" if model.startswith(("c_vit", "r_vit", "r50_vit")) else "vit"


def seeds(args):
    return range(args.first_seed, args.first_seed + args.seeds)


def stages(kind, args):
    """[(img_size, TrainConfig changes)] of a model: one stage at the native size (or --img-size), or the spec's
    stages (--tiny halves their sizes: digits are 16 px), their epochs from --stage-epochs, else
    --tiny's, else this CPU kind's (CPU_KIND_RUNS), else the spec's."""
    spec = specs(args.hardware)[kind]
    native = 16 if args.tiny else 32
    staged = lambda: ", ".join(k for k, v in specs(args.hardware).items() if "stages" in v)  # noqa: E731 (errors only)
    if "stages" not in spec:
        if args.stage_epochs is not None:
            raise ValueError(f"--stage-epochs: {kind} trains in one stage; the staged models are {staged()}")
        return [(args.img_size or native, {})]
    if args.img_size is not None:
        raise ValueError(f"--img-size: {kind} sets its own sizes per stage; --img-size is for the one-stage "
                         f"models, not {staged()}")
    n = len(spec["stages"])
    if args.stage_epochs is not None:
        try:
            epochs = [int(e) for e in args.stage_epochs.split(",")]
        except ValueError:
            epochs = []
        if len(epochs) != n or min(epochs) < 1:
            raise ValueError(f"--stage-epochs={args.stage_epochs!r}: {kind} has {n} stages; give one "
                             "positive integer each")
    elif args.tiny:  # the test size's epochs, not the hour's
        epochs = [TINY_TRAIN["epochs"]] * n
    else:  # this CPU kind's measured lengths, else the spec's
        epochs = kind_runs(kind, args).get("stage_epochs") or [stage["epochs"] for stage in spec["stages"]]
    return [(stage["img_size"] * native // 32, {**{k: v for k, v in stage.items() if k != "img_size"}, "epochs": e})
            for stage, e in zip(spec["stages"], epochs)]


def kind_runs(kind, args):
    """The run length and settings measured for this CPU kind (CPU_KIND_RUNS); {} on a GPU, with
    --tiny, or on a kind without its own."""
    if args.hardware != "cpu" or args.tiny:
        return {}
    return CPU_KIND_RUNS.get(cpu_kind(), {}).get(kind, {})


def train_config(kind, args, seed, stage=None):
    """Recipe < --tiny's CPU sizes < the stage's changes (the spec's, its epochs from --stage-epochs) <
    the CPU kind's run length and settings (CPU_KIND_RUNS: a kind's lr is every stage's) < --epochs (the
    last stage) < --set (`augment.flip=false` sets one augmentation field)."""
    base = get_recipe(specs(args.hardware)[kind]["recipe"])
    plan = stages(kind, args)
    index = len(plan) - 1 if stage is None else stage
    measured = {k: v for k, v in kind_runs(kind, args).items() if k != "stage_epochs"}
    if "stages" in specs(args.hardware)[kind]:
        measured.pop("epochs", None)  # a staged model's epochs are its stages'
    changes = {**(TINY_TRAIN if args.tiny else {}), **plan[index][1], **measured}
    if args.epochs is not None and index == len(plan) - 1:
        changes["epochs"] = args.epochs
    config = base.replace(**changes).with_settings(parse_overrides(args.set, "--set"))
    return config.replace(seed=seed, device=args.device)


def build_model(kind, args, num_classes=10):
    spec = specs(args.hardware)[kind]
    img_size, in_chans = stages(kind, args)[0][0], 1 if args.tiny else 3
    tiny = TINY_ARGS["vit" if spec["model"].startswith("vit") else "resnet"] if args.tiny else {}
    model_args = {**spec["args"], **tiny, **parse_overrides(args.model_arg, "--model-arg")}
    return create_model(spec["model"], num_classes=num_classes, img_size=img_size, in_chans=in_chans, **model_args)


def train_all(args):
    """One fit per (model, seed); a failed seed is reported as such and the others still run."""
    name = "digits" if args.tiny else "cifar10"
    data = {}  # img_size -> (train, test); the native size first, others resized from the same images

    def dataset(size):
        if size not in data:
            native = 16 if args.tiny else 32
            data[size] = tuple(get_dataset(name, split, data_dir=args.data_dir, img_size=None if size == native
                                           else size) for split in ("train", "test"))
            progress(f"data: {len(data[size][0])} train / {len(data[size][1])} test images of "
                     f"{data[size][0].source} at {size} px")
        return data[size]

    for kind in args.model:
        plan = stages(kind, args)
        for seed in seeds(args):
            run = args.runs_dir / f"{kind}-seed{seed}"
            torch.manual_seed(seed)  # the initial weights
            model = build_model(kind, args, dataset(plan[0][0])[0].num_classes)
            try:
                for i, (size, _) in enumerate(plan):
                    config = train_config(kind, args, seed, i)
                    out = run / f"stage{i + 1}-{size}px" if len(plan) > 1 else run
                    progress(f"{kind} seed {seed}: {config.epochs} epochs of batch {config.batch_size} at {size} px "
                             f"-> {out}")
                    if i:  # §3.2: the same patches, a larger grid; positions interpolated (sin-cos: recomputed)
                        model.set_img_size(size)
                    fit(model, *dataset(size), config, out, resume=args.resume, progress=False,
                        run_info={"speedrun": {"model": kind, "seed": seed, "hardware": args.hardware, "stage": i + 1,
                                               "stages": len(plan)}})
            except Exception:  # a diverged or crashed seed must not cost the others of a GPU session
                traceback.print_exc()
            del model
            torch._dynamo.reset()  # fresh graphs per seed, clear of dynamo's recompilation limit
            free_memory(args.device)
    return [run for run in (args.runs_dir / f"{k}-seed{s}" for k in args.model for s in seeds(args))
            if stage_folders(run)]


def stage_folders(run):
    """The fit folders of one speedrun seed: the run itself, or its stage<i>-<px>px sub-folders in
    order; [] when it holds neither."""
    if (run / "config.json").is_file():
        return [run]
    found = [p for p in run.glob("stage*") if (p / "config.json").is_file()] if run.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[len("stage"):].split("-")[0]))


def find_runs(paths):
    """Speedrun seeds (a run folder holding config.json, or a folder of stage run folders) among
    `paths` and their direct sub-folders."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f"--from-runs: {path} is not a folder")
        found += [path] if stage_folders(path) else [p for p in sorted(path.iterdir())
                                                     if p.is_dir() and stage_folders(p)]
    if not found:
        raise FileNotFoundError(f"--from-runs: no run folder (with config.json) in {', '.join(map(str, paths))}")
    return found


def train_seconds(metrics):
    """Cumulative training seconds at each evaluation: fit's clock, metrics.csv's train_s."""
    return [float(r["train_s"]) for r in metrics]


def time_to(seconds, accs, target, chance):
    """First training second at which accuracy reaches `target`, interpolated linearly between
    evaluations, starting from (0 s, chance); nan when never reached (or not measured: nan)."""
    prev_t, prev_a = 0.0, chance
    for t, a in ((t, a) for t, a in zip(seconds, accs) if not math.isnan(a)):
        if a >= target:
            return prev_t + (target - prev_a) / (a - prev_a) * (t - prev_t) if a > prev_a else t
        prev_t, prev_a = t, a
    return math.nan


def _num(value):  # a CSV / JSON cell -> float, nan for none
    return math.nan if value in (None, "", "None") else float(value)


def read_stage(path):
    """One fit folder -> (config.json, env.json, summary.json, metrics.csv rows); {} / [] when absent."""
    env, summary = (read_json(path / f) if (path / f).exists() else {} for f in ("env.json", "summary.json"))
    metrics = list(csv.DictReader((path / "metrics.csv").read_text().splitlines())) if (path / "metrics.csv").exists() \
        else []
    return read_json(path / "config.json"), env, summary, metrics


def machine_of(env):
    """What a run trained on, as the table groups runs: the GPU's name, or the CPU's kind (vitlib.device.
    cpu_kind, read from env.json's CPU description), with the precision: "amx-bf16 bf16", "avx2 fp32"."""
    hardware = env["gpus"][0] if env.get("gpus") else cpu_kind_of(env.get("cpu", ""))
    return f"{hardware} {env.get('precision', '?')}"


def cpu_kind_of(cpu):
    """The CPU kind (vitlib.device.cpu_kind) a run's env.json description names: "amx-bf16",
    "avx512-bf16", "avx2", else the description's last part ("cpu" for none)."""
    kinds = [k for k in ("amx-bf16", "avx512-bf16") if f"({k})" in cpu]
    return kinds[0] if kinds else ("avx2" if "AVX2" in cpu else cpu.split(",")[-1].strip() or "cpu")


SAME_RUN = ("epochs", "steps", "seed", "device")  # fields every run sets for itself: never a setting


def settings_of(record, spec):
    """What a run changed from its model's recipe, as --set would write it ("compile=True lr=0.0005",
    augmentation fields as "augment.flip=False"), and --img-size where a one-stage run trained at
    another size than the data's: "" for the recipe as it is. A staged run's first stage speaks for
    it (the later stages' own changes are the spec's). Tuning runs of one model are told apart by it."""
    if "recipe" not in spec:
        return ""
    recipe = json.loads(json.dumps(get_recipe(spec["recipe"]).to_dict()))  # tuples as config.json's lists
    train = record["train"]
    changed = []
    for key in sorted(set(recipe) - set(SAME_RUN)):
        if key == "augment":
            ours, theirs = train.get(key) or {}, recipe[key] or {}
            changed += [f"augment.{k}={ours.get(k)}" for k in sorted(set(ours) | set(theirs))
                        if ours.get(k) != theirs.get(k)]
        elif key in train and train[key] != recipe[key]:
            changed.append(f"{key}={train[key]}")
    native = 16 if record["data"]["train"]["name"] == "digits" else 32
    size = record.get("model", {}).get("img_size")
    if "stages" not in spec and size not in (None, native):
        changed.append(f"img_size={size}")
    return " ".join(changed)


def load_run(path, args):
    """One speedrun seed (a run folder, or its stage folders: their seconds, steps and epochs add up)
    -> (its table row, its curve rows); the row keeps its stages' env.json under "envs"."""
    folders = stage_folders(path)
    parts = [read_stage(folder) for folder in folders]
    record, env, _, _ = parts[0]
    info, data = record.get("speedrun", {}), record["data"]["train"]
    kind = info.get("model", "?")
    spec = specs(info.get("hardware", "gpu")).get(kind, {})
    target, budget = args.target or spec.get("target", math.nan), args.budget_s or spec.get("budget_s", math.nan)
    secs, metrics, epochs, steps, images, offset_s, offset_step = [], [], [], [], 0, 0.0, 0
    for folder, (stage_record, _, _, stage_metrics) in zip(folders, parts):
        batch = stage_record["train"]["batch_size"]
        stage_secs = train_seconds(stage_metrics)
        secs += [offset_s + t for t in stage_secs]
        metrics += [{**r, "run": str(folder)} for r in stage_metrics]
        epochs.append(stage_record["train"]["epochs"])
        steps += [offset_step + int(r["step"]) for r in stage_metrics]
        if stage_metrics:
            images += int(stage_metrics[-1]["step"]) * batch
            offset_s, offset_step = secs[-1], steps[-1]
    summaries = [part[2] for part in parts]
    complete = len(parts) == info.get("stages", 1) and all(s.get("status") == "complete" for s in summaries)
    acc, tta, ema = ([_num(r[k]) for r in metrics] for k in ("eval_acc", "eval_acc_tta", "eval_acc_ema"))
    chance = 1.0 / data["num_classes"]
    within = [a for t, a in zip(secs, acc) if t <= budget]
    last_record, last_env, last_summary, _ = parts[-1]
    envs = [part[1] for part in parts]
    settings = settings_of(record, spec)
    row = dict(model=kind, machine=machine_of(env), settings=settings, seed=info.get("seed", record["train"]["seed"]),
               status="complete" if complete else (last_summary.get("status") or "unfinished"),
               hardware=info.get("hardware", "gpu"),
               epochs="+".join(map(str, epochs)) if len(epochs) > 1 else epochs[0],
               batch=last_record["train"]["batch_size"], target_pct=percent(target), budget_s=budget,
               time_to_target_s=time_to(secs, acc, target, chance),
               acc_at_budget_pct=percent(within[-1] if within else math.nan),
               time_to_target_tta_s=time_to(secs, tta, target, chance), params=last_summary.get("params", ""),
               data=Path(last_env.get("data_source", {}).get("train") or data["name"]).name, run=str(path),
               envs=envs, **environment_of(envs))
    if spec.get("stretch_target"):
        row.update(stretch_target_pct=percent(spec["stretch_target"]), stretch_budget_s=spec["stretch_budget_s"],
                   time_to_stretch_s=time_to(secs, acc, spec["stretch_target"], chance))
    if secs:  # speed from the curve, so that a run cut by a timeout still says how fast it was
        row.update(train_s=secs[-1], images_per_s=images / secs[-1])
        row["epochs_in_budget"] = budget * row["images_per_s"] / data["num_images"]
    if complete:
        final = last_summary["final"]
        total = lambda key: sum(_num(s[key]) for s in summaries)  # noqa: E731
        row.update(final_acc_pct=percent(final["eval_acc"]), final_acc_tta_pct=percent(_num(final["eval_acc_tta"])),
                   final_acc_ema_pct=percent(_num(final["eval_acc_ema"])), compile_s=total("compile_seconds"),
                   eval_s=total("eval_seconds"), elapsed_s=total("elapsed_seconds"))
        row["met"] = final["eval_acc"] >= target and row["train_s"] <= budget
    epoch_offsets = [sum(epochs[:i]) for i in range(len(epochs))]
    stage_of = {str(folder): i for i, folder in enumerate(folders)}
    stage_env = {str(folder): environment_of([e]) for folder, e in zip(folders, envs)}
    curve = [dict(model=kind, machine=row["machine"], settings=settings, seed=row["seed"],
                  epoch=epoch_offsets[stage_of[r["run"]]] + int(r["epoch"]), step=n,
                  lr=float(r["lr"]), train_s=t, eval_acc_pct=percent(a), eval_acc_tta_pct=percent(b),
                  eval_acc_ema_pct=percent(c), run=r["run"], **stage_env[r["run"]])
             for r, n, t, a, b, c in zip(metrics, steps, secs, acc, tta, ema)]
    return row, curve


NUMERIC = ("final_acc_pct", "train_s", "time_to_target_s", "acc_at_budget_pct", "final_acc_tta_pct",
           "time_to_target_tta_s", "final_acc_ema_pct", "time_to_stretch_s", "compile_s", "eval_s", "elapsed_s",
           "images_per_s", "epochs_in_budget")


def mean_rows(rows):
    """Per model, machine and settings, a mean and a std row over its seeds (nan when a seed has none: a
    seed that never reached the target, or did not finish, makes the mean time nan rather than flattering)."""
    out = []
    key = lambda r: (r["model"], r.get("machine", ""), r.get("settings", ""))  # noqa: E731
    for kind, machine, settings in dict.fromkeys(map(key, rows)):
        group = [r for r in rows if key(r) == (kind, machine, settings)]
        same = {k: group[0].get(k, "") for k in ("epochs", "batch", "target_pct", "budget_s", "stretch_target_pct",
                                                  "stretch_budget_s", "params", "data")}
        values = {k: np.array([_num(r.get(k)) for r in group]) for k in NUMERIC}
        complete = sum(r["status"] == "complete" for r in group)
        mean = dict(model=kind, machine=machine, settings=settings, seed="mean",
                    status=f"{complete}/{len(group)} complete", **same,
                    **{k: float(v.mean()) for k, v in values.items()})
        mean["met"] = bool(mean["final_acc_pct"] >= mean["target_pct"] and mean["train_s"] <= mean["budget_s"])
        std = {k: float(v.std(ddof=1)) if len(v) > 1 else math.nan for k, v in values.items()}
        env = environment_of([e for r in group for e in r.get("envs", [])]) if "envs" in group[0] else {}
        out += [dict(mean, **env), dict(model=kind, machine=machine, settings=settings, seed="std", **std, **env)]
    return out


def environment_of(envs):
    """bench.common's environment columns from the runs' env.json: each distinct value (runs of
    several sessions may differ), and the date of the latest run. Each seed's row and curve carry
    their own run's (its stages'), each mean and std row its seeds'."""
    def joined(values):
        return " | ".join(dict.fromkeys(map(str, values))) or "unknown"
    commits = [(e.get("git_commit") or "unknown")[:7] + ("+dirty" if e.get("git_dirty") else "") for e in envs]
    hardware = ((e.get("gpus") or [f"cpu ({e['cpu']})" if e.get("cpu") else "cpu"])[0] for e in envs)
    return dict(gpu=joined(hardware), torch=joined(e.get("torch") for e in envs),
                commit=joined(commits), date=max((e.get("start_time", "") for e in envs), default="unknown"))


# a ViT variant's own shade of the ViTs' blue; every other model its family's colour (FAMILY_COLORS)
VARIANT_COLORS = {"vit_lowres": "#6baed6"}


def _shade(color, i, n):
    """The i-th of n shades of `color`, darkest first (the colour itself when n is 1)."""
    from matplotlib.colors import to_rgb
    t = 0.0 if n == 1 else -0.4 + 0.8 * i / (n - 1)  # < 0: towards black, > 0: towards white
    return tuple(c * (1 + t) if t < 0 else c + (1 - c) * t for c in to_rgb(color))


def plot(curves, rows, path, title):
    """Accuracy (%) against training seconds: one line per seed, a colour per model (a shade of it per
    settings where one machine ran it with several), a line style per machine; each model's target
    accuracy and budget dashed (the stretch goal dotted; the budget line only where the runs come
    within half of it), labelled once per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vitlib.report.figures import FAMILY_COLORS

    fig, ax = plt.subplots(figsize=(8, 5.4))
    drawn = set()  # (target, budget) goals already drawn: models that share one get one line
    machines = list(dict.fromkeys(r.get("machine", "") for r in rows))
    # tuning runs far shorter than the budget: no budget line, so that their curves fill the axes
    span = max((c["train_s"] for c in curves), default=0.0)
    for kind in dict.fromkeys(r["model"] for r in rows):
        family = FAMILY_COLORS.get(model_family(kind), (0.4, 0.4, 0.4))
        color, first = VARIANT_COLORS.get(kind, family), next(r for r in rows if r["model"] == kind)
        for machine in machines:  # one line style per machine, one colour per model, a shade of it per settings
            variants = list(dict.fromkeys(r.get("settings", "") for r in rows
                                          if (r["model"], r.get("machine", "")) == (kind, machine)))
            for settings in variants:
                runs = [c for c in curves if (c["model"], c.get("machine", ""), c.get("settings", "")) ==
                        (kind, machine, settings)]
                shade = _shade(color, variants.index(settings), len(variants))
                for j, seed in enumerate(dict.fromkeys(c["seed"] for c in runs)):
                    points = [(c["train_s"], c["eval_acc_pct"]) for c in runs if c["seed"] == seed]
                    label = ", ".join([kind, *([machine] if len(machines) > 1 else []),
                                       *([settings] if settings else []), f"seed {seed}"])
                    ax.plot(*zip(*points), ["-", "--", "-.", ":"][machines.index(machine) % 4],
                            marker="osD^v"[j % 5], ms=2.5, color=shade, alpha=0.8, lw=1.1, label=label)
        goals = [(first["target_pct"], first["budget_s"], "--")]
        if first.get("stretch_target_pct"):
            goals.append((first["stretch_target_pct"], first["stretch_budget_s"], ":"))
        goals = [g for g in goals if g[:2] not in drawn]
        for target, budget, style in goals:
            drawn.add((target, budget))
            ax.axhline(target, color=family, ls=style, lw=1, alpha=0.7)
            if span >= budget / 2:
                ax.axvline(budget, color="0.45", ls=style, lw=1, alpha=0.7)  # a budget the models may share: grey
        if goals:  # one label per model, at its lower target: "resnet: 88% (stretch 90%) in 3600 s"
            text = f"{kind.split('_')[0]}: {goals[0][0]:.0f}%" + (
                f" (stretch {goals[1][0]:.0f}%)" if len(goals) > 1 else "") + f" in {goals[0][1]:.0f} s "
            x = goals[0][1] if span >= goals[0][1] / 2 else span
            ax.annotate(text, (x, goals[0][0]), color=family, fontsize=8, ha="right", va="top",
                        xytext=(0, -2), textcoords="offset points")
    ax.set(xlabel="training seconds (optimiser steps; compilation and evaluation excluded)",
           ylabel="CIFAR-10 test accuracy (%)")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    ax.set_xlim(left=0)
    ax.set_ylim(top=100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def report(run_dirs, args):
    """Rows, curves and figure from run folders; the CSVs and the figure written, the table printed last."""
    order = {kind: i for i, kind in enumerate(SPECS)}
    loaded = sorted((load_run(p, args) for p in run_dirs),
                    key=lambda x: (order.get(x[0]["model"], 99), x[0]["machine"], x[0]["settings"], x[0]["seed"]))
    rows, curves = [x[0] for x in loaded], [c for x in loaded for c in x[1]]
    # CPU runs only: the CPU's default outputs (runs of several sessions are merged with --from-runs)
    prefix = "cpu_" if all(r["hardware"] == "cpu" for r in rows) else ""
    env = environment_of([e for r in rows for e in r["envs"]])  # the title's: every stage of every seed
    rows += mean_rows(rows)
    out = resolve_out(args.out, f"{prefix}speedrun")
    curves_out = out.with_name(out.stem + "_curves.csv")
    figure = resolve_out(args.figure, f"{prefix}speedrun", ".png", "figures")
    write_csv(rows, out, COLUMNS, env)
    write_csv(curves, curves_out, CURVE_COLUMNS, env)
    title = f"CIFAR-10 speedrun on {env['gpu']} (torch {env['torch']}, commit {env['commit']})"
    machines = ", ".join(dict.fromkeys(r["machine"] for r in rows if r.get("machine")))
    short = (f"CIFAR-10 speedrun: test accuracy against training seconds ({machines}; "
             f"hardware, torch and commit of each run in {out.name})")
    try:
        plot(curves, rows, figure, short)
    except ImportError as error:  # the numbers matter more than the picture
        progress(f"no figure: {error}")
    print_table(rows, TABLE, title=f"\n{title}: written to {out}, {curves_out}, {figure}")
    return rows, curves


def main(argv=None):
    args = parse_args(argv)
    runs = find_runs(args.from_runs) if args.from_runs else train_all(args)
    return report(runs, args)


if __name__ == "__main__":
    run_cli(main, (ValueError, FileNotFoundError))
