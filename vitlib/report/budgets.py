"""A study that trains its data-size comparison at several budgets (optimiser steps): each claim's
verdict at each budget, the plateau check at the largest training set, and the ResNet's lead per
budget.

A budget is one value of `steps` among the study's data-size runs at which both families trained
at two or more common sizes; a study with fewer than two has no ladder and none of this applies.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .claims import evaluate_claims
from .collect import REPO, summarise, usable
from .scaling import data_size_runs
from .verdict import NOT_RUN, best_per, seed_spread, weigh

# Claims judged on every rung at once (their frontier spans all budgets): one verdict, no verdict
# per budget.
ALL_BUDGETS = ("compute", "compute-hybrid")


def budgets(runs: pd.DataFrame, sizes: dict | None = None) -> list[int]:
    """The budgets (steps) of the study's data-size comparison, ascending; `sizes`: rung_sizes(runs)
    where the caller has it already."""
    sizes = rung_sizes(runs) if sizes is None else sizes
    return sorted(steps for steps, common in sizes.items() if len(common) >= 2)


def rung_sizes(runs: pd.DataFrame) -> dict[int, list]:
    """{steps: the training-set sizes both families trained at that budget, ascending}."""
    df = data_size_runs(runs)
    found = {}
    for steps, part in df.dropna(subset=["steps"]).groupby("steps"):
        sizes = [set(part.loc[part["family"] == f, "train_size"]) for f in ("vit", "resnet")]
        found[int(steps)] = sorted(sizes[0] & sizes[1])
    return found


def _missing_sizes(sizes: dict, steps: int) -> str:
    """" (1,000 and 5,000 images not yet run at this budget)" where the rung lacks sizes that
    another rung has; "" where it has them all."""
    missing = sorted(set().union(*sizes.values()) - set(sizes[steps]))
    if not missing:
        return ""
    return f" ({' and '.join(f'{int(n):,}' for n in missing)} images not yet run at this budget)"


def _gaps(claim_id: str, sizes: dict, steps: int) -> str:
    """What a claim's verdict at `steps` lacks: the data-size claim compares the sizes of one rung,
    so _missing_sizes; "" for the other claims."""
    return _missing_sizes(sizes, steps) if claim_id == "data-size" else ""


def at_budget(runs: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The study's runs with every training run of another length left out."""
    return runs[(runs["kind"] != "train") | (runs["steps"] == steps)]


def _at_largest_size(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the usable train runs of the data-size configurations at the largest training set, the
    selection metric: validation accuracy where the runs have it, else test)."""
    sized = data_size_runs(runs)
    df = usable(runs, "train").dropna(subset=["train_size", "steps"])
    df = df[(df["train_size"] == sized["train_size"].max()) & df["label"].isin(set(sized["label"]))]
    metric = "val_top1" if "val_top1" in df and df["val_top1"].notna().any() else "accuracy"
    return df, metric


def _moved(rows: pd.DataFrame, metric: str, at: int, other: int) -> str:
    """Whether the best configuration among `rows` at `at` steps moves when the same configuration
    trains for `other` steps: "at plateau" (by no more than the seed spread: 2 x the largest seed
    std of the two cells), "budget-limited" (by more), or "plateau unknown" (a budget not run, or a
    cell with one seed)."""
    cells = summarise(rows, ["label", "recipe", "steps"], metric)
    at_cells = cells[cells["steps"] == at]
    if at_cells.empty:
        return f"plateau unknown: no run at {at:,} steps"
    best = best_per(at_cells, ["steps"]).iloc[0]
    same = cells[(cells["label"] == best["label"]) & (cells["recipe"] == best["recipe"])]
    if not (same["steps"] == other).any():
        return f"plateau unknown: no run at {other:,} steps"
    low, high = (same[same["steps"] == s] for s in sorted((at, other)))
    name = "validation" if metric == "val_top1" else "test"
    moved = (f"{name} {low['mean'].iloc[0]:.2f} → {high['mean'].iloc[0]:.2f} from {int(low['steps'].iloc[0]):,} "
             f"to {int(high['steps'].iloc[0]):,} steps")
    bar = seed_spread(pd.concat([low, high]))
    if math.isnan(bar):
        return f"plateau unknown (one seed in a cell): {moved}"
    diff = high["mean"].iloc[0] - low["mean"].iloc[0]
    return f"{'at plateau' if weigh(diff, bar) == 'within noise' else 'budget-limited'}: {moved} (bar {bar:.2f})"


def plateau(runs: pd.DataFrame, ladder: list[int]) -> dict:
    """{family: text} of the plateau check: at the largest training set and the longest budget run
    there (judged or not), each family's best configuration at that budget against the same
    configuration at half of it (_moved)."""
    if not ladder:
        return {}
    df, metric = _at_largest_size(runs)
    # the longest budget trained at the largest size, judged or not: its rung may still lack the
    # small sizes that a verdict needs
    top = max(ladder[-1], int(df["steps"].max()))
    return {family: _moved(df[df["family"] == family], metric, top, top // 2) for family in ("vit", "resnet")}


def more_budget(runs: pd.DataFrame, steps: int) -> str:
    """Would more budget move a ViT claim judged at `steps`: the best ViT of the ladder at the
    largest training set, `steps` against twice that where it was run, else against half (_moved)."""
    df, metric = _at_largest_size(runs)
    vit = df[df["family"] == "vit"]
    other = 2 * steps if (vit["steps"] == 2 * steps).any() else steps // 2
    return _moved(vit, metric, steps, other)


def _span(steps) -> str:
    """"2,000 steps", or "500–2,000 steps" for several."""
    low, high = int(min(steps)), int(max(steps))
    return f"{low:,} steps" if low == high else f"{low:,}–{high:,} steps"


def _by_path(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` indexed by each folder's resolved path (one row a folder): how a run that names
    another (source_run, pretrained_from) finds it."""
    return runs.assign(key=[Path(p).resolve() for p in runs["path"]]).drop_duplicates("key").set_index("key")


def one_budget(runs: pd.DataFrame, table: pd.DataFrame | None, by_path: pd.DataFrame | None = None) -> str:
    """The budget of a claim of a study trained at one budget, read off the runs its supporting
    table names (an inspection: the run it inspects; a fine-tuning: with its pre-training's) and
    the table's own steps: "pre-training 3,000 steps, fine-tuning 500 steps (one budget; plateau not
    checked)"; "" where the table names neither. `by_path`: _by_path(runs) where the caller has it."""
    if table is None or table.empty:
        return ""
    named = {d for col in ("runs", "run_dir") if col in table
             for cell in table[col].dropna() for d in str(cell).split()}
    rows = runs[runs["run_dir"].isin(named)]
    # an inspection reads the run it inspects, a fine-tuning the run it starts from: paths as the
    # notebooks took them (relative to the repository's root)
    at = _by_path(runs) if by_path is None else by_path
    linked = lambda col: at[at.index.isin({(REPO / p).resolve() for p in rows[col].dropna()})]  # noqa: E731
    rows = pd.concat([rows[rows["source_run"].isna()], linked("source_run")])
    steps = [*rows["steps"].dropna(), *(table["steps"].dropna() if "steps" in table else ())]
    pre = linked("pretrained_from")["steps"].dropna()
    parts = ([f"pre-training {_span(pre)}"] if len(pre) else []) + (
        [("fine-tuning " if len(pre) else "") + _span(steps)] if steps else [])
    if not parts:
        return ""
    each = "one budget" if len(set(steps)) <= 1 and pre.nunique() <= 1 else "one budget per configuration"
    return f"{', '.join(parts)} ({each}; plateau not checked)"


def judge_ladder(runs: pd.DataFrame, claims: pd.DataFrame,
                 tables: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims, by_budget) of a study trained at several budgets. by_budget: one row per claim id,
    one verdict column per budget ("2,000 steps"). claims: each claim's row as judged at the largest
    budget where it could be judged (its reason says which), with a "by budget" column of the
    verdict at every budget and the plateau check (budget_text); the compute claims keep their
    all-budget rows. A study without a ladder: an empty "by budget" column, its claims otherwise
    unchanged but for a "budget" column (one_budget of each judged claim's table among `tables`),
    and an empty by_budget."""
    sizes = rung_sizes(runs)
    ladder = budgets(runs, sizes)
    claims = claims.copy()
    claims["by budget"] = ""
    claims["budget"] = ""
    if len(ladder) < 2:
        by_path = _by_path(runs)
        claims["budget"] = [one_budget(runs, (tables or {}).get(name), by_path) if verdict != NOT_RUN else ""
                            for name, verdict in zip(claims["table"], claims["verdict"])]
        return claims, pd.DataFrame()
    judged = {steps: evaluate_claims(at_budget(runs, steps))[0].set_index("id") for steps in ladder}
    by_budget = pd.DataFrame({
        f"{steps:,} steps": {claim_id: "(all budgets)" if claim_id in ALL_BUDGETS
                             else verdict if verdict == NOT_RUN else verdict + _gaps(claim_id, sizes, steps)
                             for claim_id, verdict in rows["verdict"].items()}
        for steps, rows in judged.items()})
    by_budget = by_budget.rename_axis("id").reset_index()
    limits = plateau(runs, ladder)
    checks = {steps: more_budget(runs, steps) for steps in ladder}
    for i, claim_id in claims["id"].items():
        steps = None if claim_id in ALL_BUDGETS else next(
            (s for s in reversed(ladder) if judged[s].at[claim_id, "verdict"] != NOT_RUN), None)
        if steps is not None:
            row = judged[steps].loc[claim_id]
            for column in row.index:
                claims.at[i, column] = row[column]
            claims.at[i, "reason"] = f"at {steps:,} steps{_gaps(claim_id, sizes, steps)}: {row['reason']}"
        claims.at[i, "by budget"] = budget_text(claim_id, by_budget, limits, ladder, checks)
    return claims, by_budget


def budget_text(claim_id: str, by_budget: pd.DataFrame, limits: dict, ladder: list[int],
                checks: dict | None = None) -> str:
    """The scoreboard's words for one claim: its verdict at each budget where it was judged, and
    for the data-size claim the plateau check ("2,000 steps: not reproduced; 32,000 steps: partly
    (at the largest size, vit: budget-limited: ...)"); for the other claims (on the ViT) each
    verdict with `checks` of its budget (more_budget: "8,000 steps: reproduced (the ViT at the
    largest size: budget-limited: ...)"); for a claim judged on all budgets at once, the budgets
    its one verdict spans; "" for a study without a ladder."""
    if by_budget.empty or claim_id not in set(by_budget["id"]):
        return ""
    if claim_id in ALL_BUDGETS:
        return f"one verdict on all budgets at once (its frontiers span {ladder[0]:,}–{ladder[-1]:,} steps)"
    row = by_budget.set_index("id").loc[claim_id]
    checks = {} if claim_id == "data-size" else checks or {}
    text = "; ".join(f"{budget}: {verdict}" + (f" (the ViT at the largest size, {checks[steps]})"
                                                 if steps in checks else "")
                     for steps, (budget, verdict) in zip(ladder, row.items()) if verdict != NOT_RUN)
    if claim_id == "data-size" and limits:
        text += " (at the largest size, " + "; ".join(f"{f}: {t}" for f, t in limits.items()) + ")"
    return text
