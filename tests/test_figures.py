"""The report's figures as a reader sees them: one colour per model family in every figure, and the
throughput figure's short labels (settings shared by a model's runs said once, below the plot)."""
import json

import matplotlib.colors as mcolors
import pandas as pd
import pytest
from fake_runs import model_description
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from vitlib.report import figures, load_runs

AMD = "cpu (AMD EPYC, 2 cores, AVX2, 2 threads, native bf16: no)"
XEON = "cpu (Intel Xeon, 2 cores, AVX512, 2 threads, native bf16: yes)"


def write_run(results, name, model="vit_s4", model_args=None, **fields):
    folder = results / "runs" / "study" / name
    folder.mkdir(parents=True)
    record = {"kind": "train", "study": "study", "run": name, "model": model, "model_args": model_args or {},
              **model_description(model, model_args), "dataset": "cifar10", "train_size": 50000,
              "img_size": 32, "seed": 0, "recipe": "small", "lr": 1e-3, "steps": 1000, "train_seconds": 100.0,
              "images_per_s": 500.0, "device": AMD, "top1": 50.0, **fields}
    (folder / "result.json").write_text(json.dumps(record))
    (folder / "run.json").write_text(json.dumps({"status": "complete", "duration_s": 120.0}))


@pytest.fixture
def drawn(monkeypatch):
    """{figure name: the matplotlib Figure drawn}, instead of PNGs."""
    figs = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: figs.setdefault(path.stem, fig))
    return figs


def rgb(color):
    return tuple(round(c, 3) for c in mcolors.to_rgb(color))


def test_throughput_bars_are_coloured_by_family_hatched_by_device_and_labelled_short(tmp_path, drawn):
    write_run(tmp_path, "vit-a", images_per_s=500.0, model_args={"pos_emb": "learned"})  # the default, named
    write_run(tmp_path, "vit-b", images_per_s=520.0)
    write_run(tmp_path, "vit-xeon", images_per_s=900.0, device=XEON)
    write_run(tmp_path, "vit-deep", images_per_s=250.0, model_args={"depth": 24})
    write_run(tmp_path, "res", model="resnet18_cifar", images_per_s=700.0)
    figures.fig_throughput(load_runs(tmp_path), tmp_path / "throughput.png")
    ax = drawn["throughput"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vit_s4", "vit_s4 (depth=24)", "resnet18_cifar"]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0]
    vit, resnet = (rgb(figures.FAMILY_COLORS[f]) for f in ("vit", "resnet"))
    bars = {round(b.get_width()): (rgb(b.get_facecolor()), b.get_hatch() or "") for b in bars}
    assert bars == {510: (vit, ""), 900: (vit, "///"), 250: (vit, ""), 700: (resnet, "")}  # 510: the 2 AVX2 runs
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["vit", "resnet", "AMD EPYC, AVX2, native bf16: no", "Intel Xeon, AVX512, native bf16: yes"]
    assert ax.get_legend().get_title().get_text() == "cpu, 2 cores, 2 threads"
    note = drawn["throughput"].texts[0].get_text().replace("\n", " ")
    assert "vit_s4 (patch_size=4, depth=12," in note and "pos_emb=learned)" in note


def test_config_labels_name_only_what_differs_from_the_model_s_common_settings():
    df = pd.DataFrame({
        "label": ["m (a=1, b=2)", "m (a=1)", "m (a=3, b=2)", "n (w=[1, 2])"],
        "model": ["m", "m", "m", "n"],
        "shape": [None] * 4,
        "model_args": [{"a": 1, "b": 2}, {"a": 1}, {"a": 3, "b": 2}, {"w": [1, 2]}]})
    short, notes = figures._config_labels(df)
    assert short == {"m (a=1, b=2)": "m", "m (a=1)": "m", "m (a=3, b=2)": "m (a=3)", "n (w=[1, 2])": "n"}
    assert notes == ["m (a=1, b=2)", "n (w=[1, 2])"]


def test_few_shot_and_data_size_lines_take_their_family_colours(tmp_path, drawn):
    for family, model in (("vit", "vit_s4"), ("res", "resnet18_cifar")):
        for size in (10000, 100000):
            for seed in (0, 1):
                write_run(tmp_path, f"ft-{family}-{size}-s{seed}", model=model, kind="finetune", seed=seed,
                          pretrain_dataset="tiny-imagenet", pretrain_size=size, finetune_top1=60.0 + seed,
                          few_shot={"5": 30.0 + seed})
                write_run(tmp_path, f"{family}-{size}-s{seed}", model=model, train_size=size, seed=seed)
    runs = load_runs(tmp_path)
    figures.fig_few_shot(runs, tmp_path / "few_shot.png")
    figures.fig_data_size(runs, tmp_path / "data_size.png")
    expected = {rgb(figures.FAMILY_COLORS["vit"]), rgb(figures.FAMILY_COLORS["resnet"])}
    for name in ("few_shot", "data_size"):
        ax = drawn[name].axes[0]
        lines = {rgb(line.get_color()) for line in ax.get_lines() if isinstance(line, Line2D) and len(line.get_xdata())}
        assert lines == expected, name
        legend = {t.get_text().split(" ")[0]: rgb(h.get_color())
                  for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
        assert legend == {"resnet18_cifar": rgb(figures.FAMILY_COLORS["resnet"]),
                          "vit_s4": rgb(figures.FAMILY_COLORS["vit"])}, name


def test_a_run_evaluated_once_draws_labelled_points_and_says_how_to_get_a_curve(tmp_path):
    from vitlib.experiments.curves import plot_learning_curves
    once = tmp_path / "once.csv"
    pd.DataFrame({"epoch": [3], "train_loss": [1.2], "train_acc": [0.5], "eval_acc": [0.4567]}).to_csv(once,
                                                                                                    index=False)
    acc_ax = plot_learning_curves(once).axes[1]
    assert "one evaluation" in acc_ax.get_title() and "45.7%" in [t.get_text() for t in acc_ax.texts]
    twice = tmp_path / "twice.csv"
    pd.DataFrame({"epoch": [1, 2], "train_loss": [1.2, 1.0], "train_acc": [0.5, 0.6],
                  "eval_acc": [0.4, 0.5]}).to_csv(twice, index=False)
    acc_ax = plot_learning_curves(twice).axes[1]
    assert acc_ax.get_title() == "" and not acc_ax.texts and len(acc_ax.lines[0].get_xdata()) == 2
