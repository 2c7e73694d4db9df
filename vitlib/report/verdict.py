"""What every claim row shares: its columns, its provenance (runs, command, hardware) and the
helpers the claim rules use to pick comparable runs."""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import PurePosixPath

import pandas as pd

# "within noise": the difference the claim rests on is not larger than the seed spread (or a cell
# had one seed, so the spread is unknown): neither confirmed nor contradicted at this scale.
VERDICTS = ("reproduced", "partly", "within noise", "not reproduced", "not yet run")
ROW_COLUMNS = ["id", "claim", "paper", "ours", "runs", "command", "command_scope", "hardware", "verdict",
               "reason", "table"]
NOT_RUN = "not yet run"


def shorten_runs(run_dirs, max_listed: int = 3) -> str:
    """Run folders as text: listed when few, else one glob per parent folder
    (`results/runs/cifar/scratch-*`) built from the names' common prefix."""
    run_dirs = sorted(set(run_dirs))
    if not run_dirs:
        return "–"
    if len(run_dirs) <= max_listed:
        return ", ".join(run_dirs)
    by_parent = {}
    for d in run_dirs:
        path = PurePosixPath(d)
        by_parent.setdefault(str(path.parent), []).append(path.name)
    globs = []
    for parent, names in by_parent.items():
        if len(names) == 1:
            globs.append(f"{parent}/{names[0]}")
        else:
            globs.append(f"{parent}/{os.path.commonprefix(names)}* ({len(names)} runs)")
    return ", ".join(globs)


def _commands(df: pd.DataFrame) -> tuple[str, str]:
    """(command, scope): the command that re-makes the runs and how many of them it covers. One
    study command with `--only '<prefix>*'` ("4 runs") when they differ only in the run named, else
    the first ("and 3 more like it"); ("–", "") when no run recorded one."""
    commands = [c for c in dict.fromkeys(df["command"].dropna().astype(str)) if c]
    if not commands:
        return "–", ""
    if len(commands) == 1:
        return commands[0], ""
    heads, names = zip(*(c.rsplit(" --only ", 1) if " --only " in c else (c, "") for c in commands))
    prefix = os.path.commonprefix(names)
    if len(set(heads)) == 1 and prefix and all(names):
        return f"{heads[0]} --only '{prefix}*'", f"{len(commands)} runs"
    return commands[0], f"and {len(commands) - 1} more like it"


def _device_label(device, precision) -> str:
    """A run's device, with the precision it trained in where recorded: "cpu (...), fp32"."""
    return f"{device}, {precision}" if isinstance(precision, str) and precision else str(device)


def _hardware(df: pd.DataFrame) -> str:
    has = df[df["device"].notna()]
    counts = Counter(_device_label(d, p) for d, p in zip(has["device"], has["precision"]))
    return ", ".join(f"{d} ×{n}" if n > 1 else d for d, n in sorted(counts.items())) or "–"


def make_row(claim_id: str, claim: str, paper: str, table: str, runs: pd.DataFrame, *,
             ours: str, verdict: str, reason: str) -> dict:
    """One claims-table row; `runs` are the runs behind the number in `ours`."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    command, scope = _commands(runs)
    return {"id": claim_id, "claim": claim, "paper": paper, "ours": ours,
            "runs": shorten_runs(runs["run_dir"]), "command": command, "command_scope": scope,
            "hardware": _hardware(runs), "verdict": verdict, "reason": reason, "table": table}


def not_run(claim_id: str, claim: str, paper: str, table: str, related: pd.DataFrame, need: str) -> dict:
    """The row of a claim whose runs are missing: no number and no runs behind it; the reason
    says what is needed and how many related runs exist so far."""
    found = f"; {len(related)} related runs so far" if len(related) else ""
    return make_row(claim_id, claim, paper, table, related.iloc[0:0], ours=NOT_RUN,
                    verdict=NOT_RUN, reason=f"needs {need}{found}")


def on_dataset(df: pd.DataFrame, preferred: str | None = None, column: str = "dataset") -> pd.DataFrame:
    """The rows of `preferred` in `column` if there are any, else of its most common value (one
    data set per comparison: accuracies of different data sets do not compare)."""
    values = df[column].dropna()
    if values.empty:
        return df.iloc[0:0]
    choice = preferred if preferred in set(values) else values.value_counts().index[0]
    return df[df[column] == choice]


def args_without(model_args, *keys) -> str:
    """The model overrides other than `keys`, as text: runs with equal text differ only in `keys`."""
    args = model_args if isinstance(model_args, dict) else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(args.items()) if k not in keys)


def join_columns(df: pd.DataFrame, cols, sep: str = " | ") -> pd.Series:
    """The values of `cols` as one text per row (a Series even when `df` is empty)."""
    if df.empty:
        return pd.Series(dtype=str, index=df.index)
    return df[list(cols)].astype(str).agg(sep.join, axis=1)


def config_key(df: pd.DataFrame, vary: tuple, with_model: bool = True, with_lr: bool = True) -> pd.Series:
    """One text per training configuration, ignoring the model overrides in `vary` (the
    ablated knobs) so the runs of one ablation share a key; data set, data size, recipe, steps
    and lr (unless the lr is varied too: `with_lr=False`) are part of it so runs trained
    differently never share one."""
    parts = (["dataset", "train_size", "recipe", "steps"] + (["lr"] if with_lr else [])
             + (["model"] if with_model else []))
    if df.empty:
        return pd.Series(dtype=str, index=df.index)
    return df.apply(lambda r: " | ".join([*(str(r[p]) for p in parts),
                                          args_without(r["model_args"], *vary)]), axis=1)


def largest_group(df: pd.DataFrame, key: pd.Series, column: str, needed=()) -> pd.DataFrame:
    """The rows of the key whose runs cover the most distinct values of `column` (ties: more runs),
    among keys whose values include every one of `needed`; empty if none qualifies."""
    best, best_score = df.iloc[0:0], (0, 0)
    for _, group in df.groupby(key):
        values = set(group[column].dropna())
        score = (len(values), len(group))
        if values.issuperset(needed) and len(values) >= 2 and score > best_score:
            best, best_score = group, score
    return best


def best_per(stats: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The row with the highest mean of each `by` group of a summarise() table."""
    if stats.empty:
        return stats
    return stats.loc[stats.groupby(by, dropna=False)["mean"].idxmax()].reset_index(drop=True)


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson on ranks; NaN when either side is constant)."""
    return float(pd.Series(list(x), dtype=float).rank().corr(pd.Series(list(y), dtype=float).rank()))


def noise(*stds) -> float:
    """The largest seed std among the cells compared, 0 where a cell has one seed."""
    values = [s for s in stds if s is not None and not math.isnan(s)]
    return max(values, default=0.0)


def seed_spread(cells: pd.DataFrame) -> float:
    """The bar a difference between these summarise() cells must clear: twice the largest seed
    std among them; NaN when a cell has fewer than 2 seeds (its spread is unknown)."""
    if cells.empty or (cells["n"] < 2).any():
        return math.nan
    return 2 * float(cells["std"].max())


def weigh(diff: float, bar: float) -> str:
    """"higher" / "lower" when `diff` clears the bar of seed_spread (NaN: never), else "within
    noise"."""
    if math.isnan(bar) or abs(diff) <= bar:
        return "within noise"
    return "higher" if diff > 0 else "lower"


def bar_text(bar: float) -> str:
    """How a reason states the bar: `2 × seed std = 0.84` or that the spread is unknown."""
    return "one seed in a cell: no spread known" if math.isnan(bar) else f"2 × seed std = {bar:.2f}"
