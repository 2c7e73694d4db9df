"""The report's figures, drawn with seaborn from the runs DataFrame and saved as PNG.

Every `fig_*(runs, path)` draws from the same runs its claim uses, labels both axes with units,
and returns the path written, or None (and removes a stale file at `path`) when its data are
missing. Figures are built on `matplotlib.figure.Figure` (rendered by Agg on save), never pyplot,
so nothing pops up and a notebook's backend is left alone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .ablations import POS_EMBS, base_shape, patch_depth_runs, pooling_runs, pos_emb_runs
from .collect import usable
from .scaling import compute_points, compute_runs, data_size_runs, pretrain_runs

ACCURACY = "top-1 accuracy (%)"


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
    fig, (ax,) = _axes()
    sns.lineplot(df, x=x, y=y, hue="label", errorbar="sd", marker="o", ax=ax)
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel, title=f"{title} {df['dataset'].iloc[0]}")
    _model_legend(ax)
    return _save(fig, path)


def fig_data_size(runs: pd.DataFrame, path: Path):
    """Accuracy vs number of training images, trained from scratch."""
    return _accuracy_vs_size(data_size_runs(runs), "train_size", "accuracy", path,
                             "training images (log scale)", ACCURACY, "Trained from scratch on")


def fig_pretrain_size(runs: pd.DataFrame, path: Path):
    """Fine-tuned accuracy vs pre-training images."""
    return _accuracy_vs_size(pretrain_runs(runs), "pretrain_size", "finetune_top1", path,
                             "pre-training images (log scale)", f"fine-tuned {ACCURACY}", "Fine-tuned on")


def fig_few_shot(runs: pd.DataFrame, path: Path):
    """k-shot linear accuracy of frozen features vs pre-training images, one panel per k."""
    rows = [{"label": r["label"], "pretrain_size": r["pretrain_size"], "shots": int(k), "accuracy": acc}
            for _, r in pretrain_runs(runs).iterrows() if isinstance(r["few_shot"], dict)
            for k, acc in r["few_shot"].items() if acc is not None]
    df = _numeric(pd.DataFrame(rows, columns=["label", "pretrain_size", "shots", "accuracy"]),
                  "pretrain_size", "accuracy")
    if df["pretrain_size"].nunique() < 2:
        return _skip(path)
    shots = sorted(df["shots"].unique())
    fig, axes = _axes(len(shots), width=4.5)
    for ax, k in zip(axes, shots):
        sns.lineplot(df[df["shots"] == k], x="pretrain_size", y="accuracy", hue="label",
                     errorbar="sd", marker="o", ax=ax, legend=k == shots[-1])
        ax.set(xscale="log", xlabel="pre-training images (log scale)",
               ylabel=f"{k}-shot linear accuracy (%)", title=f"{k}-shot")
        _model_legend(ax)
    return _save(fig, path)


def fig_compute(runs: pd.DataFrame, path: Path):
    """Accuracy vs training FLOPs (log x) per configuration, with each family's Pareto frontier
    (the best accuracy within each budget: at a FLOP count several runs share, only the best)."""
    points = compute_points(compute_runs(runs))
    if points.empty:
        return _skip(path)
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    families = sorted(points["family"].unique())
    palette = dict(zip(families, sns.color_palette(n_colors=len(families))))
    sns.scatterplot(points, x="train_flops", y="top1", hue="family", style="family",
                    palette=palette, s=50, alpha=0.8, ax=ax)
    for family, pts in points.groupby("family"):
        best = pts.groupby("train_flops")["top1"].max().sort_index()
        frontier = best[best > best.cummax().shift(fill_value=-1.0)]  # points that raise the best
        ax.plot(frontier.index, frontier.to_numpy(), color=palette[family], alpha=0.6,
                drawstyle="steps-post", label=f"{family} frontier")
    ax.set(xscale="log", xlabel="training FLOPs (log scale)", ylabel=ACCURACY,
           title=f"Accuracy vs training compute ({points['dataset'].iloc[0]})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _save(fig, path)


def fig_throughput(runs: pd.DataFrame, path: Path):
    """Training throughput (images/s) of each model configuration per device, from kind=train
    runs (fine-tuning runs when there are none)."""
    df = _numeric(usable(runs, "train"), "images_per_s")
    if df.empty:
        df = _numeric(usable(runs, "finetune"), "images_per_s")
    if df.empty:
        return _skip(path)
    df = df.assign(model=df["label"].str.wrap(48), device=df["device"].astype(str).str.wrap(40))
    bars = df["model"].nunique() * df["device"].nunique()
    fig = Figure(figsize=(9.0, 1.6 + 0.45 * bars), layout="constrained")
    ax = fig.subplots()
    sns.barplot(df, y="model", x="images_per_s", hue="device", errorbar="sd", ax=ax)
    ax.set(xlabel="training throughput (images/s)", ylabel="", title="Training speed")
    ax.tick_params(axis="y", labelsize="small")
    ax.legend(title="device", fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12),
              frameon=False)
    return _save(fig, path)


def fig_pos_emb(runs: pd.DataFrame, path: Path):
    """Accuracy per position-embedding type, mean ± std over seeds."""
    _, group = pos_emb_runs(runs)
    if group.empty:
        return _skip(path)
    fig, (ax,) = _axes()
    order = [p for p in POS_EMBS if p in set(group["pos_emb"])]  # "none" first
    sns.barplot(group, x="pos_emb", y="accuracy", order=order, errorbar="sd", ax=ax)
    low = group["accuracy"].min()
    ax.set(xlabel="position embedding", ylabel=ACCURACY, ylim=(max(0, low - 5), None),
           title=f"{group['label'].iloc[0].split(' ')[0]} on {group['dataset'].iloc[0]}")
    return _save(fig, path)


def fig_pooling(runs: pd.DataFrame, path: Path):
    """Accuracy vs learning rate (log x), one line per pooling (class token, GAP)."""
    _, group = pooling_runs(runs)
    group = _numeric(group, "lr", "accuracy")
    if group.empty:
        return _skip(path)
    fig, (ax,) = _axes()
    sns.lineplot(group, x="lr", y="accuracy", hue="pool", errorbar="sd", marker="o", ax=ax)
    lrs = sorted(group["lr"].unique())
    ax.set(xscale="log", xlabel="peak learning rate (log scale)", ylabel=ACCURACY,
           title="Class token vs global average pooling")
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
                     marker="o", ax=ax)
        ax.set(xlabel=units[knob], ylabel=ACCURACY, title=f"varying {knob}")
    return _save(fig, path)


def make_figures(runs: pd.DataFrame, folder) -> dict[str, Path | None]:
    """Draw every figure into `folder` as `<name>.png`; {name: path, or None when not yet run}."""
    folder = Path(folder)
    return {name: draw(runs, folder / f"{name}.png") for name, draw in FIGURES.items()}


FIGURES = {"data_size": fig_data_size, "pretrain_size": fig_pretrain_size, "few_shot": fig_few_shot,
           "compute": fig_compute, "throughput": fig_throughput, "pos_emb": fig_pos_emb,
           "pooling": fig_pooling, "patch_depth": fig_patch_depth}
