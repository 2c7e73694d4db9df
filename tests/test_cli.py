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
    assert {"vit_ti4", "vit_b16", "resnet18_cifar"} <= set(capsys.readouterr().out.split())
    assert main(["list-recipes"]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == list(RECIPES)


@pytest.mark.parametrize("flags, message", [
    (["--recipe", "fast"], "unknown recipe 'fast'; allowed: paper_pretrain"),
    (["--set", "learning_rate=1"], "unknown TrainConfig key(s): learning_rate; allowed:"),
    (["--batch-size", "0"], "TrainConfig.batch_size=0 is invalid; allowed: an integer > 0"),
    (["--lr", "0"], "TrainConfig.lr=0.0 is invalid; allowed: a number > 0"),
    (["--set", "lr"], "--set expects key=value, got 'lr'"),
    (["--num-classes", "ten"], "--num-classes must be 'auto' or a positive integer"),
])
def test_bad_input_exits_2_with_the_message(flags, message, capsys, tmp_path):
    assert main([*BASE[:-1], str(tmp_path / "run"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_errors_print_one_line_without_a_traceback():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "vitlib", *BASE, "--model", "vit_zz"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown model 'vit_zz'; allowed:")
