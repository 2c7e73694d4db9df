"""Data-parallel training: two processes under torchrun (gloo, CPU) equal one process.

Both runs see the same global batches: BatchStream deals example i of the epoch's order to rank
i % world_size, so the two ranks' micro-batches together are the single process's batch, and DDP
averages their gradients. No augmentation and no dropout, so no per-rank random draws differ; a
ViT (LayerNorm only) because BatchNorm statistics are per rank by design. SGD, because Adam's
division by sqrt(v) magnifies the float rounding of near-zero gradients beyond a useful tolerance.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from vitlib.__main__ import main
from vitlib.train import runfolder

ROOT = Path(__file__).resolve().parents[1]
# --device cpu --precision fp32: the exact comparisons hold for the CPU's fp32 ("auto" means bf16 on
# a GPU machine and on a CPU with native bf16)
ARGS = ["train", "--model", "vit_ti4", "--dataset", "digits", "--no-progress", "--device", "cpu", "--precision", "fp32",
        "--model-arg", "depth=2", "--model-arg", "embed_dim=32", "--model-arg", "num_heads=2",
        "--model-arg", "mlp_dim=64", "--epochs", "2", "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05",
        "--clip-grad", "1", "--ema-decay", "0.9", "--tta-flip", "--set", "label_smoothing=0.1"]


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo")
def test_two_process_run_matches_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("WORLD_SIZE", None)
    two = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "vitlib", *ARGS, "--out", str(tmp_path / "two")],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = two.communicate(timeout=300)
    assert two.returncode == 0, err[-3000:]
    assert out.count("epoch 2/2") == 1  # only rank 0 prints

    one_rows, two_rows = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert len(one_rows) == len(two_rows) == 2
    for a, b in zip(one_rows, two_rows):
        assert a["step"] == b["step"]
        for key in ("lr", "train_loss", "train_acc"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key
        # accuracies count whole images, over all 359 test images on both sides (no duplicates)
        for key in ("eval_acc", "eval_acc_ema", "eval_acc_tta"):
            assert abs(float(a[key]) - float(b[key])) <= 1 / 359 + 1e-9, key
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2 * (1438 // 64)
    one, two = (runfolder.load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("one", "two"))
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5)
