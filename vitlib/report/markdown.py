"""REPORT.md: what was run and on what, the data caveats, the claims table, one section per claim
with its table and figure, the inspection figures, the benchmarks and how to re-make it all.

Every link is relative to REPORT.md, so the report and its tables/ and figures/ move together.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .claims import readable, to_markdown
from .collect import display_root
from vitlib.fileio import atomic_write_text

TITLE = 'Reproducing "An Image Is Worth 16x16 Words" (ViT, Dosovitskiy et al., ICLR 2021)'
CAVEATS = """\
- CIFAR-10 and Tiny-ImageNet-32 are read from copies stored as JPEG at quality 75, not the
  original pixels. Accuracy is lower than on the originals (a CNN speedrun, airbench94, reaching
  94.0% on the original CIFAR-10 reached 90.7% ± 0.2 on this copy): comparisons inside this
  report hold, absolute numbers are not comparable with the paper's.
- The paper pre-trains on ImageNet-21k and JFT-300M at 224 px; this project trains on at most
  100,000 images of 32 × 32 px, so "small data" here is far smaller than the paper's smallest set.
- Tiny-ImageNet's test split has no labels, so its labelled `val` split is the held-out set. Its
  classes overlap in meaning with CIFAR-10's (cats, dogs, cars, trucks, frogs, ships, ...):
  transfer from it to CIFAR-10 is easier than transfer between unrelated sets.
- Licences: CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009);
  Tiny-ImageNet (derived from ImageNet: non-commercial research use only). Neither is
  redistributed with this project.
"""
# (title, claim ids, supporting table, figures) in the order of the report
SECTIONS = (
    ("Training-set size", ("data-size",), "data_size", ("data_size",)),
    ("Pre-training-set size", ("pretrain-size",), "pretrain_size", ("pretrain_size",)),
    ("Few-shot transfer", ("pretrain-size-5shot",), "few_shot", ("few_shot",)),
    ("Compute", ("compute", "compute-hybrid"), "compute", ("compute", "throughput")),
    ("Fine-tuning resolution", ("resolution",), "resolution", ()),
    ("Position embeddings", ("pos-emb",), "pos_emb", ("pos_emb",)),
    ("Class token vs global average pooling", ("pooling",), "pooling", ("pooling",)),
    ("Patch size, depth and width", ("patch-depth",), "patch_depth", ("patch_depth",)),
    ("Inspection", ("attention-distance", "pos-emb-similarity"), "inspection", ()),
)
CLAIM_COLUMNS = ["id", "claim", "paper", "ours", "verdict", "reason", "runs", "hardware", "command"]


def _link(target: Path, md_dir: Path) -> str:
    return Path(os.path.relpath(target, md_dir)).as_posix()


def _hours(seconds) -> str:
    return f"{seconds / 3600:.2f} h"


def _is_gpu(device) -> bool:
    """result.json names the GPU, or says "cpu (<processor>, <n> cores)"."""
    return isinstance(device, str) and bool(device.strip()) and not device.lower().startswith("cpu")


def what_was_run(runs: pd.DataFrame) -> str:
    """Counts, hardware per device, software from env.json, and the total GPU time."""
    if runs.empty:
        return "No run yet: every claim below is _not yet run_.\n"
    counts = runs["kind"].value_counts()
    lines = [f"{len(runs)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".", ""]
    by_device = runs.assign(device=runs["device"].fillna("unknown")).groupby("device").agg(
        runs=("run_dir", "count"), train_s=("train_seconds", lambda s: s.astype(float).sum()),
        runner_s=("runner_seconds", lambda s: s.astype(float).sum()))
    hardware = pd.DataFrame({"device": by_device.index, "runs": by_device["runs"].to_numpy(),
                             "training time": [_hours(s) for s in by_device["train_s"]],
                             "notebook wall time": [_hours(s) for s in by_device["runner_s"]]})
    lines += [to_markdown(hardware)]
    software = {col: sorted({v for cell in runs[col].dropna() for v in str(cell).split(", ")})
                for col in ("gpus", "torch", "cuda")}
    if any(software.values()):
        lines.append("From the runs' env.json: " + "; ".join(
            f"{col} {', '.join(values)}" for col, values in software.items() if values) + ".")
    gpu = runs[runs["device"].map(_is_gpu)]
    lines.append(
        f"\nTotal GPU time: {_hours(gpu['train_seconds'].astype(float).sum())} of training steps "
        f"(sum of train_seconds of the {len(gpu)} GPU runs) and "
        f"{_hours(gpu['runner_seconds'].astype(float).sum())} of notebook wall time (sum of the "
        "batch runner's durations in run.json, which include evaluation, compilation and "
        "data loading).")
    return "\n".join(lines) + "\n"


def _section(title, ids, table_name, figure_names, claims, tables, figures, results_dir, md_dir):
    out = [f"## {title}\n"]
    for _, row in claims[claims["id"].isin(ids)].iterrows():
        out.append(f"**{row['claim']}** ({row['id']})\n\n- Paper: {row['paper']}\n"
                   f"- Ours: {row['ours']}\n- Verdict: **{row['verdict']}**: {row['reason']}\n"
                   f"- Runs: {row['runs']}; hardware: {row['hardware']}\n")
    table = tables.get(table_name, pd.DataFrame())
    csv = _link(results_dir / "tables" / f"{table_name}.csv", md_dir)
    out.append(f"Table ([{table_name}.csv]({csv})):\n\n{to_markdown(readable(table))}")
    for name in figure_names:
        path = figures.get(name)
        out.append(f"![{name}]({_link(path, md_dir)})\n" if path else f"_Figure {name}: not yet run._\n")
    return "\n".join(out)


def _inspection_figures(results_dir: Path, md_dir: Path) -> str:
    paths = sorted((results_dir / "figures").glob("inspect_*.png"))
    if not paths:
        return "_Inspection figures: not yet run._\n"
    return "\n".join(f"![{p.stem}]({_link(p, md_dir)})\n" for p in paths)


def _benchmarks(results_dir: Path) -> str:
    files = sorted((results_dir / "bench").glob("*.csv"))
    if not files:
        return "_No benchmark yet (results/bench/*.csv)._\n"
    return "\n".join(f"### {f.stem}\n\n{to_markdown(readable(pd.read_csv(f)))}" for f in files)


def _excluded(runs: pd.DataFrame) -> str:
    bad = runs[~runs["usable"].astype(bool)]
    if bad.empty:
        return ""
    rows = "\n".join(f"- {r.run_dir}: {r.status}" for r in bad.itertuples())
    return f"## Runs left out of the claims\n\nFailed, unfinished or diverged:\n\n{rows}\n"


def _remake(runs: pd.DataFrame, results_dir: Path) -> str:
    studies = sorted(runs["study_file"].dropna().unique())
    run = [f"python -m vitlib.experiments run {s}" for s in studies] or [
        "make reproduce            # python -m vitlib.experiments run experiments/cifar.yaml"]
    lines = [*run, f"python -m vitlib.report {display_root(results_dir)}   # this report (make report)"]
    return ("## How to re-make\n\nThe batch runner skips finished runs, so the same commands "
            "resume an interrupted study; each run's own command is in the claims table and in "
            "its result.json.\n\n```bash\n" + "\n".join(lines) + "\n```\n")


def write_report(results_dir, runs: pd.DataFrame, claims: pd.DataFrame,
                 tables: dict[str, pd.DataFrame], figures: dict, out_md=None) -> Path:
    """Write REPORT.md (default `<results_dir>/REPORT.md`) and return its path."""
    results_dir = Path(results_dir)
    out_md = Path(out_md) if out_md is not None else results_dir / "REPORT.md"
    md_dir = out_md.parent
    parts = [f"# {TITLE}\n",
             f"Built by `python -m vitlib.report {display_root(results_dir)}` from the run records "
             "under `runs/` only: no number here is typed by hand, and a claim without runs says "
             "_not yet run_. Accuracies are top-1 in %, mean ± sample std over seeds (n).\n",
             "## What was run\n", what_was_run(runs),
             "## Data caveats\n", CAVEATS,
             "## Claims\n",
             "Verdicts follow fixed rules, written in the docstring of each claim function "
             "(`vitlib/report/scaling.py`, `vitlib/report/ablations.py`).\n",
             to_markdown(claims[CLAIM_COLUMNS])]
    for title, ids, table, figs in SECTIONS:
        parts.append(_section(title, ids, table, figs, claims, tables, figures, results_dir, md_dir))
    parts += ["### Inspection figures\n", _inspection_figures(results_dir, md_dir),
              "## Benchmarks\n", _benchmarks(results_dir), _excluded(runs),
              _remake(runs, results_dir)]
    md_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_md, "\n".join(p for p in parts if p))
    return out_md
