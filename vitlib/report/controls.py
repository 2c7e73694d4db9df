"""Controls: runs that repeat a counted run with one thing changed that should not move its result
(the precision it trained in), each read beside the seed spread of the run it repeats.

`collect.load_runs` finds them (`control_of`: a usable run of the same study that differs only in
its precision); they never count as another seed of a claim.
"""
from __future__ import annotations

import pandas as pd

from .collect import parameters_key, summarise, usable
from .verdict import seed_spread, weigh

COLUMNS = ["model", "train_size", "steps", "seed", "precision", "control precision", "top1", "control top1",
           "difference", "val top1", "control val top1", "seed std", "n", "bar", "reading", "runs"]


def _seeds(runs: pd.DataFrame, counted: pd.Series) -> pd.DataFrame:
    """The usable runs of `counted`'s configuration in its precision, one per seed (`counted` too)."""
    key = parameters_key(counted["parameters"], ignore=("seed",))
    same = usable(runs, counted["kind"])
    same = same[(same["study"] == counted["study"]) & (same["precision"] == counted["precision"])]
    return same[same["parameters"].map(lambda params: parameters_key(params, ignore=("seed",)) == key)]


def reading(diff: float, bar: float) -> str:
    """A control's difference in words, against the bar of seed_spread."""
    if pd.isna(diff):
        return "no test accuracy to compare"
    if pd.isna(bar):
        return "seed spread unknown (one seed of the counted configuration)"
    return ("within the seed spread" if weigh(diff, bar) == "within noise"
            else "larger than the seed spread")


def precision_controls(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per precision control among `runs` (one study's): the run it repeats and the control,
    the precision each trained in, their test and validation top-1 (%), the difference (control −
    counted, test), the seed std and n of the counted configuration, the bar (2 × std: seed_spread)
    and whether the difference is within it. Empty (with COLUMNS) when the study has none."""
    rows = []
    by_dir = runs.set_index("run_dir")
    for _, control in runs[runs["control_of"].notna()].iterrows():
        if control["control_of"] not in by_dir.index:
            continue
        counted = by_dir.loc[control["control_of"]]
        counted = pd.concat([pd.Series({"run_dir": control["control_of"]}), counted])
        cell = summarise(_seeds(runs, counted), ["label"])
        std, n = (cell["std"].iloc[0], int(cell["n"].iloc[0])) if len(cell) else (float("nan"), 0)
        bar = seed_spread(cell)
        diff = control["accuracy"] - counted["accuracy"]
        rows.append({"model": counted["label"], "train_size": counted["train_size"], "steps": counted["steps"],
                     "seed": counted["seed"], "precision": counted["precision"],
                     "control precision": control["precision"], "top1": counted["accuracy"],
                     "control top1": control["accuracy"], "difference": diff,
                     "val top1": counted.get("val_top1"), "control val top1": control.get("val_top1"),
                     "seed std": std, "n": n, "bar": bar, "reading": reading(diff, bar),
                     "runs": f"{counted['run_dir']} {control['run_dir']}"})
    return pd.DataFrame(rows, columns=COLUMNS)


def controls_text(table: pd.DataFrame) -> str:
    """One line per control of precision_controls: "- fp32 against bf16 (<model>, <size> images,
    <steps> steps, seed <seed>): test top-1 <control> against <counted>, <difference> points; the
    seed spread of the bf16 runs is 2 × <std> = <bar> (n=<n>): <reading>."."""
    out = []
    for _, row in table.iterrows():
        spread = ("" if pd.isna(row["bar"]) else f"; the seed spread of the {row['precision']} runs is "
                  f"2 × {row['seed std']:.2f} = {row['bar']:.2f} (n={row['n']})")
        out.append(f"- {row['control precision']} against {row['precision']} ({row['model']}, "
                   f"{int(row['train_size']):,} images, {int(row['steps']):,} steps, seed {int(row['seed'])}): "
                   f"test top-1 {row['control top1']:.2f} against {row['top1']:.2f}, "
                   f"{row['difference']:+.2f} points{spread}: {row['reading']}.")
    return "\n".join(out) + ("\n" if out else "")
