"""Training throughput of two commits of this repository on the same machine: did a change make
anything slower? Each commit is checked out in its own temporary worktree and `bench.throughput`
runs there with the same arguments, the two commits in turn for `--rounds` rounds (base, head, then
head, base: a machine whose speed drifts hits both alike); each row gives the median images/s of
each commit, the rounds' spread, and head / base as the median of the rounds' own ratios with their
range (a ratio whose range includes 1 is not resolved).

    python -m bench.compare_commits --base 18b3d83 --rounds 3 -- --device cpu --configs ti4_d6_32 --steps 5 --warmup 2
    python -m bench.compare_commits --base 18b3d83 --isa avx2 -- --device cpu --configs ti4_d128_16,r10n_32

`--isa avx2` limits this CPU to AVX2 for both commits (torch's kernels, MKL and oneDNN, through
their environment variables ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA): on
a newer CPU it stands in for an AVX2-only one. oneDNN then reports no native bf16, so vitlib's
"auto" precision resolves to fp32 as on an AVX2 CPU; the CPU model, its caches and clock stay
this machine's, so the ratios carry over, not the images/s. Everything after `--` goes to
bench.throughput (not `--out` nor `--rounds`, which this script sets).

`--train --runs-dir DIR` compares training through `fit` instead: each round runs `vitlib train`
with the arguments after `--` (not `--out`) from each checkout, into DIR/<n>-<base|head> (runs 2r-1
and 2r make round r; new runs number on after those DIR holds, whose commits must be the same two),
and the row gives the images/s of summary.json. `--from-runs DIR` makes the table again from such
run folders, the commits read from their env.json:

    python -m bench.compare_commits --base 18b3d83 --isa avx2 --rounds 2 --train \\
        --runs-dir results/bench/cpu_fit_runs_avx2-emulated -- --model vit_ti4 --dataset cifar10 --img-size 16 ...
    python -m bench.compare_commits --from-runs results/bench/cpu_fit_runs_avx2-emulated --isa avx2 \\
        --out results/bench/cpu_compare_avx2-emulated_fit.csv
"""
import argparse
import contextlib
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/compare_commits.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    ChildRunFailed,
    check_positive,
    environment,
    print_table,
    progress,
    refuse_passed,
    resolve_out,
    run_cli,
    split_passthrough,
    write_csv,
)
from bench.speedrun import read_stage

# the environment variables that cap each library at an instruction set
ISAS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
KEY = ("config", "impl", "compile", "precision", "batch", "threads", "memory_format")
SHOWN = (*KEY, "base_images_per_s", "head_images_per_s", "base_spread", "head_spread", "head_vs_base", "ratio_min",
         "ratio_max")
COLUMNS = (*SHOWN, "rounds", "isa", "base_commit", "head_commit", "base_device", "head_device")
SET_HERE = ("--out", "--rounds")
RUN_NAME = re.compile(r"^(\d+)-(base|head)$")  # a --train run folder: <number>-<side>


def check_isa(isa):
    if isa not in ISAS:
        raise ValueError(f"--isa={isa!r} is not supported; allowed: {', '.join(ISAS)}")


def git(*args, cwd=REPO):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def resolve_commit(rev, name):
    """The full hash of `rev`, or ValueError naming the flag."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise ValueError(f"--{name}={rev!r} is not a commit of {REPO}") from None


@contextlib.contextmanager
def worktree(commit, folder):
    """A detached checkout of `commit` at `folder`, removed afterwards."""
    git("worktree", "add", "--detach", "--force", str(folder), commit)
    try:
        yield Path(folder)
    finally:
        git("worktree", "remove", "--force", str(folder))


def run_child(command, tree, isa, what):
    """`command` run in `tree` with the instruction set limited to `isa`; ChildRunFailed (`what` failed,
    with the end of its stderr) where it exits with an error."""
    done = subprocess.run(command, cwd=tree, env={**os.environ, **ISAS[isa]}, capture_output=True, text=True)
    if done.returncode:
        raise ChildRunFailed(f"{what} failed in {tree} (exit {done.returncode}):\n{done.stderr[-2000:].rstrip()}")


def run_throughput(tree, throughput_args, out, isa):
    """One round of bench.throughput in `tree`; its CSV rows (dicts of strings)."""
    run_child([sys.executable, "-m", "bench.throughput", *throughput_args, "--rounds", "1", "--out", str(out)],
              tree, isa, "bench.throughput")
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def run_train(tree, train_args, out, isa):
    """One `vitlib train` run in `tree` into the run folder `out`."""
    run_child([sys.executable, "-m", "vitlib", "train", *train_args, "--out", str(out)], tree, isa, "vitlib train")


def round_sides(i):
    """The commits in the order round i (from 0) measures them: base first in even rounds, head first
    in odd ones, so a machine whose speed drifts hits both alike."""
    return ("base", "head") if i % 2 == 0 else ("head", "base")


def fit_runs(runs_dir, isa):
    """The finished run folders <n>-<base|head> of `runs_dir` as ({side: {round: [row]}}, {side: commit}):
    each row is the run's images/s through fit (summary.json) with its settings in KEY's columns."""
    rounds, commits = {"base": {}, "head": {}}, {"base": set(), "head": set()}
    folders = [f for f in sorted(Path(runs_dir).iterdir()) if RUN_NAME.match(f.name)] if Path(runs_dir).is_dir() else []
    for folder in folders:
        number, side = RUN_NAME.match(folder.name).groups()
        try:
            config, env, summary, _ = read_stage(folder)
        except (OSError, ValueError):  # a run that did not finish writing its folder
            continue
        if summary.get("status") != "complete":
            continue
        if isa == "avx2" and ", AVX2," not in env.get("cpu", ""):
            raise ValueError(f"{folder}: its env.json says {env.get('cpu')!r}, not a CPU limited to AVX2 (--isa avx2)")
        model, train = config["model"], config["train"]
        rounds[side][(int(number) - 1) // 2] = [dict(
            config=f"fit {model['name']} {model['img_size']}px", impl="vitlib",
            compile="default" if train.get("compile") else "none", precision=summary["precision"],
            batch=train["batch_size"], threads="", memory_format=env.get("memory_format", ""),
            images_per_s=summary["images_per_s"], status="ok", gpu=f"cpu ({env['cpu']})")]
        commits[side].add(env["git_commit"])
    for side, found in commits.items():
        if len(found) > 1:
            raise ValueError(f"{runs_dir}: the {side} runs come from {len(found)} commits "
                             f"({', '.join(sorted(c[:7] for c in found))}); one runs folder compares two commits")
    return rounds, {side: next(iter(found), "") for side, found in commits.items()}, folders


def combine(rounds, isa, commits):
    """Rows of KEY with each commit's median images/s over the rounds and its spread, and head / base:
    the median over rounds of the ratio within a round (the two commits ran one after the other
    there, so the ratio holds when the machine's speed drifts between rounds), with its min and max.
    rounds: {"base": {round: rows}, "head": {...}}; only rows with status ok count. Returns (rows, left
    out): the KEY tuples with no round where both commits measured them (a new config, a failed row,
    a setting one commit records differently)."""
    speeds, device = {}, {}
    for side, side_rounds in rounds.items():
        for i, rows in side_rounds.items():
            for row in rows:
                if row.get("status") == "ok" and row.get("images_per_s"):
                    key = tuple(row.get(k, "") for k in KEY)
                    speeds.setdefault(key, {"base": {}, "head": {}})[side][i] = float(row["images_per_s"])
                    device[side] = row.get("gpu", "")
    out, left_out = [], []
    for key, by_side in speeds.items():
        paired = sorted(set(by_side["base"]) & set(by_side["head"]))
        if not paired:
            left_out.append(key)
            continue
        row = dict(zip(KEY, key))
        for side in ("base", "head"):
            values = [by_side[side][i] for i in paired]
            median = statistics.median(values)
            row[f"{side}_images_per_s"] = median
            row[f"{side}_spread"] = (max(values) - min(values)) / median if len(values) > 1 else ""
        ratios = [by_side["head"][i] / by_side["base"][i] for i in paired]
        row.update(head_vs_base=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
                   rounds=len(paired), isa=isa, base_commit=commits["base"][:7], head_commit=commits["head"][:7],
                   base_device=device["base"], head_device=device["head"])
        out.append(row)
    return out, left_out


def parse_args(argv):
    ours, throughput_args = split_passthrough(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=None, help="the commit to compare against (any git revision)")
    p.add_argument("--head", default="HEAD", help="the commit to measure (default HEAD)")
    p.add_argument("--isa", default="native", help=f"instruction set to limit the CPU to: {', '.join(ISAS)}")
    p.add_argument("--rounds", type=int, default=3, help="rounds of both commits in turn; the median counts")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/compare_commits.csv)")
    p.add_argument("--train", action="store_true", help="compare `vitlib train` runs (the arguments after --) "
                                                        "instead of bench.throughput")
    p.add_argument("--runs-dir", default=None, help="with --train: where the run folders go")
    p.add_argument("--from-runs", default=None, help="the table from the run folders of an earlier --train")
    args = p.parse_args(ours)
    check_positive(rounds=args.rounds)
    check_isa(args.isa)
    if args.from_runs:
        if not Path(args.from_runs).is_dir():
            raise ValueError(f"--from-runs={args.from_runs!r} is not a folder")
        args.runs = fit_runs(args.from_runs, args.isa)  # (rounds, commits, folders), read once
        if not all(args.runs[1].values()):
            raise ValueError(f"--from-runs={args.from_runs!r} holds no finished runs of both sides "
                             "(folders <n>-base and <n>-head whose summary.json says complete)")
        return args
    if args.base is None:
        raise ValueError("--base is required (the commit to compare against), unless --from-runs")
    if args.train != bool(args.runs_dir):
        raise ValueError("--train and --runs-dir go together: the runs of --train need a folder")
    refuse_passed(throughput_args, ("--out",) if args.train else SET_HERE, "itself")
    args.commits = {"base": resolve_commit(args.base, "base"), "head": resolve_commit(args.head, "head")}
    if args.train:
        args.runs = fit_runs(args.runs_dir, args.isa)  # the runs already there: checked, then numbered on
        found = args.runs[1]
        other = {side: c[:7] for side, c in found.items() if c and c != args.commits[side]}
        if other:
            raise ValueError(f"--runs-dir={args.runs_dir!r} holds runs of other commits "
                             f"({', '.join(f'{side} {c}' for side, c in other.items())}): choose a new folder")
    args.throughput_args = throughput_args
    return args


def main(argv=None):
    args = parse_args(argv)
    out = resolve_out(args.out, "compare_commits")
    if args.from_runs:
        rounds, commits, _ = args.runs
    elif args.train:
        rounds, commits = measure_train(args)
    else:
        rounds, commits = measure_throughput(args), args.commits
    rows, left_out = combine(rounds, args.isa, commits)
    env = environment("cpu")
    write_csv(rows, out, COLUMNS, env)
    for key in left_out:
        progress(f"left out, not measured by both commits in one round: {' '.join(str(v) for v in key if v != '')}")
    print_table(rows, SHOWN, title=f"\n{commits['head'][:7]} against {commits['base'][:7]} (isa {args.isa}), "
                                   f"written to {out}")
    return rows


def measure_throughput(args):
    """bench.throughput's rows of each commit, per round."""
    rounds = {"base": {}, "head": {}}
    with tempfile.TemporaryDirectory() as tmp, checkouts(args.commits, tmp) as trees:
        for i in range(args.rounds):
            for side in round_sides(i):
                progress(f"round {i + 1}/{args.rounds}: {side} {args.commits[side][:7]} (isa {args.isa})")
                rounds[side][i] = run_throughput(trees[side], args.throughput_args, Path(tmp) / f"{side}-{i}.csv",
                                                 args.isa)
    return rounds


def measure_train(args):
    """`--rounds` more rounds of `vitlib train` runs in args.runs_dir, then every finished one there."""
    folders = args.runs[2]
    done = max((int(RUN_NAME.match(f.name).group(1)) for f in folders), default=0)
    first = done // 2 + done % 2  # a new round starts at an odd run number
    with tempfile.TemporaryDirectory() as tmp, checkouts(args.commits, tmp) as trees:
        for i in range(first, first + args.rounds):
            for j, side in enumerate(round_sides(i)):
                run = Path(args.runs_dir).resolve() / f"{2 * i + j + 1}-{side}"
                progress(f"round {i + 1}: {side} {args.commits[side][:7]} (isa {args.isa}) -> {run}")
                run_train(trees[side], args.throughput_args, run, args.isa)
    rounds, commits, _ = fit_runs(args.runs_dir, args.isa)
    return rounds, commits


@contextlib.contextmanager
def checkouts(commits, tmp):
    with worktree(commits["base"], Path(tmp) / "base") as base, worktree(commits["head"], Path(tmp) / "head") as head:
        yield {"base": base, "head": head}


if __name__ == "__main__":
    run_cli(main)
