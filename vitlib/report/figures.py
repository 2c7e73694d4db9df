"""The report's figures, drawn with seaborn from the runs DataFrame and saved as PNG.

Every `fig_*(runs, path)` draws from the same runs its claim uses, labels both axes with units,
and returns the path written, or None (and removes a stale file at `path`) when its data are
missing. Figures are built on `matplotlib.figure.Figure` (rendered by Agg on save), never pyplot,
so nothing pops up and a notebook's backend is left alone.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator

from .ablations import POS_EMBS, base_shape, patch_depth_runs, pooling_runs, pos_emb_runs
from .budgets import at_budget, budgets
from .collect import usable
from .scaling import at_size, compute_points, compute_runs, data_size_runs, matched_size, pretrain_runs, size_text

ACCURACY = "top-1 accuracy (%)"
# one colour per family in every figure (seaborn's first three: blue, orange, green)
FAMILY_COLORS = dict(zip(("vit", "resnet", "hybrid"), sns.color_palette("tab10", 3)))


def family_palette(df: pd.DataFrame, hue: str = "label") -> dict:
    """{hue value: colour}: each family's colour, lighter and darker for a family's several lines."""
    palette = {}
    for family, part in df.groupby(df["family"].fillna("other")):
        values = sorted(part[hue].unique())
        base = FAMILY_COLORS.get(family, (0.4, 0.4, 0.4))
        shades = sns.light_palette(base, n_colors=len(values) + 2)[2:] if len(values) > 1 else [base]
        palette.update(zip(values, shades))
    return palette


def _family_color(df: pd.DataFrame):
    """The colour of the one family `df` holds (grey for several or none)."""
    families = df["family"].dropna().unique()
    return FAMILY_COLORS.get(families[0], (0.4, 0.4, 0.4)) if len(families) == 1 else (0.4, 0.4, 0.4)


def _seeds(df: pd.DataFrame, by: list) -> str:
    """`2 seeds` (or `2-3 seeds`): how many runs each point of a figure averages."""
    n = df.groupby(by).size()
    if n.empty:
        return "no seeds"
    seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
    return f"{seeds} seed{'s' if n.max() > 1 else ''}"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # a legend beside the axes stays in the file
    return path


def _skip(path: Path) -> None:
    path.unlink(missing_ok=True)  # a figure of older results must not pass for the current ones


def _axes(ncols: int = 1, width: float = 6.0):
    fig = Figure(figsize=(width * ncols, 5.2))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _model_legend(ax, title: str = "model") -> None:
    """The legend below the axes, where long model labels cannot hide the data."""
    if ax.get_legend() is not None:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, title=title, fontsize="small", loc="upper center",
                  bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)


def _numeric(df: pd.DataFrame, *cols) -> pd.DataFrame:
    return df.dropna(subset=list(cols)).astype({c: float for c in cols})


def _accuracy_vs_size(df: pd.DataFrame, x: str, y: str, path: Path, xlabel: str, ylabel: str, title: str):
    """Accuracy vs a number of images (log x), one line per model, ±1 std band over seeds."""
    df = _numeric(df, x, y)
    if df[x].nunique() < 2:
        return _skip(path)
    steps = sorted({int(v) for v in df["steps"].dropna()})
    if len(steps) > 1:  # a study trained at several budgets: one line per model and budget
        df = df.assign(label=df["label"] + ", " + df["steps"].map(lambda s: f"{int(s):,} steps"))
    pixels = sorted({int(v) for v in df["img_size"].dropna()})
    scale = ", ".join(filter(None, ["/".join(f"{p} px" for p in pixels),
                                    f"{steps[0]:,} steps" if len(steps) == 1 else None]))
    fig, (ax,) = _axes()
    sns.lineplot(df, x=x, y=y, hue="label", errorbar="sd", marker="o", ax=ax, palette=family_palette(df))
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel,
           title=f"{title} {df['dataset'].iloc[0]}" + (f" ({scale})" if scale else "")
           + f"\nbands: ±1 sd over {_seeds(df, ['label', x])}")
    _model_legend(ax)
    return _save(fig, path)


def fig_data_size(runs: pd.DataFrame, path: Path):
    """Accuracy vs number of training images, trained from scratch."""
    return _accuracy_vs_size(data_size_runs(runs), "train_size", "accuracy", path,
                             "training images (log scale)", ACCURACY, "Trained from scratch on")


def fig_budget_lead(runs: pd.DataFrame, path: Path):
    """The ResNet's lead over the ViT (points) against training images, one line per budget, for a
    study trained at several budgets; the band is ±1 sd of the lead over seeds (seed k's ResNet
    minus seed k's ViT)."""
    ladder = budgets(runs)
    if len(ladder) < 2:
        return _skip(path)
    rows = []
    for steps in ladder:
        df = data_size_runs(at_budget(runs, steps))
        by = df.groupby(["family", "train_size", "seed"])["accuracy"].mean()
        for size, seed in {(s, k) for f, s, k in by.index if f == "vit"}:
            if ("resnet", size, seed) in by.index:
                rows.append({"budget": f"{steps:,} steps", "train_size": float(size),
                             "lead": by[("resnet", size, seed)] - by[("vit", size, seed)]})
    df = pd.DataFrame(rows, columns=["budget", "train_size", "lead"])
    if df.empty:
        return _skip(path)
    fig, (ax,) = _axes()
    sns.lineplot(df, x="train_size", y="lead", hue="budget", errorbar="sd", marker="o", ax=ax,
                 hue_order=[f"{s:,} steps" for s in ladder],  # greys: a budget is no model family
                 palette=sns.color_palette("Greys", len(ladder) + 1)[1:])
    ax.axhline(0, color="grey", linewidth=0.8)
    seeds = df.groupby(["budget", "train_size"]).size()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    ax.set(xscale="log", xlabel="training images (log scale)", ylabel="ResNet minus ViT, top-1 (points)",
           title=f"The ResNet's lead at each training budget\n(band: ±1 sd over {n} seeds)")
    ax.legend(title="budget (optimiser steps)", fontsize="small")
    return _save(fig, path)


def fig_pretrain_size(runs: pd.DataFrame, path: Path):
    """Fine-tuned accuracy vs pre-training images."""
    return _accuracy_vs_size(pretrain_runs(runs), "pretrain_size", "finetune_top1", path,
                             "pre-training images (log scale)", f"fine-tuned {ACCURACY}", "Fine-tuned on")


def fig_few_shot(runs: pd.DataFrame, path: Path):
    """k-shot linear accuracy of frozen features vs pre-training images, one panel per k."""
    rows = [{"label": r["label"], "family": r["family"], "pretrain_size": r["pretrain_size"], "shots": int(k),
             "accuracy": acc}
            for _, r in pretrain_runs(runs).iterrows() if isinstance(r["few_shot"], dict)
            for k, acc in r["few_shot"].items() if acc is not None]
    df = _numeric(pd.DataFrame(rows, columns=["label", "family", "pretrain_size", "shots", "accuracy"]),
                  "pretrain_size", "accuracy")
    if df["pretrain_size"].nunique() < 2:
        return _skip(path)
    shots = sorted(df["shots"].unique())
    fig, axes = _axes(len(shots), width=4.5)
    for ax, k in zip(axes, shots):
        sns.lineplot(df[df["shots"] == k], x="pretrain_size", y="accuracy", hue="label", palette=family_palette(df),
                     errorbar="sd", marker="o", ax=ax, legend=k == shots[-1])
        ax.set(xscale="log", xlabel="pre-training images (log scale)",
               ylabel=f"{k}-shot linear accuracy (%)",
               title=f"{k}-shot (bands: ±1 sd over {_seeds(df[df['shots'] == k], ['label', 'pretrain_size'])})")
        _model_legend(ax)
    return _save(fig, path)


def fig_compute(runs: pd.DataFrame, path: Path):
    """Accuracy vs training FLOPs (log x) per configuration, with each family's Pareto frontier
    (the best accuracy within each budget: at a FLOP count several runs share, only the best) at
    the training-set size the compute claims compare at (matched_size; the other sizes' points
    faded)."""
    points = compute_points(compute_runs(runs))
    if points.empty:
        return _skip(path)
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    families = sorted(points["family"].unique())
    palette = {f: FAMILY_COLORS.get(f, (0.4, 0.4, 0.4)) for f in families}
    size = matched_size(points, families)
    compared = points if size is None else at_size(points, size)
    if len(compared) < len(points):
        sns.scatterplot(points.drop(compared.index), x="train_flops", y="top1", hue="family", style="family",
                        palette=palette, s=30, alpha=0.25, legend=False, ax=ax)
    sns.scatterplot(compared, x="train_flops", y="top1", hue="family", style="family",
                    palette=palette, s=50, alpha=0.8, ax=ax)
    for family, pts in compared.groupby("family"):
        best = pts.groupby("train_flops")["top1"].max().sort_index()
        frontier = best[best > best.cummax().shift(fill_value=-1.0)]  # points that raise the best
        ax.plot(frontier.index, frontier.to_numpy(), color=palette[family], alpha=0.7, linewidth=2,
                marker="D", markersize=7, markerfacecolor="none", drawstyle="steps-post",
                label=f"{family} frontier{size_text(size)}")  # a marker: a frontier of one FLOP value is one point
    faded = " (faded: smaller training sets)" if len(compared) < len(points) else ""
    ax.set(xscale="log", xlabel="training FLOPs (log scale)", ylabel=ACCURACY,
           title=f"Accuracy vs training compute ({points['dataset'].iloc[0]}){faded}")
    # a run of one decade would show one label: label 2 and 5 times each decade too, briefly
    ax.xaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:.0e}".replace("e+", "e")))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _save(fig, path)


def _config_labels(df: pd.DataFrame) -> tuple[dict, list]:
    """({label: short label}, notes): each run label as its model and the settings that differ from
    that model's most common ones (the shape as built for ViTs, else the constructor arguments),
    and one note per model naming those common settings. Labels of the same configuration as built
    (one naming a default, one leaving it out) get the same short label."""
    configs = {}
    for label, part in df.groupby("label"):
        row = part.iloc[0]
        shape, args = row.get("shape"), row.get("model_args")
        settings = shape if isinstance(shape, dict) else args if isinstance(args, dict) else {}
        configs[label] = (row["model"], {k: str(v) for k, v in settings.items()})
    short, notes = {}, []
    for model in sorted({m for m, _ in configs.values()}):
        mine = {label: settings for label, (m, settings) in configs.items() if m == model}
        keys = list(dict.fromkeys(k for settings in mine.values() for k in settings))
        common = {k: pd.Series([s[k] for s in mine.values() if k in s]).mode().iloc[0] for k in keys}
        for label, settings in mine.items():
            differ = [f"{k}={v}" for k, v in settings.items() if v != common[k]]
            short[label] = model + (f" ({', '.join(differ)})" if differ else "")
        notes.append(f"{model} ({', '.join(f'{k}={v}' for k, v in common.items())})" if common else model)
    return short, notes


HATCHES = ("", "///", "...", "xx")  # one per device and precision; the colour is the family's


def fig_throughput(runs: pd.DataFrame, path: Path):
    """Training throughput (images/s, mean ± sd over runs) of each model configuration per device
    and precision, from kind=train runs (fine-tuning runs when there are none): a bar per
    configuration and setting, coloured by family, hatched by setting."""
    df = _numeric(usable(runs, "train"), "images_per_s")
    if df.empty:
        df = _numeric(usable(runs, "finetune"), "images_per_s")
    if df.empty:
        return _skip(path)
    short, notes = _config_labels(df)
    settings = df["device"].astype(str) + df["precision"].map(lambda p: f", {p}" if isinstance(p, str) else "")
    names = sorted(settings.unique())
    # the words every setting shares go to the legend's title, what tells them apart to its entries
    words = [[w.strip() for w in re.split(r"[(),]", n) if w.strip()] for n in names]
    shared = [w for w in words[0] if all(w in other for other in words)] if len(names) > 1 else []
    legend = {n: ", ".join(w for w in ws if w not in shared) for n, ws in zip(names, words)}
    df = df.assign(config=df["label"].map(short), setting=settings)
    families = df.groupby("config")["family"].first()
    rank = {family: i for i, family in enumerate(FAMILY_COLORS)}  # grouped by family, as the legend
    order = sorted(families.index, key=lambda config: (rank.get(families[config], len(rank)), config))
    stats = df.groupby(["config", "setting"])["images_per_s"].agg(["mean", "std", "size"])
    stats["std"] = stats["std"].where(stats["size"] > 1, 0.0)  # one run: no spread to draw
    width = 0.8 / len(names)
    fig = Figure(figsize=(9.5, 1.4 + 0.3 * len(order) * (1 + len(names)) / 2), layout="constrained")
    ax = fig.subplots()
    for i, config in enumerate(order):
        for j, name in enumerate(names):
            if (config, name) not in stats.index:
                continue
            mean, sd, n = stats.loc[(config, name)]
            y = i + (j - (len(names) - 1) / 2) * width
            ax.barh(y, mean, height=0.95 * width, xerr=sd or None, hatch=HATCHES[j % len(HATCHES)],
                    color=FAMILY_COLORS.get(families[config], (0.4, 0.4, 0.4)), edgecolor="white",
                    error_kw=dict(ecolor="0.25", lw=1, capsize=2))
            ax.annotate(f"{mean:,.0f} (n={int(n)})", (mean + sd, y),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize="x-small")
    ax.set_yticks(range(len(order)), order, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.2 * (stats["mean"] + stats["std"]).max())
    ax.set(xlabel="training throughput (images/s; bar: mean, line: ±1 sd over n runs)", ylabel="",
           title="Training speed" + (f" on {names[0]}" if len(names) == 1 else ""))
    handles = [Patch(facecolor=FAMILY_COLORS[f], label=f) for f in FAMILY_COLORS if f in set(families)]
    if len(names) > 1:
        handles += [Patch(facecolor="0.55", edgecolor="white", hatch=HATCHES[j % len(HATCHES)], label=legend[n])
                    for j, n in enumerate(names)]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
              title=", ".join(shared) if shared else None, title_fontsize="small")
    ax.set_title("\n".join(textwrap.wrap(ax.get_title(), 80)))
    fig.text(0, 0, "\n".join(textwrap.wrap("Settings not named in a label: " + "; ".join(notes), 120)),
             ha="left", va="top", fontsize="x-small")
    return _save(fig, path)


def fig_pos_emb(runs: pd.DataFrame, path: Path):
    """Accuracy per position-embedding type, mean ± std over seeds."""
    _, group = pos_emb_runs(runs)
    if group.empty:
        return _skip(path)
    fig, (ax,) = _axes()
    order = [p for p in POS_EMBS if p in set(group["pos_emb"])]  # "none" first
    sns.barplot(group, x="pos_emb", y="accuracy", order=order, errorbar="sd", ax=ax, color=_family_color(group))
    ax.set(xlabel="position embedding", ylabel=ACCURACY, ylim=(0, None),  # from 0: bar lengths compare
           title=f"{group['label'].iloc[0].split(' ')[0]} on {group['dataset'].iloc[0]}\n"
                 f"(error bars: ±1 sd over {_seeds(group, ['pos_emb'])})")
    return _save(fig, path)


def fig_pooling(runs: pd.DataFrame, path: Path):
    """Accuracy vs learning rate (log x), one line per pooling (class token, GAP)."""
    _, group = pooling_runs(runs)
    group = _numeric(group, "lr", "accuracy")
    if group.empty:
        return _skip(path)
    fig, (ax,) = _axes()
    sns.lineplot(group, x="lr", y="accuracy", hue="pool", style="pool", errorbar="sd", markers=True, ax=ax,
                 palette=family_palette(group, hue="pool"))
    lrs = sorted(group["lr"].unique())
    ax.set(xscale="log", xlabel="peak learning rate (log scale)", ylabel=ACCURACY,
           title=f"Class token vs global average pooling\n(bands: ±1 sd over {_seeds(group, ['pool', 'lr'])})")
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    ax.minorticks_off()
    return _save(fig, path)


def fig_patch_depth(runs: pd.DataFrame, path: Path):
    """Accuracy vs patch size, depth and width, each varied from the base shape."""
    _, group = patch_depth_runs(runs)
    if group.empty:
        return _skip(path)
    base = dict(zip(("patch", "depth", "width"), base_shape(group)))
    units = {"patch": "patch size (pixels)", "depth": "depth (blocks)", "width": "width D (channels)"}
    panels = []
    for knob in units:
        rows = group
        for other in set(units) - {knob}:
            rows = rows[rows[other] == base[other]]
        if rows[knob].nunique() >= 2:
            panels.append((knob, rows))
    if not panels:
        return _skip(path)
    fig, axes = _axes(len(panels), width=4.5)
    for ax, (knob, rows) in zip(axes, panels):
        sns.lineplot(_numeric(rows, knob, "accuracy"), x=knob, y="accuracy", errorbar="sd",
                     marker="o", ax=ax, color=_family_color(rows))
        ax.set(xlabel=units[knob], ylabel=ACCURACY,
               title=f"varying {knob}\n(bands: ±1 sd over {_seeds(rows, [knob])})")
    return _save(fig, path)


def make_figures(runs: pd.DataFrame, folder) -> dict[str, Path | None]:
    """Draw every figure into `folder` as `<name>.png`; {name: path, or None when not yet run}."""
    folder = Path(folder)
    return {name: draw(runs, folder / f"{name}.png") for name, draw in FIGURES.items()}


FIGURES = {"data_size": fig_data_size, "budget_lead": fig_budget_lead, "pretrain_size": fig_pretrain_size,
           "few_shot": fig_few_shot, "compute": fig_compute, "throughput": fig_throughput, "pos_emb": fig_pos_emb,
           "pooling": fig_pooling, "patch_depth": fig_patch_depth}
