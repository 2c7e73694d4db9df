"""`python -m vitlib`: flags generated from TrainConfig, precedence, listings and clean errors."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitlib.__main__ import build_parser, main, resolve_config
from vitlib.train import RECIPES, TrainConfig, get_recipe

ROOT = Path(__file__).resolve().parents[1]
BASE = ["train", "--model", "vit_ti4", "--dataset", "digits", "--out", "unused"]


def config_of(*flags):
    return resolve_config(build_parser().parse_args([*BASE, *flags]))


def test_every_config_field_is_a_flag_and_flags_beat_set_beat_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for name in TrainConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text, name
    config = config_of("--recipe", "vit_small_data", "--set", "lr=0.5", "--set", "epochs=3", "--lr", "3e-4",
                       "--betas", "0.9", "0.95", "--no-tta-flip", "--compile", "--steps", "100",
                       "--set", "augment.mixup_alpha=0.2")
    assert config == get_recipe("vit_small_data").replace(
        lr=3e-4, epochs=3, betas=(0.9, 0.95), tta_flip=False, compile=True, steps=100,
        augment={**RECIPES["vit_small_data"].augment, "mixup_alpha": 0.2})
    assert config_of() == TrainConfig()  # no recipe: the dataclass defaults


def test_list_commands(capsys):
    assert main(["list-models"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"vit_ti4", "vit_b16", "resnet18_cifar"} <= set(rows)
    assert rows["vit_b16"][:2] == ["86,567,656", "35.13"]  # ViT-B/16 at 224 px: the paper's 86M
    assert main(["list-recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:len(RECIPES) + 1]] == list(RECIPES)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("vitlib ")


@pytest.mark.parametrize("flags, message", [
    (["--recipe", "fast"], "unknown recipe 'fast'; allowed: paper_pretrain"),
    (["--set", "learning_rate=1"], "unknown TrainConfig key(s): learning_rate; allowed:"),
    (["--batch-size", "0"], "TrainConfig.batch_size=0 is invalid; allowed: an integer > 0"),
    (["--lr", "0"], "TrainConfig.lr=0.0 is invalid; allowed: a number > 0"),
    (["--set", "lr"], "--set 'lr': expected key=value"),
    (["--model-arg", "depth:3"], "--model-arg 'depth:3': expected key=value"),
    (["--num-classes", "ten"], "--num-classes must be 'auto' or a positive integer"),
])
def test_bad_input_exits_2_with_the_message(flags, message, capsys, tmp_path):
    assert main([*BASE[:-1], str(tmp_path / "run"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_set_values_read_as_yaml_as_everywhere_else():
    config = config_of("--set", "augment={crop: pad_crop, padding: 2}", "--set", "lr=1e-4")
    assert config.augment["crop"] == "pad_crop" and config.augment["padding"] == 2 and config.lr == 1e-4


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny ViT run folder on digits (three steps), made by `vitlib train`."""
    from vitlib.data import get_dataset
    folder = tmp_path_factory.mktemp("cli") / "runs" / "cli" / "run"
    assert main(["train", "--model", "vit_ti4", "--dataset", "digits", "--img-size", "16", "--out", str(folder),
                 "--steps", "3", "--batch-size", "32", "--set", "warmup_steps=1", "--no-progress",
                 *[f"--model-arg={k}={v}" for k, v in dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64).items()]]) == 0
    test = get_dataset("digits", "test", img_size=16)
    image = folder / "digit.png"
    from PIL import Image
    Image.fromarray(test.images[0, 0].numpy()).save(image)
    return folder, image


def test_a_train_run_reaches_the_report(trained_run):
    """`vitlib train` leaves result.json, as a notebook run does: the report finds the run, its
    study (the folder under runs/), the model's family and shape, and how to re-make it."""
    from vitlib.report import load_runs
    folder, _ = trained_run
    run = load_runs(folder.parents[2]).set_index("run").loc["run"]
    assert (run["study"], run["family"], run["kind"], run["dataset"]) == ("cli", "vit", "train", "digits")
    assert (run["patch"], run["depth"], run["width"]) == (4, 1, 32) and run["img_size"] == 16
    assert run["command"].startswith("vitlib train --model vit_ti4") and 0 <= run["accuracy"] <= 100


def test_eval_predict_and_attention_on_a_trained_run(trained_run, capsys, tmp_path):
    folder, image = trained_run
    assert main(["eval", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "on 359 digits test images: top-1" in out and "flip-TTA" in out
    assert main(["predict", str(image), "--run", str(folder), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.strip().endswith(tuple("0123456789")) for line in lines)
    assert main(["attention", str(image), "--run", str(folder), "--out", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").stat().st_size > 1000 and "predicted" in capsys.readouterr().out
    weights = ["--model", "vit_ti4", "--dataset", "digits", "--img-size", "16",
               *[f"--model-arg={k}={v}" for k, v in dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64).items()]]
    assert main(["eval", str(folder / "checkpoint.pt"), *weights]) == 0  # a weights file: the same model
    assert capsys.readouterr().out.split(": top-1")[1] == out.split(": top-1")[1]
    assert main(["eval", str(folder / "checkpoint.pt")]) == 2
    assert "is a weights file: say what it holds with --model, --dataset, --img-size" in capsys.readouterr().err
    assert main(["predict", str(folder / "result.json"), "--run", str(folder)]) == 2
    assert "is not an image file" in capsys.readouterr().err


def test_run_and_report_are_the_study_and_report_commands(capsys, tmp_path):
    assert main(["run", "experiments/demo.yaml", "--dry-run", "--output", str(tmp_path / "runs" / "demo")]) == 0
    assert "would run" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_errors_print_one_line_without_a_traceback():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "vitlib", *BASE, "--model", "vit_zz"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown model 'vit_zz'; allowed:")
