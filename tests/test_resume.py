"""Exact resume and crash-safe run folders.

A CLI run on digits is killed with SIGKILL after its first checkpoint, then resumed with --resume:
its metrics, summary and final weights must equal those of an uninterrupted run exactly (dropout,
pad-crop, flip, Mixup, EMA and an evaluation period that straddles checkpoints all switched on),
and the files the killed run left must all parse. Damaged run files and a full disk end the CLI
with one line naming the file, and leave every file as it was.
"""
import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from vitlib.__main__ import main
from vitlib.train import runfolder

ROOT = Path(__file__).resolve().parents[1]
# --device cpu --precision fp32: the exact comparisons hold for the CPU's fp32 ("auto" means bf16 on
# a GPU machine and on a CPU with native bf16)
ARGS = ["train", "--model", "vit_ti4", "--dataset", "digits", "--no-progress", "--device", "cpu", "--precision", "fp32",
        "--model-arg", "depth=2", "--model-arg", "embed_dim=32", "--model-arg", "num_heads=2",
        "--model-arg", "mlp_dim=64", "--model-arg", "dropout=0.1",
        "--epochs", "8", "--batch-size", "64", "--lr", "2e-3", "--label-smoothing", "0.1",
        "--ema-decay", "0.9", "--tta-flip", "--eval-every", "2",
        "--augment", '{"crop": "pad_crop", "flip": true, "mixup_alpha": 0.5}']


# evaluations by steps, mid-epoch (17 steps per epoch), with a validation split choosing, and
# checkpoints at the first epoch end after every 20 steps
BY_STEPS = ["--val-fraction", "0.2", "--eval-every-steps", "9", "--checkpoint-every-steps", "20", "--patience", "50"]


def cli(out, *extra, args=ARGS):
    """The CLI in a subprocess, with one CPU thread as the in-process reference run uses."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # SIGINT as a terminal delivers it, even where this test process was started in the background
    # (which leaves SIGINT ignored in every child, so Python would install no KeyboardInterrupt)
    return subprocess.Popen([sys.executable, "-m", "vitlib", *args, "--out", str(out), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def eval_columns(run):
    with open(run / "metrics.csv") as f:
        return [{k: r[k] for k in ("epoch", "step", "lr", "train_loss", "train_acc", "val_acc", "eval_acc",
                                    "eval_acc_ema", "eval_acc_tta")} for r in csv.DictReader(f)]


def kill_at_first_checkpoint(proc, run):
    """SIGKILL `proc` as soon as `run`/checkpoint.pt exists (it appears complete: atomic rename)."""
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if (run / "checkpoint.pt").exists():
            proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.01)


@pytest.mark.parametrize("extra", [[], BY_STEPS], ids=["by-epochs", "by-steps-with-val"])
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path, extra):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    args = [*ARGS, *extra]
    proc = cli(killed, args=args)
    watcher = threading.Thread(target=kill_at_first_checkpoint, args=(proc, killed), daemon=True)
    watcher.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the uninterrupted run, in this process, while the other one runs until it is killed
        assert main([*args, "--out", str(reference)]) == 0
    finally:
        torch.set_num_threads(threads)
    watcher.join()
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"not killed (status {proc.returncode}): {err[-2000:]}"
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"

    # every file the killed run left parses
    json.loads((killed / "config.json").read_text())
    json.loads((killed / "env.json").read_text())
    ckpt = runfolder.load_checkpoint(killed / "checkpoint.pt")
    assert 1 <= ckpt["epoch"] < 8
    if (killed / "metrics.csv").exists():
        assert eval_columns(killed) == eval_columns(reference)[:len(eval_columns(killed))]

    resumed = cli(killed, "--resume", args=args)
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert f"at epoch {ckpt['epoch']}" in out

    assert eval_columns(killed) == eval_columns(reference)
    summary, expected = (json.loads((run / "summary.json").read_text()) for run in (killed, reference))
    assert summary["final"] == expected["final"] and summary["best"] == expected["best"]
    assert summary.get("selected") == expected.get("selected")
    if extra:  # evaluated every 9 steps, mid-epoch, and the selection is the best validation row
        rows = eval_columns(reference)
        assert [int(r["step"]) for r in rows] == [*range(9, 136, 9), 136]
        best = max(rows, key=lambda r: float(r["val_acc"]))
        assert (summary["selected"]["step"], summary["selected"]["eval_acc"]) == (int(best["step"]),
                                                                                 float(best["eval_acc"]))
        best_weights = torch.load(killed / "best.pt", weights_only=True)
        assert best_weights["step"] == int(best["step"])
        assert best_weights["model"].keys() == runfolder.load_checkpoint(killed / "checkpoint.pt")["model"].keys()
    assert summary["steps"] == expected["steps"] and summary["status"] == "complete"
    weights, expected_weights = (runfolder.load_checkpoint(run / "checkpoint.pt") for run in (killed, reference))
    for part in ("model", "ema"):
        for key, value in expected_weights[part].items():
            assert torch.equal(weights[part][key], value), f"{part}.{key} differs"
    env = json.loads((killed / "env.json").read_text())
    assert len(env["resumes"]) == 1


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    runfolder.write_json(target, {"status": "complete"})
    before = target.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt  # as a kill between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        runfolder.write_json(target, {"status": "half"})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # the temporary file is gone


def test_checkpoint_round_trip_restores_every_random_generator(tmp_path):
    import random

    import numpy as np
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    state = runfolder.rng_state()
    runfolder.save_checkpoint(tmp_path / "checkpoint.pt", {"rng": state, "step": 7})
    draws = (torch.rand(3), random.random(), np.random.rand())
    runfolder.set_rng_state(runfolder.load_checkpoint(tmp_path / "checkpoint.pt")["rng"])
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


# ---------------------------------------------------------------- damaged files, full disk

# one epoch of 5 steps on digits: a finished run folder in about a second
TINY = ["train", "--model", "vit_ti4", "--dataset", "digits", "--no-progress", "--device", "cpu", "--precision", "fp32",
        "--model-arg", "depth=1", "--model-arg", "embed_dim=16", "--model-arg", "num_heads=2",
        "--model-arg", "mlp_dim=32", "--epochs", "1", "--batch-size", "256"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("tiny") / "run"
    assert main([*TINY, "--out", str(run)]) == 0
    return run


def contents(run):
    return {p.name: p.read_bytes() for p in run.iterdir()}


class PickledCall:
    """An object whose unpickling calls a function (here a harmless one)."""

    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize("damage, problem", [
    ("empty", "is empty; restore it, or start the run again in a new folder"),
    ("truncated", "is truncated or damaged ("),
    ("foreign", "is not a checkpoint of vitlib.train.fit (it has no model, optimizer, ema, rng, epoch"),
    ("pickled", "holds Python objects other than tensors and plain values; refused for safety"),
])
def test_resume_from_a_damaged_checkpoint_is_refused_before_anything_is_written(
        finished_run, tmp_path, capsys, damage, problem):
    run = shutil.copytree(finished_run, tmp_path / "run")
    checkpoint = run / "checkpoint.pt"
    if damage == "foreign":
        torch.save({"step": 5}, checkpoint)
    elif damage == "pickled":  # a payload that would run code when unpickled without weights_only
        torch.save({"model": {}, "payload": PickledCall()}, checkpoint)
    else:
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(b"" if damage == "empty" else data[:len(data) // 2])
    before = contents(run)
    assert main([*TINY, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume: {checkpoint} {problem}") and err.count("\n") == 1
    assert contents(run) == before  # env.json records no resume


@pytest.mark.parametrize("name, text, problem", [
    ("config.json", "", "is empty"),
    ("summary.json", '{"status": ', "is not valid JSON (Expecting value: line 1 column 12 (char 11))"),
])
def test_an_unreadable_json_file_of_the_run_folder_is_named(finished_run, tmp_path, capsys, name, text, problem):
    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / name).write_text(text)
    before = contents(run)
    assert main([*TINY, "--out", str(run)]) == 2
    assert capsys.readouterr().err == f"error: {run / name} {problem}\n"
    assert contents(run) == before


@pytest.mark.usefixtures("one_thread")
def test_a_full_disk_ends_training_with_one_line_and_intact_files(tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def fsync_on_a_full_disk(fd):
        if os.fstat(fd).st_size > 20_000:  # the checkpoint fails; the JSON and CSV files are small
            full_disk(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_on_a_full_disk)
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run)]) == 2
    assert capsys.readouterr().err == (f"error: no space left on device writing {run / 'checkpoint.pt'}; "
                                       "free some space, then continue with --resume\n")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "env.json", "metrics.csv"]  # no temporary file
    json.loads((run / "env.json").read_text())
    assert len(eval_columns(run)) == 1

    # the file a full disk could not replace keeps its old content
    before = (run / "config.json").read_bytes()
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as failed:
        runfolder.write_json(run / "config.json", {"other": "content"})
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(run / "config.json")
    assert (run / "config.json").read_bytes() == before

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: --resume finishes the run
    assert main([*TINY, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_ctrl_c_marks_the_run_interrupted_keeps_the_checkpoint_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = cli(run)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; continue with --resume" and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "continue with resume=True (--resume)" in summary["error"]
    assert runfolder.load_checkpoint(run / "checkpoint.pt")["epoch"] >= 1  # intact
    resumed = cli(run, "--resume")
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_resume_on_other_data_is_refused(finished_run, tmp_path, capsys, monkeypatch):
    """The same files with the class folders rotated: same shapes, other labels."""
    import vitlib.data
    run = shutil.copytree(finished_run, tmp_path / "run")
    get = vitlib.data.get_dataset

    def rotated(name, split, *args, **kwargs):
        ds = get(name, split, *args, **kwargs)
        ds.labels = (ds.labels + 1) % ds.num_classes
        return ds

    monkeypatch.setattr(vitlib.data, "get_dataset", rotated)
    before = contents(run)
    assert main([*TINY, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "config.json differs in: data.eval.fingerprint, data.train.fingerprint (other data than the run's)" in err
    assert contents(run) == before


def test_resume_in_another_precision_is_refused(tmp_path, capsys, monkeypatch):
    """Started where "auto" means fp32 (no native bf16), resumed where "auto" means bf16."""
    import vitlib.device
    args = [a for a in TINY if a not in ("--precision", "fp32")]  # precision "auto"
    run = tmp_path / "run"
    monkeypatch.setattr(vitlib.device, "cpu_has_native_bf16", lambda: False)
    assert main([*args, "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["precision"] == "fp32"
    monkeypatch.setattr(vitlib.device, "cpu_has_native_bf16", lambda: True)
    before = contents(run)
    assert main([*args, "--out", str(run), "--resume"]) == 2
    assert "config.json differs in: precision (another precision: give the one it trained in)" \
        in capsys.readouterr().err
    assert contents(run) == before
