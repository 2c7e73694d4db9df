"""A run's weights alone (weights.safetensors, bf16): what a later run loads from a committed run
folder whose checkpoint.pt (ignored by git) is gone."""
import json

import pytest
import torch

import vitlib
from vitlib.experiments.trained import load_run_model, model_for_finetuning, save_run_weights
from vitlib.train.runfolder import WEIGHTS

ARGS = dict(depth=2, embed_dim=32, num_heads=2, mlp_dim=64)


def finished_run(folder, model):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"kind": "train", "run": folder.name, "model": "vit_ti4", "model_args": ARGS,
              "family": "vit", "dataset": "digits", "train_size": 100, "img_size": 16,
              "num_classes": 10, "in_chans": 1, "seed": 0, "top1": 50.0}
    (folder / "result.json").write_text(json.dumps(record))
    torch.save({"model": model.state_dict()}, folder / "checkpoint.pt")
    return folder


def test_weights_file_replaces_the_checkpoint_and_is_preferred(tmp_path):
    torch.manual_seed(0)
    model = vitlib.create_model("vit_ti4", num_classes=10, img_size=16, in_chans=1, **ARGS).eval()
    run = finished_run(tmp_path / "run", model)
    x = torch.randn(4, 1, 16, 16)
    from_ckpt, _ = load_run_model(run)
    torch.testing.assert_close(from_ckpt(x), model(x))  # exact from the fp32 checkpoint

    path = save_run_weights(model, run)
    assert path == run / WEIGHTS and path.stat().st_size < 0.6 * (run / "checkpoint.pt").stat().st_size
    (run / "checkpoint.pt").unlink()  # as in a fresh clone
    loaded, record = load_run_model(run)
    assert record["model"] == "vit_ti4" and all(p.dtype == torch.float32 for p in loaded.parameters())
    for name, p in model.state_dict().items():  # bf16 rounding: 8 bits of mantissa
        torch.testing.assert_close(loaded.state_dict()[name], p.to(torch.bfloat16).float())
    torch.testing.assert_close(loaded(x), model(x), atol=0.05, rtol=0.05)

    torch.save({"model": {k: torch.zeros_like(v) for k, v in model.state_dict().items()}},
               run / "checkpoint.pt")  # the weights file wins over a checkpoint beside it
    again, _ = load_run_model(run)
    torch.testing.assert_close(again(x), loaded(x))
    net, _ = model_for_finetuning(run, num_classes=3, img_size=32)  # new head, 8 x 8 grid
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_a_run_without_weights_is_named(tmp_path):
    model = vitlib.create_model("vit_ti4", num_classes=10, img_size=16, in_chans=1, **ARGS)
    run = finished_run(tmp_path / "run", model)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="neither weights.safetensors nor checkpoint.pt"):
        load_run_model(run)
