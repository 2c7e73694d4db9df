"""vitlib.report on synthetic run folders written by hand: loading, every claim rule, the tables,
figures and REPORT.md, the empty case (everything "not yet run") and the command line."""
import json
import math
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from fake_runs import model_description

from vitlib.analysis import uniform_attention_distance
from vitlib.report import build_report, collect, evaluate_claims, fmt_mean_std, load_runs, summarise, verdict
from vitlib.report.__main__ import main as report_main
from vitlib.report.verdict import shorten_runs


def write_run(results, study, name, status="complete", **fields):
    """A run folder as the batch runner and a notebook leave it: result.json (+ run.json)."""
    folder = results / "runs" / study / name
    folder.mkdir(parents=True)
    model = fields.get("model", "vit_s4")
    record = {"kind": "train", "study": study, "run": name, "model": model, "model_args": {},
              **model_description(model, fields.get("model_args")), "dataset": "cifar10", "train_size": 50000,
              "img_size": 32, "seed": 0, "recipe": "small", "lr": 1e-3, "steps": 1000,
              "epochs": 10, "params": 1e6, "flops_per_image": 1e8, "train_flops": 1e15,
              "train_seconds": 100.0, "images_per_s": 5000.0, "device": "NVIDIA H200",
              "command": f"python -m vitlib.experiments run experiments/{study}.yaml --only {name}",
              "top1": 50.0, **fields}
    (folder / "result.json").write_text(json.dumps(record))
    if status is not None:
        (folder / "run.json").write_text(json.dumps({"status": status, "duration_s": 120.0,
                                                     "study_file": f"experiments/{study}.yaml"}))
    return folder


def write_seeds(results, study, name, top1, seeds=(0, 1), **fields):
    """One run per seed at top1 ± 0.1 (two seeds: std 0.14, so the bar is 0.28 points)."""
    for seed in seeds:
        jitter = 0.1 if seed % 2 else -0.1
        write_run(results, study, f"{name}-s{seed}", seed=seed, top1=top1 + jitter, **fields)


def claim(runs, claim_id):
    claims, _ = evaluate_claims(runs)
    return claims.set_index("id").loc[claim_id]


def write_data_size(results, vit, resnet, sizes=(1000, 50000)):
    for size, v, r in zip(sizes, vit, resnet):
        for seed, jitter in enumerate((-0.5, 0.5)):
            write_run(results, "size", f"vit-{size}-s{seed}", train_size=size, seed=seed, top1=v + jitter)
            write_run(results, "size", f"res-{size}-s{seed}", model="resnet18_cifar", train_size=size,
                      seed=seed, top1=r + jitter)


def declare_study(root, monkeypatch, name, body, header="# Study: s\n# Command: c\n# Expected runtime: r\n"
                  "# Expected result: e\n"):
    """`<root>/experiments/<name>.yaml` (header, then `name:`, `output:` and `body`) as a study file
    of the repository the report reads; returns its path."""
    (root / "experiments").mkdir(exist_ok=True)
    study = root / "experiments" / f"{name}.yaml"
    study.write_text(f"{header}name: {name}\noutput: results/runs/{name}\n{body}")
    monkeypatch.setattr(collect, "REPO", root)
    monkeypatch.setattr(collect, "EXPERIMENTS", root / "experiments")
    return study


# ---------------------------------------------------------------------------------- collect ----

def test_load_runs_reads_records_and_skips_stale_and_flags_failed(tmp_path):
    write_run(tmp_path, "a", "ok", model_args={"pool": "gap"})
    write_run(tmp_path, "a", "old.stale-2024", top1=1.0)
    write_run(tmp_path, "a", "broken", status="failed")
    ft = write_run(tmp_path, "a", "ft", status=None, kind="finetune", finetune_top1=70.0,
                   few_shot={"5": 40.0}, train_seconds=None)
    (ft / "summary.json").write_text(json.dumps({"train_seconds": 12.5}))
    (ft / "finetune").mkdir()
    (ft / "finetune" / "env.json").write_text(json.dumps({"gpus": ["NVIDIA H100"], "torch": "2.11"}))
    runs = load_runs(tmp_path).set_index("run")
    assert sorted(runs.index) == ["broken", "ft", "ok"]
    assert runs.at["ok", "pool"] == "gap" and runs.at["ok", "pos_emb"] == "learned"
    assert runs.at["ok", "label"] == "vit_s4 (pool=gap)"
    assert (runs.at["ok", "patch"], runs.at["ok", "depth"], runs.at["ok", "width"]) == (4, 12, 384)
    assert runs.at["ft", "accuracy"] == 70.0 and runs.at["ft", "few_shot_5"] == 40.0
    assert runs.at["ft", "train_seconds"] == 12.5 and runs.at["ft", "gpus"] == "NVIDIA H100"
    assert runs.at["ft", "status"] == "unknown" and runs.at["ft", "usable"]
    assert not runs.at["broken", "usable"]
    assert runs.at["ok", "run_dir"] == f"{tmp_path.name}/runs/a/ok"


def test_load_runs_names_every_folder_it_cannot_use_and_goes_on(tmp_path):
    """Nothing dropped silently: a damaged file, a missing result.json or a diverged run is a row
    that says why it is not used (and a warning line), and the rest still loads."""
    with pytest.raises(FileNotFoundError, match="results_dir"):
        load_runs(tmp_path / "missing")
    write_run(tmp_path, "a", "good")
    write_run(tmp_path, "a", "bad-kind", kind="pretrain")
    (write_run(tmp_path, "a", "truncated") / "result.json").write_text("{not json")
    (write_run(tmp_path, "a", "listed") / "summary.json").write_text("[1, 2]")
    (write_run(tmp_path, "a", "no-result") / "result.json").unlink()
    (write_run(tmp_path, "a", "diverged") / "summary.json").write_text(
        json.dumps({"status": "diverged", "error": "loss is nan at step 7"}))
    warnings = []
    runs = load_runs(tmp_path, warn=warnings.append).set_index("run")
    assert sorted(runs.index) == ["bad-kind", "diverged", "good", "listed", "no-result", "truncated"]
    assert list(runs.index[runs["usable"].astype(bool)]) == ["good"]
    problems = runs["problem"].to_dict()
    assert "'kind' must be one of train, finetune, inspect, got 'pretrain'" in problems["bad-kind"]
    assert problems["truncated"].startswith("unreadable: result.json is not valid JSON")
    assert problems["listed"] == "unreadable: summary.json holds a list, not a JSON object"
    assert problems["no-result"] == "no result.json (run status: complete)"
    assert problems["diverged"] == "the run diverged: loss is nan at step 7"
    assert len(warnings) == 5 and all(w.startswith(f"warning: {tmp_path.name}/runs/a/") for w in warnings)


def test_a_copied_run_folder_counts_once_not_as_a_second_seed(tmp_path):
    params = {"model": "vit_s4", "seed": 0, "train_size": 50000}
    write_run(tmp_path, "a", "r-s0", parameters={**params, "out_dir": "results/runs/a/r-s0"})
    write_run(tmp_path, "a", "r-s0-copy", parameters={**params, "out_dir": "results/runs/a/r-s0-copy"})
    write_run(tmp_path, "a", "r-s1", seed=1, parameters={**params, "seed": 1, "out_dir": "results/runs/a/r-s1"})
    runs = load_runs(tmp_path, warn=lambda line: None).set_index("run")
    assert list(runs.index[runs["usable"].astype(bool)]) == ["r-s0", "r-s1"]
    assert runs.at["r-s0-copy", "problem"] == (f"a copy of {tmp_path.name}/runs/a/r-s0 (same study, configuration "
                                               "and seed): counted once")


def test_the_report_lists_every_run_folder_of_a_study(tmp_path, capsys):
    """A study with a good, a failed, a diverged and a result-less run: the report is built, says
    4 run folders, 1 used, and lists the other three with why; stderr has one line for each."""
    write_run(tmp_path, "s", "good")
    compare = write_run(tmp_path, "s", "compare")  # a comparison notebook's run: no result.json by design
    (compare / "result.json").unlink()
    (compare / "run.json").write_text(json.dumps({"status": "complete", "notebook": "notebooks/03_vit_vs_cnn.ipynb"}))
    write_run(tmp_path, "s", "failed", status="failed")
    (write_run(tmp_path, "s", "diverged") / "summary.json").write_text(json.dumps({"status": "diverged"}))
    (write_run(tmp_path, "s", "lost") / "result.json").unlink()
    report = build_report(tmp_path).read_text()
    assert "5 run folders: 1 used (1 train), 4 not used (listed below, with why)." in report
    assert "its notebook writes no result.json (a comparison or report run: no claim input)" in report
    for name, why in (("failed", "failed; the run failed"), ("diverged", "diverged; the run diverged"),
                      ("lost", "complete; no result.json (run status: complete)")):
        assert f"- `{tmp_path.name}/runs/s/{name}`: {why}" in report
    assert capsys.readouterr().err.count("warning: ") == 3


def test_summarise_and_format():
    df = pd.DataFrame({"m": ["a", "a", "a", "b"], "accuracy": [1.0, 2.0, 3.0, 7.0]})
    out = summarise(df, ["m"]).set_index("m")
    assert out.at["a", "mean"] == 2.0 and out.at["a", "std"] == pytest.approx(1.0)
    assert out.at["a", "n"] == 3 and out.at["b", "n"] == 1 and math.isnan(out.at["b", "std"])
    assert fmt_mean_std(2.0, 1.0, 3) == "2.00 ± 1.00 (n=3)"
    assert fmt_mean_std(7.0, float("nan"), 1) == "7.00 (n=1)"
    assert fmt_mean_std(float("nan"), None, 0) == "not yet run"


def test_runs_of_one_study_command_are_re_made_by_one_pattern():
    runs = pd.DataFrame({"command": [f"python -m vitlib.experiments run experiments/a.yaml --only size-{m}-s{s}"
                                     for m in ("vit", "resnet") for s in (0, 1)]})
    assert verdict._commands(runs) == ("python -m vitlib.experiments run experiments/a.yaml --only 'size-*'", "4 runs")
    assert verdict._commands(runs.iloc[:1]) == (runs["command"].iloc[0], "")
    # a command that itself ends in a parenthesis stays whole
    odd = pd.DataFrame({"command": ["python -c 'print(1)'"]})
    assert verdict._commands(odd) == ("python -c 'print(1)'", "")


def test_shorten_runs_globs_many_folders():
    many = [f"results/runs/cifar/scratch-vit-{i}" for i in range(5)] + ["results/runs/x/one"]
    assert shorten_runs(many) == "results/runs/cifar/scratch-vit-* (5 runs), results/runs/x/one"
    assert shorten_runs(["r/a", "r/b"]) == "r/a, r/b"


# ---------------------------------------------------------------------------------- claims -----

# Two seeds at ±0.5 per cell: seed std 0.71, so a difference must exceed 1.41 points to count.
@pytest.mark.parametrize("vit, resnet, verdict, what", [
    ((30, 84), (50, 82), "reproduced", "the ViT overtook it"),         # lead 20 -> -2: crossover
    ((30, 80), (50, 82), "partly", "narrowed the gap but did not overtake"),  # lead 20 -> 2
    ((60, 80), (50, 60), "partly", "the ResNet did not lead"),      # lead -10 -> -20
    ((30, 60), (50, 80.5), "within noise", "did not change by more"),  # lead 20 -> 20.5
    ((30, 60), (50, 90), "not reproduced", "lead grew"),             # lead 20 -> 30
])
def test_data_size_rule(tmp_path, vit, resnet, verdict, what):
    write_data_size(tmp_path, vit, resnet)
    row = claim(load_runs(tmp_path), "data-size")
    assert row["verdict"] == verdict and what in row["reason"]
    lead_small, lead_large = resnet[0] - vit[0], resnet[1] - vit[1]
    assert (f"ResNet lead {lead_small:+.2f} pts at 1,000 images → {lead_large:+.2f} at 50,000 "
            "(2 × seed std = 1.41;") in row["reason"]
    assert f"ViT {vit[0]:.2f} ± 0.71 (n=2)" in row["ours"]  # std of ±0.5 jitter over 2 seeds
    assert row["hardware"] == "NVIDIA H200 ×8"
    assert row["runs"] == f"{tmp_path.name}/runs/size/* (8 runs)"


def test_data_size_needs_both_families(tmp_path):
    write_run(tmp_path, "size", "v1", train_size=1000)
    write_run(tmp_path, "size", "v2", train_size=5000)
    row = claim(load_runs(tmp_path), "data-size")
    assert row["verdict"] == row["ours"] == "not yet run" and "vit and resnet" in row["reason"]


def write_pretrain(results, ft, fs, seeds=(0, 1)):
    """Fine-tuned (ft) and 5-shot (fs) accuracies at 10k and 100k pre-training images, ±0.1 over
    the seeds (2 × seed std = 0.28)."""
    for fam, model in (("vit", "vit_s4"), ("res", "resnet18_cifar")):
        for size, acc, shot in zip((10000, 100000), ft[fam], fs[fam]):
            for seed in seeds:
                jitter = 0.1 if seed else -0.1
                write_run(results, "ft", f"{fam}-{size}-s{seed}", model=model, kind="finetune",
                          seed=seed, pretrain_dataset="tiny-imagenet", pretrain_size=size,
                          finetune_top1=acc + jitter, few_shot={"1": shot - 10, "5": shot + jitter})


def test_pretrain_size_and_few_shot(tmp_path):
    # fine-tuned: ViT gains 10 pts, ResNet 2; 5-shot: ViT 1, ResNet 3; beyond the 0.28 bar
    write_pretrain(tmp_path, {"vit": (70, 80), "res": (75, 77)}, {"vit": (30, 31), "res": (35, 38)})
    runs = load_runs(tmp_path)
    row = claim(runs, "pretrain-size")
    assert row["verdict"] == "reproduced" and "2 × seed std = 0.28" in row["reason"]
    few = claim(runs, "pretrain-size-5shot")
    assert few["verdict"] == "not reproduced" and "ViT +1.00, ResNet +3.00" in few["reason"]


@pytest.mark.parametrize("seeds, vit_gain, verdict", [
    ((0, 1), 2.2, "within noise"),   # gains 2.2 vs 2.0: within the 0.28 bar
    ((0,), 10.0, "within noise"),    # one seed: no spread known, never "reproduced"
])
def test_pretrain_size_within_noise(tmp_path, seeds, vit_gain, verdict):
    write_pretrain(tmp_path, {"vit": (70, 70 + vit_gain), "res": (75, 77)},
                   {"vit": (30, 31), "res": (35, 38)}, seeds=seeds)
    row = claim(load_runs(tmp_path), "pretrain-size")
    assert row["verdict"] == verdict and "differ by no more than the noise" in row["reason"]


def test_few_shot_weighs_the_draw_spread(tmp_path):
    # both seeds fine-tune on the whole set and so share their k-shot draws: identical 5-shot
    # accuracies (seed std 0) whose draws spread by 2 points; gains 1 vs 3 pts are within 4.00
    for fam, model in (("vit", "vit_s4"), ("res", "resnet18_cifar")):
        for size, shot in zip((10000, 100000), (30, 31) if fam == "vit" else (35, 38)):
            for seed in (0, 1):
                write_run(tmp_path, "ft", f"{fam}-{size}-s{seed}", model=model, kind="finetune",
                          seed=seed, pretrain_dataset="tiny-imagenet", pretrain_size=size,
                          finetune_top1=70.0 + seed, few_shot={"5": shot}, few_shot_std={"5": 2.0})
    few = claim(load_runs(tmp_path), "pretrain-size-5shot")
    assert few["verdict"] == "within noise"
    assert "2 × std over the k-shot draws = 4.00" in few["reason"] and "ViT +1.00, ResNet +3.00" in few["reason"]


def test_compute_rules(tmp_path):
    # ResNet reaches 80% with 1e15 FLOPs, ViT needs 4e15: the small-data outcome (ratio 0.25)
    for name, model, flops, acc in (("v1", "vit_s4", 1e15, 70), ("v2", "vit_s4", 4e15, 82),
                                    ("r1", "resnet18_cifar", 1e15, 80), ("h1", "r_vit_s4", 1e15, 75),
                                    ("h2", "r_vit_s4", 4e15, 81)):
        write_seeds(tmp_path, "c", name, acc, model=model, train_flops=flops, steps=int(flops / 1e12))
    runs = load_runs(tmp_path)
    row = claim(runs, "compute")
    assert row["verdict"] == "not reproduced" and "= 0.25" in row["reason"]
    assert "to reach 80.00%: ViT 4e+15 FLOPs, ResNet 1e+15 FLOPs" in row["ours"]
    # a dominated point (as costly as the ResNet's 80%, far less accurate) is off the frontier:
    # its 10-point seed spread is no bar for the verdict
    for seed, acc in ((0, 50.0), (1, 60.0)):
        write_run(tmp_path, "c", f"r0-s{seed}", model="resnet18_cifar", train_flops=1e15, steps=999,
                  seed=seed, top1=acc)
    row = claim(load_runs(tmp_path), "compute")
    assert row["verdict"] == "not reproduced" and "2 × seed std = 0.28" in row["reason"]
    # one seed: the spread is unknown, so no verdict beyond "within noise"
    single = load_runs(tmp_path)
    single = single[single["seed"] == 0]
    assert claim(single, "compute")["verdict"] == "within noise"
    hybrid = claim(runs, "compute-hybrid")  # at 1e15: hybrid 75 vs ViT 70; at 4e15: 81 vs 82
    assert hybrid["verdict"] == "reproduced" and "+5.00 pts at 1e+15" in hybrid["reason"]
    assert "-1.00 at 4e+15" in hybrid["reason"]
    # every ViT run cheaper than the cheapest hybrid: one budget to compare at, no "nan" gap
    cheap = load_runs(tmp_path)
    cheap = cheap[~cheap["run"].str.startswith(("v2", "h1"))]
    row = claim(cheap, "compute-hybrid")  # at 4e15: hybrid 81 vs the ViT's best within it, 70
    assert "+11.00 pts at 4e+15 FLOPs; no larger budget has runs of both" in row["reason"]
    assert "nan" not in row["reason"]


def test_the_compute_claims_compare_the_families_on_one_training_set_size(tmp_path):
    """A hybrid trained on 5,000 images stopped early (cheap, data-starved) would set the budget
    against ViTs trained on 50,000: the claims compare at the largest training set both families
    trained on, where the hybrid leads; the runs behind each claim are those at that size."""
    for name, model, size, flops, acc in (("v", "vit_s4", 50000, 1e15, 70), ("v", "vit_s4", 5000, 1e15, 50),
                                          ("h", "r_vit_s4", 5000, 6e14, 60), ("h", "r_vit_s4", 50000, 2e15, 80),
                                          ("r", "resnet18_cifar", 1000, 1e14, 71),
                                          ("r", "resnet18_cifar", 50000, 2e15, 75)):
        write_seeds(tmp_path, "c", f"{name}{size}", acc, model=model, train_size=size, train_flops=flops,
                    steps=int(flops / 1e12))
    runs = load_runs(tmp_path)
    hybrid = claim(runs, "compute-hybrid")
    assert hybrid["ours"] == "at 2e+15 FLOPs (at 50,000 training images): hybrid 80.00%, ViT 70.00%"
    assert hybrid["verdict"] == "reproduced" and hybrid["runs"].endswith("(4 runs)")
    compute = claim(runs, "compute")  # the ResNet on 1,000 images reaches 71% cheaply, but not at 50,000
    assert compute["ours"].startswith(
        "to reach 70.00%: ViT 1e+15 FLOPs, ResNet 2e+15 FLOPs (at 50,000 training images)")
    assert compute["verdict"] == "reproduced" and "= 2.00" in compute["reason"]
    # the ViT on 5,000 images only: no size in common with the ResNet (not yet run, saying why);
    # the hybrid is then compared at 5,000
    apart = runs[~((runs["family"] == "vit") & (runs["train_size"] == 50000))]
    assert claim(apart, "compute")["verdict"] == "not yet run"
    assert "common training-set size" in claim(apart, "compute")["reason"]
    assert claim(apart, "compute-hybrid")["ours"].startswith("at 1e+15 FLOPs (at 5,000 training images): hybrid 60.00%")


@pytest.mark.parametrize("seeds, low, high, verdict", [
    (2, 70.0, 75.0, "reproduced"), (1, 70.0, 75.0, "within noise"), (2, 75.0, 70.0, "not reproduced"),
    (2, 70.0, 70.1, "within noise")])
def test_resolution_rule(tmp_path, seeds, low, high, verdict):
    for seed in range(seeds):
        for size, acc in ((32, low), (64, high)):
            write_run(tmp_path, "res", f"ft{size}-s{seed}", kind="finetune", img_size=size, seed=seed,
                      pretrain_dataset="tiny-imagenet", pretrain_size=100000,
                      finetune_top1=acc + 0.1 * seed)
    assert claim(load_runs(tmp_path), "resolution")["verdict"] == verdict


@pytest.mark.parametrize("accs, verdict", [
    ({"none": 80.0, "learned": 85.0, "sincos2d": 84.5, "relative": 85.2}, "reproduced"),
    ({"none": 80.0, "learned": 85.0, "sincos2d": 81.0}, "partly"),   # spread 4 >= margin 1
    ({"none": 80.0, "learned": 85.0, "sincos2d": 80.2}, "partly"),  # sincos 0.2 over none < bar 0.28
    ({"none": 80.0, "learned": 85.0, "relative": 79.0}, "partly"),  # one kind helps, one hurts
    ({"none": 80.0, "learned": 80.1, "sincos2d": 80.2}, "within noise"),
    ({"none": 80.0, "learned": 80.1, "relative": 79.0}, "not reproduced"),
])
def test_pos_emb_rule(tmp_path, accs, verdict):
    for pos, acc in accs.items():
        args = {} if pos == "learned" else {"pos_emb": pos}  # "learned" is the default
        write_seeds(tmp_path, "pos", f"pos-{pos}", acc, model_args=args)
    write_run(tmp_path, "pos", "other-size", model_args={"pos_emb": "none"}, train_size=1000, top1=1.0)
    claims, tables = evaluate_claims(load_runs(tmp_path))
    row = claims.set_index("id").loc["pos-emb"]
    assert row["verdict"] == verdict
    assert "none 80.00 ± 0.14 (n=2)" in row["ours"] and "other-size" not in row["runs"]
    # the table holds exactly the compared runs, with the verdict's numbers
    table = tables["pos_emb"].set_index("pos_emb")
    assert set(table["train_size"]) == {50000} and "other-size" not in " ".join(table["runs"])
    assert f"{table.at['none', 'mean']:.2f}" == "80.00"


def test_pooling_rule(tmp_path):
    for pool, lrs in (("token", {1e-3: 80.0, 3e-4: 78.0}), ("gap", {3e-3: 79.4, 1e-3: 76.0})):
        for lr, acc in lrs.items():
            write_seeds(tmp_path, "pool", f"{pool}-{lr}", acc, model_args={"pool": pool}, lr=lr)
    row = claim(load_runs(tmp_path), "pooling")
    assert row["verdict"] == "reproduced" and "gap − token -0.60 pts, tolerance 1.00" in row["reason"]
    assert "gap (best lr 0.003)" in row["ours"]


def test_patch_depth_rule(tmp_path):
    for name, args, flops, acc in (("p4", {}, 4e15, 80.0), ("p8", {"patch_size": 8}, 1e15, 70.0),
                                   ("p2", {"patch_size": 2}, 16e15, 85.0),
                                   ("d6", {"depth": 6}, 2e15, 76.0),       # +4 pts per doubling
                                   ("w192", {"embed_dim": 192, "num_heads": 3}, 1e15, 78.0)):  # +1
        write_seeds(tmp_path, "shape", name, acc, model_args=args, train_flops=flops)
    row = claim(load_runs(tmp_path), "patch-depth")
    assert row["verdict"] == "reproduced", row["reason"]
    assert "depth +4.00 pts per FLOP doubling, width +1.00" in row["ours"]


def test_inspection_claims(tmp_path):
    grows = [[5.0, 30.0], [10.0, 12.0], [14.0, 16.0]]  # layer 0 has a far head (30 px)
    write_run(tmp_path, "insp", "i1", kind="inspect", attention_distance=grows, image_size=32,
              patch_size=4, pos_similarity_neighbour_minus_far=0.3)
    write_run(tmp_path, "insp", "i2", kind="inspect", attention_distance=grows[::-1], image_size=32,
              patch_size=4, pos_similarity_neighbour_minus_far=-0.1)
    runs = load_runs(tmp_path)
    row = claim(runs, "attention-distance")
    uniform = uniform_attention_distance(32, 4)
    assert 14 < uniform < 30  # i1's 30-px head reaches as far as uniform attention, i2's 16 px does not
    assert row["verdict"] == "partly"
    assert "grows in 1/2 runs, a first-layer head as far as uniform attention in 1/2" in row["reason"]
    assert claim(runs, "pos-emb-similarity")["verdict"] == "partly"
    # one run where everything holds is not enough for "reproduced"
    write_run(tmp_path / "one", "insp", "i3", kind="inspect", image_size=32, patch_size=4,
              attention_distance=[[5.0, 30.0], [12.0, 14.0], [20.0, 22.0]], pos_similarity_neighbour_minus_far=0.3)
    alone = load_runs(tmp_path / "one")
    for claim_id in ("attention-distance", "pos-emb-similarity"):
        row = claim(alone, claim_id)
        assert row["verdict"] == "within noise" and "observed in 1 run only" in row["reason"]
    # uniform head on a 2x2 grid of 4-px patches: distances 0, 4, 4, 4*sqrt(2) from each patch
    assert uniform_attention_distance(8, 4) == pytest.approx((8 + 4 * math.sqrt(2)) / 4)


# ---------------------------------------------------------------------------------- report -----

def test_a_declared_study_without_runs_is_not_yet_run(tmp_path, monkeypatch):
    """A study file whose output lies in results/runs/ is in the report before it runs, every
    claim "not yet run"; an empty results folder without one says so."""
    md = build_report(tmp_path)
    assert "No study yet." in md.read_text() and not list((tmp_path / "figures").rglob("*.png"))
    declare_study(tmp_path, monkeypatch, "big", "runs: []\n", header=(
        "# Study: a big one\n# Command: python -m vitlib.experiments run experiments/big.yaml\n"
        "# Expected runtime: a day\n# Expected result: everything\n"))
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    text = build_report(results).read_text()
    claims = pd.read_csv(results / "tables" / "big" / "claims.csv")
    assert len(claims) == 11 and set(claims["verdict"]) == set(claims["ours"]) == {"not yet run"}
    assert "## Study `big`: not yet run" in text and "Not yet run: study `big`" in text
    board = pd.read_csv(results / "tables" / "scoreboard.csv")  # the paper's numbers before any run
    assert len(board) == 11 and set(board["verdict"]) == {"not yet run"} and board["paper"].notna().all()
    assert "python -m vitlib.experiments run experiments/big.yaml" in text
    assert "JPEG at quality 75" in text  # the caveats of the data the studies will use
    assert (results / "tables" / "big" / "data_size.md").read_text() == "_not yet run_\n"


def test_claim_ids_are_the_claim_functions_own(tmp_path):
    """CLAIM_IDS (what a study file's `claims` may name) lists the ids the claim functions give
    their rows, in their order: the two cannot drift apart."""
    from vitlib.report.claims import CLAIM_IDS

    write_data_size(tmp_path, (30, 80), (50, 82))
    assert tuple(evaluate_claims(load_runs(tmp_path))[0]["id"]) == CLAIM_IDS


def test_a_study_that_names_its_claims_is_judged_on_those_only(tmp_path, monkeypatch):
    """`claims` in a study file: the report lists those claims for it (claims table, scoreboard,
    sections, supporting tables) and nothing about the ones it never runs; a table left from an
    earlier build without the key is removed."""
    study = declare_study(tmp_path, monkeypatch, "size", "runs: []\n")
    results = tmp_path / "results"
    write_data_size(results, (30, 80), (50, 82))
    build_report(results)
    assert (results / "tables" / "size" / "pos_emb.md").is_file()
    study.write_text(study.read_text().replace("runs: []", "claims: [data-size, compute]\nruns: []"))
    text = build_report(results).read_text()
    claims = pd.read_csv(results / "tables" / "size" / "claims.csv")
    assert list(claims["id"]) == ["data-size", "compute"]
    board = pd.read_csv(results / "tables" / "scoreboard.csv")
    assert list(board["id"]) == ["data-size", "compute"]
    assert "(data-size)" in text and "(pos-emb)" not in text and "### Position embeddings" not in text
    assert (results / "tables" / "size" / "data_size.csv").is_file()
    assert not (results / "tables" / "size" / "pos_emb.md").exists()
    study.write_text(study.read_text().replace("[data-size, compute]", "[data-size, pos-embedding]"))
    with pytest.raises(ValueError, match=r"size.yaml: unknown claim id\(s\) 'pos-embedding' in 'claims'; allowed: "
                                         r"data-size, pretrain-size"):
        build_report(results)


def test_build_report_writes_everything_relative_to_results_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = tmp_path / "results" / "demo"
    write_data_size(demo, (30, 80), (50, 82))
    slow = write_run(demo, "size", "slow", device="cpu (x86_64, 2 cores)", train_seconds=3600.0, seed=2, top1=80.0)
    (slow / "summary.json").write_text(json.dumps({"status": "complete", "precision": "fp32"}))  # the engine's
    write_run(demo, "size", "crashed", status="failed")
    write_run(demo, "other", "elsewhere", model="resnet18_cifar", train_size=1000, top1=99.0)
    inspect = write_run(demo, "size", "inspect", kind="inspect", attention_distance=[[1.0], [2.0]],
                        image_size=32, patch_size=4)
    (inspect / "figures").mkdir()
    (inspect / "figures" / "inspect_attention.png").write_bytes(b"png")
    (demo / "bench").mkdir()
    pd.DataFrame({"model": ["vit_s4"], "images_per_s": [123.0]}).to_csv(demo / "bench" / "speed.csv", index=False)
    md = build_report("results/demo")
    assert md == demo / "REPORT.md" or md.resolve() == (demo / "REPORT.md").resolve()
    text = md.read_text()
    for name in ("data_size", "compute", "throughput"):
        assert (demo / "figures" / "size" / f"{name}.png").stat().st_size > 1000
        assert f"](figures/size/{name}.png)" in text
    assert "_Figure pos_emb: not yet run._" in text
    assert "](runs/size/inspect/figures/inspect_attention.png)" in text  # from the run's folder
    assert "### speed" in text and "| vit_s4  | 123            |" in text
    assert "- `results/demo/runs/size/crashed`: failed; the run failed" in text
    assert "Total GPU time: 0.25 h of training steps (sum of train_seconds of the 9 GPU runs)" in text
    assert "Total CPU time: 1.00 h of training steps" in text
    assert "python -m vitlib.experiments run experiments/size.yaml" in text
    runs_csv = pd.read_csv(demo / "tables" / "size" / "runs.csv")
    assert len(runs_csv) == 11 and "results/demo/runs/size/slow" in set(runs_csv["run folder"])
    claims = pd.read_csv(demo / "tables" / "size" / "claims.csv").set_index("id")
    assert claims.at["data-size", "verdict"] == "partly"  # lead 20 -> 2: narrowed, no crossover
    # the CPU run is the same configuration (vit_s4, recipe, 50,000 images) as the sweep's, and
    # the other study's runs never join this study's comparison
    assert claims.at["data-size", "runs"] == "results/demo/runs/size/* (9 runs)"
    assert claims.at["data-size", "hardware"] == "NVIDIA H200 ×8, cpu (x86_64, 2 cores), fp32"
    assert "| cpu (x86_64, 2 cores) | fp32        | 1      | 1.00 h" in text  # what was run: device, precision
    assert runs_csv.set_index("run folder").at["results/demo/runs/size/slow", "precision"] == "fp32"
    other = pd.read_csv(demo / "tables" / "other" / "claims.csv").set_index("id")
    assert other.at["data-size", "verdict"] == "not yet run"
    board = pd.read_csv(demo / "tables" / "scoreboard.csv")
    # a study whose runs judge no claim yet waits below the scoreboard instead of filling it
    assert list(board["study"].unique()) == ["size"] and len(board) == 11
    assert "Not yet run: study `other` (every claim _not yet run_ so far)" in text
    assert text.index("## Scoreboard") < text.index("## Study `size`") < text.index("## Study `other`")
    # every number leads to its rows and run folders: the scoreboard and the claims table link
    # each claim's section; its table links the run folders of each cell; sizes are whole numbers
    assert "](#size-data-size)" in text and '<a id="size-data-size"></a>' in text
    assert "[vit-1000-s0](runs/size/vit-1000-s0) [vit-1000-s1](runs/size/vit-1000-s1)" in text
    assert "](tables/size/runs.md)" in text
    sizes = pd.read_csv(demo / "tables" / "size" / "data_size.csv")
    assert sizes["train_size"].dtype.kind == "i" and "results/demo/runs/size/slow" in sizes["runs"].iloc[-1]
    assert "[slow](../../runs/size/slow)" in (demo / "tables" / "size" / "runs.md").read_text()
    # the command sits in the claim's section, whole, as code (runs of no common name: the first)
    assert "- Re-make: `python -m vitlib.experiments run experiments/size.yaml --only res-1000-s0` " \
           "(and 8 more like it)" in text
    assert not (tmp_path / "results" / "REPORT.md").exists()
    elsewhere = build_report(demo, out_md=tmp_path / "docs" / "R.md")  # links follow the file
    assert "](../results/demo/figures/size/data_size.png)" in elsewhere.read_text()
    # a figure whose data disappeared is removed, not left to pass for current results
    for f in (demo / "runs" / "size").rglob("result.json"):
        if f.parent.name != "slow":
            f.unlink()
    build_report(demo)
    assert not (demo / "figures" / "size" / "data_size.png").exists()


def write_ladder(results, leads, seeds=(0, 1), sizes=(1000, 45000), half=None):
    """A study trained at several budgets: {steps: (ViT top1 per size, ResNet top1 per size)};
    `half`: (ViT, ResNet) validation accuracy at half the top budget, at the largest size."""
    for steps, (vit, resnet) in leads.items():
        for size, v, r in zip(sizes, vit, resnet):
            for seed in seeds:
                jitter = 0.1 if seed % 2 else -0.1
                for family, model, top1 in (("vit", "vit_s4", v), ("res", "resnet18_cifar", r)):
                    write_run(results, "ladder", f"b{steps}-{family}-n{size}-s{seed}", model=model, steps=steps,
                              train_size=size, seed=seed, top1=top1 + jitter, val_top1=top1 + 1 + jitter)
    top = max(leads)
    for family, model, val in zip(("vit", "res"), ("vit_s4", "resnet18_cifar"), half or ()):
        for seed in seeds:
            jitter = 0.1 if seed % 2 else -0.1
            write_run(results, "ladder", f"b{top // 2}-{family}-n{sizes[-1]}-s{seed}", model=model, steps=top // 2,
                      train_size=sizes[-1], seed=seed, top1=val - 1 + jitter, val_top1=val + jitter)


def test_a_budget_ladder_gets_a_verdict_per_budget_and_a_plateau_check(tmp_path):
    """Data size at 2,000 and 32,000 steps: the lead grows at the small budget (not reproduced) and
    shrinks at the large one (partly); at the largest size the ViT still gains 3 validation points
    from 16,000 to 32,000 steps (budget-limited), the ResNet 0.1 (at plateau)."""
    write_ladder(tmp_path, {2000: ((35, 50), (45, 70)), 32000: ((40, 70), (60, 80))}, half=(68.0, 80.9))
    text = build_report(tmp_path).read_text()
    claims = pd.read_csv(tmp_path / "tables" / "ladder" / "claims.csv").set_index("id")
    by_budget = claims.at["data-size", "by budget"]
    assert by_budget.startswith("2,000 steps: not reproduced; 32,000 steps: partly (at the largest size, ")
    assert "vit: budget-limited: validation 68.00 → 71.00 from 16,000 to 32,000 steps (bar 0.28)" in by_budget
    assert "resnet: at plateau: validation 80.90 → 81.00" in by_budget
    assert claims.at["compute", "by budget"] == ("one verdict on all budgets at once "
                                                 "(its frontiers span 2,000–32,000 steps)")
    table = pd.read_csv(tmp_path / "tables" / "ladder" / "by_budget.csv").set_index("id")
    assert (list(table.columns) == ["2,000 steps", "32,000 steps"]
            and table.at["compute", "2,000 steps"] == "(all budgets)")
    board = pd.read_csv(tmp_path / "tables" / "scoreboard.csv").set_index("id")
    assert board.at["data-size", "by budget"] == by_budget and "| by budget" in text
    assert (tmp_path / "figures" / "ladder" / "budget_lead.png").stat().st_size > 1000
    assert "](figures/ladder/budget_lead.png)" in text and "- By budget: 2,000 steps" in text
    sizes = pd.read_csv(tmp_path / "tables" / "ladder" / "data_size.csv")  # one row per budget, never pooled
    vit_small = sizes[(sizes["family"] == "vit") & (sizes["train_size"] == 1000)].set_index("steps")
    assert list(vit_small.index) == [2000, 32000] and list(vit_small["mean"]) == [35, 40]
    assert set(vit_small["n"]) == {2}


def test_the_plateau_check_reads_a_top_budget_whose_rung_is_not_complete(tmp_path):
    """The top budget's rung has only the ViT at the largest size (no verdict there yet): the plateau
    check still compares it with its half budget, and says the ResNet has no run at the top."""
    write_ladder(tmp_path, {2000: ((35, 50), (45, 70)), 8000: ((40, 70), (60, 80))})
    for steps, val in ((32000, 71.0), (16000, 70.0)):
        write_run(tmp_path, "ladder", f"b{steps}-vit-n45000-s0", model="vit_s4", steps=steps, train_size=45000,
                  seed=0, top1=val - 1, val_top1=val)
    build_report(tmp_path)
    by_budget = pd.read_csv(tmp_path / "tables" / "ladder" / "claims.csv").set_index("id").at["data-size", "by budget"]
    assert by_budget.startswith("2,000 steps: not reproduced; 8,000 steps: ") and "32,000 steps:" not in by_budget
    assert ("vit: plateau unknown (one seed in a cell): validation 70.00 → 71.00 from 16,000 to 32,000 steps"
            in by_budget and "resnet: plateau unknown: no run at 32,000 steps" in by_budget)


def test_a_vit_claim_judged_below_the_top_budget_says_whether_more_budget_moves_the_vit(tmp_path):
    """Patch sizes trained at 2,000 steps only, on a ladder of 2,000 / 4,000 / 8,000: the verdict at
    2,000 steps carries the check of its base ViT at the largest size against twice the budget (it
    gains 5 validation points: budget-limited); a check at the top budget reads half of it."""
    from vitlib.report.budgets import more_budget

    write_ladder(tmp_path, {2000: ((35, 50), (45, 70)), 4000: ((38, 55), (50, 75)), 8000: ((40, 55.2), (55, 78))})
    write_seeds(tmp_path, "ladder", "b2000-p8", 45.0, model="vit_s4", model_args={"patch_size": 8},
                steps=2000, train_size=45000)
    build_report(tmp_path)
    claims = pd.read_csv(tmp_path / "tables" / "ladder" / "claims.csv").set_index("id")
    assert claims.at["patch-depth", "by budget"] == (
        "2,000 steps: partly (the ViT at the largest size, budget-limited: validation 51.00 → 56.00 from 2,000 "
        "to 4,000 steps (bar 0.28))")
    runs = load_runs(tmp_path)
    assert more_budget(runs, 8000).startswith("at plateau: validation 56.00 → 56.20 from 4,000 to 8,000 steps")


def test_a_rung_judged_on_fewer_sizes_names_the_sizes_it_lacks(tmp_path):
    """The top budget has run only 15,000 and 45,000 images of the ladder's 1,000-45,000: its
    data-size verdict (judged on those two) says which sizes it lacks, in the by-budget table, the
    scoreboard's words and the claim's reason; a complete rung says nothing of the kind."""
    write_ladder(tmp_path, {2000: ((35, 45, 50), (45, 65, 70)), 32000: ((40, 55, 70), (60, 75, 80))},
                 sizes=(1000, 15000, 45000))
    for f in tmp_path.glob("runs/ladder/b32000-*-n1000-*/result.json"):
        f.unlink()
    build_report(tmp_path)
    claims = pd.read_csv(tmp_path / "tables" / "ladder" / "claims.csv").set_index("id")
    missing = "(1,000 images not yet run at this budget)"
    assert claims.at["data-size", "reason"].startswith(f"at 32,000 steps {missing}: ")
    assert f"32,000 steps: partly {missing}" in claims.at["data-size", "by budget"]
    assert "2,000 steps: not reproduced;" in claims.at["data-size", "by budget"]
    table = pd.read_csv(tmp_path / "tables" / "ladder" / "by_budget.csv").set_index("id")
    assert table.at["data-size", "32,000 steps"] == f"partly {missing}"
    assert table.at["data-size", "2,000 steps"] == "not reproduced"


def test_a_run_stopped_early_counts_at_the_budget_it_was_set(tmp_path):
    """Early stopping ends small training sets before their budget: they still belong to it (the
    steps their config.json set, or its epochs scaled), and the steps they took are kept."""
    write_ladder(tmp_path, {2000: ((35, 50), (45, 70))})
    for name, taken, train in (("b2000-vit-n1000-s0", 875, {"steps": 2000}),
                               ("b2000-vit-n1000-s1", 1500, {"steps": 0, "epochs": 256})):
        folder = tmp_path / "runs" / "ladder" / name
        record = json.loads((folder / "result.json").read_text())
        record.update(steps=taken, epochs=taken / 7.8125, stopped_early_step=taken)  # 1,000 images: 7.8 steps/epoch
        (folder / "result.json").write_text(json.dumps(record))
        (folder / "config.json").write_text(json.dumps({"train": train}))
    runs = load_runs(tmp_path).set_index("run")
    assert runs.at["b2000-vit-n1000-s0", "steps"] == 2000 and runs.at["b2000-vit-n1000-s0", "steps_taken"] == 875
    assert runs.at["b2000-vit-n1000-s1", "steps"] == 2000 and runs.at["b2000-res-n1000-s0", "steps"] == 2000
    row = claim(runs.reset_index(), "data-size")
    assert row["ours"].startswith("1,000 images: ResNet 45.00 ± 0.14 (n=2), ViT 35.00 ± 0.14 (n=2)")
    # a record that states its budget (steps_planned, as fit's summary gives it) is read as it says
    folder = tmp_path / "runs" / "ladder" / "b2000-res-n1000-s0"
    record = json.loads((folder / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps({**record, "steps": 640, "steps_planned": 2000,
                                                    "stopped_early_step": 640}))
    runs = load_runs(tmp_path).set_index("run")
    assert runs.at["b2000-res-n1000-s0", "steps"] == 2000 and runs.at["b2000-res-n1000-s0", "steps_taken"] == 640


def test_a_study_at_one_budget_has_no_budget_column(tmp_path):
    """No by-budget column, figure or table; each claim's section states the one budget its runs
    trained for instead, and that no plateau check exists."""
    write_data_size(tmp_path, (30, 80), (50, 82))
    text = build_report(tmp_path).read_text()
    assert "by budget" not in text and "budget_lead" not in text
    assert not (tmp_path / "tables" / "size" / "by_budget.csv").exists()
    assert "- Budget: 1,000 steps (one budget; plateau not checked)\n" in text


def test_a_fine_tuning_claim_at_one_budget_states_its_pre_training_budget(tmp_path):
    """The budget of a fine-tuning claim names the pre-training runs' steps (read through
    pretrained_from) beside the fine-tuning's; steps that differ between configurations are a span."""
    from vitlib.report.budgets import judge_ladder

    write_pretrain(tmp_path, {"vit": (70, 80), "res": (75, 77)}, {"vit": (30, 31), "res": (35, 38)})
    for fam, size, steps in (("vit", 10000, 3000), ("vit", 100000, 3000), ("res", 10000, 2000), ("res", 100000, 2000)):
        write_run(tmp_path, "ft", f"pre-{fam}-{size}", dataset="tiny-imagenet", train_size=size, steps=steps)
        for seed in (0, 1):
            result = tmp_path / "runs" / "ft" / f"{fam}-{size}-s{seed}" / "result.json"
            record = json.loads(result.read_text())
            record.update(pretrained_from=str(tmp_path / "runs" / "ft" / f"pre-{fam}-{size}"), steps=500)
            result.write_text(json.dumps(record))
    runs = load_runs(tmp_path)
    claims, tables = evaluate_claims(runs)
    claims = judge_ladder(runs, claims, tables)[0].set_index("id")
    assert claims.at["pretrain-size", "budget"] == (
        "pre-training 2,000–3,000 steps, fine-tuning 500 steps (one budget per configuration; plateau not checked)")
    assert claims.at["pos-emb", "budget"] == ""  # a claim with no runs has no budget


def test_demo_report_has_a_banner(tmp_path):
    write_run(tmp_path, "demo", "v", dataset="digits")
    text = build_report(tmp_path).read_text()
    assert "**Demo report.**" in text and "8 × 8 handwritten digits" in text
    assert "JPEG at quality 75" not in text  # caveats only for the data sets used


def test_cli_without_notebook_builds_markdown_and_html(tmp_path, capsys):
    """The report is built in this process, no kernel; a notebook only when asked for."""
    assert report_main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'REPORT.md'} and {tmp_path / 'report.html'}\n"
    assert not list(tmp_path.glob("*.ipynb"))
    assert report_main([str(tmp_path), "--notebook", str(tmp_path / "none.ipynb")]) == 0
    assert "does not exist" in capsys.readouterr().out and (tmp_path / "REPORT.md").is_file()
    assert (tmp_path / "report.html").is_file()
    assert report_main([str(tmp_path / "missing")]) == 2


def test_cli_executes_notebook_and_renders_a_standalone_page(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('results_dir = "results"  # str: folder with runs/')
    params.metadata["tags"] = ["parameters"]
    # the notebook only prints (a fast kernel): REPORT.md is then built by the command itself
    nb.cells = [nbformat.v4.new_markdown_cell("# Report"), params,
                nbformat.v4.new_code_cell("SECRET_CODE = 1\nprint('report of', results_dir)")]
    nbformat.write(nb, tmp_path / "05_report.ipynb")
    results = tmp_path / "out"
    write_data_size(results, (30, 80), (50, 82))
    assert report_main([str(results), "--notebook", str(tmp_path / "05_report.ipynb")]) == 0
    executed = nbformat.read(results / "05_report.ipynb", as_version=4)
    printed = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert f"report of {results}\n" in printed
    assert "did not write" in capsys.readouterr().out
    html = (results / "report.html").read_text()
    assert "<title>Reproducing &quot;An Image Is Worth 16x16 Words&quot;" in html or \
        '<title>Reproducing "An Image Is Worth 16x16 Words"' in html
    assert "SECRET_CODE" not in html and "05_report" not in html
    assert '<div class="table"><table>' in html  # wide tables scroll in their own box
    assert 'src="data:image/png;base64,' in html and 'src="figures/' not in html  # stands alone


# ---------------------------------------------------------------------------------- in a browser ----

from vitlib.report.browser import WIDTHS, check_page, find_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt-get install chromium)")
def test_the_committed_report_reads_in_a_browser(tmp_path, monkeypatch):
    """results/report.html in headless Chromium at 1,000 and 1,400 px: every image loads, no table
    overflows the text column, the page never scrolls sideways; and the check finds what it should."""
    browser = find_chromium()
    for width in WIDTHS:
        result = check_page(REPO / "results" / "report.html", width, browser)
        assert result["problems"] == [] and result["tables"] > 0
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><main style="max-width: 500px"><img alt="missing" src="missing.png">'
                   f'<table><tr><th>wide</th><td>{"x" * 300}</td></tr></table></main></body></html>')
    shot = tmp_path / "shots" / "shot.png"
    problems = check_page(bad, 1000, browser, screenshot=shot)["problems"]
    assert [p.split(" (")[0] for p in problems] == ["image 1", "table 1", "the page scrolls sideways"]
    assert shot.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.html", "shots"]  # nothing beside the page
    # a page taller than one capture is shot whole, in parts
    import vitlib.report.browser as browser_module
    tall = tmp_path / "tall.html"
    tall.write_text('<html><head></head><body><main><div style="height: 2500px">top</div>'
                    '<p>bottom</p></main></body></html>')
    monkeypatch.setattr(browser_module, "MAX_SCREENSHOT_PX", 1000)
    parts = check_page(tall, 1000, browser, screenshot=tmp_path / "tall" / "t.png")["screenshots"]
    assert [p.name for p in parts] == ["t-1.png", "t-2.png", "t-3.png"] and all(p.stat().st_size > 500 for p in parts)


def test_a_study_states_its_scale_once_with_ranges_that_differ(tmp_path):
    from vitlib.report.markdown import scale_text, study_scale
    write_run(tmp_path, "s", "a", img_size=16, steps=2000, train_size=1000, params=1_199_754.0,
              device="cpu (x, 2 cores)", train_seconds=120.0)
    write_run(tmp_path, "s", "b", img_size=16, steps=8000, train_size=45000, params=1_200_000.0,
              device="cpu (x, 2 cores)", train_seconds=600.0)
    scale = study_scale(load_runs(tmp_path))
    assert scale["px"] == "16 px" and scale["steps"] == "2,000–8,000" and scale["params"] == "1.2M"
    assert scale["images"] == "1,000–45,000" and scale["device"] == "CPU"
    assert "models of 1.2M parameters" in scale_text(scale)


def test_an_unfinished_study_says_so_and_names_the_runs_to_come(tmp_path, monkeypatch):
    """While runs its study file lists have not finished, the study's section says how many have,
    names the ones to come and that the verdicts may move; the scoreboard's scale cell says
    "unfinished". A failed run is still to come; once every run has finished, neither is said."""
    study = declare_study(tmp_path, monkeypatch, "size", "runs:\n  - {notebook: n.ipynb, name: '{m}-{n}-s{seed}',\n"
                          "     grid: {m: [vit, res], n: [1000, 5000, 50000], seed: [0, 1]}}\n")
    results = tmp_path / "results"
    write_data_size(results, (30, 80), (50, 82))
    shutil.rmtree(results / "runs" / "size" / "res-50000-s1")
    write_run(results, "size", "res-50000-s1", status="failed", model="resnet18_cifar", seed=1)
    text = build_report(results).read_text()
    assert ("**Unfinished: 7 of 12 runs of the study file have finished.** Still to run: `vit-5000-s0`, "
            "`vit-5000-s1`, `res-5000-s0`, `res-5000-s1`, `res-50000-s1`.") in text
    board = pd.read_csv(results / "tables" / "scoreboard.csv")
    assert set(board["study"]) == {"size"} and board["scale"].str.endswith("; unfinished: 7 of 12 runs").all()
    study.write_text(study.read_text().replace("[1000, 5000, 50000]", "[1000, 50000]"))
    shutil.rmtree(results / "runs" / "size" / "res-50000-s1")
    write_run(results, "size", "res-50000-s1", model="resnet18_cifar", seed=1, top1=82.5)
    text = build_report(results).read_text()
    assert "Unfinished" not in text and "unfinished" not in text


def test_a_run_repeated_in_another_precision_is_a_control_read_beside_the_seed_spread(tmp_path):
    """A run that differs from a counted one only in its precision is its control: never a third
    seed of the claims, listed as not used with why, and compared in the Controls table and text
    against 2 × the seed std of the counted configuration."""
    from vitlib.report.controls import precision_controls

    def params(seed, precision="auto"):
        return {"model": "vit_s4", "train_size": 1000, "seed": seed, "precision": precision,
                "out_dir": f"elsewhere/{seed}"}

    for seed, top1 in ((0, 30.0), (1, 31.0)):
        write_run(tmp_path, "size", f"vit-n1000-s{seed}", train_size=1000, seed=seed, top1=top1,
                  precision="bf16", parameters=params(seed), val_top1=top1 + 1)
        write_run(tmp_path, "size", f"res-n1000-s{seed}", model="resnet18_cifar", train_size=1000, seed=seed,
                  top1=top1 + 10, precision="bf16", parameters={**params(seed), "model": "resnet18_cifar"})
    write_run(tmp_path, "size", "ctl-fp32-vit-n1000-s0", train_size=1000, seed=0, top1=30.5, precision="fp32",
              parameters=params(0, "fp32"), val_top1=31.2)
    runs = load_runs(tmp_path, warn=lambda line: None)
    ctl = runs.set_index("run").loc["ctl-fp32-vit-n1000-s0"]
    assert not ctl["usable"] and ctl["control_of"].endswith("size/vit-n1000-s0")
    assert ctl["problem"].startswith("a precision control of ") and "in fp32 instead of bf16" in ctl["problem"]
    assert sorted(collect.usable(runs)["run"]) == ["res-n1000-s0", "res-n1000-s1", "vit-n1000-s0", "vit-n1000-s1"]
    table = precision_controls(runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["precision"], row["control precision"]) == ("bf16", "fp32")
    assert (row["top1"], row["control top1"]) == (30.0, 30.5)
    assert row["difference"] == pytest.approx(0.5) and row["n"] == 2
    assert row["bar"] == pytest.approx(2 * 0.7071, abs=1e-3) and row["reading"] == "within the seed spread"
    assert (row["val top1"], row["control val top1"]) == (31.0, 31.2)
    text = build_report(tmp_path).read_text()
    assert ("### Controls" in text and "- fp32 against bf16 (vit_s4, 1,000 images, 1,000 steps, seed 0): test "
            "top-1 30.50 against 30.00, +0.50 points; the seed spread of the bf16 runs is 2 × 0.71 = 1.41 (n=2): "
            "within the seed spread.") in text
    assert (tmp_path / "tables" / "size" / "controls.csv").is_file()
    shutil.rmtree(tmp_path / "runs" / "size" / "ctl-fp32-vit-n1000-s0")
    assert "### Controls" not in build_report(tmp_path).read_text()
    assert not (tmp_path / "tables" / "size" / "controls.csv").exists()


def test_a_run_whose_precision_resolves_like_its_twin_is_a_copy_not_a_control(tmp_path):
    """"auto" and "bf16" that both trained in bf16 are one run counted once, not a control."""
    for name, stated in (("a-s0", "auto"), ("b-s0", "bf16")):
        write_run(tmp_path, "size", name, precision="bf16",
                  parameters={"model": "vit_s4", "seed": 0, "precision": stated, "out_dir": name})
    runs = load_runs(tmp_path, warn=lambda line: None).set_index("run")
    assert runs.loc["a-s0", "usable"] and not runs.loc["b-s0", "usable"]
    assert runs.loc["b-s0", "problem"].startswith("a copy of ") and pd.isna(runs.loc["b-s0", "control_of"])
