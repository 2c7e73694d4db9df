"""`python -m vitlib`: flags generated from TrainConfig, precedence, listings and clean errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitlib import count_flops, count_params, create_model
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
    assert rows["resnet18_cifar"][2:] == ["32", "px"] and rows["vit_ti4"][2:] == ["32", "px"]  # their own sizes
    for name in ("vit_ti4", "r_vit_ti4", "resnet18_cifar"):  # built without weights, counted cut: as the real model
        model = create_model(name)
        assert rows[name][:2] == [f"{count_params(model):,}", f"{count_flops(model, 32) / 1e9:.2f}"], name
    assert main(["list-recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "None" not in "\n".join(lines)
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
                 *[f"--model-arg={k}={v}"
                   for k, v in dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64).items()]]) == 0
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
    captured = capsys.readouterr()
    out = captured.out
    assert "on 359 digits test images: top-1" in out and "flip-TTA" in out
    assert captured.err.startswith("evaluating vit_ti4 on 359 digits test images (2 batches of 256")
    record = json.loads((folder / "eval_digits_test.json").read_text())  # for scripts
    assert (record["images"], record["split"], record["img_size"]) == (359, "test", 16)
    assert f"top-1 {record['top1']:.2f}% (flip-TTA {record['top1_tta']:.2f}%)" in out
    assert record["command"] == f"vitlib eval {folder}"
    assert main(["predict", str(image), "--run", str(folder), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.strip().endswith(tuple("0123456789")) for line in lines)
    assert main(["attention", str(image), "--run", str(folder), "--out", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").stat().st_size > 1000 and "predicted" in capsys.readouterr().out
    weights = ["--model", "vit_ti4", "--dataset", "digits", "--img-size", "16",
               *[f"--model-arg={k}={v}" for k, v in dict(depth=1, embed_dim=32, num_heads=2, mlp_dim=64).items()]]
    assert main(["eval", str(folder / "checkpoint.pt"), *weights, "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["top1"] == record["top1"]  # a weights file: the same model
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


@pytest.mark.parametrize("argv, expected", [(["run", "--help"], "study file"), (["run", "-h"], "--dry-run"),
                                            (["report", "--help"], "results_dir")])
def test_run_and_report_hand_on_their_help(argv, expected, capsys):
    from vitlib.__main__ import main as vitlib_main
    with pytest.raises(SystemExit) as exit_:
        vitlib_main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and expected in out


@pytest.mark.parametrize("top", ["0", "-3"])
def test_predict_refuses_a_top_below_one_before_loading(top, tmp_path, capsys):
    image = tmp_path / "x.png"
    assert main(["predict", str(image), "--run", str(tmp_path / "missing"), "--top", top]) == 2
    assert f"--top must be a positive integer (how many classes to show), got {top}" in capsys.readouterr().err


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match="TrainConfig.lr=.* is invalid; allowed: a number > 0"):
        TrainConfig(lr=value)
    with pytest.raises(ValueError, match="TrainConfig.clip_grad=.* is invalid"):
        TrainConfig(clip_grad=value)


def test_a_folder_that_cannot_be_written_ends_in_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import vitlib.train
    from vitlib.fileio import write_error_message

    def refused(*args, **kwargs):  # what a read-only folder does to the run folder's first write
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "config.json"))

    monkeypatch.setattr(vitlib.train, "fit", refused)
    code = main(["train", "--model", "vit_ti4", "--dataset", "digits", "--steps", "1", "--batch-size", "32",
                 "--model-arg", "depth=1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err == (f"error: read-only file system writing {tmp_path / 'run' / 'config.json'}; "
                                       "choose a folder you may write to, or fix its permissions, then continue "
                                       "with --resume\n")
    assert write_error_message(PermissionError(errno.EACCES, "denied"), "try again") == (
        "error: permission denied; choose a folder you may write to, or fix its permissions, then try again")
    assert write_error_message(OSError(errno.EIO, "I/O error"), "try again") is None  # others are raised


def test_train_into_a_folder_in_use_is_refused_naming_its_holder(tmp_path, capsys):
    from vitlib.fileio import file_lock, run_lock
    run = tmp_path / "run"
    with file_lock(run_lock(run)):  # another training holds the folder
        code = main(["train", "--model", "vit_ti4", "--dataset", "digits", "--steps", "1", "--batch-size", "32",
                     "--model-arg", "depth=1", "--out", str(run), "--resume", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert (err.startswith(f"error: run folder {run} is in use by pid {os.getpid()} on ")
            and "choose another --out" in err)
    assert not run.exists()


def test_too_few_classes_are_refused_before_the_run_folder_exists(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "vit_ti4", "--dataset", "digits", "--steps", "1", "--num-classes", "5",
                 "--out", str(run), "--no-progress"]) == 2
    assert "--num-classes 5 but digits has 10 classes (labels 0-9); pass --num-classes auto or at least 10" \
        in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.parametrize("value", ["25", "abc"])
def test_a_field_given_by_set_and_by_its_flag_says_which_wins(value, capsys):
    args = build_parser().parse_args(["train", "--model", "vit_ti4", "--dataset", "digits", "--out", "x",
                                      "--batch-size", "50", "--set", f"batch_size={value}"])
    if value == "abc":  # a bad --set value is refused even where a flag overrides it
        with pytest.raises(ValueError, match="TrainConfig.batch_size='abc' is invalid"):
            resolve_config(args)
        return
    assert resolve_config(args).batch_size == 50
    assert capsys.readouterr().err == "note: --batch-size 50 wins over --set batch_size=25 (flags beat --set)\n"


def test_the_help_examples_of_set_and_augment_work():
    """What the command's own help shows is accepted: `augment.<field>=...` and `--augment '{...}'`."""
    import re

    import vitlib.__main__ as cli
    examples = re.findall(r"`(augment\.\w+=\w+)`", cli.__doc__) + re.findall(r"`--augment '(\{.*?\})'`", cli.__doc__)
    assert len(examples) == 2
    base = ["train", "--model", "vit_ti4", "--dataset", "digits", "--out", "x", "--recipe", "vit_cpu"]
    config = resolve_config(build_parser().parse_args([*base, "--set", examples[0]]))
    assert config.augment["flip"] is True and config.augment["padding"] == 4  # the recipe's others kept
    assert resolve_config(build_parser().parse_args([*base, "--augment", examples[1]])).augment["flip"] is True


def test_train_ends_with_what_it_wrote_its_accuracy_and_the_next_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "vit_ti4", "--dataset", "digits", "--out", str(run), "--steps", "4",
                 "--batch-size", "32", "--warmup-steps", "1", "--val-fraction", "0.2", "--eval-every-steps", "2",
                 "--no-progress", "--model-arg", "depth=1", "--model-arg", "embed_dim=32",
                 "--model-arg", "num_heads=2", "--model-arg", "mlp_dim=64"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-4:]
    assert last[0] == (f"wrote {run}/: best.pt, checkpoint.pt, config.json, env.json, metrics.csv, result.json, "
                       "summary.json")
    summary = json.loads((run / "summary.json").read_text())
    assert (last[1].startswith(f"test top-1 {100 * summary['final']['eval_acc']:.2f}% (flip-TTA")
            and "after 4 steps" in last[1])
    assert last[2].startswith(f"selected on validation: step {summary['selected']['step']}, val ")
    assert last[3] == f"next: vitlib eval {run}  |  vitlib predict IMAGE --run {run}  |  " \
                      f"vitlib attention IMAGE --run {run} --out map.png"
    result = json.loads((run / "result.json").read_text())
    # the evaluation chosen on validation is the run's result; the test set chose nothing
    assert result["top1"] == pytest.approx(100 * summary["selected"]["eval_acc"], abs=0.006)  # rounded
    assert result["val_top1"] == pytest.approx(100 * summary["selected"]["val_acc"], abs=0.006)
    assert result["selected_step"] == summary["selected"]["step"] and "best_top1" not in result
    assert result["last_top1"] == pytest.approx(100 * summary["final"]["eval_acc"], abs=0.006)
