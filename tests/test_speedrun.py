"""bench/speedrun.py: the speedrun runs end to end at tiny size on the CPU (16 px digits, a 1-block
ViT and a narrow ResNet, 2 epochs), and its arithmetic — training seconds rebuilt from metrics.csv,
the interpolated time to a target, the mean rows — is checked on analytic cases. No timing is
asserted: timings belong in bench/, never in an assertion."""
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ is a folder of scripts beside the package, not installed with it

from bench import common, speedrun  # noqa: E402
from vitlib import count_flops, create_model  # noqa: E402
from vitlib.device import cpu_description  # noqa: E402
from vitlib.experiments.results import percent  # noqa: E402
from vitlib.train import RECIPES, lr_at  # noqa: E402
from vitlib.train.runfolder import read_json  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_speedrun_tiny_cpu_trains_reports_and_rebuilds_from_the_run_folders(tmp_path, capsys):
    runs, out, figure = tmp_path / "runs", tmp_path / "speedrun.csv", tmp_path / "speedrun.png"
    flags = ["--tiny", "--model", "vit,resnet", "--seeds", "2", "--device", "cpu", "--target", "0.25",
             "--runs-dir", str(runs), "--out", str(out), "--figure", str(figure)]
    rows, curves = speedrun.main(flags)
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("vit", 0), ("vit", 1), ("resnet", 0), ("resnet", 1), ("vit", "mean"), ("vit", "std"),
        ("resnet", "mean"), ("resnet", "std")]
    seeds, means = rows[:4], rows[4:]
    assert all(r["status"] == "complete" and r["epochs"] == 2 and r["batch"] == 128 for r in seeds)
    assert all(r["target_pct"] == 25.0 and r["data"] == "sklearn.datasets.load_digits" for r in seeds)
    assert [r["budget_s"] for r in seeds] == [3600.0] * 4  # --device cpu: the CPU specs' hour

    for row in seeds:
        run = Path(row["run"])
        assert run.parent == runs and run.name == f"{row['model']}-seed{row['seed']}"
        summary = read_json(run / "summary.json")
        curve = [c for c in curves if c["run"] == row["run"]]
        assert [c["epoch"] for c in curve] == [1, 2]  # evaluated after every epoch
        # the cumulative training seconds rebuilt from metrics.csv end at fit's own total
        assert row["train_s"] == curve[-1]["train_s"] == pytest.approx(summary["train_seconds"], rel=1e-9)
        assert row["images_per_s"] == pytest.approx(summary["images_per_s"], rel=1e-9)
        assert 0 < curve[0]["train_s"] < curve[1]["train_s"]
        # accuracies in percent, as every result of the project (fit records fractions)
        assert row["final_acc_pct"] == percent(summary["final"]["eval_acc"]) == curve[-1]["eval_acc_pct"]
        assert row["final_acc_tta_pct"] == percent(summary["final"]["eval_acc_tta"])
        assert math.isnan(row["final_acc_ema_pct"])
        assert row["met"] == (summary["final"]["eval_acc"] >= 0.25 and row["train_s"] <= row["budget_s"])
        assert row["epochs_in_budget"] == pytest.approx(row["budget_s"] * row["images_per_s"] / 1438)
        reached = [c for c in curve if c["eval_acc_pct"] >= 25.0]
        if reached:  # the crossing lies between the evaluation before the first hit and the hit
            before = [c["train_s"] for c in curve if c["train_s"] < reached[0]["train_s"]]
            assert (before[-1] if before else 0.0) <= row["time_to_target_s"] <= reached[0]["train_s"]
        else:
            assert math.isnan(row["time_to_target_s"])
        assert math.isnan(row["compile_s"])  # no torch.compile on the CPU test

    vit_mean = means[0]
    assert vit_mean["final_acc_pct"] == pytest.approx((seeds[0]["final_acc_pct"] + seeds[1]["final_acc_pct"]) / 2)
    assert vit_mean["status"] == "2/2 complete" and vit_mean["stretch_target_pct"] == 80.0
    assert means[1]["final_acc_pct"] == pytest.approx(
        abs(seeds[0]["final_acc_pct"] - seeds[1]["final_acc_pct"]) / math.sqrt(2))

    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-len(rows) - 2].split() == list(speedrun.TABLE)  # the table is printed last
    columns, data = read_csv(out)
    assert columns == [*speedrun.COLUMNS, *common.ENV_COLUMNS] and len(data) == 8
    assert [float(d["final_acc_pct"]) for d in data[:4]] == [r["final_acc_pct"] for r in seeds]
    assert ({d["gpu"] for d in data} == {f"cpu ({cpu_description()})"}
            and {d["torch"] for d in data} == {torch.__version__})
    columns, curve_data = read_csv(tmp_path / "speedrun_curves.csv")
    assert columns == [*speedrun.CURVE_COLUMNS, *common.ENV_COLUMNS] and len(curve_data) == 8
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the report is a function of the run folders alone: rebuilt without training, it is the same
    again, _ = speedrun.main(["--from-runs", str(runs), "--target", "0.25", "--out", str(tmp_path / "again.csv"),
                              "--figure", str(tmp_path / "again.png")])
    keys = ("model", "seed", "final_acc_pct", "train_s", "time_to_target_s")
    assert [{k: r.get(k) for k in keys} for r in again[:4]] == [{k: r.get(k) for k in keys} for r in seeds]
    # a run of another session (here: another commit) keeps its own environment columns, row by row
    this = data[0]["commit"]
    other = runs / "vit-seed1" / "env.json"
    other.write_text(json.dumps({**read_json(other), "git_commit": "0123456789", "git_dirty": False}))
    speedrun.main(["--from-runs", str(runs), "--target", "0.25", "--out", str(out), "--figure", str(figure)])
    (_, data), (_, curve_data) = read_csv(out), read_csv(tmp_path / "speedrun_curves.csv")
    assert [d["commit"] for d in data] == [this, "0123456", this, this, f"{this} | 0123456", f"{this} | 0123456",
                                           this, this]
    assert {d["commit"] for d in curve_data if "vit-seed1" in d["run"]} == {"0123456"}
    # and an existing run folder is never overwritten: refused before any work
    with pytest.raises(ValueError, match="vit-seed0 exists: pass --resume"):
        speedrun.parse_args(flags)


@pytest.mark.parametrize("accs, target, expected", [
    ([0.5, 0.8, 0.9], 0.85, 25.0),       # between the 2nd and 3rd evaluation
    ([0.5, 0.8, 0.9], 0.3, 5.0),         # between the start (0 s, chance 0.1) and the 1st
    ([0.5, 0.8, 0.9], 0.95, math.nan),   # never reached
    ([0.9, 0.7, 0.95], 0.85, 9.375),     # the first crossing counts, not a later one
    ([math.nan, 0.8, 0.9], 0.45, 10.0),  # an unmeasured evaluation is skipped: (0, 0.1) -> (20, 0.8)
])
def test_time_to_target_interpolates_linearly_from_chance(accs, target, expected):
    got = speedrun.time_to([10.0, 20.0, 30.0], accs, target, chance=0.1)
    assert math.isnan(got) if math.isnan(expected) else got == pytest.approx(expected)


def test_mean_row_applies_the_criterion_to_the_means_and_a_missed_target_spoils_the_mean_time():
    rows = [dict(model="vit", seed=s, status="complete", target_pct=85.0, budget_s=120.0, final_acc_pct=acc,
                 train_s=t, time_to_target_s=ttt)
            for s, acc, t, ttt in [(0, 86.0, 110.0, 100.0), (1, 85.0, 125.0, math.nan)]]
    mean, std = speedrun.mean_rows(rows)
    assert (mean["seed"], std["seed"]) == ("mean", "std")
    assert mean["final_acc_pct"] == pytest.approx(85.5) and mean["train_s"] == pytest.approx(117.5)
    assert mean["met"] is True  # 85.5% in 117.5 s on average, though seed 1 alone ran over
    assert math.isnan(mean["time_to_target_s"]) and math.isnan(std["time_to_target_s"])
    assert std["train_s"] == pytest.approx(10.606601717798213)


def test_runs_of_two_machines_get_their_own_mean_rows():
    avx2 = {"cpu": "AMD EPYC, 2 cores, AVX2, 2 threads, native bf16: no", "precision": "fp32", "gpus": []}
    amx = {"cpu": "Intel(R) Xeon(R) Processor, 2 cores, AVX512, 2 threads, native bf16: yes (amx-bf16)",
           "precision": "bf16", "gpus": []}
    assert speedrun.machine_of(avx2) == "avx2 fp32" and speedrun.machine_of(amx) == "amx-bf16 bf16"
    assert speedrun.machine_of({"gpus": ["NVIDIA H100 80GB HBM3"], "precision": "bf16"}) == "NVIDIA H100 80GB HBM3 bf16"
    rows = [dict(model="resnet", machine=m, seed=s, status="complete", target_pct=88.0, budget_s=3600.0,
                 final_acc_pct=acc, train_s=t)
            for m, s, acc, t in [("avx2 fp32", 0, 86.8, 3530.0), ("avx2 fp32", 1, 86.7, 3499.0),
                                 ("amx-bf16 bf16", 0, 90.0, 1500.0)]]
    means = [r for r in speedrun.mean_rows(rows) if r["seed"] == "mean"]
    assert [(r["machine"], r["status"], round(r["final_acc_pct"], 2)) for r in means] == [
        ("avx2 fp32", "2/2 complete", 86.75), ("amx-bf16 bf16", "1/1 complete", 90.0)]


def test_speedrun_recipes_and_the_vit_spec():
    vit, resnet = RECIPES["vit_speedrun"], RECIPES["resnet_speedrun"]
    for recipe in (vit, resnet):  # one-cycle to 0, evaluated every epoch, flip-TTA reported beside
        assert (recipe.schedule, recipe.min_lr, recipe.eval_every, recipe.tta_flip, recipe.compile) == (
            "linear", 0.0, 1, True, True)
        assert recipe.augment["crop"] == "pad_crop" and recipe.augment["flip"] and not recipe.augment["mixup_alpha"]
        assert recipe.checkpoint_every >= recipe.epochs  # one checkpoint, at the end
        per_epoch = 50_000 // recipe.batch_size
        steps, warmup = recipe.epochs * per_epoch, recipe.warmup(per_epoch)
        assert warmup <= steps // 4  # a short warm-up: 3% of the ViT run, Page's ~20% for the ResNet
        assert lr_at(steps - 1, peak_lr=recipe.lr, total_steps=steps, warmup_steps=warmup,
                     schedule=recipe.schedule) < 1e-3 * recipe.lr
    assert (vit.optimizer, vit.batch_size, vit.label_smoothing, vit.ema_decay) == ("adamw", 512, 0.1, 0.0)
    assert (resnet.optimizer, resnet.nesterov, resnet.label_smoothing) == ("sgd", True, 0.2)

    spec = speedrun.SPECS["vit"]
    model = create_model(spec["model"], num_classes=10, img_size=32, **spec["args"])
    convs = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == ["patch_embed.proj"] and model.patch_embed.backbone is None  # no convolutional stem
    assert model.patch_embed.proj.kernel_size == model.patch_embed.proj.stride == (4, 4)
    assert (len(model.blocks), model.embed_dim, model.num_prefix_tokens) == (6, 384, 0)
    assert count_flops(model, 32) == pytest.approx(1.4e9, rel=0.01)  # the FLOP count the recipe is sized by


def test_staged_speedrun_adds_up_its_stages_and_rebuilds_from_the_folders(tmp_path):
    """vit_lowres: a first fit at half the resolution, a second at the full one from its weights
    (§3.2); the seed's seconds, steps and epochs are the stages' sums, its accuracy the last stage's."""
    runs = tmp_path / "runs"
    flags = ["--tiny", "--model", "vit_lowres", "--seeds", "1", "--device", "cpu", "--target", "0.25",
             "--stage-epochs", "2,1", "--runs-dir", str(runs), "--out", str(tmp_path / "s.csv"),
             "--figure", str(tmp_path / "s.png")]
    rows, curves = speedrun.main(flags)
    row = rows[0]
    stage1, stage2 = runs / "vit_lowres-seed0" / "stage1-8px", runs / "vit_lowres-seed0" / "stage2-16px"
    first, second = read_json(stage1 / "summary.json"), read_json(stage2 / "summary.json")
    assert read_json(stage1 / "config.json")["model"]["img_size"] == 8
    assert (row["status"], row["epochs"], row["run"]) == ("complete", "2+1", str(runs / "vit_lowres-seed0"))
    assert row["train_s"] == pytest.approx(first["train_seconds"] + second["train_seconds"], rel=1e-9)
    assert row["final_acc_pct"] == percent(second["final"]["eval_acc"])
    assert [c["epoch"] for c in curves] == [1, 2, 3] and [c["run"] for c in curves] == [str(stage1)] * 2 + [str(stage2)]
    assert [c["step"] for c in curves] == [first["steps"] // 2, first["steps"], first["steps"] + second["steps"]]
    assert curves[2]["train_s"] == pytest.approx(row["train_s"]) and curves[1]["train_s"] < curves[2]["train_s"]
    again, _ = speedrun.main(["--from-runs", str(runs), "--target", "0.25", "--out", str(tmp_path / "again.csv"),
                              "--figure", str(tmp_path / "again.png")])
    assert {k: again[0][k] for k in ("final_acc_pct", "train_s", "epochs", "status")} == {
        k: row[k] for k in ("final_acc_pct", "train_s", "epochs", "status")}
    with pytest.raises(ValueError, match="vit_lowres has 2 stages"):
        speedrun.parse_args([*flags[:-6], "--stage-epochs", "3", "--runs-dir", str(tmp_path / "other")])
    with pytest.raises(ValueError, match="--stage-epochs: vit trains in one stage"):
        speedrun.parse_args(["--tiny", "--model", "vit", "--device", "cpu", "--stage-epochs", "1,1",
                             "--runs-dir", str(tmp_path / "other")])
    with pytest.raises(ValueError, match="--img-size: vit_lowres sets its own sizes per stage"):
        speedrun.parse_args([*flags[:-6], "--img-size", "8", "--runs-dir", str(tmp_path / "other")])


def test_tuning_runs_carry_their_settings_and_average_apart(tmp_path):
    """--img-size trains a one-stage model at another size (tuning runs of a staged model's first
    stage); a run's changes to the recipe (--set, --img-size) are its `settings`, and runs of one
    model with different settings get their own mean rows and curves."""
    flags = ["--tiny", "--model", "vit", "--seeds", "1", "--device", "cpu", "--epochs", "1"]
    tuned, plain = tmp_path / "tuned", tmp_path / "plain"
    out = lambda name: ["--out", str(tmp_path / f"{name}.csv"), "--figure", str(tmp_path / f"{name}.png")]  # noqa: E731
    rows, _ = speedrun.main([*flags, "--img-size", "8", "--set", "lr=0.003", "--set", "augment.flip=false",
                             "--runs-dir", str(tuned), *out("tuned")])
    assert read_json(tuned / "vit-seed0" / "config.json")["model"]["img_size"] == 8
    assert (rows[0]["status"], rows[0]["settings"]) == ("complete", "augment.flip=False lr=0.003 img_size=8")
    speedrun.main([*flags, "--runs-dir", str(plain), *out("plain")])
    rows, curves = speedrun.main(["--from-runs", str(tuned), str(plain), *out("both")])
    assert [(r["seed"], r["settings"]) for r in rows] == [
        (0, ""), (0, "augment.flip=False lr=0.003 img_size=8"), ("mean", ""), ("std", ""),
        ("mean", "augment.flip=False lr=0.003 img_size=8"), ("std", "augment.flip=False lr=0.003 img_size=8")]
    assert {c["settings"] for c in curves} == {"", "augment.flip=False lr=0.003 img_size=8"}
    # the figure: one shade of the model's colour per settings, darkest first; one settings keeps the colour
    assert speedrun._shade((0.2, 0.4, 0.6), 0, 1) == (0.2, 0.4, 0.6)
    dark, light = speedrun._shade((0.2, 0.4, 0.6), 0, 2), speedrun._shade((0.2, 0.4, 0.6), 1, 2)
    assert sum(dark) < 1.2 < sum(light) and all(0 <= c <= 1 for c in dark + light)
    with pytest.raises(ValueError, match="--img-size must be positive"):
        speedrun.parse_args([*flags, "--img-size", "0", "--runs-dir", str(tmp_path / "other")])


def test_cpu_recipes_and_specs():
    """The CPU speedrun: the paper's ViT (no convolution but the patch embedding), checkpoints every
    epoch so that an hour-long run resumes across sessions, no compilation, a one-cycle to 0."""
    for kind, spec in speedrun.CPU_SPECS.items():
        recipe = RECIPES[spec["recipe"]]
        assert (recipe.schedule, recipe.min_lr, recipe.checkpoint_every, recipe.compile, recipe.tta_flip) == (
            "linear", 0.0, 1, False, True)
        assert spec["budget_s"] == 3600.0 and spec["target"] == (0.88 if kind == "resnet" else 0.75)
    spec = speedrun.CPU_SPECS["vit"]
    model = create_model(spec["model"], num_classes=10, img_size=32, **spec["args"])
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)] == ["patch_embed.proj"]
    assert (len(model.blocks), model.embed_dim, model.blocks[0].mlp.fc1.out_features) == (6, 192, 384)
    resnet = speedrun.CPU_SPECS["resnet"]
    model = create_model(resnet["model"], num_classes=10, img_size=32, **resnet["args"])
    assert sum(p.numel() for p in model.parameters()) == 1_228_970


def test_run_lengths_follow_the_cpu_kind_and_flags_override_them(tmp_path, monkeypatch):
    """On a CPU kind with measured run lengths (CPU_KIND_RUNS) a plain `--device cpu` command fills the
    hour there; elsewhere the recipes' own lengths; --epochs / --stage-epochs / --set win."""
    def config(kind, kind_name, *flags):
        monkeypatch.setattr(speedrun, "cpu_kind", lambda: kind_name)
        args = speedrun.parse_args(["--device", "cpu", "--model", kind, "--runs-dir", str(tmp_path), *flags])
        return [speedrun.train_config(kind, args, 0, i) for i in range(len(speedrun.stages(kind, args)))]

    measured = speedrun.CPU_KIND_RUNS["amx-bf16"]
    [vit] = config("vit", "amx-bf16")
    assert (vit.epochs, vit.compile) == (measured["vit"]["epochs"], True)
    [vit] = config("vit", "avx2")
    assert (vit.epochs, vit.compile) == (RECIPES["vit_cpu"].epochs, False)
    [vit] = config("vit", "amx-bf16", "--epochs", "3", "--set", "compile=false")
    assert (vit.epochs, vit.compile) == (3, False)
    staged = config("vit_lowres", "amx-bf16")
    assert [c.epochs for c in staged] == list(measured["vit_lowres"]["stage_epochs"]) and all(c.compile for c in staged)
    assert [(c.epochs, c.lr) for c in config("vit_lowres", "avx2")] == [(20, 2e-3), (2, 1e-3)]  # the spec's
    assert [(c.epochs, c.lr) for c in config("vit_lowres", "avx512-bf16")] == [(28, 5e-4), (11, 5e-4)]  # the kind's
    assert [c.lr for c in config("vit_lowres", "avx512-bf16", "--set", "lr=1e-3")] == [1e-3, 1e-3]
    assert [c.epochs for c in config("vit_lowres", "amx-bf16", "--stage-epochs", "4,1")] == [4, 1]


@pytest.mark.parametrize("flags, message", [
    (["--model", "cnn"], "--model='cnn'"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--budget-s", "-5"], "--budget-s must be positive"),
    (["--target", "85"], r"--target in \(0, 1\] \(got 85.0\)"),
    (["--set", "lr=-1"], "TrainConfig.lr=-1 is invalid"),
    (["--set", "warmup"], "--set .warmup.: expected key=value"),
    (["--model-arg", "depth=0"], "depth must be a positive integer"),
    (["--device", "tpu"], "device='tpu'"),
])
def test_bad_flags_are_refused_before_any_work(flags, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        speedrun.parse_args(["--tiny", "--runs-dir", str(tmp_path), *flags])


def test_from_runs_needs_run_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        speedrun.main(["--from-runs", str(tmp_path)])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_speedrun_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_speedrun.sh")], check=True)
