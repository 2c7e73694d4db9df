"""A run's learning curves, drawn from its metrics.csv (the training notebooks end with them)."""

ACCURACIES = (("train_acc", "train"), ("val_acc", "validation"), ("eval_acc", "test"),
              ("eval_acc_ema", "test (EMA)"), ("eval_acc_tta", "test (flip TTA)"))


def plot_learning_curves(metrics_csv, title=""):
    """Training loss and evaluation accuracy against epochs, from a run's metrics.csv. A run
    evaluated once has no curve to draw: its evaluation shows as labelled points, and the figure
    says how to get a curve (more evaluations: train_args `evaluations` or `eval_every`)."""
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    m = pd.read_csv(metrics_csv)
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(m["epoch"], m["train_loss"], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title=title)
    for column, label in ACCURACIES:
        if column in m and m[column].notna().any():
            acc_ax.plot(m["epoch"], 100 * m[column], marker="o", label=label)  # fractions -> %
            if len(m) == 1:
                acc_ax.annotate(f"{100 * m[column].iloc[0]:.1f}%", (m["epoch"].iloc[0], 100 * m[column].iloc[0]),
                                textcoords="offset points", xytext=(8, 0), va="center", fontsize=8)
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)")
    if len(m) == 1:
        acc_ax.set_title("one evaluation, no curve (more: train_args evaluations or eval_every)", fontsize=9)
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend()
    return fig
