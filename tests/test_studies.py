"""The study files under experiments/: each loads with a complete header, plans every run against
the notebooks' parameters, sets values the code accepts, is grouped by the report as intended, and
(the ablations) runs for real on tiny settings with its table appearing in the report.

The smoke runs are the costly part (a kernel start and a torch import per notebook run, ~20 s on
two busy cores): two runs per ablation file, the three files run side by side in subprocesses
started when the module starts, while the other tests run."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from fake_runs import model_description

import vitlib
from vitlib.data import DATASETS
from vitlib.experiments import load_study
from vitlib.experiments.__main__ import main
from vitlib.train import RECIPES, get_recipe

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "experiments").glob("*.yaml"))
CPU_STUDIES = ("demo.yaml", "laptop.yaml", "laptop-budgets.yaml")
GPU_STUDIES = [p for p in STUDIES if p.name not in CPU_STUDIES]
FULL_SIZE = {"cifar10": 50_000, "tiny-imagenet": 100_000, "digits": 1_438}
NUM_CLASSES = {"cifar10": 10, "tiny-imagenet": 200, "digits": 10}
ABLATIONS = {  # study name: (the two smoke runs, its claim id, its REPORT.md section)
    "ablation-posemb": (["posemb-none-s0", "posemb-learned-s0"], "pos-emb", "## Position embeddings"),
    "ablation-pooling": (["pool-token-lr0.001-s0", "pool-gap-lr0.001-s0"], "pooling",
                         "## Class token vs global average pooling"),
    "ablation-patch-depth": (["p4-d6-w384-s0", "p8-d6-w384-s0"], "patch-depth",
                             "## Patch size, depth and width"),
}
# Digits: 1 channel, 1,438 training images, 16 px; a 2 x 2 grid of 8-px patches keeps each run cheap.
SMOKE = {"dataset": "digits", "img_size": "16", "steps": "3", "batch_size": "32", "train_size": "400",
         "model": "vit_ti8", "train_args": "{augment: {}, warmup_steps: 1}"}


def planned(path, output=None):
    """(study, [(run, the parameters its notebook gets, notebook name)]) without reading notebooks."""
    study = load_study(path, output=output)
    return study, [(run, {**run.defaults, **run.params}, run.notebook.name) for run in study.runs]


def training_runs(path, output=None):
    study, runs = planned(path, output)
    return study, [(run, p, nb) for run, p, nb in runs if nb in ("01_pretrain.ipynb", "02_finetune.ipynb")]


# ---------------------------------------------------------------- every study file

def test_the_study_files_exist():
    assert {p.stem for p in STUDIES} >= {"demo", "laptop", "cifar", "cifar-quick", "ablation-posemb",
                                         "ablation-pooling", "ablation-patch-depth"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_header_says_command_runtime_result_and_what_it_reproduces(path):
    study = load_study(path)  # refuses a header without Command:, Expected runtime:, Expected result:
    assert f"experiments/{path.name}" in study.header
    if path in GPU_STUDIES:
        reproduces = study.header.split("Reproduces:")[1].split("Command:")[0]
        assert "Dosovitskiy" in reproduces and any(k in reproduces for k in ("Table", "Fig.", "App.", "§"))
        runtime = study.header.split("Expected runtime:")[1].split("Expected result:")[0]
        assert ("H100" in runtime or "H200" in runtime) and "ESTIMATE" in runtime


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_dry_run_plans_every_run(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # notebook paths are relative to the repository root
    study = load_study(path)
    out = tmp_path / "runs" / study.name
    assert main(["run", f"experiments/{path.name}", "--dry-run", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"would run {len(study.runs)}, skip 0, fail 0" in printed, printed
    assert not out.exists()


def test_outputs_are_distinct_and_quick_runs_stay_out_of_the_main_report():
    outputs = {path.name: load_study(path).output for path in STUDIES}
    assert len(set(outputs.values())) == len(outputs)
    for name, output in outputs.items():
        assert output.parent.name == "runs", name  # <results>/runs/<study>: {results} is defined
        assert all(output not in other.parents for other in outputs.values()), name
    assert outputs["cifar-quick.yaml"] == Path("results/quick/runs/cifar-quick")
    assert all(outputs[f"{name}.yaml"].parent == Path("results/runs")
               for name in [*ABLATIONS, "cifar", "laptop"])


_built = set()


def build(model, model_args, img_size, num_classes):
    if (model, model_args, img_size, num_classes) not in _built:
        with torch.device("meta"):  # the constructor's checks, without allocating the weights
            vitlib.create_model(model, num_classes=num_classes, img_size=img_size, **json.loads(model_args))
        _built.add((model, model_args, img_size, num_classes))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_values_are_ones_the_code_accepts(path):
    """Recipes, training overrides, models and their overrides build; run lengths leave room for the
    warm-up; evaluations and checkpoints stay few (they are counted in epochs, which are short on
    small subsets); every run folder a run reads is made by an earlier run of the same study."""
    study, runs = planned(path)
    made = set()
    for run, p, notebook in runs:
        for key in ("init", "source_run", "cnn_run"):
            if str(p.get(key, "")).startswith(f"{study.output}/"):
                assert Path(p[key]).name in made, f"{run.name}: {key}={p[key]} is not an earlier run"
        made.add(run.name)
        if notebook not in ("01_pretrain.ipynb", "02_finetune.ipynb"):
            continue
        assert p["dataset"] in DATASETS and p.get("recipe", "paper_finetune") in RECIPES
        lengths = {k: p[k] for k in ("epochs", "steps", "batch_size", "lr") if p.get(k)}
        config = get_recipe(p.get("recipe", "paper_finetune"), **lengths, **p.get("train_args", {}))
        images = p.get("train_size") or FULL_SIZE[p["dataset"]]
        per_epoch = images // config.batch_size
        steps = config.steps or config.epochs * per_epoch
        epochs = math.ceil(steps / per_epoch)
        assert config.warmup(per_epoch) < steps, run.name
        every_eval, every_checkpoint = config.cadence(steps)  # in steps (0: by epochs)
        evaluations = steps // every_eval if every_eval else epochs // config.eval_every
        checkpoints = steps // every_checkpoint if every_checkpoint else epochs // config.checkpoint_every
        assert evaluations <= 50 and checkpoints <= 50, run.name
        if notebook == "01_pretrain.ipynb":
            build(p["model"], json.dumps(p.get("model_args", {}), sort_keys=True), p["img_size"],
                  NUM_CLASSES[p["dataset"]])


def test_cifar_study_covers_every_claim():
    study, runs = training_runs(ROOT / "experiments/cifar.yaml")
    scratch = [p for _, p, nb in runs if nb == "01_pretrain.ipynb" and p["dataset"] == "cifar10"
               and not p.get("model_args")]
    assert {p["model"] for p in scratch} == {"vit_s4", "resnet18_cifar", "r_vit_s4", "vit_ti4", "vit_b4",
                                             "r_vit_ti4"}
    sweep = [p for p in scratch if p["model"] in ("vit_s4", "resnet18_cifar", "r_vit_s4")]
    assert len(sweep) == 45 and {p["steps"] for p in sweep} == {4000}  # the same steps at every size
    assert {(p["model"], p["recipe"]) for p in sweep} == {
        ("vit_s4", "vit_small_data"), ("r_vit_s4", "vit_small_data"), ("resnet18_cifar", "resnet_cifar")}
    assert sorted({p["train_size"] for p in sweep}) == [2500, 5000, 10000, 25000, 50000]
    assert {p["seed"] for p in sweep} == {0, 1, 2}
    pre = [p for _, p, nb in runs if nb == "01_pretrain.ipynb" and p["dataset"] == "tiny-imagenet"]
    assert sorted((p["model"], p["train_size"]) for p in pre) == sorted(
        (m, n) for m in ("vit_s4", "resnet18_cifar") for n in (10000, 25000, 50000, 100000))
    assert len({p["steps"] for p in pre}) == 1
    finetune = [p for _, p, nb in runs if nb == "02_finetune.ipynb"]
    assert all(p["recipe"] == "paper_finetune" and p["few_shot"] == [5, 10] for p in finetune)
    assert {(p["train_size"], p["img_size"]) for p in finetune} == {(50000, 32), (5000, 32), (50000, 64)}


def test_laptop_study_covers_every_claim_on_two_cores():
    study = load_study(ROOT / "experiments/laptop.yaml")
    runtime = study.header.split("Expected runtime:")[1].split("Expected result:")[0]
    assert "2 CPU cores" in runtime and "chunks" in study.header
    _, runs = training_runs(ROOT / "experiments/laptop.yaml")
    scratch = [p for _, p, nb in runs if nb == "01_pretrain.ipynb" and p["dataset"] == "cifar10"]
    sweep = [p for p in scratch if p["train_size"] and p["steps"] == 2000]
    sizes = {m: sorted({p["train_size"] for p in sweep if p["model"] == m}) for m in
             ("vit_ti4", "resnet18_cifar", "r_vit_ti4")}
    assert sizes == {"vit_ti4": [1000, 5000, 20000, 50000], "resnet18_cifar": [1000, 5000, 20000, 50000],
                     "r_vit_ti4": [5000, 50000]}
    assert all({p["seed"] for p in sweep if p["model"] == m} == {0, 1} for m in sizes)
    assert {p["img_size"] for _, p, _ in runs} == {16, 32}
    pre = [p for _, p, nb in runs if nb == "01_pretrain.ipynb" and p["dataset"] == "tiny-imagenet"]
    assert sorted((p["model"], p["train_size"]) for p in pre) == sorted(
        (m, n) for m in ("vit_ti4", "resnet18_cifar") for n in (20000, 100000))
    assert all(p["save_weights"] for p in pre) and len({p["steps"] for p in pre}) == 1
    finetune = [p for _, p, nb in runs if nb == "02_finetune.ipynb"]
    assert {(p["train_size"], p["img_size"]) for p in finetune} == {(5000, 16), (50000, 16), (50000, 32)}
    assert all(p["few_shot"] == [5, 10] and p["steps"] == 500 for p in finetune)
    ablations = [p for p in scratch if p["steps"] == 1500]
    assert {p["model_args"]["pos_emb"] for p in ablations} == {"none", "learned", "learned2d", "sincos2d",
                                                               "relative"}
    # positions and pooling at 2 lrs, 2 seeds; shapes, their base, the 1-D/2-D/sin-cos/relative
    # positions and GAP at lr 2e-3, 3
    assert len(ablations) == 2 * (5 + 3) + 3 * 5 + 4 + 1


# ---------------------------------------------------------------- what the report will compare

def fake_results(results_dir, paths):
    """A result.json for every training run of the studies, as the notebooks would write it (the
    accuracy aside), under `<results_dir>/runs/<study>/<run>/`."""
    from vitlib.experiments.results import write_result
    for path in paths:
        study, runs = training_runs(path, output=Path(results_dir, "runs", path.stem))
        records = {}
        for run, p, notebook in runs:
            source = records.get(Path(p.get("init", "")).name, {})
            model = p["model"] if notebook == "01_pretrain.ipynb" else source["model"]
            model_args = p.get("model_args", {}) if notebook == "01_pretrain.ipynb" else source["model_args"]
            record = dict(kind="train", run=run.name, study=study.name, model=model, model_args=model_args,
                          **model_description(model, model_args), dataset=p["dataset"],
                          train_size=p.get("train_size") or FULL_SIZE[p["dataset"]], img_size=p["img_size"],
                          seed=p.get("seed", 0), recipe=p.get("recipe", "paper_finetune"),
                          lr=p.get("lr") or RECIPES[p.get("recipe", "paper_finetune")].lr, steps=p["steps"],
                          train_flops=1e15, top1=50.0)
            if notebook == "02_finetune.ipynb":
                record.update(kind="finetune", pretrained_from=p["init"], pretrain_dataset=source["dataset"],
                              pretrain_size=source["train_size"], finetune_top1=50.0, few_shot={"5": 30.0})
            records[run.name] = write_result(run.folder, notebook, p, **record)


def test_the_report_compares_the_runs_each_study_means(tmp_path):
    from vitlib.report import load_runs
    from vitlib.report.ablations import patch_depth_runs, pooling_runs, pos_emb_runs
    from vitlib.report.scaling import compute_runs, data_size_runs, pretrain_runs

    fake_results(tmp_path, [ROOT / "experiments" / f"{name}.yaml" for name in [*ABLATIONS, "cifar"]])
    runs = load_runs(tmp_path)

    def names(df):
        return sorted(df["run"]), set(df["study"])

    _, posemb = pos_emb_runs(runs)
    assert names(posemb) == (sorted(f"posemb-{k}-s{s}" for k in ("none", "learned", "learned2d",
                             "sincos2d", "relative") for s in range(3)), {"ablation-posemb"})
    _, pooling = pooling_runs(runs)
    assert len(pooling) == 18 and set(pooling["study"]) == {"ablation-pooling"}
    assert sorted(set(pooling["lr"])) == [3e-4, 1e-3, 3e-3]
    _, shapes = patch_depth_runs(runs)
    assert len(shapes) == 18 and set(shapes["study"]) == {"ablation-patch-depth"}
    assert sorted(set(shapes["shape"])) == ["2/6/384", "4/12/384", "4/3/384", "4/6/192", "4/6/384", "8/6/384"]
    sweep = data_size_runs(runs)  # the ablations and compute runs stay out of the data-size sweep
    assert len(sweep) == 45 and set(sweep["study"]) == {"cifar"} and set(sweep["steps"]) == {4000}
    pretrain = pretrain_runs(runs)
    # the full CIFAR-10 fine-tunes (the 5,000-image ones are not averaged in), at 32 px
    assert len(pretrain) == 10 and set(pretrain["img_size"]) == {32} and pretrain["train_size"].nunique() == 1
    assert sorted(set(pretrain["pretrain_size"])) == [10000, 25000, 50000, 100000]
    assert set(compute_runs(runs)["family"]) == {"vit", "resnet", "hybrid"}


def test_the_report_compares_the_laptop_runs_as_intended(tmp_path):
    from vitlib.report import load_runs
    from vitlib.report.ablations import patch_depth_runs, pooling_runs, pos_emb_runs
    from vitlib.report.scaling import data_size_runs, pretrain_runs

    fake_results(tmp_path, [ROOT / "experiments" / "laptop.yaml"])
    runs = load_runs(tmp_path)
    sweep = data_size_runs(runs)  # the ablations (1,500 steps) stay out of the data-size sweep
    assert sorted(sweep["run"]) == sorted(r for r in runs["run"] if r.startswith("size-"))
    _, posemb = pos_emb_runs(runs)
    assert sorted(posemb["run"]) == sorted(r for r in runs["run"] if r.startswith("abl-pos-"))
    _, pooling = pooling_runs(runs)
    assert len(pooling) == 10 and sorted(set(pooling["lr"])) == [5e-4, 2e-3]  # 3 seeds at 2e-3
    _, shapes = patch_depth_runs(runs)  # the base shape comes from the position-embedding block
    assert sorted(set(shapes["shape"])) == ["4/12/128", "4/3/128", "4/6/128", "4/6/192", "4/6/64", "8/6/128"]
    assert len(shapes) == 18 and set(shapes["lr"]) == {2e-3}  # 6 shapes x 3 seeds
    pretrain = pretrain_runs(runs)
    # 2 families x 2 pre-training sets x 3 seeds, on all of CIFAR-10 at 16 px
    assert len(pretrain) == 12 and set(pretrain["img_size"]) == {16} and set(pretrain["train_size"]) == {50000}
    assert set(pretrain["seed"]) == {0, 1, 2}


# ---------------------------------------------------------------- real tiny runs of the ablations

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Start each ablation's two smoke runs through the command line, the three files side by
    side, when the first smoke test asks for them; {study name: (results folder, process, log)}."""
    root = tmp_path_factory.mktemp("smoke")
    sets = [arg for key, value in SMOKE.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    started = {}
    for name, (only, _, _) in ABLATIONS.items():
        command = [sys.executable, "-m", "vitlib.experiments", "run", f"experiments/{name}.yaml",
                   "--output", str(root / name / "runs" / name), *sets, "--quiet",
                   *(arg for run in only for arg in ("--only", run))]
        log = root / f"{name}.log"
        with open(log, "w") as out:
            started[name] = (root / name, subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                                           stderr=subprocess.STDOUT), log)
    yield started
    for _, proc, _ in started.values():
        if proc.poll() is None:  # a test failed before waiting for it
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_runs_on_tiny_settings_and_fills_its_report_table(name, smoke):
    from vitlib.report import build_report

    results_dir, proc, log = smoke[name]
    assert proc.wait(timeout=600) == 0, log.read_text()
    only, claim, section = ABLATIONS[name]
    tops = {}
    for run in only:
        folder = results_dir / "runs" / name / run
        result = json.loads((folder / "result.json").read_text())
        assert (result["dataset"], result["img_size"], result["steps"], result["model"]) == (
            "digits", 16, 3, "vit_ti8")
        assert f"--output {results_dir}/runs/{name}" in result["command"]
        assert result["command"].endswith(f"--only {run}")
        record = json.loads((folder / "run.json").read_text())
        assert record["status"] == "complete" and record["overrides"]["dataset"] == "digits"
        assert record["parameters"]["train_args"] == {"augment": {}, "warmup_steps": 1}
        tops[run] = result["top1"]

    report = build_report(results_dir).read_text()
    claims = pd.read_csv(results_dir / "tables" / name / "claims.csv").set_index("id")["verdict"]
    assert claims[claim] != "not yet run"  # the two smoke runs form the ablation's comparison
    others = {c for _, c, _ in ABLATIONS.values()} - {claim}
    assert all(claims[c] == "not yet run" for c in [*others, "data-size", "pretrain-size", "resolution"])
    text = report.split(section)[1].split("\n### ")[0]  # the ablation's own section
    for run, top1 in tops.items():
        assert f"{top1:.2f} (n=1)" in text, (run, text)
    assert "_not yet run_" in report.split("### Training-set size")[1].split("\n### ")[0]


TRAINING_SETTINGS = ("model_args", "epochs", "steps", "batch_size", "lr", "train_args")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_a_study_states_every_training_setting(path):
    """The training notebooks' defaults are quick interactive settings (a tiny model, 140 steps,
    lr 3e-3): a study run must never train with them by leaving a setting out."""
    _, runs = training_runs(path)
    for run, params, _ in runs:
        missing = [key for key in TRAINING_SETTINGS if key not in params]
        assert not missing, f"{path.name}: run {run.name} leaves {', '.join(missing)} to the notebook's default"
