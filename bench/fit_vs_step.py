"""Training through `vitlib train` against the bare training step, in alternating rounds: how much
of its bare step's speed does `fit` keep (augmentation, clipping, logging, the loop), and how fast
is it against timm's bare step of the same model? Each round runs bench.throughput (vitlib and timm,
the precision "auto" picks) and one `vitlib train` run of the same model, batch and precision, one
after the other (step then fit, then fit then step: a machine whose speed drifts hits both alike).
Each row is one round with its ratios; the last row, `median`, has the median of the rounds' own
ratios and their range (the ratio within a round holds when the machine's speed drifts between
rounds). A fit run's images/s is its summary.json's: training steps only, evaluation excluded.

    python -m bench.fit_vs_step --config ti4_d128_16 --rounds 4 --runs-dir results/bench/cpu_fit_vs_step_avx512-bf16 \\
        -- --dataset cifar10 --recipe vit_cpu --epochs 1
    python -m bench.fit_vs_step --from-runs results/bench/cpu_fit_vs_step_avx512-bf16

`--config` is one of bench.throughput's ViT configs: it sets the model, its shape, the image size and
the batch of both (ResNets are left out: `fit` picks their memory layout, the bare step takes one
given). The arguments after `--` go to `vitlib train`, which must not set those, nor `--out`,
`--device` or `--precision`. In the runs folder, round r is `r-step.csv` and the run folder `r-fit`;
new rounds number on after the finished ones there. `--from-runs DIR` makes the table again from
them; `--isa avx2` limits the CPU as in bench.compare_commits. Output: results/bench/
cpu_fit_vs_step_<cpu kind>_<config>.csv unless `--out`.
"""
import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/fit_vs_step.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    check_positive,
    environment,
    print_table,
    progress,
    refuse_passed,
    require_timm,
    resolve_out,
    run_cli,
    split_passthrough,
    write_csv,
)
from bench.compare_commits import ISAS, check_isa, run_throughput, run_train
from bench.speedrun import cpu_kind_of, read_stage
from bench.throughput import CONFIGS

COLUMNS = ("round", "order", "config", "precision", "fit_images_per_s", "vitlib_step_images_per_s",
           "timm_step_images_per_s", "fit_vs_timm_step", "fit_vs_vitlib_step", "vitlib_step_vs_timm_step",
           "fit_vs_timm_min", "fit_vs_timm_max", "fit_commit", "isa")
RATIOS = {"fit_vs_timm_step": ("fit", "timm"), "fit_vs_vitlib_step": ("fit", "vitlib"),
          "vitlib_step_vs_timm_step": ("vitlib", "timm")}
SET_HERE = ("--out", "--model", "--model-arg", "--img-size", "--batch-size", "--device", "--precision")
ROUND_ENTRY, FIT_FOLDER = re.compile(r"^(\d+)-(step\.csv|fit)$"), "{}-fit"  # round r: r-step.csv and r-fit


def round_order(r):
    """What round r runs first: the bare steps in odd rounds, the fit run in even ones."""
    return ("step", "fit") if r % 2 else ("fit", "step")


def train_args(config, extra):
    """`vitlib train` arguments for a bench.throughput config: its model, shape, image size and batch."""
    name, img_size, _, batch, overrides = CONFIGS[config]
    shape = [a for k, v in overrides.items() for a in ("--model-arg", f"{k}={json.dumps(v)}")]  # YAML reads JSON
    return ["--model", name, *shape, "--img-size", str(img_size), "--batch-size", str(batch), "--device", "cpu",
            "--precision", "auto", *extra]


def read_round(runs_dir, r):
    """Round r of `runs_dir` as {"fit"|"vitlib"|"timm": images/s, ...}, or None when unfinished."""
    step_csv, fit = Path(runs_dir) / f"{r}-step.csv", Path(runs_dir) / FIT_FOLDER.format(r)
    if not step_csv.exists() or not (fit / "summary.json").exists():
        return None
    config, env, summary, _ = read_stage(fit)
    if summary.get("status") != "complete":
        return None
    with open(step_csv, newline="") as f:
        steps = {row["impl"]: row for row in csv.DictReader(f) if row.get("status") == "ok"}
    if set(steps) != {"vitlib", "timm"}:
        return None
    if steps["vitlib"]["precision"] != summary["precision"]:
        raise ValueError(f"{runs_dir}: round {r}'s step ran in {steps['vitlib']['precision']}, "
                         f"its fit run in {summary['precision']}")
    return dict(fit=float(summary["images_per_s"]), vitlib=float(steps["vitlib"]["images_per_s"]),
                timm=float(steps["timm"]["images_per_s"]), config=steps["vitlib"]["config"],
                precision=summary["precision"], cpu=env.get("cpu", ""),
                fit_commit=env.get("git_commit", "")[:7] + ("+dirty" if env.get("git_dirty") else ""),
                order=", ".join(round_order(r)))


def read_rounds(runs_dir):
    """{round: read_round} over the finished rounds of `runs_dir`."""
    return {r: found for r in round_numbers(runs_dir) if (found := read_round(runs_dir, r)) is not None}


def round_numbers(runs_dir):
    """The round numbers `runs_dir` has a step CSV or a fit run folder of, finished or not, in order."""
    return sorted({int(m.group(1)) for p in Path(runs_dir).iterdir() if (m := ROUND_ENTRY.match(p.name))})


def table(rounds, isa):
    """One row per round with its ratios, then the `median` row (medians of speeds and ratios, and
    fit / timm's range)."""
    rows = []
    for r, found in sorted(rounds.items()):
        row = dict(round=r, order=found["order"], config=found["config"], precision=found["precision"],
                   fit_images_per_s=found["fit"], vitlib_step_images_per_s=found["vitlib"],
                   timm_step_images_per_s=found["timm"], fit_commit=found["fit_commit"], isa=isa)
        row.update({name: found[a] / found[b] for name, (a, b) in RATIOS.items()})
        rows.append(row)
    if len({row["config"] for row in rows}) > 1 or len({row["precision"] for row in rows}) > 1:
        raise ValueError("the runs folder mixes configs or precisions; one folder holds one comparison")
    median = dict(round="median", order="", config=rows[0]["config"], precision=rows[0]["precision"],
                  fit_commit=",".join(sorted({row["fit_commit"] for row in rows})), isa=isa,
                  fit_vs_timm_min=min(row["fit_vs_timm_step"] for row in rows),
                  fit_vs_timm_max=max(row["fit_vs_timm_step"] for row in rows))
    for column in ("fit_images_per_s", "vitlib_step_images_per_s", "timm_step_images_per_s", *RATIOS):
        median[column] = statistics.median(row[column] for row in rows)
    return [*rows, median]


def parse_args(argv):
    ours, extra = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ti4_d128_16", help="a bench.throughput config (default: the laptop ViT)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of step and fit in turn")
    p.add_argument("--steps", type=int, default=20, help="bench.throughput's timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="bench.throughput's untimed steps per row")
    p.add_argument("--isa", default="native", help=f"instruction set to limit the CPU to: {', '.join(ISAS)}")
    p.add_argument("--runs-dir", default=None, help="where each round's step CSV and fit run folder go")
    p.add_argument("--from-runs", default=None, help="the table from the rounds of an earlier --runs-dir")
    p.add_argument("--out", default=None,
                   help="CSV path (default results/bench/cpu_fit_vs_step_<cpu kind>_<config>.csv)")
    args = p.parse_args(ours)
    check_positive(rounds=args.rounds, steps=args.steps, warmup=args.warmup)
    check_isa(args.isa)
    if args.from_runs:
        if not Path(args.from_runs).is_dir():
            raise ValueError(f"--from-runs={args.from_runs!r} is not a folder")
        args.found = read_rounds(args.from_runs)
        if not args.found:
            raise ValueError(f"--from-runs={args.from_runs!r} holds no finished round (<r>-step.csv with vitlib "
                             "and timm rows, and the run folder <r>-fit whose summary.json says complete)")
        return args
    vits = [name for name, (model, *_) in CONFIGS.items() if model.startswith("vit")]
    if args.config not in vits:
        raise ValueError(f"--config={args.config!r} is not a ViT config of bench.throughput; "
                         f"allowed: {', '.join(vits)}")
    if not args.runs_dir:
        raise ValueError("--runs-dir is required (where the rounds go), unless --from-runs")
    refuse_passed(extra, SET_HERE, "from --config")
    if not any(a.split("=")[0] in ("--epochs", "--steps") for a in extra):
        raise ValueError("say how long each fit run trains after '--' (--epochs N or --steps N)")
    require_timm("fit_vs_step compares with timm's step")
    args.train_args = train_args(args.config, extra)
    return args


def measure(args):
    """`--rounds` more rounds in args.runs_dir, each bench.throughput's vitlib and timm rows and one fit run."""
    runs_dir = Path(args.runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    first = max(round_numbers(runs_dir), default=0) + 1
    config = ["--tiny"] if args.config == "tiny" else ["--configs", args.config]  # bench.throughput's test size
    step_args = ["--device", "cpu", *config, "--impls", "vitlib,timm", "--precision", "auto",
                 "--steps", str(args.steps), "--warmup", str(args.warmup)]
    for r in range(first, first + args.rounds):
        for part in round_order(r):
            progress(f"round {r}: {part} (isa {args.isa})")
            if part == "step":
                run_throughput(REPO, step_args, runs_dir / f"{r}-step.csv", args.isa)
            else:
                run_train(REPO, args.train_args, runs_dir / FIT_FOLDER.format(r), args.isa)
    return read_rounds(runs_dir)


def main(argv=None):
    args = parse_args(argv)
    found = args.found if args.from_runs else measure(args)
    if not found:
        raise ValueError(f"{args.runs_dir}: no round finished (a step CSV without both an ok vitlib and timm "
                         "row, or a fit run that did not complete): see the step CSVs' status column")
    rows = table(found, args.isa)
    config = rows[0]["config"]
    cpu = next(iter(found.values()))["cpu"]  # the machine the rounds ran on
    kind = cpu_kind_of(cpu) if args.isa == "native" else f"{args.isa}-emulated"
    out = resolve_out(args.out, f"cpu_fit_vs_step_{kind}_{config}")
    env = environment("cpu")
    env["gpu"] = f"cpu ({cpu})"
    write_csv(rows, out, COLUMNS, env)
    print_table(rows, COLUMNS[:10], title=f"\nfit against the bare step, {config}, {rows[0]['precision']} "
                                          f"(isa {args.isa}), written to {out}")
    return rows


if __name__ == "__main__":
    run_cli(main)
