"""A study that trains its data-size comparison at several budgets (optimiser steps): each claim's
verdict at each budget, the plateau check at the largest training set, and the ResNet's lead per
budget.

A budget is one value of `steps` among the study's data-size runs at which both families trained
at two or more common sizes; a study with fewer than two has no ladder and none of this applies.
"""
from __future__ import annotations

import math

import pandas as pd

from .claims import evaluate_claims
from .collect import summarise, usable
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


def plateau(runs: pd.DataFrame, ladder: list[int]) -> dict:
    """{family: text} of the plateau check: at the largest training set and the longest budget run
    there (judged or not), the selection metric (validation accuracy where the runs have it, else
    test) of each family's best configuration at that budget against the same configuration at half
    of it. "at plateau": it moved by no more than the seed spread (2 x the largest seed std of the
    two cells); "budget-limited": it moved by more; "plateau unknown" where either budget was not
    run or a cell has one seed."""
    if not ladder:
        return {}
    sized = data_size_runs(runs)
    largest = sized["train_size"].max()
    df = usable(runs, "train").dropna(subset=["train_size", "steps"])
    df = df[(df["train_size"] == largest) & df["label"].isin(set(sized["label"]))]
    # the longest budget trained at the largest size, judged or not: its rung may still lack the
    # small sizes that a verdict needs
    top = max(ladder[-1], int(df["steps"].max()))
    half = top // 2
    metric = "val_top1" if "val_top1" in df and df["val_top1"].notna().any() else "accuracy"
    out = {}
    for family in ("vit", "resnet"):
        rows = df[df["family"] == family]
        cells = summarise(rows, ["label", "recipe", "steps"], metric)
        top_cells = cells[cells["steps"] == top]
        if top_cells.empty:
            out[family] = f"plateau unknown: no run at {top:,} steps"
            continue
        best = best_per(top_cells, ["steps"]).iloc[0]
        other = cells[(cells["label"] == best["label"]) & (cells["recipe"] == best["recipe"])
                      & (cells["steps"] == half)]
        name = "validation" if metric == "val_top1" else "test"
        if other.empty:
            out[family] = f"plateau unknown: no run at {half:,} steps"
            continue
        diff = best["mean"] - other["mean"].iloc[0]
        bar = seed_spread(pd.concat([top_cells[top_cells["label"] == best["label"]], other]))
        moved = f"{name} {other['mean'].iloc[0]:.2f} → {best['mean']:.2f} from {half:,} to {top:,} steps"
        if math.isnan(bar):
            out[family] = f"plateau unknown (one seed in a cell): {moved}"
        elif weigh(diff, bar) == "within noise":
            out[family] = f"at plateau: {moved} (bar {bar:.2f})"
        else:
            out[family] = f"budget-limited: {moved} (bar {bar:.2f})"
    return out


def judge_ladder(runs: pd.DataFrame, claims: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims, by_budget) of a study trained at several budgets. by_budget: one row per claim id,
    one verdict column per budget ("2,000 steps"). claims: each claim's row as judged at the largest
    budget where it could be judged (its reason says which), with a "by budget" column of the
    verdict at every budget and the plateau check (budget_text); the compute claims keep their
    all-budget rows. A study without a ladder: its claims unchanged, with an empty "by budget"
    column, and an empty by_budget."""
    sizes = rung_sizes(runs)
    ladder = budgets(runs, sizes)
    claims = claims.copy()
    claims["by budget"] = ""
    if len(ladder) < 2:
        return claims, pd.DataFrame()
    judged = {steps: evaluate_claims(at_budget(runs, steps))[0].set_index("id") for steps in ladder}
    by_budget = pd.DataFrame({
        f"{steps:,} steps": {claim_id: "(all budgets)" if claim_id in ALL_BUDGETS
                             else verdict if verdict == NOT_RUN else verdict + _gaps(claim_id, sizes, steps)
                             for claim_id, verdict in rows["verdict"].items()}
        for steps, rows in judged.items()})
    by_budget = by_budget.rename_axis("id").reset_index()
    limits = plateau(runs, ladder)
    for i, claim_id in claims["id"].items():
        steps = None if claim_id in ALL_BUDGETS else next(
            (s for s in reversed(ladder) if judged[s].at[claim_id, "verdict"] != NOT_RUN), None)
        if steps is not None:
            row = judged[steps].loc[claim_id]
            for column in row.index:
                claims.at[i, column] = row[column]
            claims.at[i, "reason"] = f"at {steps:,} steps{_gaps(claim_id, sizes, steps)}: {row['reason']}"
        claims.at[i, "by budget"] = budget_text(claim_id, by_budget, limits, ladder)
    return claims, by_budget


def budget_text(claim_id: str, by_budget: pd.DataFrame, limits: dict, ladder: list[int]) -> str:
    """The scoreboard's words for one claim: its verdict at each budget where it was judged, and
    for the data-size claim the plateau check ("2,000 steps: not reproduced; 32,000 steps: partly
    (ViT budget-limited: ...)"); for a claim judged on all budgets at once, the budgets its one
    verdict spans; "" for a study without a ladder."""
    if by_budget.empty or claim_id not in set(by_budget["id"]):
        return ""
    if claim_id in ALL_BUDGETS:
        return f"one verdict on all budgets at once (its frontiers span {ladder[0]:,}–{ladder[-1]:,} steps)"
    row = by_budget.set_index("id").loc[claim_id]
    text = "; ".join(f"{budget}: {verdict}" for budget, verdict in row.items() if verdict != NOT_RUN)
    if claim_id == "data-size" and limits:
        text += " (at the largest size, " + "; ".join(f"{f}: {t}" for f, t in limits.items()) + ")"
    return text
