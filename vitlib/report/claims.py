"""The claims table: one row per claim of the paper, each with our number, its runs and a verdict.

The rules live in the docstrings of the claim functions (scaling.py, ablations.py); a claim with
missing runs says "not yet run" and never shows a number. `evaluate_claims` runs them all;
`write_tables` saves the claims table, each claim's supporting table and the list of runs under
`<results_dir>/tables/<study>/` as CSV (numbers) and Markdown (readable).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

from vitlib.fileio import atomic_write_text

from .ablations import claim_attention_distance, claim_patch_depth, claim_pooling, claim_pos_emb, claim_pos_similarity
from .collect import format_summary
from .scaling import (
    claim_compute,
    claim_compute_hybrid,
    claim_data_size,
    claim_few_shot,
    claim_pretrain_size,
    claim_resolution,
)
from .verdict import ROW_COLUMNS

CLAIMS = (claim_data_size, claim_pretrain_size, claim_few_shot, claim_compute,
          claim_compute_hybrid, claim_resolution, claim_pos_emb, claim_pooling,
          claim_patch_depth, claim_attention_distance, claim_pos_similarity)
# their ids, in the same order (a study file's `claims` names some of them)
CLAIM_IDS = ("data-size", "pretrain-size", "pretrain-size-5shot", "compute", "compute-hybrid", "resolution",
             "pos-emb", "pooling", "patch-depth", "attention-distance", "pos-emb-similarity")
TABLES = ("data_size", "pretrain_size", "few_shot", "compute", "resolution", "pos_emb", "pooling",
          "patch_depth", "inspection")
RUNS_COLUMNS = {"run_dir": "run folder", "kind": "kind", "label": "model", "dataset": "dataset",
                "train_size": "size", "seed": "seed", "steps": "budget (steps)",
                "steps_taken": "steps taken", "accuracy": "top1", "device": "device",
                "precision": "precision", "train_seconds": "seconds", "status": "status", "usable": "used",
                "problem": "why not used"}
# columns that name run folders (readable() links them) and that count (whole_numbers())
LINKED_COLUMNS = ("runs", "run_dir", "run folder")
INTEGER_COLUMNS = {"train_size", "pretrain_size", "size", "seed", "img_size", "steps", "steps_taken", "budget (steps)",
                   "steps taken", "epochs", "n", "patch", "depth", "width", "layers", "layer0_far_heads", "params",
                   "selected_step"}


def evaluate_claims(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(claims table with ROW_COLUMNS, {table name: supporting table}) for the runs of
    collect.load_runs."""
    rows, tables = [], {}
    for claim in CLAIMS:
        row, table = claim(runs)
        rows.append(row)
        tables.setdefault(row["table"], table)
    return pd.DataFrame(rows, columns=ROW_COLUMNS), tables


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run folder: folder, model, data set, size, seed, top1 (%), device, precision, training
    seconds, status, whether the claims use it and why not."""
    return runs[list(RUNS_COLUMNS)].rename(columns=RUNS_COLUMNS)


def _number(value) -> str:
    """2 decimals for accuracies in % and seconds, 3 significant digits for FLOPs, params, lr and
    fractions (a ratio of 0.8685 is 0.869, not 0.87)."""
    if pd.isna(value):
        return ""
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if abs(value) >= 1e5 or abs(value) < 1 else f"{value:.2f}"


def whole_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with its counting columns (sizes, seeds, steps, shapes) as integers where every
    value is whole: a CSV says 20000, not 20000.0."""
    out = table.copy()
    for col in INTEGER_COLUMNS & set(out.columns):
        values = pd.to_numeric(out[col], errors="coerce")
        if values.notna().equals(out[col].notna()) and (values.dropna() % 1 == 0).all():
            out[col] = values.astype("Int64")
    return out


def run_links(runs: pd.DataFrame, md_dir: Path) -> dict[str, str]:
    """{run_dir: the run folder's path relative to `md_dir`}: the link targets of readable()."""
    return {d: Path(os.path.relpath(p, md_dir)).as_posix() for d, p in zip(runs["run_dir"], runs["path"])}


def _linked(cell, links: dict[str, str]) -> str:
    """A cell of run folders (space-separated run_dir values) as Markdown links named by folder."""
    if not isinstance(cell, str) or not cell:
        return ""
    return " ".join(f"[{PurePosixPath(d).name}]({links[d]})" if d in links else d for d in cell.split())


def readable(table: pd.DataFrame, links: dict[str, str] | None = None) -> pd.DataFrame:
    """The Markdown form of a table: mean/std/n merged into `top1 (%)`, numbers as short text,
    and each run folder a link where `links` (run_links) knows it."""
    if {"mean", "std", "n"} <= set(table.columns):
        table = format_summary(table)
    out = table.copy()
    for col in out.columns:
        if col in LINKED_COLUMNS and links is not None:
            out[col] = out[col].map(lambda cell: _linked(cell, links))
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(_number)
        else:  # an empty cell of a text column (a CSV's mean/std rows) reads as NaN: show it empty
            out[col] = out[col].astype(object).where(out[col].notna(), "")
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (cells as given: no re-parsing of numbers), or a line saying
    there is nothing yet."""
    if table.empty:
        return "_not yet run_\n"
    # a "|" inside a cell (a shell pipe in a command) would end the cell
    escape = lambda v: v.replace("|", "\\|") if isinstance(v, str) else v  # noqa: E731
    escaped = table.apply(lambda col: col.map(escape))
    return escaped.to_markdown(index=False, disable_numparse=True) + "\n"


def write_table(table: pd.DataFrame, folder: Path, name: str, links: dict[str, str] | None = None) -> None:
    """`<folder>/<name>.csv` (numbers) and `.md` (readable, run folders linked through `links`)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = whole_numbers(table)
    table.to_csv(folder / f"{name}.csv", index=False)
    atomic_write_text(folder / f"{name}.md", to_markdown(readable(table, links)))


def write_tables(folder, runs: pd.DataFrame, claims: pd.DataFrame,
                 tables: dict[str, pd.DataFrame]) -> Path:
    """Write claims, runs and the supporting tables of one study to `folder` (a table the study's
    claims do not use is removed from it); returns it."""
    folder = Path(folder)
    links = run_links(runs, folder)
    write_table(claims, folder, "claims")
    write_table(runs_table(runs), folder, "runs", links)
    for name in TABLES:
        if name in tables:
            write_table(tables[name], folder, name, links)
        else:
            for suffix in (".csv", ".md"):
                (folder / f"{name}{suffix}").unlink(missing_ok=True)
    for name in ("by_budget", "controls"):  # tables of some studies only
        if name in tables:
            write_table(tables[name], folder, name, links)
        else:
            for suffix in (".csv", ".md"):
                (folder / f"{name}{suffix}").unlink(missing_ok=True)
    return folder
